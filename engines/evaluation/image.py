"""Evaluate an image model on one prompt: N images through the Studio, their diversity, proxies, speed.

Diversity: the mean pairwise distance between the images on two fixed features (1 - SSIM of the luma
at 64x64, and the L1 distance of colour histograms): proxies, 0 for copies. No-reference proxies per
image: sharpness, colourfulness, exposure (see :mod:`engines.evaluation.metrics`), and the safety
filter's score for it (the image classifier's, from the output's record). Image-prompt alignment: the
CLIP score of each image against the prompt (:mod:`engines.evaluation.clip`, in the Studio's engine
process), a proxy, when a CLIP model is installed; none ships with Ember, so without one the report says
it is not measured and names the catalog entry to download. Speed: seconds per image and per denoising
step, as min, median and max.
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

CLIP_ENTRY = "CLIP ViT-B/32"  # the catalog entry's name (resources/catalog.json, kind "clip")
ALIGNMENT = (
    "not measured: no image-prompt model (CLIP) is installed, and none ships with Ember; "
    f"download '{CLIP_ENTRY}' in Models to measure it"
)
CLIP_SCORE = "CLIP score (alignment proxy)"
CLIP_COSINE = "CLIP cosine (alignment proxy)"


@dataclass(frozen=True)
class AlignmentModel:
    """The CLIP model that scores images against their prompt: where it is, and its name for a person."""

    path: str
    name: str


def find_clip_model(studio: Any) -> AlignmentModel | None:
    """The CLIP model the model library finds (downloaded from the catalog, imported, or in the Hugging Face
    cache), the catalog's entries first in catalog order; None when there is none."""
    from engines.models.catalog import CatalogError, load_catalog
    from engines.models.library import ModelLibrary

    try:
        entries = [e for e in load_catalog() if e.kind == "clip"]
    except CatalogError:
        entries = []
    names = {e.id: e.name for e in entries}
    order = {e.id: i for i, e in enumerate(entries)}
    library = ModelLibrary(studio.db)
    # The recorded ones (downloaded in Models, imported) first: a scan of every model folder is slower.
    found = [m for m in library.installed() if m.kind == "clip" and Path(m.path).exists()]
    found = found or [m for m in library.discover() if m.kind == "clip"]
    if not found:
        return None
    best = min(found, key=lambda m: order.get(m.catalog_id or "", len(order)))
    return AlignmentModel(best.path, names.get(best.catalog_id or "", f"CLIP ({best.name})"))


def clip_scores(studio: Any, model: AlignmentModel, paths: list[str], prompt: str) -> Any:
    """The CLIP scores (:class:`engines.evaluation.clip.ClipScores`) of the images at ``paths`` against
    ``prompt``, scored in the Studio's "cpu" engine process. Raises EmberError (ModelFileError for a
    damaged model) when the model cannot score them."""
    from engines.evaluation.clip import ClipOptions, ClipRequest

    request = ClipRequest(tuple(paths), prompt)
    return studio.engines.call("cpu", ClipOptions(model.path), "score", request, what="the CLIP model")


@dataclass(frozen=True)
class ImageEvaluation:
    """What :func:`evaluate_image` measured; ``spread`` holds (min, median, max) of each per-image figure."""

    model: str
    prompt: str
    paths: tuple[str, ...]
    distances: dict[str, float]
    spread: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    alignment: str = ALIGNMENT
    alignment_model: str = ""  # the CLIP model that scored the images; "" when none did
    clip_cosines: tuple[float, ...] = ()  # per image, in the order of ``paths``

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
    clip: AlignmentModel | str | None = None,
) -> ImageEvaluation:
    """Make ``samples`` images of ``prompt`` (seeds 1..N, one job each) and measure them.

    ``clip`` is the CLIP model that scores them against the prompt (a path, or one :func:`find_clip_model`
    found); None looks for the installed one, "" says there is none. Raises EmberError when a job fails or
    an image is withheld (its reason); a CLIP model that cannot score them leaves the alignment unmeasured,
    with the reason.
    """
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
    model = find_clip_model(studio) if clip is None else (clip or None)
    if isinstance(model, str):
        model = AlignmentModel(model, f"CLIP ({Path(model).name})")
    alignment, cosines = ALIGNMENT, ()
    if model is not None:
        try:
            scored = clip_scores(studio, model, paths, prompt)
        except EmberError as exc:
            alignment = f"not measured: the CLIP model '{model.name}' could not score the images ({exc})"
        else:
            cosines = scored.cosines
            spreads[CLIP_SCORE] = spread(scored.scores)
            spreads[CLIP_COSINE] = spread(cosines)
            alignment = (
                f"{model.name} score: a proxy of prompt alignment (CLIPScore: 100 x the cosine of the image's "
                "and the prompt's CLIP embeddings, floored at 0)"
            )
    spreads["seconds per image (first: load)"] = spread(seconds)
    spreads["seconds per step"] = spread(per_step)
    return ImageEvaluation(
        Path(folder).name,
        prompt,
        tuple(paths),
        metrics.pairwise_distances(images),
        spreads,
        alignment=alignment,
        alignment_model=model.name if cosines else "",
        clip_cosines=tuple(cosines),
    )
