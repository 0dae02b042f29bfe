"""Evaluate speech and music: clips made through the Studio, measured by proxies named as such.

Speech: each text spoken by a voice, then heard back by the embedded Whisper (tiny.en) through the
Studio too; the round-trip word error rate says how intelligible the voice is to a speech model (a
proxy, bounded below by Whisper's own errors), beside the clips' levels (peak and RMS dBFS, clipped
samples, silence) and the real-time factor. Music: pieces composed in several styles and seeds;
their levels and the pitch-class entropy of their notes (0 bits for one pitch class, 3.58 for all
twelve equally: a proxy of harmonic variety).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.errors import EmberError
from engines.evaluation import metrics
from engines.evaluation.runs import Spread, finished, spread, table


def _levels(clips: Sequence[np.ndarray]) -> dict[str, Spread]:
    measured = [metrics.audio_levels(clip) for clip in clips]
    return {
        "peak (dBFS)": spread([m["peak_dbfs"] for m in measured]),
        "RMS (dBFS)": spread([m["rms_dbfs"] for m in measured]),
        "clipped samples (share)": spread([m["clipped"] for m in measured]),
        "silence (share of frames)": spread([m["silence"] for m in measured]),
    }


@dataclass(frozen=True)
class AudioEvaluation:
    """What was made, how it was heard back (speech), and each figure as (min, median, max)."""

    kind: str
    model: str
    items: tuple[str, ...]
    heard: tuple[str, ...] = ()
    spread: dict[str, Spread] = field(default_factory=dict)

    def table(self) -> str:
        return table([f"evaluate {self.kind}: {self.model} on {len(self.items)} clips"], {}, self.spread)


def evaluate_speech(studio: Any, voice: str, texts: Sequence[str], *, seed: int = 1) -> AudioEvaluation:
    """Speak each text with ``voice``, hear it back with Whisper, and measure (see the module)."""
    from engines.dictation.requests import DictationOptions, DictationRequest
    from engines.dictation.wer import word_error_rate
    from engines.models.embedded import WHISPER_TINY_EN
    from engines.speech.requests import SpeechOptions, SpeechRequest

    if not texts:
        raise EmberError("Give at least one text to speak.")
    if not WHISPER_TINY_EN.installed:
        raise EmberError("The round trip needs the embedded Whisper model, which is not installed.")
    whisper = DictationOptions(str(WHISPER_TINY_EN.path()))
    clips, heard, errors, speed = [], [], [], []
    for i, text in enumerate(texts):
        spoken = finished(studio, SpeechRequest(SpeechOptions(voice), text, seed=seed + i), f"Speaking text {i}")
        output = spoken.delivered.output
        clips.append(np.asarray(output.samples, dtype=np.float32))
        speed.append(spoken.realtime_factor)
        request = DictationRequest(whisper, samples=clips[-1], sample_rate_hz=output.sample_rate, language="en")
        transcript = finished(studio, request, f"Hearing text {i} back")
        said = transcript.output.text  # a dictation job ends with its Delivered transcription
        heard.append(said)
        errors.append(word_error_rate(text, said))
    spreads = {"round-trip word error rate (Whisper tiny.en)": spread(errors), **_levels(clips)}
    spreads["real-time factor (audio s / compute s)"] = spread(speed)
    return AudioEvaluation("speech", voice, tuple(texts), tuple(heard), spreads)


def evaluate_music(
    studio: Any, styles: Sequence[str] = ("pop", "ballad", "rock", "waltz", "lofi"), *, seeds: int = 2, bars: int = 8
) -> AudioEvaluation:
    """Compose ``seeds`` pieces in each style and measure them (see the module)."""
    from engines.music.compose import parse_midi
    from engines.music.requests import ComposeRequest

    clips, entropy, speed, items = [], [], [], []
    for style in styles:
        for seed in range(1, seeds + 1):
            made = finished(studio, ComposeRequest(style=style, bars=bars, seed=seed), f"Composing {style} {seed}")
            clips.append(np.asarray(made.delivered.output.samples, dtype=np.float32))
            speed.append(made.realtime_factor)
            tracks = parse_midi(made.delivered.output.midi).tracks
            notes = [n for track in tracks if track.channel != 9 for n in track.notes]  # not the drum kit
            entropy.append(metrics.pitch_class_entropy([n.pitch for n in notes], [n.beats for n in notes]))
            items.append(f"{style} seed {seed}")
    spreads = {"pitch-class entropy (bits, of 3.58)": spread(entropy), **_levels(clips)}
    spreads["real-time factor (audio s / compute s)"] = spread(speed)
    return AudioEvaluation("music", "composer", tuple(items), (), spreads)
