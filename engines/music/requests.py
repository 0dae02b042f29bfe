"""Requests and results of the music modality: text to music (MusicGen) and composition in MIDI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engines.media import AudioOutput

COMPOSER = "composer"  # the built-in algorithmic composer (engines/music/compose.py), rendered with a SoundFont
MAX_PROMPT_CHARS = 2_000
SECONDS_RANGE = (1.0, 300.0)
GUIDANCE_RANGE = (1.0, 10.0)


@dataclass(frozen=True)
class MusicOptions:
    """What is loaded: the composer (``model`` = "composer", with ``soundfont``: an .sf2 path, or ""
    for Ember's own) or a MusicGen ONNX folder (``model`` = its path). Two requests with equal
    options share one loaded model."""

    model: str = COMPOSER
    soundfont: str = ""
    threads: int | None = None  # None: chosen from the free cores
    device: Literal["auto", "cpu", "gpu"] = "cpu"

    @property
    def is_composer(self) -> bool:
        return self.model == COMPOSER


@dataclass(frozen=True)
class MusicRequest:
    """Make ``seconds`` of music for ``prompt`` with a MusicGen model.

    ``guidance`` is classifier-free guidance (1 turns it off; MusicGen's default 3). Sampling takes
    ``temperature``, ``top_k`` (0: every code) and ``top_p`` (1: off) with ``seed`` (None draws
    one); ``greedy`` takes the likeliest code every step. ``preview`` sends the audio made so far
    about every two seconds of music (checked and watermarked like the whole clip).
    """

    model: MusicOptions
    prompt: str
    seconds: float = 10.0
    guidance: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 1.0
    seed: int | None = None
    greedy: bool = False
    preview: bool = False

    def __post_init__(self) -> None:
        checks = [
            (not self.model.is_composer, "text to music needs a MusicGen model (the composer writes MIDI)"),
            (bool(self.prompt.strip()), "describe the music first"),
            (len(self.prompt) <= MAX_PROMPT_CHARS, f"the description is longer than {MAX_PROMPT_CHARS:,} characters"),
            (SECONDS_RANGE[0] <= self.seconds <= SECONDS_RANGE[1], "the length must be from 1 to 300 seconds"),
            (GUIDANCE_RANGE[0] <= self.guidance <= GUIDANCE_RANGE[1], "the guidance must be from 1 to 10"),
            (self.greedy or self.temperature > 0, "the temperature must be above 0"),
            (self.top_k >= 0, "top-k must be 0 (off) or more"),
            (0 < self.top_p <= 1, "top-p must be above 0 and at most 1"),
            (self.seed is None or 0 <= self.seed < 2**32, "the seed must be from 0 to 4294967295"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid music setting: {message}.")


@dataclass(frozen=True)
class ComposeRequest:
    """Compose ``bars`` bars in ``key`` and ``style`` at ``tempo_bpm`` (None: the style's own), and render it.

    ``time_signature`` "4/4" or "3/4" ("": the style's own). ``seed`` None draws one; the same seed
    gives the same notes. ``title`` is the person's name for the piece (checked like a prompt).
    """

    model: MusicOptions = field(default_factory=MusicOptions)
    key: str = "C major"
    style: str = "pop"
    tempo_bpm: float | None = None
    bars: int = 16
    time_signature: str = ""
    seed: int | None = None
    title: str = ""

    def __post_init__(self) -> None:
        checks = [
            (self.model.is_composer, "composing needs the composer, not a MusicGen model"),
            (self.tempo_bpm is None or 30 <= self.tempo_bpm <= 300, "the tempo must be from 30 to 300 BPM"),
            (1 <= self.bars <= 256, "a piece is 1 to 256 bars long"),
            (self.time_signature in ("", "4/4", "3/4"), "the time signature must be 4/4 or 3/4"),
            (self.seed is None or 0 <= self.seed < 2**32, "the seed must be from 0 to 4294967295"),
            (len(self.title) <= 200, "the title is longer than 200 characters"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid composition setting: {message}.")

    @property
    def metre(self) -> tuple[int, int] | None:
        if not self.time_signature:
            return None
        beats, unit = self.time_signature.split("/")
        return int(beats), int(unit)


@dataclass(frozen=True, eq=False)
class MadeMusic:
    """What the engine returns: mono float32 ``samples`` and what made them.

    ``midi`` is the composition as a standard MIDI file (composer only), ``codes`` MusicGen's
    EnCodec codes (codebooks x frames).
    """

    samples: np.ndarray
    sample_rate: int
    description: str
    parameters: dict[str, Any]
    timings: dict[str, float]
    midi: bytes = b""
    codes: np.ndarray | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True, eq=False)
class MusicClip(AudioOutput):
    """A piece as the pipeline carries it: mono ``samples`` as every clip, and a composition's notes
    as a standard MIDI file in ``midi`` ("" for MusicGen). The safety check and the watermark see
    the audio; the notes travel beside it and are written next to the WAV."""

    midi: bytes = b""


@dataclass(frozen=True, eq=False)
class MusicResult:
    """What a music job ends with: the clip that passed the pipeline, saved as a WAV (watermarked,
    with Content Credentials), and for a composition its MIDI beside it.

    ``realtime_factor``: seconds of music per second of compute.
    """

    delivered: Any
    path: str
    midi_path: str = ""
    realtime_factor: float = 0.0
    withheld: tuple[str, ...] = ()
