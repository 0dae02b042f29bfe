"""The image engine: diffusers-ONNX folders (SD 1.x/2.x, SD-Turbo, LCM, SDXL) through onnxruntime.

No torch at run time: the text encoders, UNet and VAE are ONNX graphs and everything between
them is numpy (engines/diffusion/pipeline.py). The cancel token is checked before every
denoising step and between VAE tiles; progress reports every step, with a cheap preview of
each image when someone shows previews.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import time
from typing import Any

import numpy as np

from engines.diffusion.pipeline import DiffusionPipeline, ModelFolder, read_model_folder
from engines.diffusion.requests import DiffusionOptions, GeneratedImages, ImageRequest
from engines.diffusion.schedulers import scheduler_for_config
from engines.engine import Progress
from engines.errors import ModelFileError, OutOfMemoryError
from engines.hardware import available_ram_bytes, default_threads
from engines.jobs import CancelToken
from engines.models.hashes import file_sha256
from engines.pipeline import Provenance
from engines.units import human_bytes


def cuda_usable() -> bool:
    """Whether onnxruntime here has the CUDA provider and the machine an NVIDIA driver to run it.

    onnxruntime-gpu lists its CUDA provider even where there is no GPU (and then falls back
    to the CPU with a warning), so the driver library is looked for too.
    """
    import ctypes

    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def _free_vram_bytes() -> int | None:
    """Free memory of GPU 0 from NVML, or None when it cannot be asked."""
    try:
        import pynvml  # optional (nvidia-ml-py)

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).free)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # not installed, no driver, no GPU: the check is skipped
        return None


class DiffusionEngine:
    """One diffusers-ONNX model folder, loaded for making images.

    Raises ModelFileError at construction when the folder is not a usable diffusers-ONNX
    folder (so a wrong pick is reported before anything loads).
    """

    kind = "image"

    def __init__(self, options: DiffusionOptions) -> None:
        self.options = options
        self.model: ModelFolder = read_model_folder(options.folder)
        self.threads = options.threads or default_threads()
        self.backend = "CPU"
        self.notes: list[str] = []
        self._pipeline: DiffusionPipeline | None = None
        self._sha256 = ""

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def pipeline(self) -> DiffusionPipeline:
        """The loaded pipeline (loading it first if needed)."""
        self.load()
        assert self._pipeline is not None
        return self._pipeline

    # -- the Engine protocol ---------------------------------------------------------------
    def memory_estimate(self, width: int = 512, height: int = 512, batch: int = 1, *, img2img: bool = False) -> int:
        """Return the bytes a run at this size and batch needs: graph files plus activations (see the pipeline)."""
        pipeline = self._pipeline or DiffusionPipeline(self.model.path, threads=self.threads)
        return pipeline.memory_estimate(width, height, batch, img2img=img2img)

    def load(self) -> None:
        """Load the text encoders, UNet and VAE decoder; on CUDA when asked for and possible.

        Raises ModelFileError for missing or damaged files.
        """
        if self._pipeline is not None:
            return
        wants_gpu = self.options.device in ("auto", "gpu")
        device = "cuda" if wants_gpu and cuda_usable() else "cpu"
        if self.options.device == "gpu" and device == "cpu":
            self.notes.append("No CUDA GPU is usable by onnxruntime here; the image runs on the CPU.")
        pipeline = DiffusionPipeline(self.model.path, device=device, threads=self.threads)
        try:
            pipeline.load()
        except Exception:
            pipeline.unload()
            raise
        self.backend = "CUDA" if pipeline.provider == "CUDAExecutionProvider" else "CPU"
        if device == "cuda" and self.backend == "CPU":
            self.notes.append("onnxruntime could not start its CUDA provider (see the log); the image runs on the CPU.")
        try:
            self._sha256 = file_sha256(self.model.path / "unet" / "model.onnx")
        except OSError as exc:
            pipeline.unload()
            raise ModelFileError(f"Ember cannot read the UNet of '{self.model.path}' ({exc}).") from None
        self._pipeline = pipeline

    @property
    def kernels(self) -> str:
        """The onnxruntime build and execution provider the images are computed with, as a record names them."""
        import onnxruntime as ort

        provider = self._pipeline.provider if self._pipeline is not None else "CPUExecutionProvider"
        return f"onnxruntime {ort.__version__} {provider}"

    def details(self) -> dict[str, Any]:
        """What the Studio may read of this engine when it runs in an engine process."""
        return {"threads": self.threads, "sha256": self._sha256, "kernels": self.kernels if self._pipeline else ""}

    def unload(self) -> None:
        """Free every graph."""
        if self._pipeline is not None:
            self._pipeline.unload()
            self._pipeline = None

    def unload_component(self, name: str) -> None:
        """Free one graph ("unet", "vae_decoder", "vae_encoder", "text_encoder", "text_encoder_2")."""
        if self._pipeline is not None:
            self._pipeline.unload_component(name)

    def check_fits(self, request: ImageRequest) -> None:
        """Raise OutOfMemoryError, before anything runs, when ``request`` will not fit in free memory."""
        img2img = request.init_image is not None
        need = self.memory_estimate(request.width, request.height, request.batch_size, img2img=img2img)
        loaded = self._pipeline.weights_bytes if self._pipeline is not None else 0
        if self.backend == "CUDA":
            vram = _free_vram_bytes()
            if vram is None:
                return
            free, where = vram + loaded, " of GPU memory"
        else:
            free, where = available_ram_bytes() + loaded, ""
        if need > free:
            raise OutOfMemoryError(
                f"A {request.width}x{request.height} image at batch {request.batch_size} needs about "
                f"{human_bytes(need, approximate=True)}; {human_bytes(free, approximate=True)}{where} is free. "
                "Lower the size or batch."
            )

    def defaults(self, request: ImageRequest) -> tuple[int, float, str]:
        """Return the steps, guidance scale and sampler ``request`` runs with (model defaults filled in)."""
        steps, guidance = self.model.defaults(request.strength if request.init_image is not None else None)
        sampler = request.scheduler or scheduler_for_config(self.model.scheduler_config)
        return (
            request.steps or steps,
            guidance if request.guidance_scale is None else request.guidance_scale,
            sampler,
        )

    def run(self, request: ImageRequest, progress: Progress, cancel: CancelToken) -> GeneratedImages:
        """Make ``request.batch_size`` images; image i from seed ``seed + i``.

        Raises OutOfMemoryError when the request will not fit (before the first step),
        Cancelled before the next step when cancelled, EmberError for bad inputs and
        ModelFileError for damaged model files.
        """
        self.load()
        for note in self.notes:
            progress.notice(note)
        self.notes.clear()
        self.check_fits(request)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        seeds = [(seed + i) % 2**32 for i in range(request.batch_size)]
        steps, guidance, sampler = self.defaults(request)
        started = time.perf_counter()
        out = self.pipeline(
            request.prompt,
            request.negative_prompt,
            width=request.width,
            height=request.height,
            steps=steps,
            guidance_scale=guidance,
            scheduler=sampler,
            seeds=seeds,
            init_image=request.init_image,
            strength=request.strength,
            latents=request.latents,
            progress=progress if request.preview else _NoPreviews(progress),
            cancel=cancel,
        )
        total = time.perf_counter() - started
        for note in out.notes:
            progress.notice(note)
        parameters = [self._parameters(request, out.sampler, out.steps, guidance, s, i) for i, s in enumerate(seeds)]
        timings: dict[str, float] = {"generation_s": total, "steps": float(len(out.step_s))}
        if out.step_s:
            timings["step_s_median"] = statistics.median(out.step_s)
            timings["denoise_s"] = sum(out.step_s)
        return GeneratedImages(out.images, parameters, timings)

    def _parameters(
        self, request: ImageRequest, sampler: str, steps: int, guidance: float, seed: int, index: int
    ) -> dict[str, Any]:
        parameters: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "steps": steps,
            "sampler": sampler,
            "guidance": guidance,
            "seed": seed,
            "width": request.width,
            "height": request.height,
            "model": self.name,
            "batch_index": index,
            "mode": "txt2img",
        }
        if request.init_image is not None:
            parameters["mode"] = "img2img"
            parameters["strength"] = request.strength
            if not isinstance(request.init_image, np.ndarray):
                parameters["init_image"] = str(request.init_image)
        return parameters

    def provenance(self, request: ImageRequest, output: GeneratedImages) -> Provenance:
        """Return what made ``output``: the model, its UNet's SHA-256, the backend, the first image's settings."""
        from engines.reproducibility import made_on

        first = dict(output.parameters[0]) if output.parameters else {}
        settings = {
            **first,
            "threads": self.threads,
            "device": self.options.device,
            "batch_size": request.batch_size,
            "made_on": made_on(self.backend, self.kernels),
        }
        return Provenance(
            model_name=self.name,
            model_path=str(self.model.path),
            model_sha256=self._sha256,
            backend=self.backend,
            settings=settings,
            seed=first.get("seed"),
        )


class _NoPreviews:
    """A Progress that passes everything on but asks for no previews (the request turned them off)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def __getattr__(self, name: str) -> Any:
        return getattr(self._progress, name)

    def wants_preview(self) -> bool:
        return False
