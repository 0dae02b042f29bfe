"""Decoding large latents in overlapping tiles, blended so that no seam shows.

The VAE decoder's memory grows with the image's area (a 2048x2048 decode holds several
gigabytes of activations), so large images are decoded a tile at a time. Neighbouring tiles
overlap; in the overlap each tile's weight ramps linearly from the tile's edge (where the
decoder saw the least context) to its interior, and the blended sum is divided by the summed
weights. The result is close to a whole decode but not equal: the decoder's group norms and
mid-block attention see one tile instead of the whole image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Return the start offsets of tiles of ``tile`` covering ``size`` with at least ``overlap`` shared."""
    if size <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _edge_weights(length: int, ramp: int, *, before: bool, after: bool) -> np.ndarray:
    """Weights along one axis of a tile: 1 inside, a linear ramp over ``ramp`` where a neighbour overlaps."""
    weights = np.ones(length, dtype=np.float32)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        rise = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        if before:
            weights[:ramp] = rise
        if after:
            weights[length - ramp :] = rise[::-1]
    return weights


def decode_tiled(
    decode: Callable[[np.ndarray], np.ndarray],
    latents: np.ndarray,
    *,
    tile: int = 64,
    overlap: int = 16,
    scale: int = 8,
    between_tiles: Callable[[], None] | None = None,
) -> np.ndarray:
    """Return ``decode(latents)`` computed tile by tile and blended.

    ``latents`` is 1x4xhxw (one image); ``tile`` and ``overlap`` are in latent pixels, and
    ``decode`` turns a 1x4xTxT latent tile into a 1x3x(T*scale)x(T*scale) image tile.
    ``between_tiles`` runs before each tile (a cancel check).
    """
    _, _, height, width = latents.shape
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out: np.ndarray | None = None
    weight = np.zeros((height * scale, width * scale), dtype=np.float32)
    for y0 in ys:
        for x0 in xs:
            if between_tiles is not None:
                between_tiles()
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            part = decode(latents[:, :, y0:y1, x0:x1])
            if out is None:
                out = np.zeros((1, part.shape[1], height * scale, width * scale), dtype=np.float32)
            wy = _edge_weights(part.shape[2], overlap * scale, before=y0 > 0, after=y1 < height)
            wx = _edge_weights(part.shape[3], overlap * scale, before=x0 > 0, after=x1 < width)
            w = wy[:, None] * wx[None, :]
            ys_px, xs_px = slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale)
            out[:, :, ys_px, xs_px] += part * w
            weight[ys_px, xs_px] += w
    assert out is not None
    return out / weight
