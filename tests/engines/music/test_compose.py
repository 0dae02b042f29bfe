"""The algorithmic composer, the MIDI writer and reader, and rendering through Ember's own SoundFont."""

from __future__ import annotations

import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.errors import Cancelled, EmberError
from engines.music.compose import (
    DRUM_CHANNEL,
    STYLES,
    Composition,
    Note,
    Track,
    compose,
    midi_bytes,
    parse_key,
    parse_midi,
    read_midi,
    render,
    write_midi,
)
from engines.music.soundfont import build_soundfont, soundfont_path

KEYS = ("C major", "A minor", "F# dorian", "Bb mixolydian", "E phrygian", "Db lydian")
PITCHED = ("Melody", "Chords", "Strings", "Bass")


@pytest.fixture(scope="module")
def soundfont(session_home: Path) -> Path:
    """Ember's own General MIDI SoundFont, built once into the session's cache folder."""
    return soundfont_path()


def pitched_notes(piece: Composition) -> list[Note]:
    return [n for t in piece.tracks if t.name in PITCHED for n in t.notes]


def notes_at(track: Track, beat: float) -> list[Note]:
    return [n for n in track.notes if n.start_beat == beat]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_the_same_seed_gives_the_same_piece_and_another_seed_another(style: str) -> None:
    first = compose("D minor", style, bars=8, seed=11)
    assert compose("D minor", style, bars=8, seed=11) == first
    assert compose("D minor", style, bars=8, seed=12) != first


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("key", KEYS)
def test_every_melody_chord_and_bass_pitch_is_in_the_key(style: str, key: str) -> None:
    piece = compose(key, style, bars=12, seed=5)
    scale = set(parse_key(key).scale)
    outside = sorted({n.pitch % 12 for n in pitched_notes(piece)} - scale)
    assert not outside, f"{key} {style}: pitch classes {outside} are not in the scale {sorted(scale)}"


@pytest.mark.parametrize("style", sorted(STYLES))
def test_the_melody_takes_chord_tones_on_strong_beats_and_ends_on_the_tonic(style: str) -> None:
    piece = compose("G major", style, bars=16, seed=2)
    melody = piece.track("Melody")
    strong = (0.0, 2.0) if piece.beats_per_bar == 4 else (0.0,)
    for bar, chord in enumerate(piece.chords):
        assert chord.start_beat == bar * piece.beats_per_bar
        for beat in strong:
            for note in notes_at(melody, chord.start_beat + beat):
                assert note.pitch % 12 in chord.pitch_classes, f"bar {bar + 1}: {note} is not in {chord.symbol}"
        voiced = {
            n.pitch % 12
            for n in piece.track("Chords").notes
            if chord.start_beat <= n.start_beat < chord.start_beat + chord.beats
        }
        assert voiced <= set(chord.pitch_classes)
    tonic = parse_key("G major").tonic
    last = max(melody.notes, key=lambda n: n.start_beat)
    assert last.pitch % 12 == tonic
    assert last.end_beat == piece.duration_beats
    assert piece.chords[-1].numeral in ("I", "Imaj7")
    assert piece.chords[-2].numeral.rstrip("7").rstrip("maj") in ("IV", "V")


def test_the_melody_moves_mostly_by_step() -> None:
    piece = compose("C major", "pop", bars=32, seed=9)
    pitches = [n.pitch for n in piece.track("Melody").notes]
    intervals = np.abs(np.diff(pitches))
    assert np.mean(intervals <= 2) > 0.5  # steps and repeats outnumber leaps
    assert np.max(intervals) <= 12


@pytest.mark.parametrize(
    ("style", "bars", "tempo"), [("pop", 1, 30), ("rock", 7, 300), ("waltz", 9, 96.5), ("lofi", 64, 80)]
)
def test_the_piece_has_the_bars_and_tempo_asked_for(style: str, bars: int, tempo: float) -> None:
    piece = compose("E minor", style, bars=bars, tempo_bpm=tempo, seed=1)
    assert piece.bars == bars
    assert piece.tempo_bpm == tempo
    assert len(piece.chords) == bars
    assert piece.time_signature == ((3, 4) if style == "waltz" else (4, 4))
    assert piece.duration_s == pytest.approx(bars * piece.beats_per_bar * 60 / tempo)
    ends = [n.end_beat for t in piece.tracks for n in t.notes]
    assert max(ends) == pytest.approx(piece.duration_beats)
    assert all(n.start_beat >= 0 and n.beats > 0 for t in piece.tracks for n in t.notes)


def test_a_four_four_style_can_be_composed_in_three_four() -> None:
    piece = compose("C major", "pop", bars=8, time_signature=(3, 4), seed=4)
    assert piece.beats_per_bar == 3
    assert max(n.end_beat for t in piece.tracks for n in t.notes) == pytest.approx(24)


def test_the_drums_are_on_general_midi_channel_ten() -> None:
    piece = compose("C major", "rock", bars=8, seed=3)
    drums = piece.track("Drums")
    assert drums.is_drums and drums.channel == DRUM_CHANNEL
    assert {36, 38, 42} <= {n.pitch for n in drums.notes}
    assert all(35 <= n.pitch <= 81 for n in drums.notes)
    assert all(not t.is_drums for t in piece.tracks if t.name != "Drums")


def test_lofi_is_swung_and_uses_seventh_chords() -> None:
    piece = compose("F major", "lofi", bars=4, seed=0)
    hats = [n.start_beat % 1 for n in piece.track("Drums").notes if n.pitch == 42]
    assert any(abs(offset - 2 / 3) < 1e-9 for offset in hats)
    assert all(len(notes_at(piece.track("Chords"), bar * 4.0)) == 4 for bar in range(piece.bars))


@pytest.mark.parametrize(
    ("text", "name", "scale"),
    [
        ("C major", "C major", (0, 2, 4, 5, 7, 9, 11)),
        ("a minor", "A minor", (9, 11, 0, 2, 4, 5, 7)),
        ("F# dorian", "F# dorian", (6, 8, 9, 11, 1, 3, 4)),
        ("Bb mixolydian", "Bb mixolydian", (10, 0, 2, 3, 5, 7, 8)),
        ("Am", "A minor", (9, 11, 0, 2, 4, 5, 7)),
        ("E", "E major", (4, 6, 8, 9, 11, 1, 3)),
        ("C♯ aeolian", "C# minor", (1, 3, 4, 6, 8, 9, 11)),
    ],
)
def test_keys_are_read_with_their_modes(text: str, name: str, scale: tuple[int, ...]) -> None:
    key = parse_key(text)
    assert key.name == name
    assert key.scale == scale


def test_the_midi_file_round_trips_exactly(tmp_path: Path) -> None:
    for style in STYLES:
        piece = compose("F# dorian", style, bars=6, tempo_bpm=97.25, seed=8)
        path = write_midi(piece, tmp_path / f"{style}.mid")
        data = path.read_bytes()
        assert data[:4] == b"MThd"
        fmt, tracks, division = struct.unpack(">HHH", data[8:14])
        assert (fmt, tracks, division) == (1, len(piece.tracks) + 1, 480)
        again = read_midi(path)
        assert again == piece
        assert [t.notes for t in again.tracks] == [t.notes for t in piece.tracks]


def test_key_signatures_are_written_for_modes_too() -> None:
    data = midi_bytes(compose("F# dorian", "pop", bars=1, seed=0))
    at = data.index(b"\xff\x59\x02")
    assert struct.unpack(">bB", data[at + 3 : at + 5]) == (4, 0)  # F# dorian: E major's four sharps
    data = midi_bytes(compose("Eb minor", "pop", bars=1, seed=0))
    at = data.index(b"\xff\x59\x02")
    assert struct.unpack(">bB", data[at + 3 : at + 5]) == (-6, 1)


def test_a_type_zero_file_with_running_status_is_read() -> None:
    # One track, two channels, running status, note-off as a note-on with velocity 0, 96 ticks a beat.
    events = bytes.fromhex(
        "00 ff 51 03 07 a1 20"  # 120 BPM
        "00 c0 05"  # channel 1: program 5
        "00 90 3c 64"  # C4 on
        "60 3c 00"  # running status: C4 off after a beat
        "00 3e 50"  # D4 on
        "30 99 24 70"  # channel 10: kick, half a beat later
        "30 89 24 00"  # kick off
        "00 80 3e 00"  # D4 off (after a beat)
        "00 ff 2f 00"
    )
    data = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", len(events)) + events
    piece = parse_midi(data)
    assert piece.tempo_bpm == 120.0
    assert piece.key == "" and piece.style == "" and piece.seed is None
    melodic, drums = piece.tracks
    assert melodic.program == 5 and melodic.channel == 0
    assert melodic.notes == (Note(60, 0.0, 1.0, 100), Note(62, 1.0, 1.0, 80))
    assert drums.is_drums and drums.notes == (Note(36, 1.5, 0.5, 112),)


def test_rendering_gives_audio_of_the_expected_length_with_sound_in_it(soundfont: Path) -> None:
    piece = compose("C major", "pop", bars=4, tempo_bpm=120, seed=1)
    rendering = render(piece, soundfont, rate_hz=44100, tail_s=1.0)
    audio = rendering.samples
    assert audio.dtype == np.float32 and audio.shape == (round((8.0 + 1.0) * 44100), 2)
    assert rendering.duration_s == pytest.approx(9.0)
    assert np.max(np.abs(audio)) <= 0.98 + 1e-6
    seconds = audio[: 8 * 44100, 0].reshape(8, 44100)
    levels = 20 * np.log10(np.sqrt(np.mean(seconds**2, axis=1)))
    assert np.all(levels > -40), f"a quiet second in {levels}"
    assert np.array_equal(render(piece, soundfont, rate_hz=44100).samples, audio)  # deterministic


def test_rendering_at_32_khz_and_with_the_default_soundfont(session_home: Path) -> None:
    piece = compose("A minor", "waltz", bars=2, tempo_bpm=180, seed=1)
    rendering = render(piece, rate_hz=32000, tail_s=0.5)
    assert rendering.samples.shape == (round((2.0 + 0.5) * 32000), 2)
    assert rendering.soundfont == soundfont_path()


def test_every_track_of_every_style_makes_sound(soundfont: Path) -> None:
    for style in STYLES:
        piece = compose("D major", style, bars=2, seed=1)
        for track in piece.tracks:
            solo = render(replace(piece, tracks=(track,)), soundfont, rate_hz=22050, tail_s=0)
            assert np.sqrt(np.mean(solo.samples**2)) > 0.003, f"{style} {track.name} is silent"


def test_cancelling_stops_rendering(soundfont: Path) -> None:
    piece = compose("C major", "rock", bars=32, seed=1)
    with pytest.raises(Cancelled):
        render(piece, soundfont, cancelled=lambda: True)


def test_ember_soundfont_is_its_own_the_same_every_time_and_covers_general_midi(soundfont: Path) -> None:
    import tinysoundfont

    data = build_soundfont()
    assert data == soundfont.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"sfbk"
    assert b"Ember's own synthesised sounds" in data
    synth = tinysoundfont.Synth()
    sfid = synth.sfload(str(soundfont))
    assert all(synth.sfpreset_name(sfid, 0, program) for program in range(128))
    assert synth.sfpreset_name(sfid, 128, 0) == "Ember Standard Kit"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"key": "H major"}, "does not know the key 'H major'"),
        ({"key": "C blues"}, "mode 'blues'"),
        ({"style": "polka"}, "no 'polka' style"),
        ({"tempo_bpm": 29.9}, "out of range"),
        ({"tempo_bpm": 301}, "out of range"),
        ({"bars": 0}, "1 to 256 bars"),
        ({"bars": 257}, "1 to 256 bars"),
        ({"bars": 2.5}, "1 to 256 bars"),
        ({"style": "waltz", "time_signature": (4, 4)}, "A waltz is in 3/4"),
        ({"time_signature": (5, 4)}, "4/4 or 3/4"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(EmberError, match=re.escape(words)):
        compose(**kwargs)  # type: ignore[arg-type]


def test_a_file_that_is_not_midi_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "song.mid"
    junk.write_text("not a midi file")
    with pytest.raises(EmberError, match=r"song\.mid is not a MIDI file Ember can read"):
        read_midi(junk)
    cut = tmp_path / "cut.mid"
    cut.write_bytes(midi_bytes(compose(bars=2))[:200])
    with pytest.raises(EmberError, match=r"cut\.mid is not a MIDI file"):
        read_midi(cut)
    with pytest.raises(EmberError, match="There is no file"):
        read_midi(tmp_path / "missing.mid")


def test_a_file_that_is_not_a_soundfont_is_refused(tmp_path: Path) -> None:
    piece = compose(bars=1)
    fake = tmp_path / "piano.sf2"
    fake.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(EmberError, match=r"piano\.sf2 is not a SoundFont"):
        render(piece, fake)
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF\x20\x00\x00\x00sfbk" + bytes(24))
    with pytest.raises(EmberError, match=r"broken\.sf2 is not a SoundFont Ember can read"):
        render(piece, broken)
    with pytest.raises(EmberError, match="does not exist"):
        render(piece, tmp_path / "nowhere.sf2")
