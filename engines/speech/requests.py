"""Requests and results of the speech engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

MAX_TEXT_CHARS = 100_000
SPEED_RANGE = (0.5, 2.0)
PAUSE_RANGE_MS = (0, 3000)


@dataclass(frozen=True)
class SpeechOptions:
    """Which voice is loaded; two requests with equal options share one loaded voice.

    ``voice`` is an embedded voice id ("heart", "joe"), a catalog voice id, or the path of a piper
    ``.onnx`` file with its ``.onnx.json`` beside it.
    """

    voice: str = "heart"
    threads: int | None = None  # None: chosen from the free cores
    device: Literal["cpu"] = "cpu"  # the voices are small: the CPU lane runs them


@dataclass(frozen=True)
class SpeechRequest:
    """Speak ``text``: sentence by sentence, ``pause_ms`` of silence between sentences.

    ``speed`` 1.0 is the voice's own pace (0.5 slow to 2.0 fast). ``seed`` fixes the noise of
    hibari voices (same seed, same samples); None draws one. ``preview`` sends each sentence as
    soon as it is made (as a PREVIEW event, checked and watermarked), for playing while the rest
    is made.
    """

    model: SpeechOptions
    text: str
    speed: float = 1.0
    pause_ms: int = 250
    seed: int | None = None
    preview: bool = False

    def __post_init__(self) -> None:
        checks = [
            (bool(self.text.strip()), "there is no text to speak"),
            (len(self.text) <= MAX_TEXT_CHARS, f"the text is longer than {MAX_TEXT_CHARS:,} characters"),
            (SPEED_RANGE[0] <= self.speed <= SPEED_RANGE[1], "the speed must be from 0.5 to 2.0"),
            (PAUSE_RANGE_MS[0] <= self.pause_ms <= PAUSE_RANGE_MS[1], "the pause must be from 0 to 3000 ms"),
            (self.seed is None or 0 <= self.seed < 2**32, "the seed must be from 0 to 4294967295"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid speech setting: {message}.")


@dataclass(frozen=True, eq=False)
class SpokenText:
    """What the engine returns: the whole clip, and where each sentence starts in it (in samples)."""

    samples: np.ndarray
    sample_rate: int
    text: str
    sentences: tuple[str, ...]
    starts: tuple[int, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True, eq=False)
class SpeechResult:
    """What a speech job ends with: the clip that passed the pipeline and where it was saved (WAV).

    ``delivered.output`` is an :class:`engines.media.AudioOutput` (watermarked), ``delivered.record``
    its record. ``realtime_factor`` is seconds of audio made per second of synthesis.
    """

    delivered: Any
    path: str
    realtime_factor: float
    withheld: tuple[str, ...] = ()
