"""Requests and results of the upscaler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from engines.media import ImageOutput

SCALES = (2, 3, 4)


@dataclass(frozen=True)
class UpscaleOptions:
    """Which upscaler is loaded and where; two requests with equal options share one loaded graph.

    ``model`` is an embedded upscaler's id (engines/upscale/models.py: "animevideo-x4", "x4plus", ...)
    or the path of an ONNX upscaler (or of an ncnn .param with its .bin beside it).
    """

    model: str = "animevideo-x4"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    threads: int | None = None  # None: chosen from the free cores


@dataclass(frozen=True)
class UpscaleRequest:
    """Make ``image`` ``scale`` times larger a side.

    ``image`` is a file path or an HxWx3 (RGB) / HxWx4 (RGBA) uint8 array. The model runs on
    tiles of ``tile_size`` pixels that share ``overlap`` pixels with their neighbours, blended
    with linear ramps; each tile also reads ``context`` pixels around it (mirrored at the image's
    edges), as far as the network looks, so that its core comes out as in a single pass. A model
    whose own scale differs from ``scale`` (x4plus asked for x2) runs at its scale and the result
    is resized (Lanczos).
    ``source_output_id`` is the Ember record of the source image when the caller knows it; a
    PNG that Ember saved carries it in its metadata, which the engine reads otherwise.
    """

    model: UpscaleOptions
    image: str | np.ndarray = field(compare=False, repr=False)
    scale: int = 4
    tile_size: int = 192
    overlap: int = 16
    context: int | None = None  # pixels read around each tile; None: the model's own reach (16 to 64)
    source_output_id: str = ""
    source_name: str = ""  # how the person knows the source ("astronaut.png"), for the record

    def __post_init__(self) -> None:
        checks = [
            (self.scale in SCALES, f"the scale must be one of {', '.join(map(str, SCALES))}"),
            (32 <= self.tile_size <= 2048, "the tile size must be from 32 to 2048 pixels"),
            (0 <= self.overlap <= self.tile_size // 4, "the overlap must be from 0 to a quarter of the tile size"),
            (self.context is None or 0 <= self.context <= 256, "the context must be from 0 to 256 pixels"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid upscale setting: {message}.")
        if isinstance(self.image, np.ndarray):
            if self.image.dtype != np.uint8 or self.image.ndim != 3 or self.image.shape[2] not in (3, 4):
                raise ValueError("Invalid upscale setting: the pixels must be an HxWx3 or HxWx4 uint8 array.")


@dataclass(frozen=True, eq=False)
class UpscaledImage(ImageOutput):
    """An upscaled image: ``pixels`` RGB as every image, and ``alpha`` (HxW uint8) when the source had one.

    The safety check and the watermark see the RGB pixels; the alpha channel travels beside
    them and is written into the PNG (or WebP).
    """

    alpha: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Upscaled:
    """What the engine returns: the image (RGB, and alpha if any), what made it and how long it took."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    parameters: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class UpscaleResult:
    """What an upscale job ends with: the image that passed the pipeline and where it was saved.

    ``delivered`` is empty and ``withheld`` holds the reason when the safety filter kept it back.
    ``delivered[0].record.provenance.settings`` links to the source: ``source_output_id`` (its
    Ember record) or ``source_sha256`` (the file's hash) when the source is not Ember's.
    """

    delivered: tuple[Any, ...]
    paths: tuple[str, ...]
    withheld: tuple[str, ...] = ()
