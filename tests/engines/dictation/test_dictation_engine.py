"""The dictation engine on the embedded Whisper tiny.en, with clips the embedded voice speaks (round trips)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from engines.dictation.folder import read_whisper_folder
from engines.dictation.requests import DictationOptions, DictationRequest
from engines.dictation.wer import word_error_rate
from engines.errors import Cancelled, EmberError, ModelFileError
from engines.jobs import CancelToken
from tests.engines.dictation.conftest import Steps, request_for


def test_a_spoken_sentence_comes_back_as_its_words(engine, whisper_options, clip) -> None:
    said, samples, rate = clip
    progress = Steps()
    heard = engine.run(request_for(whisper_options, samples, rate), progress, CancelToken())
    assert word_error_rate(said, heard.text) <= 0.1
    assert heard.duration_s == pytest.approx(len(samples) / rate, abs=0.01)
    assert heard.real_time_factor > 0 and not heard.partial
    for segment in heard.segments:
        assert 0 <= segment.start_s < segment.end_s <= heard.duration_s + 0.5
    # Progress counts seconds of audio heard, ending with all of them.
    assert progress.steps[0][0] == 0 and progress.steps[-1][0] == progress.steps[-1][1]


def test_an_english_only_model_says_it_did_not_detect_the_language(engine, whisper_options, clip) -> None:
    _, samples, rate = clip
    heard = engine.run(request_for(whisper_options, samples, rate), Steps(), CancelToken())
    assert (heard.language, heard.language_detected, heard.multilingual) == ("en", False, False)
    assert "English only" in heard.language_note
    given = engine.run(request_for(whisper_options, samples, rate, language="en"), Steps(), CancelToken())
    assert given.language == "en" and given.language_note == ""


def test_the_same_clip_is_transcribed_the_same_twice(engine, whisper_options, clip) -> None:
    _, samples, rate = clip
    first = engine.run(request_for(whisper_options, samples, rate), Steps(), CancelToken())
    second = engine.run(request_for(whisper_options, samples, rate), Steps(), CancelToken())
    assert first.text == second.text
    assert [(s.start_s, s.end_s) for s in first.segments] == [(s.start_s, s.end_s) for s in second.segments]


def test_word_timestamps_follow_each_other_inside_their_segment(engine, whisper_options, clip) -> None:
    said, samples, rate = clip
    heard = engine.run(request_for(whisper_options, samples, rate, word_timestamps=True), Steps(), CancelToken())
    words = [w for s in heard.segments for w in s.words]
    assert len(words) == len(said.split())
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    for segment in heard.segments:
        for word in segment.words:
            assert segment.start_s - 0.05 <= word.start_s <= word.end_s <= segment.end_s + 0.05
            assert 0.0 <= word.probability <= 1.0


def test_a_file_and_the_same_samples_in_memory_give_the_same_text(engine, whisper_options, clip, tmp_path) -> None:
    _, samples, rate = clip
    path = tmp_path / "clip.wav"
    soundfile.write(path, samples, rate, subtype="FLOAT")
    from_file = engine.run(DictationRequest(whisper_options, audio_path=str(path)), Steps(), CancelToken())
    in_memory = engine.run(request_for(whisper_options, samples, rate), Steps(), CancelToken())
    assert from_file.text == in_memory.text
    assert from_file.source == "clip.wav"


def test_silence_is_answered_plainly_instead_of_invented_words(engine, whisper_options) -> None:
    quiet = np.random.default_rng(0).normal(0, 1e-4, 3 * 16000).astype(np.float32)
    with pytest.raises(EmberError, match=r"^No speech was found in the recording \(it is silent\)\.$"):
        engine.run(request_for(whisper_options, quiet, 16000), Steps(), CancelToken())


@pytest.mark.parametrize("kind", ["noise", "tone"])
def test_sound_without_speech_is_answered_plainly(engine, whisper_options, kind) -> None:
    t = np.arange(3 * 16000) / 16000
    sound = (
        np.random.default_rng(2).normal(0, 0.1, len(t)) if kind == "noise" else 0.3 * np.sin(2 * np.pi * 440 * t)
    ).astype(np.float32)
    with pytest.raises(EmberError, match=r"No speech was found in hum\.wav \(it holds sound, but no words"):
        engine.run(request_for(whisper_options, sound, 16000, source="hum.wav"), Steps(), CancelToken())


def test_a_corrupt_file_is_refused_with_its_name(engine, whisper_options, tmp_path) -> None:
    path = tmp_path / "voice-memo.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(8))
    with pytest.raises(EmberError, match=r"^voice-memo\.wav is not an audio file Ember can read"):
        engine.run(DictationRequest(whisper_options, audio_path=str(path)), Steps(), CancelToken())


def test_a_language_the_english_only_model_cannot_hear_is_refused(engine, whisper_options, clip) -> None:
    _, samples, rate = clip
    with pytest.raises(EmberError, match="understands English only, so it cannot transcribe 'fr'"):
        engine.run(request_for(whisper_options, samples, rate, language="fr"), Steps(), CancelToken())


def test_cancel_at_the_first_segment_keeps_what_was_heard_and_stops_the_rest(
    engine, whisper_options, long_clip
) -> None:
    said, samples, rate = long_clip
    cancel = CancelToken()
    with pytest.raises(Cancelled) as stopped:
        engine.run(request_for(whisper_options, samples, rate), Steps(cancel_at_first_segment=cancel), cancel)
    partial = stopped.value.partial
    assert partial is not None and partial.partial
    assert partial.text and said.lower().startswith(partial.segments[0].text.lower()[:20])
    whole = engine.run(request_for(whisper_options, samples, rate), Steps(), CancelToken())
    assert len(partial.segments) < len(whole.segments)
    assert word_error_rate(said, whole.text) <= 0.1


def test_a_cancel_does_not_wait_for_the_window_being_transcribed(engine, whisper_options, long_clip) -> None:
    _, samples, rate = long_clip
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled) as stopped:
        engine.run(request_for(whisper_options, samples, rate), Steps(), cancel)
    assert stopped.value.partial is None  # nothing had been heard yet
    # The job ended while faster-whisper was still in its first 30-second window; the next job waits for it.
    assert engine._worker is not None and engine._worker.is_alive()
    cancel = CancelToken()
    heard = engine.run(request_for(whisper_options, samples[: 5 * rate], rate), Steps(), cancel)
    assert heard.text


def test_a_folder_that_is_not_whisper_is_refused_before_loading(tmp_path: Path, whisper_folder: str) -> None:
    with pytest.raises(ModelFileError, match="There is no Whisper folder"):
        read_whisper_folder(tmp_path / "nothing")
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("model.bin", "config.json"):
        os.symlink(Path(whisper_folder) / name, no_tokenizer / name)
    with pytest.raises(ModelFileError, match=r"has no tokenizer\.json.*works offline"):
        read_whisper_folder(no_tokenizer)
    pickled = tmp_path / "pickled"
    shutil.copytree(no_tokenizer, pickled, symlinks=False, ignore=shutil.ignore_patterns("model.bin"))
    shutil.copy(Path(whisper_folder) / "tokenizer.json", pickled)
    (pickled / "model.bin").write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(ModelFileError, match="PyTorch checkpoint"):
        read_whisper_folder(pickled)
    (pickled / "model.bin").write_bytes(b"\x06\x00\x00\x00\x0c\x00TransformerS\x00" + bytes(40))
    with pytest.raises(ModelFileError, match="is a TransformerS model, not Whisper"):
        read_whisper_folder(pickled)


def test_the_embedded_folder_is_whisper_tiny_en(whisper_folder: str) -> None:
    folder = read_whisper_folder(whisper_folder)
    assert folder.name == "Whisper tiny.en" and not folder.multilingual
    with pytest.raises(EmberError, match="not a device"):
        DictationOptions(whisper_folder, device="tpu")


def test_asking_for_the_gpu_where_ctranslate2_has_none_says_so_and_runs_on_the_cpu(whisper_folder, clip) -> None:
    from engines.dictation.engine import DictationEngine, _cuda_devices

    engine = DictationEngine(DictationOptions(whisper_folder, device="gpu", threads=1))
    engine.load()
    try:
        if _cuda_devices() == 0:
            assert engine.backend == "CPU"
            assert any("no CUDA GPU" in note for note in engine.notes)
            _, samples, rate = clip
            progress = Steps()
            engine.run(request_for(engine.options, samples, rate), progress, CancelToken())
            assert any("runs on the CPU" in notice for notice in progress.notices) and not engine.notes
        else:
            assert engine.backend == "CUDA"
    finally:
        engine.unload()


def test_importing_faster_whisper_leaves_pyav_not_installed_to_everything_else() -> None:
    # diffusers asks importlib whether "av" exists; a stand-in left in sys.modules made that raise.
    import importlib.util
    import sys

    from engines.dictation.engine import import_faster_whisper

    had_av = "av" in sys.modules
    import_faster_whisper()
    if not had_av:
        assert "av" not in sys.modules
        importlib.util.find_spec("av")  # no ValueError
