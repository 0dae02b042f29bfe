"""Evaluate an image model on one prompt: N images through the Studio, their diversity, proxies, speed.

Diversity: the mean pairwise distance between the images on two fixed features (1 - SSIM of the luma
at 64x64, and the L1 distance of colour histograms): proxies, 0 for copies. No-reference proxies per
image: sharpness, colourfulness, exposure (see :mod:`engines.evaluation.metrics`), and the safety
filter's score for it (the image classifier's, from the output's record). No image-prompt alignment:
no CLIP or captioning model ships in a package, and the report says so. Speed: seconds per image and
per denoising step, as min, median and max.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engines.errors import EmberError
from engines.evaluation import metrics
from engines.evaluation.runs import finished, spread, table

ALIGNMENT = "not measured: no image-prompt model (CLIP, a captioner) ships in a package"


@dataclass(frozen=True)
class ImageEvaluation:
    """What :func:`evaluate_image` measured; ``spread`` holds (min, median, max) of each per-image figure."""

    model: str
    prompt: str
    paths: tuple[str, ...]
    distances: dict[str, float]
    spread: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    alignment: str = ALIGNMENT

    def table(self) -> str:
        heading = [
            f"evaluate image: {self.model} on {len(self.paths)} images of one prompt",
            f"  prompt: {self.prompt[:80]}",
            f"  prompt alignment: {self.alignment}",
        ]
        single = {
            "pairwise 1 - luma SSIM (diversity)": self.distances["luma_ssim_distance"],
            "pairwise histogram L1 (diversity)": self.distances["histogram_l1"],
        }
        return table(heading, single, self.spread)


def evaluate_image(
    studio: Any,
    folder: str,
    prompt: str,
    *,
    samples: int = 4,
    steps: int | None = None,
    size: int = 512,
) -> ImageEvaluation:
    """Make ``samples`` images of ``prompt`` (seeds 1..N, one job each) and measure them. Raises EmberError
    when a job fails or an image is withheld (its reason)."""
    from engines.diffusion.requests import DiffusionOptions, ImageRequest

    if samples < 2:
        raise EmberError("Evaluating diversity needs at least two images.")
    options = DiffusionOptions(folder)
    paths: list[str] = []
    seconds: list[float] = []
    per_step: list[float] = []
    safety: list[float] = []
    for seed in range(1, samples + 1):
        request = ImageRequest(options, prompt, seed=seed, steps=steps, width=size, height=size, preview=False)
        started = time.monotonic()
        result = finished(studio, request, f"Image {seed}")
        elapsed = time.monotonic() - started
        seconds.append(elapsed)
        used = int(result.delivered[0].output.parameters.get("steps", steps or 1))
        per_step.append(elapsed / max(used, 1))
        paths.append(result.paths[0])
        scores = [d.score for d in result.delivered[0].record.decisions if d.stage == "safety" and d.score is not None]
        if scores:
            safety.append(max(scores))
    images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    spreads = {
        "sharpness (Laplacian variance)": spread([metrics.sharpness(i) for i in images]),
        "colourfulness (Hasler-Suesstrunk)": spread([metrics.colourfulness(i) for i in images]),
        "mean luma (0-255)": spread([metrics.exposure(i)["mean_luma"] for i in images]),
        "blown highlights (share)": spread([metrics.exposure(i)["blown"] for i in images]),
        "crushed shadows (share)": spread([metrics.exposure(i)["crushed"] for i in images]),
    }
    if safety:
        spreads["safety score (image classifier)"] = spread(safety)
    spreads["seconds per image (first: load)"] = spread(seconds)
    spreads["seconds per step"] = spread(per_step)
    return ImageEvaluation(Path(folder).name, prompt, tuple(paths), metrics.pairwise_distances(images), spreads)
