"""Reading recordings: every readable file becomes 16 kHz mono, and unreadable ones get a plain answer."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from engines.dictation.audio import WHISPER_RATE_HZ, from_samples, is_silent, loudest_dbfs, read_audio, resample
from engines.errors import EmberError


def test_a_wav_and_a_flac_of_the_same_clip_read_alike(tmp_path: Path, clip: tuple[str, np.ndarray, int]) -> None:
    _, samples, rate = clip
    soundfile.write(tmp_path / "clip.wav", samples, rate, subtype="FLOAT")
    soundfile.write(tmp_path / "clip.flac", samples, rate)
    wav, flac = read_audio(tmp_path / "clip.wav"), read_audio(tmp_path / "clip.flac")
    assert wav.source_rate_hz == flac.source_rate_hz == rate
    assert abs(len(wav.samples) - len(samples) * WHISPER_RATE_HZ / rate) <= 2
    assert len(wav.samples) == len(flac.samples)
    assert np.abs(wav.samples - flac.samples).max() < 1e-3  # FLAC keeps 16 bits


def test_stereo_int16_samples_become_mono_float_at_16_khz() -> None:
    t = np.arange(44100) / 44100
    left = (0.5 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
    audio = from_samples(np.stack([left, left], axis=1), 44100)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(len(audio.samples) - WHISPER_RATE_HZ) <= 2
    assert audio.source_channels == 2
    assert loudest_dbfs(audio.samples) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.5)


def test_resampling_keeps_the_duration() -> None:
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 24000).astype(np.float32)
    assert abs(len(resample(samples, 24000)) - 16000) <= 2
    assert resample(samples, 16000) is not None and len(resample(samples, 16000)) == 24000


def test_digital_silence_and_a_quiet_hiss_are_silent_and_speech_is_not(clip: tuple[str, np.ndarray, int]) -> None:
    _, samples, rate = clip
    hiss = np.random.default_rng(1).normal(0, 10 ** (-70 / 20), 16000).astype(np.float32)
    assert is_silent(np.zeros(16000, np.float32))
    assert is_silent(hiss)
    assert not is_silent(resample(samples, rate))


def _write_header_only(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"")


@pytest.mark.parametrize(
    ("name", "content", "answer"),
    [
        (
            "noise.wav",
            np.random.default_rng(3).bytes(4000),
            "noise.wav is not an audio file Ember can read (it starts with the bytes",
        ),
        (
            "notes.wav",
            b"Shopping list:\nmilk\nbread\n",
            "notes.wav is not an audio file Ember can read (it holds text, not sound)",
        ),
        ("empty.wav", b"", "empty.wav is empty (0 bytes)"),
        ("header.wav", None, "header.wav holds no audio"),
    ],
)
def test_files_that_hold_no_readable_audio_get_a_plain_answer(
    tmp_path: Path, name: str, content: bytes | None, answer: str
) -> None:
    path = tmp_path / name
    if content is None:
        _write_header_only(path)
    else:
        path.write_bytes(content)
    with pytest.raises(EmberError, match="^" + re.escape(answer)):
        read_audio(path)


def test_a_missing_file_and_a_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(EmberError, match="There is no file"):
        read_audio(tmp_path / "gone.wav")
    with pytest.raises(EmberError, match="is a folder"):
        read_audio(tmp_path)


def test_an_empty_recording_in_memory_is_refused() -> None:
    with pytest.raises(EmberError, match="empty"):
        from_samples(np.zeros(0, np.float32), 16000)
