"""Ember's own General MIDI SoundFont: synthesised by code, written once into the cache folder.

No permissively licensed General MIDI SoundFont ships in a package on the registry: pretty-midi's
``TimGM6mb.sf2`` is GPL-2 (Debian's copyright records) and scamp's ``Merlin.sf2`` is for personal
use only. So Ember makes its own small SF2 (SoundFont 2.01): twelve instruments built from additive
partials (a piano-like decaying tone, a bell-like electric piano, an organ, a plucked and an
overdriven guitar, a bass, strings, a pad, brass, a reed, a flute and a lead), each sampled at three
keys and looped so that notes can be held, with every one of the 128 General MIDI programs mapped to
the nearest of them; and a drum kit (bank 128) of filtered noise and pitched sine sweeps on the
General MIDI drum keys 35-59. It is Ember's own work, under Ember's licence, and the same bytes on
every machine (the noise has a fixed seed). It is small (about 2 MB) and takes about a second to make.

It sounds like a simple synthesiser, not like recorded instruments: a person who wants those points
Ember at any SF2 file (TimGM6mb, FluidR3_GM, GeneralUser GS) instead.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.atomic import write_atomic
from engines.errors import EmberError
from engines.paths import cache_dir

# Bump when the sound changes: the cached file is named by it, so an old one is never reused.
SOUNDFONT_VERSION = 1
SAMPLE_RATE_HZ = 32000
# Partials stay below this in every sample, so that a sample played an octave above its root
# does not alias at 44.1 kHz.
_MAX_PARTIAL_HZ = 10000.0
_DRUM_BANK = 128

# SoundFont 2 generator numbers (SF2.04 section 8.1.2).
_PAN = 17
_ATTACK_VOL_ENV = 34
_HOLD_VOL_ENV = 35
_DECAY_VOL_ENV = 36
_SUSTAIN_VOL_ENV = 37
_RELEASE_VOL_ENV = 38
_INSTRUMENT = 41
_KEY_RANGE = 43
_INITIAL_ATTENUATION = 48
_SAMPLE_ID = 53
_SAMPLE_MODES = 54
_EXCLUSIVE_CLASS = 57
_OVERRIDING_ROOT_KEY = 58
_LOOP_CONTINUOUSLY = 1


def soundfont_path() -> Path:
    """Return the path of Ember's own General MIDI SoundFont, making it first if it is not in the cache.

    Raises EmberError when the cache folder cannot be written.
    """
    path = cache_dir() / "soundfonts" / f"ember-gm-v{SOUNDFONT_VERSION}.sf2"
    if path.is_file() and path.stat().st_size > 0:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmberError(f"Ember cannot write its SoundFont to {path.parent} ({exc.strerror or exc}).") from None
    return write_atomic(path, build_soundfont())


@dataclass(frozen=True)
class _Timbre:
    """One synthesised instrument: its partials, how they fade, and its SoundFont envelope."""

    name: str
    harmonics: tuple[float, ...]  # amplitude of harmonic 1, 2, 3 ... at the start of the note
    roots: tuple[int, ...]  # the keys it is sampled at
    attack_s: float = 0.01
    decay_s: float = 0.0  # the SoundFont envelope's decay to the sustain level
    sustain_db: float = 0.0  # attenuation held while the key is down (96: the note dies away)
    release_s: float = 0.2
    fade_s: float = 0.0  # time constant of harmonic 1's fade in the sample (0: steady partials)
    fade_floor: float = 1.0  # what is left of each partial once it has faded (the loop's level)
    chorus: bool = False  # a second, slightly detuned copy of every partial (strings, pads)
    drive: float = 0.0  # tanh overdrive
    noise: float = 0.0  # a burst of noise at the start (hammer, pick, breath)
    attenuation_db: float = 0.0


def _saw(n: int, rolloff: float = 1.0) -> tuple[float, ...]:
    return tuple(1.0 / k**rolloff for k in range(1, n + 1))


def _square(n: int) -> tuple[float, ...]:
    return tuple((1.0 / k) if k % 2 else 0.0 for k in range(1, n + 1))


_KEYS = (36, 60, 84)
_BASS_KEYS = (28, 40, 52)
_TIMBRES: tuple[_Timbre, ...] = (
    _Timbre("Ember Piano", _saw(14, 1.4), _KEYS, 0.002, 8.0, 96.0, 0.35, 0.5, 0.35, noise=0.06),
    _Timbre("Ember E.Piano", (1.0, 0.1, 0.35, 0.05, 0.12), _KEYS, 0.002, 5.0, 96.0, 0.4, 0.25, 0.3, noise=0.02),
    _Timbre("Ember Organ", (1.0, 0.8, 0.5, 0.45, 0.0, 0.3, 0.0, 0.25), _KEYS, 0.006, 0.0, 0.0, 0.08, attenuation_db=3),
    _Timbre("Ember Guitar", _saw(16, 1.3), _KEYS, 0.002, 3.5, 96.0, 0.25, 0.12, 0.2, noise=0.05),
    _Timbre("Ember Drive Guitar", _saw(10, 1.0), _KEYS, 0.003, 3.0, 12.0, 0.15, drive=4.0, attenuation_db=8),
    _Timbre("Ember Bass", (1.0, 0.5, 0.3, 0.15, 0.08), _BASS_KEYS, 0.003, 2.5, 10.0, 0.12, 0.3, 0.6, noise=0.03),
    _Timbre("Ember Strings", _saw(20, 1.1), _KEYS, 0.12, 0.0, 0.0, 0.35, chorus=True, attenuation_db=3),
    _Timbre("Ember Pad", _saw(8, 1.8), _KEYS, 0.35, 0.0, 0.0, 0.8, chorus=True, attenuation_db=2),
    _Timbre("Ember Brass", _saw(16, 0.9), _KEYS, 0.04, 0.6, 4.0, 0.15, attenuation_db=5),
    _Timbre("Ember Reed", _square(15), _KEYS, 0.03, 0.0, 0.0, 0.12, noise=0.02, attenuation_db=4),
    _Timbre("Ember Flute", (1.0, 0.12, 0.05), _KEYS, 0.05, 0.0, 0.0, 0.15, noise=0.04, attenuation_db=6),
    _Timbre("Ember Lead", _square(11), _KEYS, 0.01, 0.3, 3.0, 0.15, attenuation_db=5),
)


def _timbre_for(program: int) -> int:
    """The index in _TIMBRES that stands for General MIDI program ``program`` (0-127)."""
    family = program // 8
    if family == 0:  # pianos (4, 5: electric pianos)
        return 1 if program in (4, 5) else 0
    if family == 1:  # chromatic percussion: celesta, vibraphone, marimba, bells
        return 1
    if family == 2:
        return 2
    if family == 3:  # guitars; 29 and 30 are overdriven and distortion
        return 4 if program in (29, 30) else 3
    if family == 4:
        return 5
    if family in (5, 6):  # strings, ensembles and choirs
        return 6
    if family == 7:
        return 8
    if family == 8:
        return 9
    if family == 9:
        return 10
    if family == 10:
        return 11
    if family == 13:  # sitar, banjo, koto ...: plucked
        return 3
    if family == 14:  # tinkle bell, steel drums, woodblock ...
        return 1
    return 7  # pads, synth effects, sound effects


def _timecents(seconds: float) -> int:
    return max(-12000, round(1200 * math.log2(max(seconds, 0.001))))


def _tone(timbre: _Timbre, key: int) -> tuple[np.ndarray, int, int, int]:
    """One looped sample of ``timbre`` at ``key``: (float samples, loop start, loop end, pitch correction cents).

    Every partial's frequency is a whole number of cycles in the loop, so the loop is seamless; the
    pitch that this costs (under a cent for plain tones) goes into the sample's pitch correction.
    """
    freq = 440.0 * 2.0 ** ((key - 69) / 12)
    loop_s = 0.5 if timbre.chorus else 0.1
    periods = max(1, round(freq * loop_s))
    loop = round(periods * SAMPLE_RATE_HZ / freq)
    played = periods * SAMPLE_RATE_HZ / loop
    start = round(max(0.05, 2.5 * timbre.fade_s) * SAMPLE_RATE_HZ)
    t = np.arange(start + loop + 64) / SAMPLE_RATE_HZ
    fade_end = start / SAMPLE_RATE_HZ
    wave = np.zeros_like(t)
    for k, amplitude in enumerate(timbre.harmonics, 1):
        if amplitude == 0.0:
            continue
        if k * played > _MAX_PARTIAL_HZ:
            break
        envelope = np.ones_like(t)
        if timbre.fade_s > 0:
            tau = timbre.fade_s / k**0.8
            floor = timbre.fade_floor**k**0.5
            gone = math.exp(-fade_end / tau)
            fading = np.clip((np.exp(-t / tau) - gone) / (1 - gone), 0.0, None)
            envelope = floor + (1 - floor) * fading
        phase = (0.7 * k * k) % (2 * math.pi)  # fixed phases: no peaky sum of cosines
        wave += amplitude * envelope * np.sin(2 * math.pi * k * played * t + phase)
        if timbre.chorus:
            detuned = (k * periods + 1) * SAMPLE_RATE_HZ / loop
            wave += 0.7 * amplitude * envelope * np.sin(2 * math.pi * detuned * t + 2 * phase)
    if timbre.drive:
        wave = np.tanh(timbre.drive * wave / np.max(np.abs(wave)))
    if timbre.noise:
        rng = np.random.default_rng(key)
        burst = rng.standard_normal(len(t)) * np.exp(-t / 0.008) * (t < 0.04)
        wave = wave / np.max(np.abs(wave)) + timbre.noise * 8 * burst
    correction = round(1200 * math.log2(freq / played))
    return wave / np.max(np.abs(wave)) * 0.9, start, start + loop, correction


def _drum_sounds() -> dict[int, tuple[np.ndarray, int]]:
    """The drum kit: {General MIDI key: (float samples, exclusive class)}."""
    from scipy import signal

    rate = SAMPLE_RATE_HZ
    rng = np.random.default_rng(2024)

    def seconds(length_s: float) -> np.ndarray:
        return np.arange(round(length_s * rate)) / rate

    def noise(length_s: float, low_hz: float | None, high_hz: float | None, order: int = 4) -> np.ndarray:
        white = rng.standard_normal(round(length_s * rate))
        if low_hz and high_hz:
            sos = signal.butter(order, [low_hz, high_hz], "bandpass", fs=rate, output="sos")
        elif low_hz:
            sos = signal.butter(order, low_hz, "highpass", fs=rate, output="sos")
        else:
            sos = signal.butter(order, high_hz, "lowpass", fs=rate, output="sos")
        return signal.sosfilt(sos, white)

    def sweep(start_hz: float, end_hz: float, drop_s: float, decay_s: float, length_s: float) -> np.ndarray:
        t = seconds(length_s)
        freq = end_hz + (start_hz - end_hz) * np.exp(-t / drop_s)
        return np.sin(2 * math.pi * np.cumsum(freq) / rate) * np.exp(-t / decay_s)

    def norm(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
        fade = np.ones_like(x)
        tail = min(len(x), round(0.005 * rate))
        fade[-tail:] = np.linspace(1, 0, tail)  # no click where the sample ends
        return x / np.max(np.abs(x)) * peak * fade

    kick_t = seconds(0.45)
    kick = sweep(160, 48, 0.03, 0.16, 0.45) + 0.3 * noise(0.45, 1000, 6000) * np.exp(-kick_t / 0.004)
    snare_t = seconds(0.3)
    snare = 0.8 * noise(0.3, 1200, 9000) * np.exp(-snare_t / 0.07) + 0.6 * sweep(260, 180, 0.01, 0.05, 0.3)
    clap_t = seconds(0.35)
    clap_env = sum(np.exp(-np.clip(clap_t - d, 0, None) / 0.006) * (clap_t >= d) for d in (0.0, 0.011, 0.022))
    clap = noise(0.35, 900, 5000) * (clap_env + 0.5 * np.exp(-np.clip(clap_t - 0.03, 0, None) / 0.08))
    stick_t = seconds(0.08)
    stick = noise(0.08, 2000, 7000) * np.exp(-stick_t / 0.01) + 0.5 * np.sin(2 * math.pi * 1700 * stick_t) * np.exp(
        -stick_t / 0.015
    )
    hat_t = seconds(0.6)
    hat_noise = noise(0.6, 7000, None)
    metal_t = seconds(1.6)
    metal = sum(np.sin(2 * math.pi * f * metal_t) for f in (3150.0, 4120.0, 5340.0, 6800.0))
    cymbal = noise(1.6, 3500, None)
    cowbell = sum(np.sign(np.sin(2 * math.pi * f * seconds(0.3))) for f in (540.0, 800.0))
    sounds: dict[int, tuple[np.ndarray, int]] = {
        35: (norm(kick, 0.85), 0),
        36: (norm(kick), 0),
        37: (norm(stick, 0.7), 0),
        38: (norm(snare), 0),
        39: (norm(clap, 0.8), 0),
        40: (norm(snare * (1 + 0.3 * np.exp(-snare_t / 0.02))), 0),
        42: (norm(hat_noise[: round(0.12 * rate)] * np.exp(-hat_t[: round(0.12 * rate)] / 0.025), 0.5), 1),
        44: (norm(hat_noise[: round(0.1 * rate)] * np.exp(-hat_t[: round(0.1 * rate)] / 0.018), 0.4), 1),
        46: (norm(hat_noise * np.exp(-hat_t / 0.18), 0.5), 1),
        49: (norm((cymbal + 0.15 * metal) * np.exp(-metal_t / 0.5), 0.6), 0),
        51: (norm((0.3 * cymbal + metal * 0.3) * np.exp(-metal_t / 0.35), 0.45), 0),
        53: (norm(metal[: round(0.8 * rate)] * np.exp(-metal_t[: round(0.8 * rate)] / 0.2), 0.45), 0),
        54: (norm(noise(0.25, 5000, None) * np.exp(-seconds(0.25) / 0.05), 0.45), 0),
        56: (norm(cowbell * np.exp(-seconds(0.3) / 0.06), 0.4), 0),
        57: (norm((cymbal + 0.15 * metal) * np.exp(-metal_t / 0.45), 0.6), 0),
        59: (norm((0.3 * cymbal + metal * 0.3) * np.exp(-metal_t / 0.3), 0.45), 0),
    }
    for key, hz in zip((41, 43, 45, 47, 48, 50), (82.0, 98.0, 117.0, 139.0, 165.0, 196.0), strict=True):
        sounds[key] = (norm(sweep(hz * 1.6, hz, 0.05, 0.22, 0.6), 0.8), 0)
    return sounds


def _gen(oper: int, amount: int | tuple[int, int]) -> bytes:
    if isinstance(amount, tuple):
        return struct.pack("<HBB", oper, amount[0], amount[1])
    return struct.pack("<Hh", oper, amount)


def _name(text: str) -> bytes:
    return text.encode("ascii")[:19].ljust(20, b"\0")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _info_text(text: str) -> bytes:
    data = text.encode("ascii") + b"\0"
    return data + (b"\0" if len(data) % 2 else b"")


def build_soundfont() -> bytes:
    """Return the bytes of Ember's General MIDI SoundFont (SF2 2.01), the same on every call."""
    samples: list[tuple[str, np.ndarray, int, int, int, int]] = []  # name, data, loop start/end, root, cents
    instruments: list[tuple[str, list[list[bytes]]]] = []

    for timbre in _TIMBRES:
        zones: list[list[bytes]] = []
        for i, root in enumerate(timbre.roots):
            wave, loop_start, loop_end, correction = _tone(timbre, root)
            samples.append((f"{timbre.name[6:]} {root}", wave, loop_start, loop_end, root, correction))
            low = 0 if i == 0 else (timbre.roots[i - 1] + root) // 2
            high = 127 if i == len(timbre.roots) - 1 else (root + timbre.roots[i + 1]) // 2 - 1
            zones.append(
                [
                    _gen(_KEY_RANGE, (low, high)),
                    _gen(_INITIAL_ATTENUATION, round(timbre.attenuation_db * 10)),
                    _gen(_ATTACK_VOL_ENV, _timecents(timbre.attack_s)),
                    _gen(_DECAY_VOL_ENV, _timecents(timbre.decay_s or 0.001)),
                    _gen(_SUSTAIN_VOL_ENV, round(timbre.sustain_db * 10)),
                    _gen(_RELEASE_VOL_ENV, _timecents(timbre.release_s)),
                    _gen(_SAMPLE_MODES, _LOOP_CONTINUOUSLY),
                    _gen(_SAMPLE_ID, len(samples) - 1),
                ]
            )
        instruments.append((timbre.name, zones))

    drum_zones: list[list[bytes]] = []
    for key, (wave, exclusive) in sorted(_drum_sounds().items()):
        samples.append((f"Drum {key}", wave, 0, 0, key, 0))
        zone = [_gen(_KEY_RANGE, (key, key)), _gen(_OVERRIDING_ROOT_KEY, key)]
        zone.append(_gen(_PAN, (-150, 0, 150)[key % 3]) if key in (41, 43, 45, 47, 48, 50) else _gen(_PAN, 0))
        zone.append(_gen(_HOLD_VOL_ENV, _timecents(len(wave) / SAMPLE_RATE_HZ)))
        zone.append(_gen(_RELEASE_VOL_ENV, _timecents(1.0)))  # a short note-off does not cut the hit
        if exclusive:
            zone.append(_gen(_EXCLUSIVE_CLASS, exclusive))  # a closed hi-hat chokes the open one
        zone.append(_gen(_SAMPLE_ID, len(samples) - 1))
        drum_zones.append(zone)
    instruments.append(("Ember Drum Kit", drum_zones))

    presets = [(f"GM {p:03d} {_TIMBRES[_timbre_for(p)].name[6:]}", p, 0, _timbre_for(p)) for p in range(128)]
    presets.append(("Ember Standard Kit", 0, _DRUM_BANK, len(instruments) - 1))

    smpl = bytearray()
    shdr = bytearray()
    for name, wave, loop_start, loop_end, root, correction in samples:
        start = len(smpl) // 2
        pcm = np.round(np.clip(wave, -1.0, 1.0) * 32767).astype("<i2")
        smpl += pcm.tobytes() + bytes(2 * 46)  # the spec's 46 zero points after every sample
        end = start + len(pcm)
        if loop_end == 0:  # unlooped: point the loop at the end, as the spec asks
            loop_start, loop_end = len(pcm) - 8, len(pcm) - 1
        shdr += _name(name) + struct.pack(
            "<IIIIIBbHH", start, end, start + loop_start, start + loop_end, SAMPLE_RATE_HZ, root, correction, 0, 1
        )
    shdr += _name("EOS") + bytes(26)

    igen = bytearray()
    ibag = bytearray()
    inst = bytearray()
    for name, zones in instruments:
        inst += _name(name) + struct.pack("<H", len(ibag) // 4)
        for zone in zones:
            ibag += struct.pack("<HH", len(igen) // 4, 0)
            igen += b"".join(zone)
    inst += _name("EOI") + struct.pack("<H", len(ibag) // 4)
    ibag += struct.pack("<HH", len(igen) // 4, 0)
    igen += bytes(4)

    pgen = bytearray()
    pbag = bytearray()
    phdr = bytearray()
    for name, program, bank, instrument in presets:
        phdr += _name(name) + struct.pack("<HHHIII", program, bank, len(pbag) // 4, 0, 0, 0)
        pbag += struct.pack("<HH", len(pgen) // 4, 0)
        pgen += _gen(_INSTRUMENT, instrument)
    phdr += _name("EOP") + struct.pack("<HHHIII", 0, 0, len(pbag) // 4, 0, 0, 0)
    pbag += struct.pack("<HH", len(pgen) // 4, 0)
    pgen += bytes(4)

    info = b"INFO" + b"".join(
        [
            _chunk(b"ifil", struct.pack("<HH", 2, 1)),
            _chunk(b"isng", _info_text("EMU8000")),
            _chunk(b"INAM", _info_text(f"Ember General MIDI v{SOUNDFONT_VERSION}")),
            _chunk(b"IENG", _info_text("Ember")),
            _chunk(b"ICOP", _info_text("Ember's own synthesised sounds, under Ember's licence (Apache-2.0)")),
            _chunk(b"ICMT", _info_text("Generated by engines/music/soundfont.py: additive tones and noise drums")),
            _chunk(b"ISFT", _info_text("Ember")),
        ]
    )
    sdta = b"sdta" + _chunk(b"smpl", bytes(smpl))
    pdta = b"pdta" + b"".join(
        _chunk(tag, bytes(data))
        for tag, data in (
            (b"phdr", phdr),
            (b"pbag", pbag),
            (b"pmod", bytes(10)),
            (b"pgen", pgen),
            (b"inst", inst),
            (b"ibag", ibag),
            (b"imod", bytes(10)),
            (b"igen", igen),
            (b"shdr", shdr),
        )
    )
    body = b"sfbk" + _chunk(b"LIST", info) + _chunk(b"LIST", sdta) + _chunk(b"LIST", pdta)
    return b"RIFF" + struct.pack("<I", len(body)) + body
