"""What a dictation job asks for and what it gives back: frozen dataclasses, units in the names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.errors import EmberError

DEVICES = ("cpu", "auto", "gpu")
COMPUTE_TYPES = ("int8", "int8_float32", "float32", "float16", "int8_float16", "default")


@dataclass(frozen=True)
class DictationOptions:
    """How a Whisper folder is loaded; requests with equal options share one loaded model.

    ``folder`` is a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json);
    ``threads`` 0 means Ember's default (the physical cores but one).
    """

    folder: str
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise EmberError(f"'{self.device}' is not a device Ember knows; pick one of {', '.join(DEVICES)}.")
        if self.compute_type not in COMPUTE_TYPES:
            raise EmberError(
                f"'{self.compute_type}' is not a CTranslate2 compute type; pick one of {', '.join(COMPUTE_TYPES)}."
            )
        if self.threads < 0:
            raise EmberError("The number of threads cannot be negative (0 means Ember's default).")


@dataclass(frozen=True, eq=False)
class DictationRequest:
    """Transcribe one recording: a file (``audio_path``) or samples in memory (``samples`` at ``sample_rate_hz``).

    ``language`` is a Whisper language code ("en", "fr", ...) or None to detect it (a multilingual
    model) or take the only one it knows (an English-only model). ``vad`` skips the parts without
    speech (silero VAD), which also keeps Whisper from inventing words in silence or noise.
    ``source`` names the recording in messages and records ("microphone" for the window's button).
    """

    model: DictationOptions
    audio_path: str | None = None
    samples: np.ndarray | None = field(default=None, repr=False)
    sample_rate_hz: int = 16000
    language: str | None = None
    word_timestamps: bool = False
    beam_size: int = 5
    vad: bool = True
    source: str = ""

    def __post_init__(self) -> None:
        if (self.audio_path is None) == (self.samples is None):
            raise EmberError("A dictation needs exactly one recording: an audio file or samples.")
        if self.sample_rate_hz <= 0:
            raise EmberError(f"A sample rate of {self.sample_rate_hz} Hz is not possible.")
        if not 1 <= self.beam_size <= 16:
            raise EmberError(f"A beam size of {self.beam_size} is out of range; use 1 to 16 (5 is Whisper's own).")
        if self.language is not None and not (self.language.isalpha() and 2 <= len(self.language) <= 3):
            raise EmberError(f"'{self.language}' is not a language code; write it like 'en' or 'fr'.")

    @property
    def name(self) -> str:
        """How messages name the recording: its source, its file name, or "the recording"."""
        if self.source:
            return self.source
        if self.audio_path is not None:
            return Path(self.audio_path).name
        return "the recording"


@dataclass(frozen=True)
class Word:
    """One word with when it was said (seconds from the start) and Whisper's confidence in it."""

    start_s: float
    end_s: float
    text: str
    probability: float


@dataclass(frozen=True)
class Segment:
    """One stretch of speech: its start and end (seconds from the start of the recording) and its text."""

    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcription:
    """What was heard. ``text`` is the whole transcription (what the safety stage checks).

    ``language_detected`` is False when the language was given or when the model knows only one
    (``language_note`` then says so); ``real_time_factor`` is audio seconds per second of work
    (10 means ten times faster than real time). ``partial`` marks a transcription that was stopped.
    """

    text: str
    segments: tuple[Segment, ...]
    language: str
    language_probability: float
    language_detected: bool
    language_note: str
    multilingual: bool
    duration_s: float
    speech_s: float
    transcribe_s: float
    source: str
    model_name: str
    partial: bool = False

    @property
    def real_time_factor(self) -> float:
        return self.duration_s / self.transcribe_s if self.transcribe_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        """The JSON form `main.py listen --json` prints."""
        return {
            "text": self.text,
            "language": self.language,
            "language_probability": round(self.language_probability, 4),
            "language_detected": self.language_detected,
            "language_note": self.language_note,
            "multilingual_model": self.multilingual,
            "duration_s": round(self.duration_s, 3),
            "speech_s": round(self.speech_s, 3),
            "transcribe_s": round(self.transcribe_s, 3),
            "real_time_factor": round(self.real_time_factor, 2),
            "model": self.model_name,
            "source": self.source,
            "partial": self.partial,
            "segments": [
                {
                    "start_s": round(s.start_s, 2),
                    "end_s": round(s.end_s, 2),
                    "text": s.text,
                    **(
                        {
                            "words": [
                                {
                                    "start_s": round(w.start_s, 2),
                                    "end_s": round(w.end_s, 2),
                                    "text": w.text,
                                    "probability": round(w.probability, 3),
                                }
                                for w in s.words
                            ]
                        }
                        if s.words
                        else {}
                    ),
                }
                for s in self.segments
            ],
        }
