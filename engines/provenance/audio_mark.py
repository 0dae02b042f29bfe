"""The audio watermark: a keyed 32-bit mark in every speech clip, inaudible and robust.

How it works (spread-transform dither modulation on band energies):

- The clip is analysed at 16 kHz (whatever its own rate) with a short-time Fourier
  transform (32 ms windows, 8 ms hop). Time-frequency *cells* are 32 ms x one of
  20 mel-spaced bands between 300 and 5000 Hz; a cell's feature is
  ``log(energy - noise floor + floor)`` (each band's noise floor is estimated and
  taken off, so added noise moves the features little).
- A *tile* is 2 cells in time x 5 bands (10 cells): 62 tiles a second. Each tile
  carries one bit: the projection of its 10 features on a keyed, balanced +-1
  pattern is moved onto a keyed, dithered lattice (spacing ``STEP``; bit 0 and
  bit 1 on interleaved points). Balanced patterns make the projection blind to
  loudness and to smooth equalisers; the log makes it blind to volume.
- The bit of a tile is a keyed parity of the 32-bit payload (a random linear
  code), so any 32 clearly read, independent tiles give the payload back, wherever
  they are in the clip: pauses and a cut start cost tiles, not particular bits.
- The mark is a gain on each cell (a few tenths of a dB, less on the loudest
  cells), so it lives under the signal's own spectral and temporal envelope:
  silence stays silent. The embedder closes the loop: it measures the marked clip
  as the detector will and corrects, four times.

Detection needs no reference: under "not marked with this key" the distance of
every tile's projection to the lattice is uniform (the keyed dither sees to that,
exactly, whatever the audio), so ``-sum(log(distance))`` follows a Gamma law and
gives an exact p-value. The detector searches the alignment (a crop of the start
of up to ``MAX_CROP_S``) and corrects the p-value for the number of alignments
tried (Bonferroni); a clip counts as marked when the corrected p-value is below
``P_THRESHOLD`` (1e-6). Numpy and scipy's FFT (four times numpy's on batches of frames).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

RATE = 16_000  # analysis rate: a mark survives resampling to it
N_FFT = 512
HOP = 128
CELL_FRAMES = 4  # 32 ms
BLOCK_CELLS = 2  # a tile is 2 cells in time
BANDS = 20
GROUP_BANDS = 5  # ... and 5 bands
GROUPS = BANDS // GROUP_BANDS
LOW_HZ, HIGH_HZ = 300.0, 5000.0
PAYLOAD_BITS = 32
STEP = 0.6  # lattice spacing of a tile's projection, in natural-log energy units
FLOOR = 0.01  # feature floor, relative to the mean cell energy of the clip
MAX_GAIN = 0.5  # largest change of a cell's log energy
ITERATIONS = 4
ALLOCATION = 1.0  # a cell's share of its tile's change falls as (its energy / the tile's mean) ** -ALLOCATION
NOISE_PERCENTILE = 10.0  # a band's noise floor: this percentile of its cells over the clip
MIN_SNR_DB = 30.0  # a mark louder than this (rare: a clip with little to hide it in) is scaled down
MAX_CROP_S = 2.0
# Below this rate the clip holds only the lowest of the mark's bands, so no mark can be read; and
# resampling to RATE would multiply the samples: a WAV header claiming 1 Hz turned an 8 KB file
# into 64 million samples, 45 s and 3.7 GB in the detector (found writing ``bench fuzz``'s targets).
MIN_RATE = 4_000
SUB_HOP = 4  # alignments tried within one hop
P_THRESHOLD = 1e-6
_TABLE_BLOCKS = 4096  # keyed patterns for 4.4 minutes, then they repeat

_BLOCK_FRAMES = CELL_FRAMES * BLOCK_CELLS
_PAD_FRAMES = N_FFT // HOP
_TILE_CELLS = BLOCK_CELLS * GROUP_BANDS


@dataclass(frozen=True)
class AudioMarkResult:
    """What the detector found.

    ``found``: marked with this key (corrected p-value below 1e-6). ``payload``:
    the 32 bits read (None when not found). ``p_value``: the chance of a statistic
    this strong in a clip not marked with this key, corrected for the alignments
    tried. ``confidence``: how well every tile agrees with the payload read (1: all
    agree fully; unmarked tiles in pauses and damage lower it; below about 0.2 the
    payload may be wrong). ``offset_s``: where the mark's grid starts (after a cut
    start); ``tiles``: how many tiles carried sound.
    """

    found: bool
    payload: int | None
    p_value: float
    confidence: float
    offset_s: float = 0.0  # where the mark's grid starts in the clip (after a crop)
    tiles: int = 0


# ---------------------------------------------------------------------------
# Signal plumbing


_MAX_RATIO_TERM = 1000  # 44.1 kHz to 16 kHz is 441:160; every common rate pair is below this


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Return ``samples`` resampled from ``rate_in`` to ``rate_out`` Hz (band-limited, by FFT)."""
    x = np.asarray(samples, dtype=np.float64)
    if rate_in == rate_out or len(x) == 0:
        return x.copy()
    wanted = max(1, round(len(x) * rate_out / rate_in))
    # Zero-padded to m * down samples, m a fast FFT length, so the result is exactly m * up samples: no
    # rounding of the ratio, and FFT sizes with small factors only. An arbitrary length (a piece of any
    # duration) would need a Bluestein plan, tens of MB each for a minute of audio, and scipy keeps the
    # last few plans: the Studio's memory rose by ~100 MB over a few dozen pieces (``bench soak``).
    g = math.gcd(rate_in, rate_out)
    down, up = rate_in // g, rate_out // g
    if down <= _MAX_RATIO_TERM:
        m = scipy.fft.next_fast_len(-(-len(x) // down), real=True)
        n_in, n_out = m * down, m * up
    else:  # an odd rate (a file's header may claim any): padding to a multiple of it could be huge
        n_in, n_out = len(x), wanted
    spectrum = scipy.fft.rfft(x, n_in)
    bins = n_out // 2 + 1
    out = np.zeros(bins, dtype=complex)
    keep = min(bins, len(spectrum))
    out[:keep] = spectrum[:keep]
    if rate_out < rate_in:
        # Fade the top 5% of the new band so the cut does not ring.
        fade = max(1, keep // 20)
        out[keep - fade : keep] *= np.linspace(1.0, 0.0, fade)
    return scipy.fft.irfft(out, n_out)[:wanted] * (n_out / n_in)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:N_FFT]


@lru_cache(maxsize=1)
def _band_of_bin() -> np.ndarray:
    """The band of each FFT bin (-1 outside the marked range), mel-spaced."""

    def mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    edges_mel = np.linspace(mel(LOW_HZ), mel(HIGH_HZ), BANDS + 1)
    edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.arange(N_FFT // 2 + 1) * RATE / N_FFT
    band = np.searchsorted(edges_hz, freqs, side="right") - 1
    band[(freqs < LOW_HZ) | (freqs >= HIGH_HZ)] = -1
    return band


def _frame_count(samples: int) -> int:
    """The number of frames :func:`_stft` makes of ``samples`` samples."""
    return 1 + (max(samples, N_FFT) - N_FFT) // HOP


def _stft(x: np.ndarray) -> np.ndarray:
    """Frames start every HOP samples from sample 0 (frames x bins), in single precision (the mark needs no more)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    count = _frame_count(len(x))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:count]
    return scipy.fft.rfft(frames * _window32(), axis=1)


@lru_cache(maxsize=1)
def _window32() -> np.ndarray:
    return _window().astype(np.float32)


def _istft(spectrum: np.ndarray, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`_stft` (exact where every sample is covered)."""
    frames = scipy.fft.irfft(spectrum, N_FFT, axis=1) * _window32()
    total = (len(frames) - 1) * HOP + N_FFT
    out = np.zeros(max(length, total) + N_FFT, dtype=np.float32)
    # With a hop of a quarter window, every fourth frame tiles the signal without overlap.
    per = N_FFT // HOP
    for phase in range(per):
        group = frames[phase::per]
        start = phase * HOP
        out[start : start + group.size] += group.reshape(-1)
    return out[:length] / _overlap_norm(len(frames), length)


def _overlap_norm(frames: int, length: int) -> np.ndarray:
    """The sum of squared windows over each of the first ``length`` samples (1 where no frame covers it)."""
    w2 = _window().astype(np.float32) ** 2
    per = N_FFT // HOP
    norm = np.zeros(max(length, (frames - 1) * HOP + N_FFT) + N_FFT, dtype=np.float32)
    for phase in range(per):
        count = len(range(phase, frames, per))
        norm[phase * HOP : phase * HOP + count * N_FFT] += np.tile(w2, count)
    norm = norm[:length]
    norm[norm <= 1e-8] = 1.0
    return norm


@lru_cache(maxsize=1)
def _band_matrix() -> tuple[slice, np.ndarray]:
    """(the FFT bins inside the marked range, a bins x BANDS 0/1 matrix that sums them per band)."""
    band = _band_of_bin()
    inside = np.flatnonzero(band >= 0)
    bins = slice(int(inside[0]), int(inside[-1]) + 1)
    matrix = np.zeros((bins.stop - bins.start, BANDS), dtype=np.float32)
    matrix[np.arange(len(matrix)), band[bins]] = 1.0
    return bins, matrix


def _band_power(spectrum: np.ndarray) -> np.ndarray:
    """Power per frame and band (frames x BANDS)."""
    bins, matrix = _band_matrix()
    inside = spectrum[:, bins]
    power = inside.real**2 + inside.imag**2
    return (power @ matrix).astype(np.float64)


def _cells(band_power: np.ndarray, start_frame: int) -> np.ndarray:
    """Cell energies (blocks x BLOCK_CELLS x BANDS) for a grid starting at ``start_frame``."""
    usable = band_power[start_frame:]
    blocks = len(usable) // _BLOCK_FRAMES
    return usable[: blocks * _BLOCK_FRAMES].reshape(blocks, BLOCK_CELLS, CELL_FRAMES, BANDS).sum(axis=2)


def _features(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (tile features: blocks x GROUPS x TILE_CELLS, sensitivity d feature / d log energy, active tiles,
    cell energies in the same layout).

    Each band's noise floor (a low percentile of its cells over the clip: speech
    has pauses) is taken off first, so added noise moves the features little.
    """
    noise = np.percentile(cells.reshape(-1, BANDS), NOISE_PERCENTILE, axis=0)
    cells = np.maximum(cells - noise, 0.0)
    floor = FLOOR * float(cells.mean()) + 1e-20
    tiles = cells.reshape(len(cells), BLOCK_CELLS, GROUPS, GROUP_BANDS).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(len(cells), GROUPS, _TILE_CELLS)
    feature = np.log(tiles + floor)
    sensitivity = tiles / (tiles + floor)
    active = tiles.mean(axis=2) >= floor
    return feature, sensitivity, active, tiles


# ---------------------------------------------------------------------------
# Keyed patterns


@lru_cache(maxsize=8)
def _patterns(key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (chips: TABLE x GROUPS x TILE_CELLS unit vectors, dithers: TABLE x GROUPS, code rows: TABLE x GROUPS)."""
    seed = int.from_bytes(hashlib.blake2b(b"ember-audio-mark-v1", key=key[:64], digest_size=32).digest(), "little")
    rng = np.random.default_rng(seed)
    base = np.array([1.0] * (_TILE_CELLS // 2) + [-1.0] * (_TILE_CELLS - _TILE_CELLS // 2))
    chips = np.tile(base, (_TABLE_BLOCKS, GROUPS, 1))
    chips = rng.permuted(chips, axis=2) / math.sqrt(_TILE_CELLS)
    dithers = rng.uniform(0.0, STEP, size=(_TABLE_BLOCKS, GROUPS))
    # Each tile carries one parity of the payload (a keyed random linear code over GF(2)),
    # so any 32 clearly read, independent tiles give the payload back, wherever they are.
    codes = rng.integers(1, 2**PAYLOAD_BITS, size=(_TABLE_BLOCKS, GROUPS), dtype=np.int64)
    return chips, dithers, codes


def _keyed(key: bytes, first_block: int, blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chips, dithers, codes = _patterns(bytes(key))
    index = (first_block + np.arange(blocks)) % _TABLE_BLOCKS
    return chips[index], dithers[index], codes[index]


# ---------------------------------------------------------------------------
# Embedding


def _mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim > 1 and sum(d > 1 for d in x.shape) > 1:
        raise ValueError(f"The audio mark works on one channel; these samples have shape {x.shape}. Mix down first.")
    return x.reshape(-1)


def _parity(codes: np.ndarray, payload: int) -> np.ndarray:
    """The bit each tile carries: the parity of (its code row AND the payload)."""
    masked = codes & payload
    bits = np.zeros(codes.shape, dtype=np.int64)
    for i in range(PAYLOAD_BITS):
        bits ^= (masked >> i) & 1
    return bits.astype(np.float64)


def embed(samples: np.ndarray, sample_rate: int, payload: int, key: bytes) -> np.ndarray:
    """Return ``samples`` (mono, float in [-1, 1]) with ``payload`` (32 bits) marked under ``key``.

    The result is float32 at the same rate and length. Clips shorter than one
    tile (64 ms) or silent come back unchanged (and will not be found).
    Raises ValueError for a payload that does not fit in 32 bits or samples with more than one channel.
    """
    payload = int(payload)
    if not 0 <= payload < 2**PAYLOAD_BITS:
        raise ValueError(f"The audio mark carries {PAYLOAD_BITS} bits; {payload} does not fit.")
    x = _mono(samples)
    x16 = resample(x, sample_rate, RATE)
    # The mark is made on a padded copy so that the first and last samples are covered by
    # whole windows (and come back exactly); frame f of the clip is frame f + _PAD_FRAMES of the copy.
    padded = np.pad(x16, (N_FFT, N_FFT))
    spectrum = _stft(padded)
    cells = _cells(_band_power(spectrum[_PAD_FRAMES : _PAD_FRAMES + _frame_count(len(x16))]), 0)
    if len(cells) == 0 or not np.any(cells > 0):
        return x.astype(np.float32)
    feature, sensitivity, active, energy = _features(cells)
    # Louder cells cost more mark energy for the same change of their feature: lean on them less.
    relative = energy / (energy.mean(axis=2, keepdims=True) + 1e-20)
    thrift = np.minimum(1.0, (relative + 1e-3) ** -ALLOCATION)
    chips, dithers, codes = _keyed(key, 0, len(cells))
    wanted = _parity(codes, payload)  # blocks x GROUPS
    projection = np.einsum("kgc,kgc->kg", feature, chips)
    offset = dithers + wanted * STEP / 2
    target = offset + STEP * np.round((projection - offset) / STEP)

    gain = np.zeros_like(feature)  # change of log energy per cell
    marked16 = x16
    for iteration in range(ITERATIONS):
        error = np.where(active, target - projection, 0.0)
        weight = chips * sensitivity * thrift
        norm = np.einsum("kgc,kgc->kg", weight, chips)
        step = np.where(norm > 1e-6, error / np.maximum(norm, 1e-6), 0.0)
        gain = np.clip(gain + step[..., None] * weight, -MAX_GAIN, MAX_GAIN)
        field = _gain_field(gain, len(spectrum))
        marked16 = _istft(spectrum * field, len(padded))[N_FFT : N_FFT + len(x16)]
        if iteration == ITERATIONS - 1:
            break  # the last measurement would correct nothing
        m_feature, sensitivity, _, _ = _features(_cells(_band_power(_stft(marked16)), 0))
        projection = np.einsum("kgc,kgc->kg", m_feature, chips)
    mark = resample(marked16 - x16, RATE, sample_rate)[: len(x)]
    if len(mark) < len(x):
        mark = np.pad(mark, (0, len(x) - len(mark)))
    mark_power, signal_power = float(np.sum(mark**2)), float(np.sum(x**2))
    if mark_power > signal_power * 10 ** (-MIN_SNR_DB / 10):
        mark *= math.sqrt(signal_power * 10 ** (-MIN_SNR_DB / 10) / mark_power)
    return np.clip(x + mark, -1.0, 1.0).astype(np.float32)


def _gain_field(gain: np.ndarray, frames: int) -> np.ndarray:
    """Amplitude gain per STFT frame and bin (of the padded clip) from the per-cell log-energy changes."""
    blocks = gain.shape[0]
    cell = gain.reshape(blocks, GROUPS, BLOCK_CELLS, GROUP_BANDS).transpose(0, 2, 1, 3).reshape(-1, BANDS)
    per_frame = np.repeat(cell, CELL_FRAMES, axis=0)
    field = np.zeros((frames, BANDS + 1))
    per_frame = per_frame[: max(0, frames - _PAD_FRAMES)]
    field[_PAD_FRAMES : _PAD_FRAMES + len(per_frame), :BANDS] = per_frame
    return np.exp(field.astype(np.float32) / 2.0)[:, _band_of_bin()]  # band -1 reads the zero column


# ---------------------------------------------------------------------------
# Detection


@lru_cache(maxsize=4)
def _log_factorial_table(size: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, size)))])


def _log_factorials(n: int) -> np.ndarray:
    """log(i!) for i in 0..n-1."""
    size = 1 << max(10, (n - 1).bit_length())
    return _log_factorial_table(size)[:n]


def _log_gamma_sf(n: int, x: np.ndarray) -> np.ndarray:
    """log P(Gamma(n, 1) >= x), elementwise, for whole n (the sum of n unit exponentials)."""
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if n <= 0:
        return np.zeros_like(x)
    safe = np.maximum(x, 1e-300)
    terms = np.arange(n)[None, :] * np.log(safe)[:, None] - _log_factorials(n)[None, :] - safe[:, None]
    top = terms.max(axis=1)
    log_sf = top + np.log(np.exp(terms - top[:, None]).sum(axis=1))
    return np.where(x <= 0, 0.0, np.minimum(0.0, log_sf))


def _score(projection: np.ndarray, dithers: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Return (log p-value of each alignment, active tiles, soft bits per tile), for alignments x blocks x groups.

    A tile's soft bit is +-(-log distance): the sign says which bit's lattice point
    is nearest (+ for 0), the size how near (an unmarked tile gives Exp(1) sizes).
    """
    phase = (projection - dithers) / STEP  # lattice of bit 0 at whole numbers, bit 1 at halves
    halves = np.round(phase * 2)
    distance = np.maximum(np.abs(phase * 2 - halves) * 2, 1e-12)  # uniform in [0, 1) when unmarked
    evidence = -np.log(distance)
    n = int(active.sum())
    statistic = (evidence * active).sum(axis=(1, 2))
    sign = 1.0 - 2.0 * (halves.astype(np.int64) & 1)
    return _log_gamma_sf(n, statistic), n, sign * evidence


def _solve(rows: list[tuple[int, int]]) -> int | None:
    """Solve parity equations (code row, bit) taken in order of trust; None when they do not fix all 32 bits."""
    basis: dict[int, tuple[int, int]] = {}  # leading bit -> (row, value)
    for row, value in rows:
        for lead in sorted(basis, reverse=True):
            if row >> lead & 1:
                row ^= basis[lead][0]
                value ^= basis[lead][1]
        if row:
            basis[row.bit_length() - 1] = (row, value)
            if len(basis) == PAYLOAD_BITS:
                break
    if len(basis) < PAYLOAD_BITS:
        return None
    payload = 0
    for lead in sorted(basis):  # back-substitute from the lowest leading bit up
        row, value = basis[lead]
        rest = row & ~(1 << lead)
        value ^= bin(rest & payload).count("1") & 1
        payload |= value << lead
    return payload


def _decode(codes: np.ndarray, soft: np.ndarray) -> tuple[int | None, float]:
    """Return the payload that agrees best with the tiles' soft bits (ordered-statistics decoding), and the agreement.

    The 32 most clearly read independent tiles fix a payload; each of them flipped
    in turn gives another candidate; the one whose parities agree best with every
    tile wins. Agreement is sum(soft * expected sign) / sum(|soft|), in [-1, 1].
    """
    used = np.flatnonzero(soft != 0)
    order = used[np.argsort(-np.abs(soft[used]), kind="stable")]
    rows = [(int(codes[i]), int(soft[i] < 0)) for i in order]
    total = float(np.abs(soft).sum())
    if total == 0:
        return None, 0.0
    best: tuple[int | None, float] = (None, -2.0)
    for flip in range(-1, min(PAYLOAD_BITS, len(rows))):
        trial = [(r, v ^ 1) if i == flip else (r, v) for i, (r, v) in enumerate(rows)]
        payload = _solve(trial)
        if payload is None:
            break
        signs = 1.0 - 2.0 * _parity(codes, payload)
        agreement = float((soft * signs).sum()) / total
        if agreement > best[1]:
            best = (payload, agreement)
    return best


def detect(samples: np.ndarray, sample_rate: int, key: bytes) -> AudioMarkResult:
    """Return whether ``samples`` carry a mark made with ``key``, and its payload.

    Tries every alignment of the mark's grid within the first ``MAX_CROP_S``
    seconds (so a clip whose start was cut still reads) and keeps the best;
    the p-value is corrected for the number tried. Short or silent clips are
    simply not found, nor are clips sampled below ``MIN_RATE`` Hz; raises
    ValueError for samples with more than one channel.
    """
    x = _mono(samples)
    if sample_rate < MIN_RATE:
        return AudioMarkResult(False, None, 1.0, 0.0, 0.0, 0)
    x16 = resample(x, sample_rate, RATE)
    firsts = int(MAX_CROP_S * RATE / (HOP * _BLOCK_FRAMES)) + 1
    best = (0.0, 0, None, 0, 0.0)  # log p, tiles, soft bits, first block, offset in seconds
    tried = 0
    for sub in range(SUB_HOP):
        shift = sub * HOP // SUB_HOP
        band_power = _band_power(_stft(x16[shift:]))
        for start in range(_BLOCK_FRAMES):
            cells = _cells(band_power, start)
            if len(cells) == 0 or not np.any(cells > 0):
                continue
            feature, _, active, _ = _features(cells)
            blocks = len(cells)
            chips, dithers, _ = _keyed(key, 0, blocks + firsts)
            # Every crop hypothesis at once: the patterns for blocks first .. first + blocks.
            chip_windows = np.lib.stride_tricks.sliding_window_view(chips, blocks, axis=0)[:firsts]
            dither_windows = np.lib.stride_tricks.sliding_window_view(dithers, blocks, axis=0)[:firsts]
            projection = np.einsum("kgc,fgck->fkg", feature, chip_windows)
            log_p, n, soft = _score(projection, dither_windows.transpose(0, 2, 1), active)
            tried += firsts
            first = int(np.argmin(log_p))
            if log_p[first] < best[0]:
                best = (float(log_p[first]), n, soft[first] * active, first, (shift + start * HOP) / RATE)
    log_p, n, soft, first, offset = best
    p_value = min(1.0, math.exp(log_p) * max(tried, 1)) if log_p > -700 else 0.0
    if soft is None or p_value > P_THRESHOLD:
        return AudioMarkResult(False, None, p_value, 0.0, offset, n)
    _, _, codes = _keyed(key, first, len(soft))
    payload, confidence = _decode(codes.reshape(-1), soft.reshape(-1))
    return AudioMarkResult(True, payload, p_value, confidence, offset, n)


def mark_snr_db(original: np.ndarray, marked: np.ndarray) -> float:
    """Return the power of ``original`` over the power of the mark (``marked - original``), in dB."""
    a = np.asarray(original, dtype=np.float64)
    m = np.asarray(marked, dtype=np.float64) - a
    return 10.0 * math.log10(float(np.sum(a**2)) / max(float(np.sum(m**2)), 1e-30))
