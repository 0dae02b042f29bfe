"""Requests and results of the diffusion engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# The scheduler names a person picks (their one list is engines/diffusion/schedulers); "" means
# the one the model folder's scheduler_config.json names.
from engines.diffusion.schedulers import SCHEDULERS


@dataclass(frozen=True)
class DiffusionOptions:
    """How a diffusers-ONNX folder is loaded; two requests with equal options share one loaded model."""

    folder: str
    device: Literal["auto", "cpu", "gpu"] = "auto"
    threads: int | None = None  # None: chosen from the free cores


@dataclass(frozen=True)
class ImageRequest:
    """Text-to-image, or image-to-image when ``init_image`` is given.

    ``seed`` None draws a fresh seed (recorded with each image); image i of a batch uses
    ``seed + i``. ``guidance_scale`` and ``steps`` None take the model's defaults (1 step
    and no guidance for Turbo models, 4 steps for LCM, 25 and 7.5 otherwise).
    ``init_image`` is a path or an HxWx3 uint8 array.
    """

    model: DiffusionOptions
    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    width: int = 512
    height: int = 512
    batch_size: int = 1
    scheduler: str = ""
    init_image: str | np.ndarray | None = field(default=None, compare=False)
    strength: float = 0.75
    preview: bool = True
    # Tests and benchmarks pass the initial latents (Nx4xH/8xW/8 float32) to compare with diffusers.
    latents: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        checks = [
            (self.width % 8 == 0 and self.height % 8 == 0, "width and height must be multiples of 8"),
            (64 <= self.width <= 4096 and 64 <= self.height <= 4096, "width and height must be from 64 to 4096"),
            (1 <= self.batch_size <= 16, "batch size must be from 1 to 16"),
            (self.steps is None or 1 <= self.steps <= 500, "steps must be from 1 to 500"),
            (self.guidance_scale is None or 0.0 <= self.guidance_scale <= 50.0, "guidance must be from 0 to 50"),
            (0.0 < self.strength <= 1.0, "strength must be above 0 and at most 1"),
            (self.seed is None or 0 <= self.seed < 2**32, "the seed must be from 0 to 4294967295"),
            (self.scheduler in ("", *SCHEDULERS), f"the scheduler must be one of {', '.join(SCHEDULERS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid image setting: {message}.")


@dataclass(frozen=True, eq=False)
class GeneratedImages:
    """What the engine returns: one HxWx3 uint8 array per image, and what made them.

    ``parameters[i]`` holds the settings of image i as they were used (defaults resolved,
    its own seed), for its file's metadata and for re-running it.
    """

    images: list[np.ndarray]
    parameters: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ImageBatchResult:
    """What an image job ends with: the images that passed the pipeline, saved, and those withheld.

    ``delivered[i].output`` is an :class:`engines.media.ImageOutput` (``.parameters`` re-runs it),
    ``delivered[i].record`` its record; ``paths[i]`` is where it was saved (PNG with its
    provenance). ``withheld`` holds one reason per image the safety filter kept back.
    """

    delivered: tuple[Any, ...]
    paths: tuple[str, ...]
    withheld: tuple[str, ...] = ()
