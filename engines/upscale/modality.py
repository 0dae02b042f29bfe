"""The upscale modality: Real-ESRGAN-style ONNX upscalers run in tiles (engines/upscale/engine.py), described once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engines.host.wire import EngineContext, Ran
from engines.modality import Finished, Modality, ModelKind
from engines.pipeline import Delivered
from engines.upscale.commands import UPSCALE_BENCH, UPSCALE_COMMAND
from engines.upscale.requests import UpscaledImage, UpscaleOptions, UpscaleRequest, UpscaleResult


def make_engine(options: UpscaleOptions, context: EngineContext) -> Any:
    """A (not yet loaded) upscaler; in the engine process. Raises ModelFileError for an unknown model."""
    from engines.upscale.engine import UpscaleEngine

    return UpscaleEngine(options)


def prompt_texts(request: UpscaleRequest) -> list[str]:
    """An upscale has no text a person wrote: the image itself is checked when it comes out."""
    return []


def _split(request: UpscaleRequest, ran: Ran) -> list[Finished]:
    output, provenance = ran.output, ran.provenance
    assert provenance is not None
    image = UpscaledImage(output.pixels, dict(output.parameters), alpha=output.alpha)
    return [(image, provenance, dict(output.timings))]


def _sink(studio: Any, request: UpscaleRequest, delivered: list[Delivered], withheld: list[str]) -> UpscaleResult:
    """Save the delivered image as a PNG (watermark, parameters, Content Credentials) in the outputs folder and
    keep it in the library, linked to its source (whose prompt it is found by, when the library has it)."""
    from engines.provenance.files import save_images

    paths = save_images(delivered)
    for item, path in zip(delivered, paths, strict=True):
        source_id = request.source_output_id or str(item.record.provenance.settings.get("source_output_id") or "")
        source = studio.library.get(source_id) if source_id else None
        studio.library.add(
            item,
            path,
            kind="upscale",
            prompt=source.prompt if source else "",
            negative_prompt=source.negative_prompt if source else "",
            source_output_id=source_id,
        )
    return UpscaleResult(tuple(delivered), paths, tuple(withheld))


def _samples(models: Mapping[str, str]) -> tuple[Any, ...]:
    # A small gradient picture: every upscaled image must pass the image check like a generated one.
    y, x = np.mgrid[0:40, 0:48]
    pixels = np.stack([x * 5, y * 6, (x + y) * 3], axis=-1).astype(np.uint8)
    return (UpscaleRequest(UpscaleOptions("animevideo-x2", device="cpu"), pixels, scale=2, tile_size=32, overlap=8),)


UPSCALE = Modality(
    name="upscale",
    title="upscaler",
    requests=(UpscaleRequest,),
    options=UpscaleOptions,
    make_engine=make_engine,
    media="image",
    prompt_texts=prompt_texts,
    split=_split,
    sink=_sink,
    sample_requests=_samples,
    lost="the source image is untouched; try again, perhaps with a smaller tile size.",
    commands=(UPSCALE_COMMAND,),
    benches=(UPSCALE_BENCH,),
    kinds=(
        ModelKind(
            "upscaler",
            "Upscale",
            "onnx",
            frozenset({"scale", "tile"}),
            frozenset({"scale"}),
            estimate="engines.models.fit:estimate_image_graph",
        ),
    ),
)
