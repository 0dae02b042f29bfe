"""Hostile ONNX voices: a person's piper voice whose weights are outside its folder, missing or short, that
declares absurd shapes, is cut in half or is not ONNX at all.

Each variant (tests/tools/hostile_onnx.py) is made from the embedded piper voice "joe" and opened the
way a person opens a voice file: the path of its .onnx (its .onnx.json beside it) as the voice of
a speech job, through a real Studio. The job must fail with a message for a person in bounded
time, nothing outside the voice's folder may be read (the outside target is a named pipe: reading
it would hang the job), and the same Studio must then speak with an untouched copy of the voice.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from hostile_onnx import BOUND_S, VARIANTS, assert_refused_plainly, copy_beside, outside_pipe, write_hostile

from engines.jobs import EventKind
from engines.speech.requests import SpeechOptions, SpeechRequest
from engines.speech.voices import resolve_voice
from engines.studio import Studio


@pytest.fixture(scope="module")
def joe_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the embedded piper voice (its .onnx and .onnx.json), as files a person would pick."""
    source = Path(resolve_voice("joe").path)
    copy = tmp_path_factory.mktemp("joe") / "joe.onnx"
    shutil.copyfile(source, copy)
    copy_beside(source, copy, (".json",))
    return copy


def _speak(studio: Studio, voice: Path) -> object:
    return studio.submit(SpeechRequest(SpeechOptions(str(voice), threads=1), "Hello there.", seed=1)).wait(BOUND_S * 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_hostile_voice_fails_plainly_reads_nothing_outside_and_the_studio_carries_on(
    studio: Studio, joe_voice: Path, tmp_path: Path, variant: str
) -> None:
    outside = outside_pipe(tmp_path / "outside.bin")
    hostile = write_hostile(joe_voice, tmp_path / "voices" / "mine.onnx", variant, outside)
    copy_beside(joe_voice, hostile, (".json",))

    started = time.perf_counter()
    final = _speak(studio, hostile)

    assert final is not None, f"{variant}: the job did not end (did it open {outside}?)"
    assert time.perf_counter() - started < BOUND_S, variant
    assert final.kind is EventKind.FAILED, (variant, final.kind, final.data)
    assert_refused_plainly(final.data, variant)
    good = _speak(studio, joe_voice)
    assert good is not None and good.kind is EventKind.RESULT, good
