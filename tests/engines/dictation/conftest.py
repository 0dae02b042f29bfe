"""Fixtures for dictation: the embedded Whisper folder, its engine loaded once, and clips the embedded voice speaks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from engines.dictation.clips import SENTENCES, speak
from engines.dictation.folder import embedded_whisper_folder
from engines.dictation.requests import DictationOptions, DictationRequest


class Steps:
    """A Progress that keeps every step and notice, and can cancel a token at the first segment heard."""

    def __init__(self, cancel_at_first_segment: object = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.notices: list[str] = []
        self._cancel = cancel_at_first_segment

    def step(self, done: int, total: int) -> None:
        self.steps.append((done, total))
        if self._cancel is not None and done > 0:
            self._cancel.cancel()  # type: ignore[attr-defined]

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def token(self, text: str) -> None:
        raise AssertionError("a transcription is not streamed token by token")

    def preview(self, image: object, index: int = 0) -> None:
        raise AssertionError("dictation has no previews")

    def wants_preview(self) -> bool:
        return False


@pytest.fixture(scope="session")
def whisper_folder() -> str:
    return embedded_whisper_folder()


@pytest.fixture(scope="session")
def whisper_options(whisper_folder: str) -> DictationOptions:
    return DictationOptions(whisper_folder, threads=1)


@pytest.fixture(scope="session")
def engine(whisper_options: DictationOptions) -> Iterator[object]:
    from engines.dictation.engine import DictationEngine

    engine = DictationEngine(whisper_options)
    engine.load()
    yield engine
    engine.unload()


@pytest.fixture(scope="session")
def clip() -> tuple[str, np.ndarray, int]:
    """One sentence, and the embedded voice saying it (24 kHz)."""
    samples, rate = speak(SENTENCES[0])
    return SENTENCES[0], samples, rate


@pytest.fixture(scope="session")
def long_clip() -> tuple[str, np.ndarray, int]:
    """Every sentence twice, one after another (about 40 s: more than one of Whisper's 30-second windows)."""
    spoken = [speak(s) for s in SENTENCES] * 2
    rate = spoken[0][1]
    pause = np.zeros(rate // 2, np.float32)
    samples = np.concatenate([part for samples, _ in spoken for part in (samples, pause)])
    return " ".join(list(SENTENCES) * 2), samples, rate


def request_for(options: DictationOptions, samples: np.ndarray, rate: int, **kwargs: object) -> DictationRequest:
    return DictationRequest(options, samples=samples, sample_rate_hz=rate, **kwargs)  # type: ignore[arg-type]
