"""Evaluate an image model on one prompt: N images through the Studio, their diversity, proxies, speed.

Diversity: the mean pairwise distance between the images on two fixed features (1 - SSIM of the luma
at 64x64, and the L1 distance of colour histograms): proxies, 0 for copies. No-reference proxies per
image: sharpness, colourfulness, exposure (see :mod:`engines.evaluation.metrics`), and the safety
filter's score for it (the image classifier's, from the output's record). No image-prompt alignment:
no CLIP or captioning model ships in a package, and the report says so. Speed: seconds per image and
per denoising step, as min, median and max.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engines.errors import EmberError
from engines.evaluation import metrics

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
        lines = [
            f"evaluate image: {self.model} on {len(self.paths)} images of one prompt",
            f"  prompt: {self.prompt[:80]}",
            f"  prompt alignment: {self.alignment}",
            "",
            f"{'figure':<40} {'value':>10}  {'min':>9} {'median':>9} {'max':>9}",
            f"{'pairwise 1 - luma SSIM (diversity)':<40} {self.distances['luma_ssim_distance']:10.3f}",
            f"{'pairwise histogram L1 (diversity)':<40} {self.distances['histogram_l1']:10.3f}",
        ]
        for name, (low, mid, high) in self.spread.items():
            lines.append(f"{name:<40} {mid:10.3f}  {low:9.3f} {mid:9.3f} {high:9.3f}")
        return "\n".join(lines)


def _spread(values: list[float]) -> tuple[float, float, float]:
    return (min(values), statistics.median(values), max(values))


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
    from engines.jobs import EventKind

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
        final = studio.submit(request).wait()
        if final is None or final.kind is not EventKind.RESULT:
            reason = getattr(final.data, "reason", None) if final is not None else None
            raise EmberError(f"Image {seed} did not finish: {reason or (final.data if final else 'timed out')}")
        result = final.data
        if result.withheld or not result.paths:
            raise EmberError(f"Image {seed} was withheld by the safety filter: {'; '.join(result.withheld)}")
        elapsed = time.monotonic() - started
        seconds.append(elapsed)
        used = int(result.delivered[0].output.parameters.get("steps", steps or 1))
        per_step.append(elapsed / max(used, 1))
        paths.append(result.paths[0])
        scores = [d.score for d in result.delivered[0].record.decisions if d.stage == "safety" and d.score is not None]
        if scores:
            safety.append(max(scores))
    images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    spread = {
        "sharpness (Laplacian variance)": _spread([metrics.sharpness(i) for i in images]),
        "colourfulness (Hasler-Suesstrunk)": _spread([metrics.colourfulness(i) for i in images]),
        "mean luma (0-255)": _spread([metrics.exposure(i)["mean_luma"] for i in images]),
        "blown highlights (share)": _spread([metrics.exposure(i)["blown"] for i in images]),
        "crushed shadows (share)": _spread([metrics.exposure(i)["crushed"] for i in images]),
    }
    if safety:
        spread["safety score (image classifier)"] = _spread(safety)
    spread["seconds per image (first: load)"] = _spread(seconds)
    spread["seconds per step"] = _spread(per_step)
    return ImageEvaluation(Path(folder).name, prompt, tuple(paths), metrics.pairwise_distances(images), spread)
