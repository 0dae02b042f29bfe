"""Cheap live previews: latents to RGB with a fixed linear map, no VAE.

Each latent channel contributes a fixed amount to red, green and blue. The factors are the
well-known least-squares fits of the VAE's decodes (as ComfyUI and A1111 use them for their
"latent2rgb" previews): a blurry, small picture of where the image is going, in well under a
millisecond.
"""

from __future__ import annotations

import numpy as np

# Rows: latent channels 0-3; columns: R, G, B. Output in [-1, 1] before mapping to [0, 1].
SD_FACTORS = np.array(
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ],
    dtype=np.float32,
)
SD_BIAS = np.zeros(3, dtype=np.float32)
SDXL_FACTORS = np.array(
    [
        [0.3651, 0.4232, 0.4341],
        [-0.2533, -0.0042, 0.1068],
        [0.1076, 0.1111, -0.0362],
        [-0.3165, -0.2492, -0.2188],
    ],
    dtype=np.float32,
)
SDXL_BIAS = np.array([0.1084, -0.0175, -0.0011], dtype=np.float32)


def latent_preview(latents: np.ndarray, *, xl: bool = False, max_side: int = 256) -> np.ndarray | None:
    """Return an HxWx3 uint8 preview of one image's 4xhxw latents (None for other channel counts).

    The latent grid (1/8 of the image's size) is enlarged by whole pixels to at most ``max_side``.
    """
    if latents.ndim != 3 or latents.shape[0] != 4:
        return None
    factors, bias = (SDXL_FACTORS, SDXL_BIAS) if xl else (SD_FACTORS, SD_BIAS)
    rgb = np.tensordot(latents.astype(np.float32), factors, axes=([0], [0])) + bias
    pixels = (np.clip((rgb + 1.0) / 2.0, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    factor = max(1, max_side // max(pixels.shape[0], pixels.shape[1]))
    if factor > 1:
        pixels = np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)
    return pixels
