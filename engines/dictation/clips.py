"""Speech clips made with the embedded voice (hibari): what the tests, the benchmark and the
enforcement sample dictate, so every round trip (text -> speech -> text) starts from a known text."""

from __future__ import annotations

import functools

import numpy as np

from engines.errors import EmberError

HIBARI_RATE_HZ = 24000

SENTENCES = (
    "The lighthouse keeper climbs the stairs every evening to light the lamp.",
    "Please send the report to the whole team before the meeting on Friday.",
    "A small red boat drifted slowly across the calm water of the harbour.",
    "Turn left at the bakery, then walk straight on until you reach the park.",
    "The children planted tomatoes and beans in the garden behind the school.",
)


@functools.lru_cache(maxsize=1)
def _voice() -> object:
    try:
        from hibari import Hibari
    except ImportError:
        raise EmberError("The embedded voice (package hibari-tts) is not installed, so no clip can be made.") from None
    return Hibari()


@functools.lru_cache(maxsize=32)
def _spoken(text: str) -> bytes:
    audio = _voice()(text)  # type: ignore[operator]
    return np.asarray(audio, dtype=np.float32).reshape(-1).tobytes()


def speak(text: str) -> tuple[np.ndarray, int]:
    """``text`` spoken by the embedded voice: mono float32 samples and their rate (24 kHz); cached per text.

    Raises EmberError when the voice is not installed.
    """
    return np.frombuffer(_spoken(text), dtype=np.float32).copy(), HIBARI_RATE_HZ
