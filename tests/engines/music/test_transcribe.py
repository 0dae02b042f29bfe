"""Audio to MIDI with Basic Pitch's nmp.onnx: rendered tunes and sine tones come back as the notes they were."""

from __future__ import annotations

import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.errors import Cancelled, EmberError
from engines.music.compose import Composition, compose, read_midi, render, write_midi
from engines.music.soundfont import soundfont_path
from engines.music.transcribe import (
    MODEL_RATE_HZ,
    Transcriber,
    model_path,
    note_f1,
    notes_from_posteriors,
)

ONSET_TOLERANCE_S = 0.05  # mir_eval's default for note onsets


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    """Basic Pitch from the installed basic-pitch package, loaded once."""
    return Transcriber()


@pytest.fixture(scope="module")
def soundfont(session_home: Path) -> Path:
    return soundfont_path()


@pytest.fixture(scope="module")
def tune() -> Composition:
    """Eight bars of the pop style's melody on its own: 24 notes, steps and leaps, 112 BPM."""
    piece = compose("C major", "pop", bars=8, seed=1)
    return replace(piece, tracks=(piece.track("Melody"),))


def reference(piece: Composition) -> list[tuple[float, int]]:
    seconds_per_beat = 60.0 / piece.tempo_bpm
    return [(n.start_beat * seconds_per_beat, n.pitch) for t in piece.tracks for n in t.notes]


def sine_arpeggio(pitches: list[int], note_s: float, rate_hz: int) -> np.ndarray:
    audio = np.zeros(round(rate_hz * (len(pitches) * note_s + 0.5)), np.float32)
    for i, pitch in enumerate(pitches):
        freq = 440.0 * 2 ** ((pitch - 69) / 12)
        t = np.arange(round(0.9 * note_s * rate_hz)) / rate_hz
        envelope = np.minimum(1, t / 0.005) * np.minimum(1, (t[-1] - t) / 0.02)
        start = round(i * note_s * rate_hz)
        audio[start : start + len(t)] += 0.4 * envelope * np.sin(2 * np.pi * freq * t)
    return audio


@pytest.mark.parametrize("program", [0, 73, 80])  # piano, flute, square lead from Ember's SoundFont
def test_a_rendered_melody_is_transcribed_back_to_its_notes(
    transcriber: Transcriber, soundfont: Path, tune: Composition, program: int
) -> None:
    solo = replace(tune, tracks=(replace(tune.tracks[0], program=program),))
    audio = render(solo, soundfont)
    result = transcriber.transcribe(audio.samples, audio.rate_hz, tempo_bpm=tune.tempo_bpm)
    estimated = [(e.start_s, e.pitch) for e in result.events]
    precision, recall, f1 = note_f1(reference(tune), estimated, ONSET_TOLERANCE_S)
    assert f1 >= 0.9, f"program {program}: precision {precision:.2f}, recall {recall:.2f}, F1 {f1:.2f}"
    heard = [n.pitch for n in result.notes]
    assert heard == [n.pitch for n in tune.tracks[0].notes]
    starts = np.array([n.start_beat for n in result.notes])
    assert np.max(np.abs(starts - [n.start_beat for n in tune.tracks[0].notes])) < 0.1  # beats, at 112 BPM
    assert result.composition.key == "C major"


def test_a_sine_arpeggio_is_transcribed_with_exact_pitches(transcriber: Transcriber) -> None:
    pitches = [48, 52, 55, 60, 64, 67, 72, 76, 79, 84, 79, 76, 72, 67, 64, 60]
    result = transcriber.transcribe(sine_arpeggio(pitches, 0.4, 44100), 44100)
    assert [e.pitch for e in result.events] == pitches
    onsets = np.array([e.start_s for e in result.events])
    assert np.max(np.abs(onsets - 0.4 * np.arange(len(pitches)))) < ONSET_TOLERANCE_S  # frames are 11.6 ms
    assert note_f1([(0.4 * i, p) for i, p in enumerate(pitches)], [(e.start_s, e.pitch) for e in result.events])[2] == 1


def test_a_transcription_is_written_as_midi_and_read_back_for_editing(transcriber: Transcriber, tmp_path: Path) -> None:
    result = transcriber.transcribe(sine_arpeggio([60, 62, 64, 65, 67], 0.5, MODEL_RATE_HZ), MODEL_RATE_HZ)
    piece = result.composition
    assert piece.tracks[0].name == "Transcribed" and piece.tempo_bpm == 120.0
    assert read_midi(write_midi(piece, tmp_path / "heard.mid")) == piece


def test_a_wav_file_is_transcribed(
    transcriber: Transcriber, soundfont: Path, tune: Composition, tmp_path: Path
) -> None:
    audio = render(tune, soundfont, rate_hz=44100)
    path = tmp_path / "tune.wav"
    pcm = (np.clip(audio.samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(44100)
        f.writeframes(pcm.tobytes())
    result = transcriber.transcribe(path, tempo_bpm=tune.tempo_bpm)
    assert result.duration_s == pytest.approx(audio.duration_s, abs=0.01)
    assert note_f1(reference(tune), [(e.start_s, e.pitch) for e in result.events])[2] >= 0.9


def test_note_creation_follows_the_onset_and_frame_posteriors() -> None:
    frames = np.zeros((200, 88), np.float32)
    onsets = np.zeros((200, 88), np.float32)
    frames[20:80, 39] = 0.8  # C4 (key index 39) for 60 frames, with its onset
    onsets[20, 39] = 0.9
    frames[100:105, 43] = 0.9  # too short to be a note
    onsets[100, 43] = 0.9
    frames[130:170, 50] = 0.45  # no onset, and too gentle a rise to infer one: the melodia trick finds it
    notes = sorted(notes_from_posteriors(frames, onsets))
    # basic-pitch's melodia pass ends a note on the frame before its last one.
    assert [(start, end, pitch) for start, end, pitch, _ in notes] == [(20, 80, 60), (130, 169, 71)]
    assert notes[0][3] == pytest.approx(0.8)
    assert notes_from_posteriors(frames, onsets, melodia_trick=False) == [notes[0]]


def test_cancelling_stops_transcription(transcriber: Transcriber) -> None:
    with pytest.raises(Cancelled):
        transcriber.transcribe(sine_arpeggio([60] * 30, 0.5, MODEL_RATE_HZ), MODEL_RATE_HZ, cancelled=lambda: True)


def test_silence_and_noise_are_refused_with_a_reason(transcriber: Transcriber) -> None:
    with pytest.raises(EmberError, match="The recording is silent"):
        transcriber.transcribe(np.zeros(MODEL_RATE_HZ * 2, np.float32), MODEL_RATE_HZ)
    noise = 0.1 * np.random.default_rng(0).standard_normal(MODEL_RATE_HZ * 3).astype(np.float32)
    with pytest.raises(EmberError, match="No notes were found"):
        transcriber.transcribe(noise, MODEL_RATE_HZ)


def test_files_that_are_not_audio_are_refused(transcriber: Transcriber, tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("do re mi")
    with pytest.raises(EmberError, match="not an audio file Ember can read"):
        transcriber.transcribe(text)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(EmberError, match="is empty"):
        transcriber.transcribe(empty)
    with pytest.raises(EmberError, match="There is no file"):
        transcriber.transcribe(tmp_path / "missing.wav")
    with pytest.raises(EmberError, match="sample rate"):
        transcriber.transcribe(np.zeros(100, np.float32))


def test_the_model_comes_from_the_installed_package() -> None:
    path = model_path()
    assert path.name == "nmp.onnx" and path.stat().st_size > 200_000
