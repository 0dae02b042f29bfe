"""The invisible image watermark: a keyed, tiled spread-spectrum mark in the luma.

Design, and why (every choice below was measured against the alternatives; see
``engines/benchmarks/image_mark.py``):

* **Where.** The mark lives in the luma (Y) only, added equally to R, G and B, so
  JPEG's 4:2:0 chroma subsampling cannot touch it and colours do not shift. It is
  made on a fixed 512x512 *working copy* of the image (aspect ratio ignored) and
  the residual is resized to the native size, as TrustMark does: the detector
  resizes whatever it is given to 512x512 again, so any resize (50 %, a
  thumbnail, a change of aspect ratio) lands back on the same grid for free.
* **What.** A 128x128 tile of 32x32 "chips" (4x4 working pixels each, slightly
  smoothed so the energy sits in the mid frequencies that JPEG and downscaling
  keep) is repeated 4x4 times. A quarter of the chips, at keyed positions, carry
  a keyed synchronisation pattern; the rest carry the code word: ``PAYLOAD_BITS``
  bits of output id plus ``CHECK_BITS`` bits of a keyed MAC, coded by a rate-1/3,
  constraint-length-9 convolutional code (soft Viterbi decoding), each coded bit
  spread over three or four chips with keyed signs.
* **Detector front end.** The luma of the working copy is whitened: its spectrum
  is divided by its locally smoothed magnitude (textures such as grass or bricks
  no longer swamp the mark), band-passed to the mark's frequencies, and divided
  by its local RMS (blind to brightness and contrast, so x1.3 and x0.7 cost only
  what clipping removes). All tiles are then folded onto one: every pixel of the
  image adds to the evidence.
* **Crops.** A crop is a translation of the tiled pattern, plus a small change of
  period once the crop is resized to 512. The detector first tries the period
  128 (not cropped); then it searches the periods of both axes (1 % steps, up to
  a 12 % crop of a side) by folding a half-resolution copy with one matrix
  product per axis and scoring the synchronisation peak, refines the best three
  in 0.25 % steps, and for each finds the offset by FFT correlation with the
  synchronisation pattern and decodes.
* **Turns, flips and straightening.** A quarter turn or a flip maps the square
  tile lattice onto itself, so the untouched grid's fold is tried in its eight
  orientations and the one with the strongest synchronisation peak is decoded. A
  small turn (a straightening tool, with the crop it implies) rotates and zooms
  the lattice; because both working copies squeeze the picture to a square, in
  working pixels the turn is a sheared rotation set by the picture's aspect.
  Folding through a map M samples the whitened image's spectrum at the tile's
  frequencies moved by M^-T, so one FFT of a half-resolution copy (zero-padded
  four times) scores every turn in ``_ANGLES_DEG`` (0.5 degree steps) with every
  zoom from the straightening crop to 14 % beyond it (1 % steps) against the
  keyed synchronisation pattern, one gather and a 64x64 inverse FFT each; the
  best two are refined by a quarter step and decoded at full resolution. (The whitened
  image's autocorrelation, which needs no key, sees the lattice's energy squared
  and proposed the right map for only the strongly marked photos; measured.)
  Last, the autocorrelation proposes lattices at any turn and zoom
  (``_SCALES``), the best by the synchronisation peak of a half-resolution fold
  is decoded in its best orientation: turns without the crop, a quarter turn
  plus a small one.
* **Informed embedding.** The image's own contribution to each coded bit's soft
  value is known when embedding, so bits the image works against get up to twice
  the strength and bits it already helps get half (the detector is run on the
  marked working copy three times to set these gains). The strength is uniform in
  space apart from a mild activity mask (local contrast ** 0.25), and is scaled
  to 40.2 dB PSNR at ``strength=1`` (at least 40.0 dB after rounding). Clipping
  at black and white removes only one sign of the mark there.
* **False detections.** An image counts as marked only when the keyed MAC of the
  decoded payload matches. For an unmarked image, or a mark made with another
  key, each decode matches with probability 2**-CHECK_BITS (the code word is
  scrambled by the key); the detector decodes at most ``_MAX_ATTEMPTS`` times, so
  ``p_value = attempts * 2**-CHECK_BITS`` <= 4.2e-7. When nothing matches,
  ``p_value`` comes from the best synchronisation peak over all offsets and
  scales tried (Gaussian tail, Bonferroni).

numpy and Pillow only. At 1024x1024 on two cores: about 0.06 s to embed, 0.02 s
to detect an untouched mark, 0.08 s a straightened one, 0.18 s to search an
unmarked picture through every path (``main.py bench provenance``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from engines.errors import EmberError

PAYLOAD_BITS = 32
CHECK_BITS = 24
MIN_SIDE = 64

_WORK = 512  # working copy size
_TILE = 128  # tile period in working pixels
_CHIP = 4  # chip size in working pixels
_CHIPS = _TILE // _CHIP  # chips per tile side
_SYNC_FRACTION = 0.25
_TARGET_PSNR_DB = 40.2  # what strength 1.0 aims at
_MIN_PSNR_DB = 40.02  # what strength 1.0 guarantees, after rounding
_TURN_ATTEMPTS = 2  # straightened (turned and cropped) candidates decoded after the untouched grid
_PERIOD_ATTEMPTS = 3  # crop candidates decoded next
_LATTICE_ATTEMPTS = 1  # then the best any-zoom lattice, in its best of 8 orientations
_MAX_ATTEMPTS = 1 + _TURN_ATTEMPTS + _PERIOD_ATTEMPTS + _LATTICE_ATTEMPTS  # check-bit tests per image
_NUDGES = (-0.003, 0.0, 0.003)  # relative period nudges tried around each found period
_NUDGE_FIT = 0.74  # ... when its code word fits at least this well (measured: noise up to 0.73, marks 0.79 up)
_PERIOD_RANGE = (0.99, 1.14)  # period search, relative to _TILE (crops of up to 12 % of a side)
# The geometry searches. Turns: every angle in _ANGLES_DEG, with the zoom that the crop of a straightening
# tool implies and up to _EXTRA_CROP more, scored by the keyed synchronisation peak (folded in the Fourier domain).
# Lattice: every angle and any zoom in _SCALES, proposed by the whitened image's autocorrelation (no key needed).
_ANGLES_DEG = (-12.0, 12.01, 0.5)  # turns searched, modulo a quarter turn (the tile's square lattice looks the same)
_TURN_ASPECTS = (0.25, 4.0)  # narrower strips are not searched for turns (squeezed to 512, a turn is a shear)
_EXTRA_CROP = (-0.02, 0.141, 0.01)  # log zoom beyond the straightening crop (a further crop of up to 14 % a side)
_SCALES = (0.75, 1.45, 0.01)  # zoom of the lattice, from a slight zoom-out to a 31 % crop of a side (log steps)
_LATTICE_REACH = 2.3  # lattice steps used, in tiles
_COMB_SHORTLIST = 8  # autocorrelation candidates checked against the keyed synchronisation pattern

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageMarkResult:
    """What :func:`detect` found."""

    found: bool
    payload: int | None  # the decoded id when found
    p_value: float  # chance an unmarked image scores at least this high
    confidence: float  # 0..1 for display
    bit_errors: int | None  # coded bits the Viterbi decoder corrected


# ---------------------------------------------------------------------------- keyed layout


@dataclass(frozen=True)
class _Layout:
    sync: np.ndarray  # (_CHIPS, _CHIPS) float32, +-1 on sync chips, 0 elsewhere
    payload_chips: np.ndarray  # flat chip indices carrying payload, in code order
    payload_bit: np.ndarray  # coded-bit index of each payload chip
    payload_sign: np.ndarray  # keyed +-1 scramble of each payload chip


def _stream(key: bytes, label: str, n: int) -> np.ndarray:
    """Return n keyed pseudo-random bytes (stable forever: SHAKE-256, not numpy's generators)."""
    return np.frombuffer(hashlib.shake_256(key + b"\x00ember-image-mark\x00" + label.encode()).digest(n), np.uint8)


@lru_cache(maxsize=8)
def _layout(key: bytes) -> _Layout:
    n = _CHIPS * _CHIPS
    order = np.argsort(_stream(key, "positions", 4 * n).view("<u4"), kind="stable")
    n_sync = int(n * _SYNC_FRACTION)
    sync_chips, payload_chips = order[:n_sync], order[n_sync:]
    signs = np.where(_stream(key, "signs", n) & 1, 1.0, -1.0).astype(np.float32)
    sync = np.zeros(n, np.float32)
    sync[sync_chips] = signs[sync_chips]
    payload_bit = np.arange(payload_chips.size) % _CODED_BITS
    return _Layout(sync.reshape(_CHIPS, _CHIPS), payload_chips, payload_bit, signs[payload_chips])


def _mac(payload: int, key: bytes) -> int:
    digest = hashlib.blake2b(payload.to_bytes(8, "little"), key=key[:64], person=b"ember-img-mac").digest()
    return int.from_bytes(digest[:4], "little") & ((1 << CHECK_BITS) - 1)


# A rate-1/3, constraint-length-9 convolutional code (generators 557, 663, 711 octal),
# terminated with eight zero bits, decoded by a soft-decision Viterbi decoder
# (256 states). It yields exactly one word to check, so the false-detection bound
# stays attempts * 2**-CHECK_BITS. Measured: K=9 decodes 100 % / 95 % (no attack /
# crop) where K=7 gave 93 % / 90 % and a 12-fold repetition code 95 % / 83 %.
_GENERATORS = (0o557, 0o663, 0o711)
_MEMORY = 8
_INFO_BITS = PAYLOAD_BITS + CHECK_BITS
_CODED_BITS = (_INFO_BITS + _MEMORY) * len(_GENERATORS)


def _parity(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    for shift in (8, 4, 2, 1):
        values ^= values >> shift
    return values & 1


_REGISTERS = np.arange(1 << (_MEMORY + 1))
# sign (+1 for a 1 bit) of each output of the register value r (bit 0 = newest input)
_BRANCH_SIGNS = np.stack([_parity(_REGISTERS & g) * 2 - 1 for g in _GENERATORS], axis=1).astype(np.float64)


def _encode(bits: np.ndarray) -> np.ndarray:
    """Return the coded bits (0/1) of ``bits`` followed by the zero tail."""
    register, out = 0, []
    for bit in [*bits.tolist(), *([0] * _MEMORY)]:
        register = ((register << 1) | int(bit)) & ((1 << (_MEMORY + 1)) - 1)
        out.extend(int(_parity(np.array([register & g]))[0]) for g in _GENERATORS)
    return np.array(out, np.uint8)


def _viterbi(soft: np.ndarray) -> tuple[np.ndarray, float]:
    """Return the most likely information bits for soft coded values (positive means 1) and their fit.

    The fit is the correlation of the soft values with the chosen code word over
    their total magnitude, in [-1, 1]: how well the best code word explains them.
    """
    steps = soft.size // len(_GENERATORS)
    branch = soft.reshape(steps, len(_GENERATORS)) @ _BRANCH_SIGNS.T  # (steps, registers)
    states = 1 << _MEMORY
    metric = np.full(states, -np.inf)
    metric[0] = 0.0
    low = np.arange(states)  # register with the oldest bit 0: predecessor state low >> 1
    high = low | states  # oldest bit 1
    choices = np.empty((steps, states), bool)
    for t in range(steps):
        a = metric[low >> 1] + branch[t, low]
        b = metric[high >> 1] + branch[t, high]
        choices[t] = b > a
        metric = np.maximum(a, b)
    state, bits = 0, np.empty(steps, np.uint8)
    for t in range(steps - 1, -1, -1):
        bits[t] = state & 1
        state = ((state | states) if choices[t, state] else state) >> 1
    return bits[: steps - _MEMORY], float(metric[0]) / (float(np.abs(soft).sum()) + 1e-12)


def _codeword(payload: int, key: bytes) -> np.ndarray:
    """Return the coded bits sent for ``payload``: the payload, its keyed MAC, convolutionally coded."""
    word = payload | (_mac(payload, key) << PAYLOAD_BITS)
    return _encode(np.array([(word >> i) & 1 for i in range(_INFO_BITS)], np.uint8))


# ---------------------------------------------------------------------------- signal helpers


@lru_cache(maxsize=16)
def _gauss(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """The rfft2-domain response of a Gaussian blur (cyclic) of the given pixel sigma."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2.0 * math.pi**2 * sigma**2 * (fx**2 + fy**2)).astype(np.float32)


_MASK_POWER = 0.25  # strength follows local contrast ** this (0.5 and 0 measured: no better)
_SPECTRAL_RADIUS = 2
_SMOOTH = 1.0  # chip smoothing sigma (working pixels)
_BAND = (1.0, 5.0)  # detector's difference of Gaussians
_MAX_GAIN = 2.0  # above this, a bit is left to the error-correcting code
_MARGIN = 1.0  # wanted soft margin of every coded bit, in units of the mean mark contribution
_LOOPS = 3  # detector runs while choosing the gains
_MIN_GAIN = 0.5  # informed embedding never drops a bit below this share of the base strength


def _render(chips: np.ndarray) -> np.ndarray:
    """Return the smoothed pixel tile (_TILE x _TILE) of a chip grid (cyclic)."""
    tile = np.kron(chips, np.ones((_CHIP, _CHIP), np.float32))
    return np.fft.irfft2(np.fft.rfft2(tile) * _gauss(tile.shape, _SMOOTH), s=tile.shape).astype(np.float32)


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float plane to (width, height) with Pillow's antialiased bilinear filter."""
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.array(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    return rgb[..., :3].astype(np.float32) @ _LUMA


def _box_smooth(plane: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 box, cyclic along the first axis, clamped along the second (an rfft2 half plane)."""
    out = plane.copy()
    for shift in range(1, radius + 1):
        out += np.roll(plane, shift, axis=0) + np.roll(plane, -shift, axis=0)
    rows = out
    padded = np.pad(rows, ((0, 0), (radius, radius)), mode="edge")
    out = sum(padded[:, k : k + rows.shape[1]] for k in range(2 * radius + 1))
    return out / float((2 * radius + 1) ** 2)


def _whiten(y: np.ndarray) -> np.ndarray:
    """Whiten the luma: flatten its spectrum, keep the mark's band, divide by the local RMS.

    Dividing the spectrum by its locally smoothed magnitude removes most of what
    textures (bricks, grass, gravel) put in the mark's band; the local RMS
    division makes the result blind to brightness and contrast.
    """
    spectrum = np.fft.rfft2(y)
    filt = _gauss(y.shape, _BAND[0]) - _gauss(y.shape, _BAND[1])
    magnitude = _box_smooth(np.abs(spectrum).astype(np.float32), _SPECTRAL_RADIUS)
    spectrum = spectrum / (magnitude + 1e-3 * float(magnitude.mean()) + 1e-6)
    band = np.fft.irfft2(spectrum * filt, s=y.shape)
    power = np.fft.irfft2(np.fft.rfft2(band * band) * _gauss(y.shape, 8.0), s=y.shape)
    return (band / np.sqrt(np.maximum(power, 0.0) + 1e-6 * float(power.mean()) + 1e-12)).astype(np.float32)


def _activity_mask(y_work: np.ndarray) -> np.ndarray:
    """Return the embedding strength map at working size (mean 1): more in texture, less in flat areas."""
    spectrum = np.fft.rfft2(y_work)
    band = np.fft.irfft2(spectrum * (1.0 - _gauss(y_work.shape, 2.0)), s=y_work.shape)
    local = np.sqrt(np.maximum(np.fft.irfft2(np.fft.rfft2(band * band) * _gauss(y_work.shape, 4.0), s=y_work.shape), 0))
    mask = (local + 1.0) ** _MASK_POWER
    mask = np.minimum(mask, 3.0 * mask.mean())
    return (mask / mask.mean()).astype(np.float32)


def _matched_tile(folded: np.ndarray) -> np.ndarray:
    """Return the folded tile filtered by the detector's matched filter (rfft2 domain)."""
    shape = (_TILE, _TILE)
    band = _gauss(shape, _SMOOTH) * (_gauss(shape, _BAND[0]) - _gauss(shape, _BAND[1]))
    return np.fft.rfft2(folded) * band


def _chip_values(matched: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    """Return the soft value of every chip (flat, _CHIPS**2) of a matched tile whose origin is at (dy, dx)."""
    pixels = np.roll(np.fft.irfft2(matched, s=(_TILE, _TILE)), (-dy, -dx), axis=(0, 1))
    return pixels.reshape(_CHIPS, _CHIP, _CHIPS, _CHIP).sum(axis=(1, 3)).reshape(-1)


def _informed_gains(y_work: np.ndarray, mask: np.ndarray, signs: np.ndarray, layout: _Layout) -> np.ndarray:
    """Return a gain per chip that spends the energy where the image works against the mark.

    The detector's soft value of a coded bit is (image part) + (mark part). The
    image part is known at embedding time, so bits the image already pushes the
    right way keep the base strength and bits it pushes the wrong way get up to
    ``_MAX_GAIN`` times more (informed embedding). The real detector is run on the
    marked working copy a few times, at the final energy, to correct the gains.
    """
    coded = _CODED_BITS
    order, bit = layout.payload_chips, layout.payload_bit
    host = _chip_values(_matched_tile(_fold(_whiten(y_work), _TILE, _TILE)))
    host_bit = np.bincount(bit, weights=host[order] * signs[order], minlength=coded)
    base = math.sqrt(255.0**2 / 10 ** (_TARGET_PSNR_DB / 10.0))
    bit_gains = np.ones(coded)
    gains = np.ones(signs.size, np.float32)
    for _ in range(_LOOPS):
        gains[order] = bit_gains[bit]
        pattern = np.tile(_render((signs * gains).reshape(_CHIPS, _CHIPS)), (_WORK // _TILE, _WORK // _TILE)) * mask
        pattern *= base / math.sqrt(float(np.mean(pattern * pattern)) + 1e-12)
        marked = _chip_values(_matched_tile(_fold(_whiten(y_work + pattern), _TILE, _TILE)))
        margin = np.bincount(bit, weights=marked[order] * signs[order], minlength=coded)
        per_gain = np.maximum((margin - host_bit) / bit_gains, 1e-6)  # what one unit of gain adds now
        target = _MARGIN * float(np.median(per_gain))
        bit_gains = np.clip((target - host_bit) / per_gain, _MIN_GAIN, _MAX_GAIN)
    gains[order] = bit_gains[bit]
    return gains


# ---------------------------------------------------------------------------- embed


def _split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if image.ndim == 3 and image.shape[2] == 4:
        return image[..., :3], image[..., 3:]
    return image, None


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise EmberError("The image to watermark must be 8-bit pixels (a uint8 array); convert it first.")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise EmberError(f"The image to watermark has an unexpected shape {image.shape}; expected grey, RGB or RGBA.")
    if min(image.shape[:2]) < MIN_SIDE:
        raise EmberError(
            f"This image is too small to carry a watermark ({image.shape[1]}x{image.shape[0]} pixels); "
            f"each side must be at least {MIN_SIDE} pixels."
        )


def embed(image: np.ndarray, payload: int, key: bytes, *, strength: float = 1.0) -> np.ndarray:
    """Return a copy of ``image`` (HxW, HxWx3 or HxWx4 uint8) carrying ``payload`` under ``key``.

    ``strength`` scales the mark (1.0 gives 40.0 to 40.3 dB PSNR). Alpha is kept as
    it is. Raises EmberError for images that are too small or not 8-bit, and for
    a payload that does not fit in PAYLOAD_BITS bits.
    """
    _check_image(image)
    if not 0 <= payload < (1 << PAYLOAD_BITS):
        raise EmberError(f"The watermark id {payload} does not fit in {PAYLOAD_BITS} bits.")
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pixels = image[..., 0] if squeeze else image
    color, alpha = _split_alpha(pixels)
    height, width = color.shape[:2]

    key = bytes(key)
    layout = _layout(key)
    signs = np.ones(_CHIPS * _CHIPS, np.float32)  # the wanted sign of every chip
    signs[layout.payload_chips] = (_codeword(payload, key)[layout.payload_bit] * 2.0 - 1.0) * layout.payload_sign
    sync_flat = layout.sync.reshape(-1)
    is_sync = sync_flat != 0
    signs[is_sync] = sync_flat[is_sync]

    y_work = _resize(_luma(color), (_WORK, _WORK))
    mask = _activity_mask(y_work)
    gains = _informed_gains(y_work, mask, signs, layout)
    tile = _render((signs * gains).reshape(_CHIPS, _CHIPS))
    pattern = np.tile(tile, (_WORK // _TILE, _WORK // _TILE)) * mask
    residual = _resize(pattern, (width, height))
    target_mse = 255.0**2 / 10 ** (_TARGET_PSNR_DB / 10.0)
    residual *= strength * math.sqrt(target_mse / max(float(np.mean(residual * residual)), 1e-12))

    if color.ndim == 3:
        residual = residual[..., None]
    original = color.astype(np.float32)
    marked = np.clip(np.rint(original + residual), 0, 255)
    # rounding adds about 1/12 to the squared error: keep the promised PSNR at strength 1
    floor_mse = 255.0**2 / 10 ** (_MIN_PSNR_DB / 10.0) * max(1.0, strength) ** 2
    for _ in range(4):
        mse = float(np.mean((marked - original) ** 2))
        if mse <= floor_mse:
            break
        residual *= math.sqrt(floor_mse / mse) * 0.995
        marked = np.clip(np.rint(original + residual), 0, 255)
    marked = marked.astype(np.uint8)
    if alpha is not None:
        marked = np.concatenate([marked, alpha], axis=2)
    return marked[..., None] if squeeze else marked


# ---------------------------------------------------------------------------- detect


def _fold_matrix(n: int, period: float, tile: int) -> np.ndarray:
    """Return the (tile x n) matrix that resamples n samples so ``period`` becomes ``tile`` and folds them.

    Resampling is linear interpolation; folding sums every output sample into
    its place modulo the tile. Applied on both sides of an image it folds it.
    """
    scale = period / tile
    u = np.arange(int((n - 1) / scale) + 1)
    x = u * scale
    x0 = np.minimum(np.floor(x).astype(np.int64), n - 1)
    frac = (x - x0).astype(np.float32)
    x1 = np.minimum(x0 + 1, n - 1)
    rows = u % tile
    flat = np.concatenate([rows * n + x0, rows * n + x1])
    weights = np.concatenate([1.0 - frac, frac])
    return np.bincount(flat, weights=weights, minlength=tile * n).reshape(tile, n).astype(np.float32)


def _fold(white: np.ndarray, period_x: float, period_y: float, tile: int = _TILE) -> np.ndarray:
    """Resample so the period is ``tile`` and sum all tiles onto one (tile x tile)."""
    fold_y = _fold_matrix(white.shape[0], period_y, tile)
    fold_x = _fold_matrix(white.shape[1], period_x, tile)
    return fold_y @ white @ fold_x.T


@lru_cache(maxsize=16)
def _reduced_sync_spectrum(key: bytes, factor: int) -> np.ndarray:
    """The matched filter of the synchronisation pattern at 1/factor resolution (rfft2 domain)."""
    tile = _TILE // factor
    shape = (tile, tile)
    sync = np.kron(_layout(key).sync, np.ones((_CHIP // factor, _CHIP // factor), np.float32))
    band = _gauss(shape, _SMOOTH / factor) * (_gauss(shape, _BAND[0] / factor) - _gauss(shape, _BAND[1] / factor))
    return np.conj(np.fft.rfft2(sync)) * band


def _scale_search(reduced: np.ndarray, key: bytes, scales_x: np.ndarray, scales_y: np.ndarray) -> np.ndarray:
    """Return the synchronisation z-score of every (scale_y, scale_x) pair, folding a reduced whitened image."""
    n = reduced.shape[0]
    factor = _WORK // n
    tile = _TILE // factor
    fold_x = np.concatenate([_fold_matrix(n, tile * s, tile) for s in scales_x])  # (sx*tile, n)
    fold_y = np.concatenate([_fold_matrix(n, tile * s, tile) for s in scales_y])  # (sy*tile, n)
    folded = fold_y @ (reduced @ fold_x.T)  # (sy*tile, sx*tile)
    folded = np.ascontiguousarray(folded.reshape(scales_y.size, tile, scales_x.size, tile).transpose(0, 2, 1, 3))
    score = np.fft.irfft2(np.fft.rfft2(folded) * _reduced_sync_spectrum(key, factor), s=(tile, tile))
    flat = score.reshape(scales_y.size, scales_x.size, -1)
    return (flat.max(axis=2) - flat.mean(axis=2)) / (flat.std(axis=2) + 1e-12)


def _reduce(white: np.ndarray, factor: int) -> np.ndarray:
    n = white.shape[0] // factor
    return white.reshape(n, factor, n, factor).mean(axis=(1, 3))


def _candidate_periods(white: np.ndarray, key: bytes, count: int = 3) -> list[tuple[float, float]]:
    """Return up to ``count`` (period_x, period_y) candidates in working pixels, best first.

    A grid of scales in 1 % steps (crops of up to 12 % of a side) is folded at
    half resolution and scored by the synchronisation peak; the best few are
    refined in 0.25 % steps. (Quarter resolution was 3x faster but missed the
    period of a mostly flat photograph.)
    """
    half = _reduce(white, 2)
    coarse = np.arange(_PERIOD_RANGE[0], _PERIOD_RANGE[1] + 1e-9, 0.01)
    z = _scale_search(half, key, coarse, coarse)
    found: list[tuple[float, float]] = []
    for flat in np.argsort(z, axis=None)[::-1]:
        iy, ix = divmod(int(flat), coarse.size)
        if any(abs(coarse[ix] - fx) <= 0.015 and abs(coarse[iy] - fy) <= 0.015 for fx, fy in found):
            continue
        found.append((float(coarse[ix]), float(coarse[iy])))
        if len(found) == count:
            break
    fine = np.arange(-0.005, 0.0051, 0.0025)
    refined = []
    for sx, sy in found:
        local = _scale_search(half, key, sx + fine, sy + fine)
        iy, ix = divmod(int(np.argmax(local)), fine.size)
        refined.append((float(local.max()), _TILE * (sx + fine[ix]), _TILE * (sy + fine[iy])))
    refined.sort(reverse=True)
    return [(px, py) for _, px, py in refined]


# ---------------------------------------------------------------------------- geometry


# Steps of the tile lattice (in tiles) whose autocorrelation peaks the geometry search adds up: a half
# plane (the autocorrelation is symmetric), out to 2.3 tiles.
_LATTICE_STEPS = np.array(
    [(i, j) for i in range(3) for j in range(-2, 3) if (i > 0 or j > 0) and math.hypot(i, j) <= _LATTICE_REACH],
    np.float32,
)


def _autocorrelation(white: np.ndarray, sigma: float) -> np.ndarray:
    """The whitened image's cyclic autocorrelation, high-passed (peaks only) and blurred by ``sigma`` pixels.

    The tiled mark puts a sharp peak at every step of its lattice, wherever the
    image was moved to, so the peaks give the rotation and zoom without the key.
    """
    power = np.abs(np.fft.rfft2(white)) ** 2
    filt = _gauss(white.shape, sigma) * (1.0 - _gauss(white.shape, 3.0))
    acf = np.fft.irfft2(power * filt, s=white.shape)
    return (acf / (float(acf[0, 0]) + 1e-12)).astype(np.float32)


def _lattice_matrix(angle: float, scale: float, aspect: float) -> np.ndarray:
    """Return the 2x2 map (rows and columns in (y, x) order) from embedding to detector working pixels.

    The photo was turned by ``angle`` (radians) and zoomed by ``scale`` in its own
    pixels; both working copies squeeze a photo of width/height ``aspect`` to a
    square, which turns the rotation into this sheared one.
    """
    c, s = math.cos(angle), math.sin(angle)
    return scale * np.array([[c, -s * aspect], [s / aspect, c]])


def _comb(acf: np.ndarray, angles: np.ndarray, scales: np.ndarray, aspect: float) -> np.ndarray:
    """Return the summed autocorrelation at the lattice steps of every (angle, scale) pair."""
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    zoom = scales[None, :, None] * _TILE
    i, j = _LATTICE_STEPS[:, 0], _LATTICE_STEPS[:, 1]
    y = zoom * (c * i - s * aspect * j)
    x = zoom * (s / aspect * i + c * j)
    values = _bilinear(acf, y, x)
    n = float(acf.shape[0])
    # a lag's peak grows with the pixels that overlap at it; the noise does not: weight by the overlap
    weight = np.maximum(1.0 - np.abs(y) / n, 0.0) * np.maximum(1.0 - np.abs(x) / n, 0.0)
    return (values * weight).sum(axis=2) / np.sqrt((weight * weight).sum(axis=2) + 1e-12)


def _straightening_zoom(angles: np.ndarray, aspect: float) -> np.ndarray:
    """The zoom of the lattice after a turn by ``angles`` and the largest crop of the same aspect inside it."""
    a = np.abs(angles)
    keep = np.minimum(1.0 / (np.cos(a) + np.sin(a) / aspect), 1.0 / (aspect * np.sin(a) + np.cos(a)))
    return 1.0 / keep


@lru_cache(maxsize=8)
def _sync_frequencies(key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The half-resolution synchronisation filter's strongest frequencies: rows, columns (rfft2 indices of the
    64x64 tile), signed tile frequencies (ky, kx), and the filter's values there (95 % of its energy)."""
    spectrum = _reduced_sync_spectrum(key, 2)
    energy = np.abs(spectrum.ravel()) ** 2
    order = np.argsort(energy)[::-1]
    count = int(np.searchsorted(np.cumsum(energy[order]) / energy.sum(), 0.95)) + 1
    rows, cols = np.unravel_index(np.sort(order[:count]), spectrum.shape)
    tile = _TILE // 2
    ky = np.where(rows >= tile // 2, rows - tile, rows).astype(np.float32)
    return rows, cols, np.stack([ky, cols.astype(np.float32)]), spectrum[rows, cols].astype(np.complex64)


def _bilinear(plane: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear samples of a cyclic, square, power-of-two plane (real or complex) at fractional (y, x)."""
    n = plane.shape[0]
    flat = plane.ravel()
    y, x = y + 8.0 * n, x + 8.0 * n  # positive, so that truncation is the floor
    yi, xi = y.astype(np.int32), x.astype(np.int32)
    fy, fx = (y - yi).astype(np.float32), (x - xi).astype(np.float32)
    mask, shift = n - 1, n.bit_length() - 1
    r0, r1 = (yi & mask) << shift, ((yi + 1) & mask) << shift
    c0, c1 = xi & mask, (xi + 1) & mask
    top = flat[r0 | c0] + (flat[r0 | c1] - flat[r0 | c0]) * fx
    bottom = flat[r1 | c0] + (flat[r1 | c1] - flat[r1 | c0]) * fx
    return top + (bottom - top) * fy


def _padded_spectrum(half: np.ndarray) -> np.ndarray:
    """The full spectrum of the half-resolution image zero-padded to four times its size (quarter-cycle bins).

    Bilinear samples between the bins of a twice-padded spectrum lost a quarter of
    the synchronisation peak on busy photos (measured: 6.7 against 8.9 for a
    straightened page); four times keeps it. SciPy's pruned FFT takes 4 ms.
    """
    import scipy.fft

    return scipy.fft.fft2(half.astype(np.float32), s=(4 * half.shape[0], 4 * half.shape[1]))


def _turn_scores(spectrum: np.ndarray, key: bytes, angles: np.ndarray, zooms: np.ndarray, aspect: float) -> np.ndarray:
    """Return the synchronisation z-score of a half-resolution fold for every (angle, zoom[angle, j]) map.

    Folding the image onto the tile through a map M samples the image's spectrum
    at the tile's frequencies moved by M^-T, so one zero-padded FFT of the image
    (``spectrum``, from :func:`_padded_spectrum`) serves every map: each costs a
    gather and a 64x64 inverse FFT instead of a resampling of the image.
    """
    import scipy.fft

    tile = _TILE // 2
    rows, cols, freqs, sync = _sync_frequencies(key)
    bins = spectrum.shape[0] / tile
    c, s = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    step = (bins / zooms)[:, :, None]
    ky, kx = freqs[0][None, None, :], freqs[1][None, None, :]
    # M = zoom [[c, -s a], [s / a, c]], so M^-T = [[c, -s / a], [s a, c]] / zoom
    y = (step * (c * ky - s / aspect * kx)).astype(np.float32)
    x = (step * (s * aspect * ky + c * kx)).astype(np.float32)
    values = _bilinear(spectrum, y, x) * sync
    count = angles.size * zooms.shape[1]
    folded = np.zeros((count, tile, tile // 2 + 1), np.complex64)
    folded[:, rows, cols] = values.reshape(count, -1)
    score = scipy.fft.irfft2(folded, s=(tile, tile)).reshape(count, -1)
    z = (score.max(axis=1) - score.mean(axis=1)) / (score.std(axis=1) + 1e-12)
    return z.reshape(angles.size, zooms.shape[1])


def _turn_candidates(half: np.ndarray, key: bytes, aspect: float, count: int) -> list[np.ndarray]:
    """Return up to ``count`` maps (2x2) of a straightened picture: turned, cropped to the same aspect, maybe
    cropped further; best first. The coarse grid's best few are refined by a quarter step either way."""
    angles = np.radians(np.arange(*_ANGLES_DEG))
    extra = np.exp(np.arange(*_EXTRA_CROP))
    zooms = _straightening_zoom(angles, aspect)[:, None] * extra[None, :]
    spectrum = _padded_spectrum(half)
    z = _turn_scores(spectrum, key, angles, zooms, aspect)
    picked: list[tuple[int, int]] = []
    for flat in np.argsort(z, axis=None)[::-1]:
        ia, iz = divmod(int(flat), extra.size)
        if all(abs(ia - a) > 2 or abs(iz - b) > 2 for a, b in picked):
            picked.append((ia, iz))
            if len(picked) == count:
                break
    maps = []
    half_angle, half_zoom = math.radians(_ANGLES_DEG[2]) / 2, _EXTRA_CROP[2] / 2
    for ia, iz in picked:
        near_angles = angles[ia] + half_angle * np.array([-1.0, 0.0, 1.0])
        near_zooms = zooms[ia, iz] * np.exp(half_zoom * np.array([[-1.0, 0.0, 1.0]] * 3))
        local = _turn_scores(spectrum, key, near_angles, near_zooms, aspect)
        fa, fz = divmod(int(np.argmax(local)), 3)
        maps.append(_lattice_matrix(float(near_angles[fa]), float(near_zooms[fa, fz]), aspect))
    return maps


def _sync_z(half: np.ndarray, matrix: np.ndarray, key: bytes) -> float:
    """The keyed synchronisation peak (z-score) of a half-resolution fold through ``matrix``, best of 8 orientations."""
    tile = _TILE // 2
    folded = np.stack(_orientations(_fold_affine(half, matrix, tile)))
    peaks = np.fft.irfft2(np.fft.rfft2(folded) * _reduced_sync_spectrum(key, 2), s=(tile, tile)).reshape(8, -1)
    return float(((peaks.max(axis=1) - peaks.mean(axis=1)) / (peaks.std(axis=1) + 1e-12)).max())


def _lattice_candidates(white: np.ndarray, key: bytes, aspect: float, count: int) -> list[np.ndarray]:
    """Return up to ``count`` embedding-to-detector maps (2x2), most likely first.

    Every angle within ``_ANGLES_DEG`` in 0.5 degree steps and every zoom in 1 %
    steps is scored on the autocorrelation (which needs no key). Its best
    ``_COMB_SHORTLIST`` are ranked by the keyed synchronisation peak of a
    half-resolution fold (the autocorrelation sees the mark's energy squared, the
    synchronisation peak its amplitude: far less noise on a faint mark), and the
    best ``count`` refined by that peak in quarter steps. A map is right up to a
    quarter turn or a flip (the lattice is square); the decoder tries the eight.
    """
    angles = np.radians(np.arange(*_ANGLES_DEG))
    scales = np.exp(np.arange(math.log(_SCALES[0]), math.log(_SCALES[1]), _SCALES[2]))
    score = _comb(_autocorrelation(white, 1.2), angles, scales, aspect)
    found: list[tuple[int, int]] = []
    for flat in np.argsort(score, axis=None)[::-1]:
        ia, iscale = divmod(int(flat), scales.size)
        if all(abs(ia - a) > 2 or abs(iscale - b) > 2 for a, b in found):
            found.append((ia, iscale))
            if len(found) == _COMB_SHORTLIST:
                break
    half = _reduce(white, 2)
    ranked = sorted(
        ((_sync_z(half, _lattice_matrix(angles[a], scales[b], aspect), key), angles[a], scales[b]) for a, b in found),
        key=lambda entry: -entry[0],
    )
    maps = []
    step_angle, step_scale = math.radians(_ANGLES_DEG[2]) / 2, _SCALES[2] / 2
    for z, angle, scale in ranked[:count]:
        # half a grid step either way, one parameter at a time
        best = (z, angle, scale)
        for da, ds in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            trial = (angle + da * step_angle, scale * math.exp(ds * step_scale))
            best = max(best, (_sync_z(half, _lattice_matrix(*trial, aspect), key), *trial))
        maps.append(_lattice_matrix(best[1], best[2], aspect))
    return maps


def _fold_affine(white: np.ndarray, matrix: np.ndarray, tile: int = _TILE) -> np.ndarray:
    """Fold the whitened image onto one tile through the embedding-to-detector map ``matrix`` (2x2).

    The image is resampled (Pillow, bilinear) onto the embedding's working frame,
    where the lattice is square again, and folded there; what falls outside the
    received image is zero. ``tile`` is the tile in pixels: a reduced image folds
    onto a reduced tile through the same map.
    """
    height, width = white.shape
    inverse = np.linalg.inv(matrix)
    corners = inverse @ np.array([[0, 0, height, height], [0, width, 0, width]], np.float64)
    low, high = corners.min(axis=1), corners.max(axis=1)
    rows, cols = (math.ceil(float(v)) for v in high - low)
    # Pillow asks, for each output pixel (x, y), which input pixel (x', y') it comes from
    (m_yy, m_yx), (m_xy, m_xx) = matrix
    shift_y, shift_x = matrix @ low
    data = (m_xx, m_xy, shift_x, m_yx, m_yy, shift_y)
    plane = Image.fromarray(np.ascontiguousarray(white, dtype=np.float32))
    framed = np.asarray(plane.transform((cols, rows), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR))
    return _fold(framed, float(tile), float(tile), tile)


def _orientations(tile: np.ndarray) -> list[np.ndarray]:
    """The eight quarter turns and flips of a folded tile (the lattice cannot tell them apart)."""
    return [np.ascontiguousarray(np.rot90(t, k)) for t in (tile, tile.T) for k in range(4)]


def _gauss_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def detect(image: np.ndarray, key: bytes) -> ImageMarkResult:
    """Look for a mark made with ``key`` in ``image`` (HxW, HxWx3 or HxWx4 uint8).

    Returns an :class:`ImageMarkResult`; ``found`` is True only when the keyed
    check bits match. Images smaller than MIN_SIDE pixels a side give found=False.
    Raises EmberError only for inputs that are not 8-bit grey, RGB or RGBA images.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise EmberError("The image to check must be 8-bit pixels (a uint8 array).")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise EmberError(f"The image to check has an unexpected shape {image.shape}; expected grey, RGB or RGBA.")
    nothing = ImageMarkResult(False, None, 1.0, 0.0, None)
    if min(image.shape[:2]) < MIN_SIDE:
        return nothing
    pixels = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    key = bytes(key)
    layout = _layout(key)
    white = _whiten(_resize(_luma(pixels), (_WORK, _WORK)))

    sync_spec = np.conj(np.fft.rfft2(np.kron(layout.sync, np.ones((_CHIP, _CHIP), np.float32))))
    best_z, attempts = -math.inf, 0
    aspect = pixels.shape[1] / pixels.shape[0]

    def sync_peak(folded: np.ndarray) -> tuple[float, int, np.ndarray]:
        matched = _matched_tile(folded)
        score = np.fft.irfft2(matched * sync_spec, s=(_TILE, _TILE))
        peak = int(np.argmax(score))
        return float((score.flat[peak] - score.mean()) / (score.std() + 1e-12)), peak, matched

    def decode(folded: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        nonlocal best_z
        z, peak, matched = sync_peak(folded)
        best_z = max(best_z, z)
        dy, dx = divmod(peak, _TILE)
        chip_values = _chip_values(matched, dy, dx)[layout.payload_chips] * layout.payload_sign
        soft = np.bincount(layout.payload_bit, weights=chip_values, minlength=_CODED_BITS)
        bits, fit = _viterbi(soft / (float(np.median(np.abs(soft))) + 1e-12))
        return fit, bits, soft

    def candidates():
        # not cropped: any resize lands here, and so does a quarter turn or a flip (in one of eight orientations)
        yield decode(max(_orientations(_fold(white, float(_TILE), float(_TILE))), key=lambda tile: sync_peak(tile)[0]))
        turnable = _TURN_ASPECTS[0] <= aspect <= _TURN_ASPECTS[1]
        for matrix in _turn_candidates(_reduce(white, 2), key, aspect, _TURN_ATTEMPTS) if turnable else []:
            yield decode(_fold_affine(white, matrix))  # straightened: turned a little and cropped
        for period_x, period_y in _candidate_periods(white, key, _PERIOD_ATTEMPTS):
            # the synchronisation peak locates the period to about 0.5 %; the code word's fit picks the
            # best of a finer neighbourhood without spending check-bit tests (unless the period fits no
            # code word at all, as on an unmarked picture: then its neighbours would not either)
            found = decode(_fold(white, period_x, period_y))
            if found[0] >= _NUDGE_FIT:
                nudged = (
                    decode(_fold(white, period_x * (1 + ex), period_y * (1 + ey)))
                    for ex in _NUDGES
                    for ey in _NUDGES
                    if ex or ey
                )
                found = max(found, *nudged, key=lambda decoded: decoded[0])
            yield found
        for matrix in _lattice_candidates(white, key, aspect, _LATTICE_ATTEMPTS) if turnable else []:
            # turned, flipped or zoomed: the orientation with the strongest synchronisation peak is decoded
            yield decode(max(_orientations(_fold_affine(white, matrix)), key=lambda tile: sync_peak(tile)[0]))

    for _, bits, soft in candidates():
        word = int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")
        payload = word & ((1 << PAYLOAD_BITS) - 1)
        attempts += 1
        if word >> PAYLOAD_BITS == _mac(payload, key):
            p_value = min(1.0, attempts * 2.0**-CHECK_BITS)
            errors = int(np.count_nonzero((soft > 0) != _encode(bits).astype(bool)))
            return ImageMarkResult(True, payload, p_value, 1.0 - p_value, errors)
    # nothing decoded: how surprising is the best synchronisation peak among all offsets and scales tried?
    periods = round((_PERIOD_RANGE[1] - _PERIOD_RANGE[0]) / 0.01 + 1) ** 2
    hypotheses = _TILE * _TILE * (8 + _TURN_ATTEMPTS + periods + 8 * _LATTICE_ATTEMPTS)
    p_value = min(1.0, hypotheses * _gauss_sf(best_z))
    return ImageMarkResult(False, None, p_value, 1.0 - p_value, None)
