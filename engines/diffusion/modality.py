"""The image modality: ONNX diffusion folders (engines/diffusion/engine.py), described once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.diffusion.commands import CONVERT_COMMAND, IMAGE_BENCH, IMAGE_COMMAND
from engines.diffusion.requests import DiffusionOptions, ImageBatchResult, ImageRequest
from engines.host.wire import EngineContext, Ran
from engines.media import ImageOutput
from engines.modality import Finished, Modality, ModelKind
from engines.pipeline import Delivered


def make_engine(options: DiffusionOptions, context: EngineContext) -> Any:
    """A (not yet loaded) diffusion engine, or a remote server's (engines/remote); in the engine process.

    Raises ModelFileError for a bad folder.
    """
    from engines.remote import is_remote

    if is_remote(options.folder):
        from engines.remote.engine import RemoteImageEngine

        return RemoteImageEngine(options)
    from engines.diffusion.engine import DiffusionEngine

    return DiffusionEngine(options)


def prompt_texts(request: ImageRequest) -> list[str]:
    """The prompt (never the negative prompt, which only steers away from things)."""
    return [request.prompt] if request.prompt.strip() else []


def _split(request: ImageRequest, ran: Ran) -> list[Finished]:
    """One output a picture: image i carries its own settings and seed."""
    output, base = ran.output, ran.provenance
    assert base is not None
    timings = {k: float(v) for k, v in output.timings.items() if isinstance(v, (int, float))}
    finished: list[Finished] = []
    for index, (pixels, parameters) in enumerate(zip(output.images, output.parameters, strict=True)):
        settings = {**parameters, "made_on": base.settings.get("made_on")}
        provenance = replace(base, settings=settings, seed=parameters.get("seed", base.seed))
        finished.append((ImageOutput(pixels, dict(parameters), index=index), provenance, timings))
    return finished


def _sink(studio: Any, request: ImageRequest, delivered: list[Delivered], withheld: list[str]) -> ImageBatchResult:
    """Save the delivered images as PNGs (watermark, parameters, Content Credentials) in the outputs folder,
    each then kept in the library."""
    from engines.provenance.files import save_images

    paths = save_images(delivered)
    for item, path in zip(delivered, paths, strict=True):
        studio.library.add(item, path, kind="image", prompt=request.prompt, negative_prompt=request.negative_prompt)
    return ImageBatchResult(tuple(delivered), paths, tuple(withheld))


def _samples(models: Mapping[str, str]) -> tuple[Any, ...]:
    folder = str(Path(models["diffusion"]))
    return (ImageRequest(DiffusionOptions(folder), "a red cat", seed=3, steps=3, width=64, height=64, batch_size=2),)


IMAGE = Modality(
    name="image",
    title="image engine",
    requests=(ImageRequest,),
    options=DiffusionOptions,
    make_engine=make_engine,
    media="image",
    prompt_texts=prompt_texts,
    outputs=lambda request: request.batch_size,
    split=_split,
    sink=_sink,
    sample_requests=_samples,
    lost="try again, perhaps at a smaller size or batch.",
    commands=(IMAGE_COMMAND, CONVERT_COMMAND),
    benches=(IMAGE_BENCH,),
    kinds=(
        ModelKind(
            "diffusion",
            "Images",
            "onnx-diffusers",
            frozenset({"width", "height", "steps"}),
            frozenset({"width", "height", "steps"}),
            estimate="engines.models.fit:estimate_diffusion_model",
        ),
        ModelKind(
            "gan",
            "Images",
            "onnx",
            frozenset({"width", "height"}),
            frozenset({"width", "height"}),
            estimate="engines.models.fit:estimate_image_graph",
        ),
    ),
)
