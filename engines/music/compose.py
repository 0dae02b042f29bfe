"""An algorithmic composer: chords, melody, bass and drums from a key, a style and a seed, as MIDI.

No model ships for symbolic music, so this is plain rules and weighted dice, and says so: a style
is a grammar (a weighted Markov chain over the scale's degrees for the chords, rhythm patterns for
each part, a drum pattern, General MIDI instruments). The chords come from that chain, in phrases
of four bars laid out as A A B A and ending on a cadence to the tonic; the melody is a Markov walk
over the scale that takes chord tones on strong beats, prefers steps to leaps, follows an arch
over each phrase and resolves to the tonic; the bass plays roots, fifths and approach notes; the
drums are on General MIDI channel 10. Every melodic and chord pitch is in the scale (no chromatic
passing tones). The same arguments and seed give the same piece, note for note.

The module also writes and reads standard MIDI files (type 1, 480 ticks a beat) with a small
writer and reader of its own, and renders a composition to audio with tinysoundfont and a
SoundFont: Ember's own (engines/music/soundfont.py) unless the person points at another.
"""

from __future__ import annotations

import math
import random
import re
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.atomic import write_atomic
from engines.errors import Cancelled, EmberError

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # General MIDI channel 10
MIN_TEMPO_BPM = 30.0
MAX_TEMPO_BPM = 300.0
MAX_BARS = 256
RENDER_RATES_HZ = (22050, 32000, 44100, 48000)

# ---------------------------------------------------------------------------------------------
# Notes, tracks and compositions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """One note: a MIDI key, where it starts and how long it lasts (in beats, a beat being a quarter
    note), and how hard it is played (1-127). Times are whole MIDI ticks (1/480 beat)."""

    pitch: int
    start_beat: float
    beats: float
    velocity: int = 90

    @property
    def end_beat(self) -> float:
        return self.start_beat + self.beats


@dataclass(frozen=True)
class Track:
    """One part: its notes (sorted by start, then pitch), General MIDI program and MIDI channel (0-15).

    Channel 9 (General MIDI's channel 10) is the drum kit: there ``pitch`` is the drum (36 kick,
    38 snare, 42 closed hi-hat ...) and ``program`` picks the kit (0, the standard one).
    """

    name: str
    program: int
    channel: int
    notes: tuple[Note, ...]

    @property
    def is_drums(self) -> bool:
        return self.channel == DRUM_CHANNEL


@dataclass(frozen=True)
class Chord:
    """A chord of the progression: where it starts and lasts (beats), its symbol ("Am7") and its
    Roman numeral in the key ("vi7"; empty when read from a file that does not say)."""

    start_beat: float
    beats: float
    symbol: str
    numeral: str = ""

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        """The chord's pitch classes from its symbol (root first), or () for a symbol Ember does not write."""
        match = re.fullmatch(r"([A-G])([#b]?)(.*)", self.symbol)
        if not match or match.group(3) not in _CHORD_INTERVALS:
            return ()
        root = (_LETTERS[match.group(1)] + {"#": 1, "b": -1, "": 0}[match.group(2)]) % 12
        return tuple((root + i) % 12 for i in _CHORD_INTERVALS[match.group(3)])


@dataclass(frozen=True)
class Composition:
    """A piece: its tracks, tempo, key ("F# dorian"; "" when unknown), time signature and length.

    ``style`` and ``seed`` say how it was composed ("" and None for a file from elsewhere or a
    transcription); ``chords`` is the progression, one chord a bar, when it is known.
    """

    tracks: tuple[Track, ...]
    tempo_bpm: float
    key: str
    time_signature: tuple[int, int]
    bars: int
    style: str = ""
    seed: int | None = None
    chords: tuple[Chord, ...] = ()

    @property
    def beats_per_bar(self) -> float:
        numerator, denominator = self.time_signature
        return numerator * 4 / denominator

    @property
    def duration_beats(self) -> float:
        return self.bars * self.beats_per_bar

    @property
    def duration_s(self) -> float:
        """The length of the piece in seconds, to the end of its last bar."""
        return self.duration_beats * 60.0 / self.tempo_bpm

    def track(self, name: str) -> Track:
        """The track called ``name``; raises KeyError when there is none."""
        for track in self.tracks:
            if track.name == name:
                return track
        raise KeyError(name)


def _tick(beats: float) -> int:
    return round(beats * TICKS_PER_BEAT)


def _q(beats: float) -> float:
    """``beats`` on the MIDI tick grid, so that a file written and read back holds the same numbers."""
    return _tick(beats) / TICKS_PER_BEAT


def _sorted(notes: Iterable[Note]) -> tuple[Note, ...]:
    return tuple(sorted(notes, key=lambda n: (n.start_beat, n.pitch, n.beats, n.velocity)))


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------

MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
_MODE_ALIASES = {"ionian": "major", "aeolian": "minor", "maj": "major", "min": "minor", "m": "minor"}
# Which degree of its parent major scale each mode starts on, in semitones (for key signatures).
_MODE_OFFSET = {"major": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7, "minor": 9, "locrian": 11}
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# Sharps (+) or flats (-) of each major key, by its tonic's pitch class (F#/Gb and C#/Db: see _signature).
_MAJOR_SIGNATURE = {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 1: -5, 5: -1, 10: -2, 3: -3, 8: -4}
_KEY_HELP = (
    "Write a note name (C, F#, Bb ...) and a mode: major, minor, dorian, phrygian, lydian, mixolydian "
    "or locrian, as in 'A minor' or 'F# dorian'."
)


@dataclass(frozen=True)
class Key:
    """A key: its tonic (pitch class 0-11 and spelling) and mode; ``scale`` is its seven pitch classes."""

    tonic: int
    tonic_name: str
    mode: str

    @property
    def name(self) -> str:
        return f"{self.tonic_name} {self.mode}"

    @property
    def scale(self) -> tuple[int, ...]:
        return tuple((self.tonic + step) % 12 for step in MODES[self.mode])

    @property
    def signature(self) -> int:
        """Sharps (positive) or flats (negative) in this key's signature."""
        parent = (self.tonic - _MODE_OFFSET[self.mode]) % 12
        sharps = _MAJOR_SIGNATURE[parent]
        if parent == 6 and self.uses_flats:
            return -6
        if parent == 1 and not self.uses_flats:
            return 7
        return sharps

    @property
    def uses_flats(self) -> bool:
        if "b" in self.tonic_name[1:]:
            return True
        if "#" in self.tonic_name:
            return False
        parent = (self.tonic - _MODE_OFFSET[self.mode]) % 12
        return _MAJOR_SIGNATURE[parent] < 0

    def spell(self, pitch_class: int) -> str:
        return (_FLAT_NAMES if self.uses_flats else _SHARP_NAMES)[pitch_class % 12]


def parse_key(text: str) -> Key:
    """Read a key such as "C major", "A minor", "F# dorian", "Bb mixolydian", "Am" or "E".

    Raises EmberError for anything else, saying how to write a key.
    """
    cleaned = text.strip().replace("♯", "#").replace("♭", "b")
    match = re.fullmatch(r"([A-Ga-g])([#b]?)\s*([A-Za-z]*)", cleaned)
    if not match:
        raise EmberError(f"Ember does not know the key '{text}'. {_KEY_HELP}")
    letter, accidental, mode_text = match.groups()
    mode = mode_text.lower() or "major"
    if mode_text == "M":
        mode = "major"
    mode = _MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise EmberError(f"Ember does not know the mode '{mode_text}' in '{text}'. {_KEY_HELP}")
    tonic = (_LETTERS[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]) % 12
    return Key(tonic, letter.upper() + accidental, mode)


def key_from_signature(sharps: int, minor: bool) -> Key:
    """The major or minor key of a MIDI key signature (``sharps`` -7..7, negative for flats)."""
    major_tonic = (sharps * 7) % 12
    flats = sharps < 0
    if minor:
        tonic = (major_tonic + 9) % 12
        return Key(tonic, (_FLAT_NAMES if flats else _SHARP_NAMES)[tonic], "minor")
    return Key(major_tonic, (_FLAT_NAMES if flats else _SHARP_NAMES)[major_tonic], "major")


# Krumhansl-Kessler key profiles (probe-tone ratings, C major and C minor).
_MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def estimate_key(notes: Iterable[Note]) -> str:
    """The most likely major or minor key of ``notes`` (Krumhansl-Schmuckler, weighted by length), or ""."""
    weights = np.zeros(12)
    for note in notes:
        weights[note.pitch % 12] += note.beats
    if not weights.any():
        return ""
    best, best_score = "", -2.0
    for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            score = float(np.corrcoef(weights, np.roll(profile, tonic))[0, 1])
            if score > best_score:
                best, best_score = f"{_SHARP_NAMES[tonic]} {mode}", score
    return best


# ---------------------------------------------------------------------------------------------
# Chords
# ---------------------------------------------------------------------------------------------

_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")
_CHORD_INTERVALS = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "maj7": (0, 4, 7, 11),
    "7": (0, 4, 7, 10),
    "m7": (0, 3, 7, 10),
    "mMaj7": (0, 3, 7, 11),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "augMaj7": (0, 4, 8, 11),
}


@dataclass(frozen=True)
class _Harmony:
    degree: int  # 1-7
    root: int  # pitch class
    pitch_classes: tuple[int, ...]  # root, third, fifth (, seventh)
    symbol: str
    numeral: str


def _harmony(key: Key, degree: int, seventh: bool) -> _Harmony:
    scale = key.scale
    index = degree - 1
    pcs = tuple(scale[(index + 2 * i) % 7] for i in range(4 if seventh else 3))
    third = (pcs[1] - pcs[0]) % 12
    fifth = (pcs[2] - pcs[0]) % 12
    quality = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug"}[(third, fifth)]
    numeral = _NUMERALS[index] if third == 4 else _NUMERALS[index].lower()
    suffix = quality
    if seventh:
        interval = (pcs[3] - pcs[0]) % 12
        suffix = {
            ("", 11): "maj7",
            ("", 10): "7",
            ("m", 10): "m7",
            ("m", 11): "mMaj7",
            ("dim", 10): "m7b5",
            ("dim", 9): "dim7",
            ("aug", 11): "augMaj7",
        }[(quality, interval)]
        numeral += {"maj7": "maj7", "m7b5": "ø7", "dim7": "°7"}.get(suffix, "7")
    elif quality == "dim":
        numeral += "°"
    elif quality == "aug":
        numeral += "+"
    return _Harmony(degree, pcs[0], pcs, key.spell(pcs[0]) + suffix, numeral)


# ---------------------------------------------------------------------------------------------
# Styles
# ---------------------------------------------------------------------------------------------

# An accompaniment event within a bar: (offset beats, length beats, what): "block" is the whole
# voicing; an int is the voicing's nth note counted upwards (past its top an octave higher).
_ChordHit = tuple[float, float, "str | int"]
# A bass event: (offset, length, role): "R" root, "5" fifth, "8" root an octave up, "A" a scale
# step leading to the next bar's root.
_BassHit = tuple[float, float, str]
# A drum hit: (offset, General MIDI drum key, velocity).
_DrumHit = tuple[float, int, int]

_KICK, _STICK, _SNARE, _CLAP, _CLOSED_HAT, _PEDAL_HAT, _OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
_CRASH, _RIDE, _LOW_TOM, _MID_TOM, _HIGH_TOM = 49, 51, 45, 47, 50


@dataclass(frozen=True)
class Style:
    """How a style composes: chord grammar, rhythms for each part, drum pattern and instruments."""

    name: str
    description: str
    time_signature: tuple[int, int]
    tempo_bpm: float
    transitions: dict[int, dict[int, float]]  # scale degree -> {next degree: weight}
    melody_rhythms: tuple[tuple[float, ...], ...]  # note lengths filling a bar; negative: a rest
    chord_pattern: tuple[_ChordHit, ...]
    bass_pattern: tuple[_BassHit, ...]
    drums: tuple[_DrumHit, ...]
    fill: tuple[_DrumHit, ...]  # the last bar of a phrase before the next one starts
    programs: dict[str, int]  # part name -> General MIDI program
    sevenths: bool = False
    swing: bool = False  # off-beat eighths played late, at two thirds of the beat
    pad: bool = False  # a sustained chord an octave around the voicing, on its own track
    velocities: dict[str, int] = field(default_factory=dict)


def _eighths(key: int, velocity: int, beats: int = 4, accent: int = 0) -> tuple[_DrumHit, ...]:
    return tuple((i / 2, key, velocity + (accent if i % 2 == 0 else 0)) for i in range(beats * 2))


STYLES: dict[str, Style] = {
    "pop": Style(
        name="pop",
        description="Bright 4/4: piano chords, a square-wave lead, fingered bass, a straight beat",
        time_signature=(4, 4),
        tempo_bpm=112,
        transitions={
            1: {5: 3, 6: 2.5, 4: 3, 2: 1},
            2: {5: 4, 4: 1, 6: 0.5},
            3: {6: 3, 4: 2},
            4: {1: 3, 5: 3, 6: 1, 2: 1},
            5: {1: 2.5, 6: 3, 4: 2},
            6: {4: 4, 5: 2, 2: 1.5, 3: 1},
            7: {1: 3, 3: 1},
        },
        melody_rhythms=(
            (1, 1, 1, 1),
            (1.5, 0.5, 1, 1),
            (2, 1, 1),
            (0.5, 0.5, 1, 2),
            (1, 0.5, 0.5, 2),
            (-1, 1, 1, 1),
            (1, 1, 2),
            (1.5, 0.5, 2),
        ),
        chord_pattern=((0, 1.5, "block"), (1.5, 1, "block"), (2.5, 1.5, "block")),
        bass_pattern=((0, 1.5, "R"), (1.5, 0.5, "R"), (2, 1, "5"), (3, 1, "8")),
        drums=(
            *((0, _KICK, 100), (2, _KICK, 92), (2.5, _KICK, 80), (1, _SNARE, 96), (3, _SNARE, 96)),
            *_eighths(_CLOSED_HAT, 62, accent=12),
        ),
        fill=(
            *((0, _KICK, 100), (1, _SNARE, 96), (2, _KICK, 92), (3, _SNARE, 90), (3.25, _SNARE, 70)),
            *((3.5, _HIGH_TOM, 90), (3.75, _MID_TOM, 95)),
            *_eighths(_CLOSED_HAT, 62, beats=3, accent=12),
        ),
        programs={"Melody": 80, "Chords": 0, "Bass": 33},
        velocities={"Melody": 92, "Chords": 68, "Bass": 88},
    ),
    "ballad": Style(
        name="ballad",
        description="Slow 4/4: arpeggiated piano, strings, a flute melody, soft brushes",
        time_signature=(4, 4),
        tempo_bpm=72,
        transitions={
            1: {6: 3, 3: 1.5, 4: 3, 5: 1.5, 2: 1},
            2: {5: 4, 4: 1},
            3: {6: 3, 4: 3},
            4: {5: 3, 1: 2, 2: 1.5, 6: 1},
            5: {1: 3, 6: 2.5, 3: 1, 4: 1},
            6: {2: 2.5, 4: 3, 5: 1.5, 3: 1},
            7: {3: 2, 1: 2},
        },
        melody_rhythms=((2, 2), (3, 1), (1, 1, 2), (1.5, 0.5, 2), (4,), (2, 1, 1), (-1, 1, 2)),
        chord_pattern=tuple((i / 2, 0.5, k) for i, k in enumerate((0, 1, 2, 3, 2, 1, 2, 3))),
        bass_pattern=((0, 2, "R"), (2, 1.5, "5"), (3.5, 0.5, "A")),
        drums=(
            *((0, _KICK, 70), (2.5, _KICK, 60), (1, _STICK, 64), (3, _STICK, 64)),
            *((float(i), _PEDAL_HAT, 44) for i in range(4)),
        ),
        fill=((0, _KICK, 70), (1, _STICK, 64), (2, _KICK, 60), (3, _SNARE, 58), (3.5, _SNARE, 62)),
        programs={"Melody": 73, "Chords": 0, "Strings": 48, "Bass": 32},
        pad=True,
        velocities={"Melody": 86, "Chords": 60, "Strings": 50, "Bass": 78},
    ),
    "rock": Style(
        name="rock",
        description="Driving 4/4: overdriven power chords in eighths, a lead, picked bass, crashes",
        time_signature=(4, 4),
        tempo_bpm=132,
        transitions={
            1: {4: 4, 5: 3, 6: 1.5, 7: 1},
            2: {5: 3, 4: 2},
            3: {4: 3, 6: 2},
            4: {1: 4, 5: 3},
            5: {4: 3, 1: 3, 6: 1.5},
            6: {4: 3, 5: 2},
            7: {4: 2, 1: 3},
        },
        melody_rhythms=(
            (1, 0.5, 0.5, 1, 1),
            (0.5, 0.5, 0.5, 0.5, 2),
            (-0.5, 0.5, 0.5, 0.5, 1, 1),
            (1.5, 0.5, 1.5, 0.5),
            (2, 2),
            (1, 1, 1, 1),
        ),
        chord_pattern=tuple((i / 2, 0.5, "power") for i in range(8)),
        bass_pattern=tuple((i / 2, 0.5, "R") for i in range(8)),
        drums=(
            *((0, _KICK, 110), (1.5, _KICK, 90), (2, _KICK, 105), (2.5, _KICK, 90)),
            *((1, _SNARE, 110), (3, _SNARE, 110)),
            *_eighths(_CLOSED_HAT, 70, accent=15),
        ),
        fill=(
            *((0, _KICK, 110), (1, _SNARE, 110), (2, _KICK, 105), (2.5, _SNARE, 95)),
            *((3, _HIGH_TOM, 100), (3.25, _HIGH_TOM, 95), (3.5, _MID_TOM, 100), (3.75, _LOW_TOM, 105)),
            *_eighths(_CLOSED_HAT, 70, beats=2, accent=15),
        ),
        programs={"Melody": 81, "Chords": 29, "Bass": 34},
        velocities={"Melody": 96, "Chords": 78, "Bass": 96},
    ),
    "waltz": Style(
        name="waltz",
        description="3/4: oom-pah-pah piano, a violin melody, bass on the one, a light ride",
        time_signature=(3, 4),
        tempo_bpm=150,
        transitions={
            1: {4: 3, 5: 3, 2: 2, 6: 1.5},
            2: {5: 4, 4: 0.5},
            3: {6: 3, 4: 1},
            4: {1: 2, 5: 3, 2: 1},
            5: {1: 4, 6: 1.5},
            6: {2: 3, 4: 2},
            7: {1: 3, 3: 1},
        },
        melody_rhythms=((2, 1), (1, 1, 1), (3,), (1.5, 0.5, 1), (1, 2), (2.5, 0.5)),
        chord_pattern=((1, 0.9, "block"), (2, 0.9, "block")),
        bass_pattern=((0, 1, "R"),),
        drums=((0, _KICK, 60), (0, _RIDE, 56), (1, _RIDE, 44), (2, _RIDE, 44)),
        fill=((0, _KICK, 60), (0, _RIDE, 56), (1, _RIDE, 44), (2, _SNARE, 50), (2.5, _SNARE, 56)),
        programs={"Melody": 40, "Chords": 0, "Bass": 32},
        velocities={"Melody": 88, "Chords": 58, "Bass": 80},
    ),
    "lofi": Style(
        name="lofi",
        description="Laid-back swung 4/4: electric-piano seventh chords, vibraphone, mellow bass, lazy drums",
        time_signature=(4, 4),
        tempo_bpm=80,
        transitions={
            1: {6: 3, 4: 3, 2: 2, 3: 1},
            2: {5: 5, 3: 1},
            3: {6: 4, 2: 1},
            4: {3: 2, 5: 2, 2: 2, 1: 1},
            5: {1: 4, 3: 1, 6: 1.5},
            6: {2: 4, 4: 2},
            7: {3: 3, 1: 1},
        },
        melody_rhythms=(
            (-0.5, 1, 0.5, 2),
            (1.5, 0.5, 2),
            (-1, 0.5, 0.5, 1, 1),
            (1, 1, 2),
            (0.5, 1, 0.5, 2),
            (-2, 1, 1),
            (3, 1),
        ),
        chord_pattern=((0, 1.5, "block"), (1.5, 2.5, "block")),
        bass_pattern=((0, 1.5, "R"), (1.5, 0.5, "5"), (2, 1.5, "R"), (3.5, 0.5, "A")),
        drums=(
            *((0, _KICK, 88), (1.5, _KICK, 60), (2.5, _KICK, 80), (1, _SNARE, 78), (3, _SNARE, 80)),
            *((i / 2, _CLOSED_HAT, 50 if i % 2 else 60) for i in range(8)),
        ),
        fill=(
            *((0, _KICK, 88), (1, _SNARE, 78), (2.5, _KICK, 80), (3, _SNARE, 80), (3.5, _CLAP, 60)),
            *((i / 2, _CLOSED_HAT, 50 if i % 2 else 60) for i in range(6)),
        ),
        programs={"Melody": 11, "Chords": 4, "Bass": 33},
        sevenths=True,
        swing=True,
        velocities={"Melody": 80, "Chords": 62, "Bass": 82},
    ),
}

# A 3/4 melody for styles written in 4/4 when the person asks for 3/4.
_THREE_FOUR_RHYTHMS = ((2, 1), (1, 1, 1), (3,), (1.5, 0.5, 1), (1, 2))

_MELODY_RANGE = (60, 84)
_CHORD_RANGE = (50, 72)
_BASS_RANGE = (31, 55)
_PHRASE_BARS = 4
_FORM = "AABA"


# ---------------------------------------------------------------------------------------------
# Composing
# ---------------------------------------------------------------------------------------------


def compose(
    key: str = "C major",
    style: str = "pop",
    *,
    tempo_bpm: float | None = None,
    bars: int = 16,
    time_signature: tuple[int, int] | None = None,
    seed: int = 0,
) -> Composition:
    """Compose a piece in ``key`` and ``style`` (see STYLES), ``bars`` long, the same for the same seed.

    ``tempo_bpm`` (30-300, in quarter notes; None: the style's own) is kept to 0.01 BPM;
    ``time_signature`` is (4, 4) or (3, 4) (None: the style's own; a waltz is always in 3/4).
    Returns a Composition with tracks "Melody", "Chords", "Bass", "Drums" (and "Strings" for the
    ballad). Raises EmberError for an unknown key or style, or a tempo, length or metre out of range.
    """
    spec = _style(style)
    tonality = parse_key(key)
    tempo = validate_tempo(spec.tempo_bpm if tempo_bpm is None else tempo_bpm)
    bars = validate_bars(bars)
    metre = spec.time_signature if time_signature is None else tuple(time_signature)
    if metre not in ((4, 4), (3, 4)):
        raise EmberError(f"Ember composes in 4/4 or 3/4, not {metre[0]}/{metre[1]}.")
    if spec.name == "waltz" and metre != (3, 4):
        raise EmberError("A waltz is in 3/4; pick 3/4 or another style.")
    beats_per_bar = float(metre[0])

    degrees = _progression(spec, tonality, bars, seed)
    harmonies = [_harmony(tonality, d, spec.sevenths) for d in degrees]
    phrases = _phrases(bars)
    swing = _swing if spec.swing else _straight

    melody = _melody(spec, tonality, harmonies, phrases, beats_per_bar, seed, swing)
    chords_track, pad_track = _accompaniment(spec, harmonies, beats_per_bar, swing)
    bass = _bass(spec, tonality, harmonies, beats_per_bar, swing)
    drums = _drums(spec, phrases, bars, beats_per_bar, seed, swing)

    velocities = spec.velocities
    tracks = [
        Track("Melody", spec.programs["Melody"], 0, melody),
        Track("Chords", spec.programs["Chords"], 1, _level(chords_track, velocities.get("Chords", 70))),
    ]
    if spec.pad:
        tracks.append(Track("Strings", spec.programs["Strings"], 2, _level(pad_track, velocities.get("Strings", 50))))
    tracks.append(Track("Bass", spec.programs["Bass"], 3, _level(bass, velocities.get("Bass", 85))))
    tracks.append(Track("Drums", 0, DRUM_CHANNEL, drums))
    chords = tuple(
        Chord(_q(i * beats_per_bar), _q(beats_per_bar), h.symbol, h.numeral) for i, h in enumerate(harmonies)
    )
    return Composition(tuple(tracks), tempo, tonality.name, metre, bars, spec.name, seed, chords)


def _style(name: str) -> Style:
    spec = STYLES.get(name.strip().lower())
    if spec is None:
        known = ", ".join(STYLES)
        raise EmberError(f"Ember has no '{name}' style. Pick one of: {known}.")
    return spec


def validate_tempo(tempo_bpm: float) -> float:
    """``tempo_bpm`` rounded to 0.01; raises EmberError outside 30-300 BPM."""
    try:
        tempo = float(tempo_bpm)
    except (TypeError, ValueError):
        raise EmberError(f"The tempo must be a number of beats a minute, not '{tempo_bpm}'.") from None
    if not (MIN_TEMPO_BPM <= tempo <= MAX_TEMPO_BPM) or math.isnan(tempo):
        raise EmberError(f"A tempo of {tempo:g} BPM is out of range: pick 30 to 300 beats a minute.")
    return round(tempo, 2)


def validate_bars(bars: int) -> int:
    """``bars`` as an int; raises EmberError unless it is a whole number from 1 to 256."""
    if isinstance(bars, bool) or not isinstance(bars, (int, np.integer)) or not 1 <= int(bars) <= MAX_BARS:
        raise EmberError(f"A piece is 1 to {MAX_BARS} bars long, not {bars}.")
    return int(bars)


def _rng(seed: int, *parts: object) -> random.Random:
    # A string seed is hashed with SHA-512: the same numbers on every platform and Python run.
    return random.Random(":".join(["ember-compose", str(seed), *map(str, parts)]))


def _weighted(rng: random.Random, options: Sequence[object], weights: Sequence[float]) -> object:
    return rng.choices(options, weights=weights, k=1)[0]


def _phrases(bars: int) -> list[tuple[str, int]]:
    """Each bar's phrase label and place in its phrase: A A B A, four bars a phrase."""
    return [(_FORM[(b // _PHRASE_BARS) % len(_FORM)], b % _PHRASE_BARS) for b in range(bars)]


def _progression(spec: Style, key: Key, bars: int, seed: int) -> list[int]:
    """One scale degree a bar: a Markov walk per phrase label, repeated by the form, ending V-I or IV-I."""

    def step_weights(current: int) -> tuple[list[int], list[float]]:
        options = spec.transitions[current]
        nexts = list(options)
        # Diminished chords sound out of place in these styles: keep them rare.
        weights = [w * (0.15 if _harmony(key, d, False).symbol.endswith("dim") else 1.0) for d, w in options.items()]
        return nexts, weights

    phrase_chords: dict[str, list[int]] = {}
    for label in dict.fromkeys(_FORM):
        rng = _rng(seed, spec.name, key.name, "chords", label)
        chain = [1 if label == "A" else _weighted(rng, [4, 6, 2], [3, 2, 1])]
        while len(chain) < _PHRASE_BARS:
            chain.append(_weighted(rng, *step_weights(chain[-1])))
        phrase_chords[label] = chain
    degrees = [phrase_chords[label][i] for label, i in _phrases(bars)]
    if bars >= 2:
        rng = _rng(seed, spec.name, key.name, "cadence")
        cadence = [d for d in (5, 4) if not _harmony(key, d, False).symbol.endswith("dim")] or [4]
        degrees[-2] = degrees[-2] if degrees[-2] in cadence else _weighted(rng, cadence, [3, 2][: len(cadence)])
    degrees[-1] = 1
    return degrees


def _straight(beats: float) -> float:
    return beats


def _swing(beats: float) -> float:
    """An off-beat eighth moved to two thirds of its beat (the grid of a swung eighth-note feel)."""
    whole = math.floor(beats + 1e-9)
    frac = beats - whole
    if abs(frac - 0.5) < 1e-9:
        return whole + 2 / 3
    if 0 < frac < 0.5:
        return whole + frac * 4 / 3
    if frac > 0.5:
        return whole + 2 / 3 + (frac - 0.5) * 2 / 3
    return beats


def _note(start: float, length: float, pitch: int, velocity: int, swing: Callable[[float], float]) -> Note:
    begin, end = _q(swing(start)), _q(swing(start + length))
    return Note(int(pitch), begin, max(_q(end - begin), 1 / TICKS_PER_BEAT), max(1, min(127, int(velocity))))


def _level(notes: Sequence[Note], velocity: int) -> tuple[Note, ...]:
    return tuple(Note(n.pitch, n.start_beat, n.beats, max(1, min(127, velocity + n.velocity - 64))) for n in notes)


def _scale_pitches(key: Key, low: int, high: int) -> list[int]:
    scale = set(key.scale)
    return [p for p in range(low, high + 1) if p % 12 in scale]


def _melody(
    spec: Style,
    key: Key,
    harmonies: list[_Harmony],
    phrases: list[tuple[str, int]],
    beats_per_bar: float,
    seed: int,
    swing: Callable[[float], float],
) -> tuple[Note, ...]:
    """The melody, phrase by phrase: a phrase that comes back with the same chords comes back the same."""
    rhythms = spec.melody_rhythms if beats_per_bar == sum(abs(x) for x in spec.melody_rhythms[0]) else None
    if rhythms is None:
        rhythms = _THREE_FOUR_RHYTHMS
    notes: list[Note] = []
    bars = len(harmonies)
    cache: dict[tuple[object, ...], list[tuple[float, float, int, int]]] = {}
    start = 0
    while start < bars:
        label = phrases[start][0]
        end = min(bars, start + _PHRASE_BARS)
        final = end == bars
        chords = harmonies[start:end]
        signature = (label, tuple(h.degree for h in chords), final)
        if signature not in cache:
            rng = _rng(seed, spec.name, key.name, "melody", *signature)
            cache[signature] = _melody_phrase(rng, spec, key, chords, rhythms, beats_per_bar, label, final)
        for offset, length, pitch, velocity in cache[signature]:
            notes.append(_note(start * beats_per_bar + offset, length, pitch, velocity, swing))
        start = end
    return _sorted(notes)


def _melody_phrase(
    rng: random.Random,
    spec: Style,
    key: Key,
    chords: list[_Harmony],
    rhythms: Sequence[tuple[float, ...]],
    beats_per_bar: float,
    label: str,
    final: bool,
) -> list[tuple[float, float, int, int]]:
    """(offset, length, pitch, velocity) of one phrase's notes, offsets from the phrase's start."""
    pool = _scale_pitches(key, *_MELODY_RANGE)
    scale = key.scale
    strong = {0.0, 2.0} if beats_per_bar == 4 else {0.0}
    base_velocity = spec.velocities.get("Melody", 90)
    # The rhythm first, so that the note before the last bar is known when pitches are chosen.
    slots: list[tuple[float, float, int]] = []  # offset, length, bar
    for bar in range(len(chords)):
        if final and bar == len(chords) - 1:
            slots.append((bar * beats_per_bar, beats_per_bar, bar))
            continue
        position = 0.0
        for length in rng.choice(rhythms):
            if length > 0:
                slots.append((bar * beats_per_bar + position, float(length), bar))
            position += abs(length)
    span = len(chords) * beats_per_bar
    centre = 70.0 if label == "A" else 74.0
    result: list[tuple[float, float, int, int]] = []
    previous: int | None = None
    leap = 0
    for index, (offset, length, bar) in enumerate(slots):
        chord = chords[bar]
        in_bar = offset - bar * beats_per_bar
        last = final and index == len(slots) - 1
        if last:
            tonics = [p for p in pool if p % 12 == key.tonic]
            pitch = min(tonics, key=lambda p: (abs(p - (previous or 72)), p))
        else:
            candidates = pool
            if in_bar in strong or length >= 1.5 or previous is None:
                candidates = [p for p in pool if p % 12 in chord.pitch_classes]
            target = centre + 5.0 * math.sin(math.pi * offset / span)  # an arch over the phrase
            weights = []
            for p in candidates:
                weight = math.exp(-abs(p - target) / 4.0)
                if previous is not None:
                    steps = abs(pool.index(p) - pool.index(previous))
                    weight *= {0: 0.6, 1: 4.0, 2: 2.0, 3: 0.9, 4: 0.6}.get(steps, 0.25 if steps == 7 else 0.08)
                    if leap and steps == 1 and (p - previous) * leap < 0:
                        weight *= 2.5  # after a leap, step back the other way
                if final and index == len(slots) - 2 and p % 12 in (scale[1], scale[6]):
                    weight *= 5.0  # the note before the end leans on the tonic from a step away
                weights.append(weight)
            pitch = int(_weighted(rng, candidates, weights))
            if previous is not None:
                steps = pool.index(pitch) - pool.index(previous)
                leap = steps if abs(steps) >= 3 else 0
        accent = 8 if in_bar in strong else 0
        velocity = base_velocity + accent - 4 + rng.randint(-5, 5)
        result.append((offset, length, pitch, velocity))
        previous = pitch
    return result


def _voicing(pitch_classes: Sequence[int], previous: list[int] | None) -> list[int]:
    """The chord's pitch classes stacked upwards within the chord range, moving least from ``previous``."""
    low, high = _CHORD_RANGE
    best: list[int] | None = None
    best_cost = math.inf
    for rotation in range(len(pitch_classes)):
        order = list(pitch_classes[rotation:]) + list(pitch_classes[:rotation])
        for octave in range(3, 7):
            pitches = [order[0] + 12 * octave]
            for pc in order[1:]:
                pitches.append(pitches[-1] + (pc - pitches[-1]) % 12)
            if pitches[0] < low or pitches[-1] > high:
                continue
            if previous and len(previous) == len(pitches):
                cost = sum(abs(a - b) for a, b in zip(sorted(pitches), sorted(previous), strict=True))
            else:
                cost = abs(sum(pitches) / len(pitches) - 61.0) * len(pitches)
            if cost < best_cost:
                best, best_cost = pitches, cost
    assert best is not None  # the range spans more than an octave and a half
    return best


def _accompaniment(
    spec: Style, harmonies: list[_Harmony], beats_per_bar: float, swing: Callable[[float], float]
) -> tuple[list[Note], list[Note]]:
    chords: list[Note] = []
    pad: list[Note] = []
    previous: list[int] | None = None
    for bar, harmony in enumerate(harmonies):
        voicing = _voicing(harmony.pitch_classes, previous)
        previous = voicing
        start = bar * beats_per_bar
        last = bar == len(harmonies) - 1
        pattern = ((0.0, beats_per_bar, "block"),) if last else spec.chord_pattern
        for offset, length, what in pattern:
            if offset >= beats_per_bar:
                continue
            length = min(length, beats_per_bar - offset)
            accent = 6 if offset == 0 else 0
            if what == "block":
                pitches = voicing
            elif what == "power":
                root = min(p for p in voicing if p % 12 == harmony.root)
                fifth = root + (harmony.pitch_classes[2] - harmony.root) % 12
                pitches = [root - 12, fifth - 12, root] if root - 12 >= 40 else [root, fifth, root + 12]
            else:
                index = int(what)
                pitches = [voicing[index % len(voicing)] + 12 * (index // len(voicing))]
            for pitch in pitches:
                chords.append(_note(start + offset, length, pitch, 64 + accent, swing))
        if spec.pad:
            top = [p + 12 for p in voicing[1:]]
            for pitch in [voicing[0], *top]:
                pad.append(_note(start, beats_per_bar, pitch, 64, swing))
    return list(_sorted(chords)), list(_sorted(pad))


def _bass(
    spec: Style, key: Key, harmonies: list[_Harmony], beats_per_bar: float, swing: Callable[[float], float]
) -> list[Note]:
    low, high = _BASS_RANGE
    pool = _scale_pitches(key, low, high)
    notes: list[Note] = []
    previous = 40
    for bar, harmony in enumerate(harmonies):
        roots = [p for p in pool if p % 12 == harmony.root]
        root = min(roots, key=lambda p: (abs(p - previous), p))
        previous = root
        last = bar == len(harmonies) - 1
        pattern = ((0.0, beats_per_bar, "R"),) if last else spec.bass_pattern
        following = harmonies[bar + 1] if not last else harmony
        for offset, length, role in pattern:
            if offset >= beats_per_bar:
                continue
            length = min(length, beats_per_bar - offset)
            if role == "5":
                pitch = root + (harmony.pitch_classes[2] - harmony.root) % 12
            elif role == "8":
                pitch = root + 12 if root + 12 <= high else root
            elif role == "A":
                targets = [p for p in pool if p % 12 == following.root]
                target = min(targets, key=lambda p: (abs(p - root), p))
                index = pool.index(target)
                neighbours = [pool[i] for i in (index - 1, index + 1) if 0 <= i < len(pool)]
                pitch = min(neighbours, key=lambda p: (abs(p - root), p))
            else:
                pitch = root
            accent = 6 if offset == 0 else 0
            notes.append(_note(bar * beats_per_bar + offset, length * 0.95, pitch, 64 + accent, swing))
    return list(_sorted(notes))


def _drums(
    spec: Style,
    phrases: list[tuple[str, int]],
    bars: int,
    beats_per_bar: float,
    seed: int,
    swing: Callable[[float], float],
) -> tuple[Note, ...]:
    rng = _rng(seed, spec.name, "drums")
    notes: list[Note] = []
    for bar in range(bars):
        start = bar * beats_per_bar
        place = phrases[bar][1]
        if bar == bars - 1:
            hits: tuple[_DrumHit, ...] = ((0, _KICK, 100), (0, _CRASH, 96))
        elif place == _PHRASE_BARS - 1:
            hits = spec.fill
        else:
            hits = spec.drums
        if place == 0 and bar > 0 and bar != bars - 1 and spec.name in ("pop", "rock"):
            hits = (*hits, (0, _CRASH, 90))
        if bar == 0 and spec.name == "rock":
            hits = (*hits, (0, _CRASH, 96))
        seen: set[tuple[float, int]] = set()
        for offset, drum, velocity in hits:
            if offset >= beats_per_bar or (offset, drum) in seen:
                continue
            seen.add((offset, drum))
            length = min(0.25, beats_per_bar - offset)
            notes.append(_note(start + offset, length, drum, velocity + rng.randint(-6, 6), swing))
    return _sorted(notes)


# ---------------------------------------------------------------------------------------------
# Standard MIDI files
# ---------------------------------------------------------------------------------------------

_EMBER_TEXT = "Ember composition:"


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _meta(kind: int, data: bytes) -> bytes:
    return bytes((0xFF, kind)) + _vlq(len(data)) + data


def _track_chunk(events: list[tuple[int, int, bytes]], end_tick: int) -> bytes:
    """An MTrk chunk from (tick, order, message) events; ``order`` sorts events at the same tick."""
    body = bytearray()
    now = 0
    for tick, _order, message in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq(tick - now) + message
        now = tick
    body += _vlq(max(0, end_tick - now)) + _meta(0x2F, b"")
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def midi_bytes(composition: Composition) -> bytes:
    """The composition as a type 1 standard MIDI file: a conductor track, then one track a part.

    The conductor track holds the tempo, time signature, key signature, the chords as markers and
    a text event with the key, style and seed, so that :func:`parse_midi` gives back the same
    Composition. Raises EmberError for a note that MIDI cannot hold.
    """
    end_tick = _tick(composition.duration_beats)
    for track in composition.tracks:
        for note in track.notes:
            end_tick = max(end_tick, _tick(note.end_beat))
    numerator, denominator = composition.time_signature
    tempo_us = round(60_000_000 / composition.tempo_bpm)
    conductor: list[tuple[int, int, bytes]] = [
        (0, 0, _meta(0x03, b"Ember")),
        (0, 1, _meta(0x51, tempo_us.to_bytes(3, "big"))),
        (0, 2, _meta(0x58, bytes((numerator, int(math.log2(denominator)), 24, 8)))),
    ]
    info = [f"key={composition.key}", f"style={composition.style}"]
    if composition.seed is not None:
        info.append(f"seed={composition.seed}")
    conductor.append((0, 3, _meta(0x01, f"{_EMBER_TEXT} {'; '.join(info)}".encode())))
    if composition.key:
        key = parse_key(composition.key)
        minor = key.mode == "minor"
        conductor.append((0, 4, _meta(0x59, struct.pack(">bB", key.signature, int(minor)))))
    for chord in composition.chords:
        label = f"{chord.symbol} ({chord.numeral})" if chord.numeral else chord.symbol
        conductor.append((_tick(chord.start_beat), 5, _meta(0x06, label.encode())))
    chunks = [_track_chunk(conductor, end_tick)]
    for track in composition.tracks:
        if not 0 <= track.channel <= 15 or not 0 <= track.program <= 127:
            raise EmberError(
                f"Track '{track.name}' has channel {track.channel} and program {track.program}: "
                "MIDI has channels 0-15 and programs 0-127."
            )
        channel = track.channel
        events: list[tuple[int, int, bytes]] = [
            (0, 0, _meta(0x03, track.name.encode())),
            (0, 1, bytes((0xC0 | channel, track.program))),
        ]
        for note in track.notes:
            if not 0 <= note.pitch <= 127 or not 1 <= note.velocity <= 127 or note.beats <= 0 or note.start_beat < 0:
                raise EmberError(f"A note in '{track.name}' cannot be written to MIDI: {note}.")
            on, off = _tick(note.start_beat), _tick(note.end_beat)
            # Offs before ons at the same tick, so that a repeated key is released, then struck again.
            events.append((off, 2, bytes((0x80 | channel, note.pitch, 0))))
            events.append((on, 3, bytes((0x90 | channel, note.pitch, note.velocity))))
        chunks.append(_track_chunk(events, end_tick))
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(chunks), TICKS_PER_BEAT)
    return header + b"".join(chunks)


def write_midi(composition: Composition, path: str | Path) -> Path:
    """Write the composition as a .mid file (whole or not at all) and return its path.

    Raises EmberError when the folder cannot be written.
    """
    return write_atomic(Path(path), midi_bytes(composition))


def read_midi(path: str | Path) -> Composition:
    """Read a standard MIDI file (type 0 or 1) into a Composition, one track per track and channel.

    What a Composition holds is kept: notes, each channel's first program, the first tempo (later
    tempo changes are dropped, so a file that speeds up plays at its opening tempo), the first time
    signature, the key (Ember's own text event, else the key signature), and Ember's chord markers.
    Controllers, pitch bends and lyrics are not. Raises EmberError when the file is missing or is not
    a MIDI file Ember can read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EmberError(f"There is no file {path}. Check the name and try again.") from None
    except IsADirectoryError:
        raise EmberError(f"{path} is a folder; pick a .mid file.") from None
    except OSError as exc:
        raise EmberError(f"Ember cannot read {path} ({exc.strerror or exc}).") from None
    return parse_midi(data, path.name)


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, why: str) -> EmberError:
        return EmberError(f"{self.name} is not a MIDI file Ember can read ({why}). Pick a standard .mid file.")

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail("it ends in the middle of an event")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def vlq(self) -> int:
        value = 0
        for _ in range(4):
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value
        raise self.fail("a length is longer than MIDI allows")


def parse_midi(data: bytes, name: str = "The file") -> Composition:
    """Parse the bytes of a standard MIDI file; see :func:`read_midi`. Raises EmberError."""
    reader = _Reader(data, name)
    if data[:4] != b"MThd":
        head = data[:4]
        what = "it is empty" if not data else f"it starts with {head!r}, not 'MThd'"
        raise reader.fail(what)
    reader.take(4)
    length = struct.unpack(">I", reader.take(4))[0]
    if length < 6:
        raise reader.fail("its header is too short")
    fmt, count, division = struct.unpack(">HHH", reader.take(6))
    reader.take(length - 6)
    if fmt > 2:
        raise reader.fail(f"format {fmt} is not a standard MIDI format")
    if division & 0x8000:
        raise reader.fail("its times are in SMPTE frames, not beats")
    if division == 0:
        raise reader.fail("its ticks per beat is 0")

    tempo_us: int | None = None
    time_signature: tuple[int, int] | None = None
    signature_key: Key | None = None
    info: dict[str, str] = {}
    markers: list[tuple[int, str]] = []
    parts: dict[tuple[int, int], dict[str, object]] = {}
    track_names: dict[int, str] = {}
    last_tick = 0
    for index in range(count):
        if reader.pos >= len(data):
            raise reader.fail(f"it says it has {count} tracks but holds {index}")
        tag = reader.take(4)
        size = struct.unpack(">I", reader.take(4))[0]
        end = reader.pos + size
        if end > len(data):
            raise reader.fail("a track is cut off")
        if tag != b"MTrk":
            reader.pos = end  # an unknown chunk: skip it, as the standard says
            continue
        tick = 0
        status = 0
        pending: dict[tuple[int, int], list[tuple[int, int]]] = {}
        while reader.pos < end:
            tick += reader.vlq()
            first = reader.byte()
            if first == 0xFF:
                kind = reader.byte()
                payload = reader.take(reader.vlq())
                if kind == 0x2F:
                    break
                if kind == 0x51 and len(payload) == 3 and tempo_us is None:
                    tempo_us = int.from_bytes(payload, "big")
                elif kind == 0x58 and len(payload) >= 2 and time_signature is None:
                    time_signature = (payload[0], 2 ** payload[1])
                elif kind == 0x59 and len(payload) == 2 and signature_key is None:
                    sharps = struct.unpack(">b", payload[:1])[0]
                    if -7 <= sharps <= 7:
                        signature_key = key_from_signature(sharps, payload[1] == 1)
                elif kind == 0x01 and payload.startswith(_EMBER_TEXT.encode()):
                    text = payload.decode("utf-8", "replace")[len(_EMBER_TEXT) :]
                    for item in text.split(";"):
                        k, _, v = item.strip().partition("=")
                        info[k] = v
                elif kind == 0x06:
                    markers.append((tick, payload.decode("utf-8", "replace")))
                elif kind == 0x03:
                    track_names[index] = payload.decode("utf-8", "replace")
                continue
            if first in (0xF0, 0xF7):
                reader.take(reader.vlq())
                continue
            if first & 0x80:
                status = first
                first = reader.byte()
            elif not status:
                raise reader.fail("an event has no status byte")
            kind, channel = status & 0xF0, status & 0x0F
            second = reader.byte() if kind not in (0xC0, 0xD0) else 0
            part = parts.setdefault((index, channel), {"program": None, "notes": []})
            if kind == 0xC0 and part["program"] is None:
                part["program"] = first
            elif kind == 0x90 and second > 0:
                pending.setdefault((channel, first), []).append((tick, second))
            elif kind == 0x80 or (kind == 0x90 and second == 0):
                started = pending.get((channel, first))
                if started:
                    on, velocity = started.pop(0)
                    notes = part["notes"]
                    assert isinstance(notes, list)
                    notes.append(Note(first, on / division, (tick - on) / division, velocity))
        last_tick = max(last_tick, tick)
        reader.pos = end
    numerator, denominator = time_signature or (4, 4)
    if numerator < 1 or denominator < 1:
        numerator, denominator = 4, 4
    tempo = round(60_000_000 / tempo_us, 2) if tempo_us else 120.0
    beats_per_bar = numerator * 4 / denominator
    ticks_per_bar = beats_per_bar * division
    tracks = []
    for (index, channel), part in parts.items():
        notes = part["notes"]
        assert isinstance(notes, list)
        if not notes:
            continue
        program = part["program"] if part["program"] is not None else 0
        name = track_names.get(index) or ("Drums" if channel == DRUM_CHANNEL else f"Track {len(tracks) + 1}")
        if sum(1 for (i, _c), p in parts.items() if i == index and p["notes"]) > 1:
            name = f"{name} ({channel + 1})"
        tracks.append(Track(name, int(program), channel, _sorted(notes)))
    bars = max(1, math.ceil(last_tick / ticks_per_bar - 1e-9)) if ticks_per_bar else 1
    key = info.get("key", signature_key.name if signature_key else "")
    if key:
        try:
            key = parse_key(key).name
        except EmberError:
            key = ""
    seed_text = info.get("seed", "")
    seed = int(seed_text) if re.fullmatch(r"-?\d+", seed_text) else None
    chords = []
    markers.sort()
    for i, (tick, label) in enumerate(markers):
        following = markers[i + 1][0] if i + 1 < len(markers) else bars * ticks_per_bar
        match = re.fullmatch(r"(\S+) \((.+)\)", label)
        symbol, numeral = (match.group(1), match.group(2)) if match else (label, "")
        chords.append(Chord(tick / division, (following - tick) / division, symbol, numeral))
    return Composition(
        tuple(tracks),
        tempo,
        key,
        (numerator, denominator),
        bars,
        info.get("style", ""),
        seed,
        tuple(chords),
    )


# ---------------------------------------------------------------------------------------------
# Rendering with a SoundFont
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rendering:
    """Audio of a composition: ``samples`` float32, frames x 2 (stereo), at ``rate_hz``."""

    samples: np.ndarray
    rate_hz: int
    soundfont: Path
    elapsed_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate_hz


def render(
    composition: Composition,
    soundfont: str | Path | None = None,
    *,
    rate_hz: int = 44100,
    tail_s: float = 1.0,
    step: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Rendering:
    """Play the composition through a SoundFont into stereo float32 audio.

    ``soundfont`` is an .sf2/.sf3 path; None means Ember's own General MIDI SoundFont (made on first
    use). Each track plays on its own channel with its program (two tracks on one channel share the
    program of the later). The audio lasts the piece (to the end of its last bar, or its last note if later) plus
    ``tail_s`` for the last notes to ring out, and is scaled down only if it would clip. A track's
    program that the SoundFont lacks falls back to another in the same family, then to any.
    ``step(done, total)`` reports progress in frames; when ``cancelled()`` turns true, rendering
    stops and Cancelled is raised. Raises EmberError for a SoundFont that cannot be read or a
    rate Ember does not render at (22050, 32000, 44100, 48000 Hz).
    """
    began = time.perf_counter()
    if rate_hz not in RENDER_RATES_HZ:
        raise EmberError(f"Ember renders at {', '.join(map(str, RENDER_RATES_HZ))} Hz, not {rate_hz}.")
    font = _soundfont_file(soundfont)
    import tinysoundfont

    synth = tinysoundfont.Synth(gain=-3.0, samplerate=rate_hz)
    try:
        sfid = synth.sfload(str(font), max_voices=256)
    except Exception as exc:  # tinysoundfont raises a bare RuntimeError or its own for a bad file
        raise EmberError(
            f"{font.name} is not a SoundFont Ember can read ({exc}). "
            "Pick an .sf2 or .sf3 file, or leave it empty for Ember's own."
        ) from None

    seconds_per_beat = 60.0 / composition.tempo_bpm
    events: list[tuple[int, int, int, int, int]] = []  # frame, order (offs first), channel, key, velocity
    end_beat = composition.duration_beats
    for track in composition.tracks:
        if track.is_drums:
            synth.program_select(DRUM_CHANNEL, sfid, 0, track.program, is_drums=True)
        else:
            synth.program_select(track.channel, sfid, 0, _available_program(synth, sfid, track.program))
        for note in track.notes:
            end_beat = max(end_beat, note.end_beat)
            on = round(note.start_beat * seconds_per_beat * rate_hz)
            off = max(on + 1, round(note.end_beat * seconds_per_beat * rate_hz))
            events.append((on, 1, track.channel, note.pitch, note.velocity))
            events.append((off, 0, track.channel, note.pitch, 0))
    events.sort()
    total = round((end_beat * seconds_per_beat + max(0.0, tail_s)) * rate_hz)
    audio = np.zeros((total, 2), dtype=np.float32)
    view = memoryview(audio).cast("B")
    frame_bytes = 8
    block = 2048
    position = 0
    checked = 0
    pending = iter(events)
    upcoming = next(pending, None)
    while position < total:
        while upcoming is not None and upcoming[0] <= position:
            _frame, order, channel, key, velocity = upcoming
            if order:
                synth.noteon(channel, key, velocity)
            else:
                synth.noteoff(channel, key)
            upcoming = next(pending, None)
        stop = min(total, position + block)
        if upcoming is not None:
            stop = min(stop, max(position + 1, upcoming[0]))
        synth.generate_simple(stop - position, buffer=view[position * frame_bytes : stop * frame_bytes])
        position = stop
        if position - checked >= rate_hz // 4:  # a cancel is seen within a quarter second of audio
            checked = position
            if cancelled is not None and cancelled():
                raise Cancelled(None)
            if step is not None:
                step(position, total)
    peak = float(np.max(np.abs(audio))) if total else 0.0
    if peak > 0.98:
        audio *= 0.98 / peak
    if step is not None:
        step(total, total)
    return Rendering(audio, rate_hz, font, time.perf_counter() - began)


def _soundfont_file(soundfont: str | Path | None) -> Path:
    if soundfont is None:
        from engines.music.soundfont import soundfont_path

        return soundfont_path()
    path = Path(soundfont)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise EmberError(f"The SoundFont {path} {what}. Pick an .sf2 or .sf3 file, or leave it empty for Ember's own.")
    with path.open("rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] not in (b"sfbk", b"sfpk"):
        raise EmberError(
            f"{path.name} is not a SoundFont (it does not start like an SF2 file). Pick an .sf2 or .sf3 file."
        )
    return path


def _available_program(synth: object, sfid: int, program: int) -> int:
    """``program`` if the SoundFont has it in bank 0, else the first of its family, else any it has."""
    for candidate in (program, program - program % 8, *range(128)):
        if synth.sfpreset_name(sfid, 0, candidate) is not None:  # type: ignore[attr-defined]
            return candidate
    raise EmberError("This SoundFont has no melodic instruments (bank 0). Pick a General MIDI SoundFont.")
