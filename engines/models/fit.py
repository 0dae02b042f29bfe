"""Will a model fit on this machine? Memory estimates from a model's own metadata, and a verdict.

Text (llama.cpp). Weights are the GGUF file (llama.cpp maps it and reads every page). The KV
cache is ``context × Σ_layers n_head_kv × (key_length + value_length) × 2 bytes`` (f16, llama.cpp's
default; it keeps the full cache for sliding-window layers too, ``swa_full``). llama.cpp reserves
a compute buffer for a 512-token micro-batch whose largest part is the logits of 512 outputs
(``512 × n_vocab × 4`` bytes): a GPU allocates all of it, while on the CPU only the pages used are
resident, and Ember asks for the last token's logits only. The rest is the runtime (threads,
graph, the vocabulary's tables). The constants were fitted to the peak RSS that llama-cpp-python
0.3.36 reaches on the CPU with the two embedded models at 2048 and 8192 tokens of context
(tests/engines/models/test_fit.py measures it again; the estimates are within 6%).

Diffusion (onnxruntime). Weights are the graphs' files (on the CPU an fp16 graph is run in fp32,
so its weights take twice their size). Each session keeps its own memory arena, so the UNet's and
the VAE decoder's working memory add up; the UNet's is dominated by the attention scores at the
highest resolution (``tokens² × heads × 4`` bytes per image, held about 4.4 times over: scores and
softmax, once in the arena of the first step and again in the memory pattern onnxruntime plans
for the steps after it), the VAE decoder's by full-resolution feature maps. Fitted to the peak RSS
of the tiny generated SD pipeline in onnxruntime 1.31 on the CPU (text encoder, two UNet steps,
VAE decoder) at 64 to 512 pixels, batch 1 and 2, with and without guidance: within 17%.

Which estimate a model gets is its kind's (``ModelKind.estimate`` in its modality package names
one of the functions here); a kind that names none gets :func:`estimate_onnx_graph`.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING

from engines.errors import EmberError
from engines.hardware import GpuInfo, Machine
from engines.modalities import model_kind
from engines.models.inspect import ModelInfo
from engines.units import human_bytes

if TYPE_CHECKING:
    from engines.models.catalog import CatalogEntry

log = logging.getLogger(__name__)

GiB = 2**30
MiB = 2**20

# llama.cpp (llama-cpp-python 0.3.36), fitted on the CPU; see the module docstring.
LLAMA_UBATCH = 512
_LLAMA_RUNTIME_BYTES = 24 * MiB  # threads, ggml graph, the Python binding
_LLAMA_VOCAB_BYTES_PER_TOKEN = 160  # the vocabulary's strings, maps and sampler arrays
_CUDA_CONTEXT_BYTES = 400 * MiB  # the CUDA context and cuBLAS workspaces that every process pays

# onnxruntime
_ORT_RUNTIME_BYTES = 32 * MiB
_ORT_GPU_CONTEXT_BYTES = 600 * MiB  # CUDA context and cuDNN workspace
_ATTENTION_COPIES = 4.4
_VAE_LIVE_MAPS = 4

# What the system and other apps keep for themselves.
_RAM_RESERVE_FRACTION = 0.15
_RAM_RESERVE_MAX_BYTES = 2 * GiB
_VRAM_MARGIN_FRACTION = 0.05
_UNIFIED_GPU_FRACTION = 0.70  # of a Mac's memory, what Metal lets one process wire for the GPU


@dataclass(frozen=True)
class FitEstimate:
    """How much memory a model needs, in bytes, with the parts it is made of.

    ``ram_bytes`` is the peak resident memory when the model runs on the CPU (or, with
    ``gpu_layers`` set, the part left on the CPU); ``vram_bytes`` the GPU memory for the
    whole model (or for ``gpu_layers`` layers). ``layers`` and ``layer_bytes`` let a
    verdict split a text model between GPU and CPU.
    """

    kind: str
    weights_bytes: int
    kv_cache_bytes: int
    compute_bytes: int
    gpu_compute_bytes: int
    overhead_bytes: int
    ram_bytes: int
    vram_bytes: int
    layers: int = 0
    layer_bytes: int = 0
    gpu_layers: int | None = None
    context_tokens: int | None = None
    width: int | None = None
    height: int | None = None
    batch: int | None = None
    cuda_only: bool = False
    notes: tuple[str, ...] = ()


Estimate = Callable[[ModelInfo, int, int, int], FitEstimate]
"""A model kind's estimate: (info, context_tokens, width, height) -> FitEstimate."""


class Verdict(Enum):
    FITS_GPU = "fits_gpu"
    PARTIAL = "partial"
    CPU_ONLY = "cpu_only"
    DOES_NOT_FIT = "does_not_fit"


@dataclass(frozen=True)
class Fit:
    """A verdict for one model on one machine, for a person to read.

    ``summary`` is one short phrase ("fits on the GPU", "partly offloaded: 20 of 32 layers
    on the GPU", "runs on the CPU", "does not fit: needs 9.1 GB, this machine has 8.0 GB");
    ``explanation`` says why, in a sentence or two. ``gpu_layers`` is what to pass to
    llama.cpp (-1 all, 0 none); ``backend`` is "CUDA", "Metal" or "CPU".
    """

    verdict: Verdict
    summary: str
    explanation: str
    backend: str
    gpu_layers: int
    needed_bytes: int
    available_bytes: int


# -- text -------------------------------------------------------------------------------------


def kv_bytes_per_token(info: ModelInfo) -> int:
    """Return the f16 K and V cache bytes one token of context takes in all layers of a GGUF model."""
    d = info.details
    layers = int(d.get("block_count") or 0)
    heads = int(d.get("head_count") or 1)
    embed = int(d.get("embedding_length") or 0)
    key = int(d.get("key_length") or (embed // heads if heads else 0))
    value = int(d.get("value_length") or key)
    kv = d.get("head_count_kv")
    if isinstance(kv, list):
        per_layer = [int(k) for k in kv[:layers]] or [heads] * layers
    else:
        per_layer = [int(kv if kv is not None else heads)] * layers
    return sum(per_layer) * (key + value) * 2


def estimate_text(info: ModelInfo, context_tokens: int, gpu_layers: int | None = None) -> FitEstimate:
    """Return the memory a GGUF model needs in llama.cpp at ``context_tokens`` of context.

    With ``gpu_layers`` None, ``ram_bytes`` is for running wholly on the CPU and ``vram_bytes``
    for offloading every layer; with ``gpu_layers`` = k, they are the CPU and GPU parts when k
    layers are offloaded. Raises ValueError for a model that is not a GGUF text or guard model.
    """
    if info.format != "gguf":
        raise ValueError(f"{info.name} is not a GGUF text model; use estimate_diffusion or estimate_model.")
    d = info.details
    context_tokens = max(1, int(context_tokens))
    layers = int(d.get("block_count") or 0)
    vocab = int(d.get("vocab_size") or 32000)
    embed = int(d.get("embedding_length") or 0)
    ff = int(d.get("feed_forward_length") or 4 * embed)
    weights = int(info.size_bytes)
    kv = context_tokens * kv_bytes_per_token(info)
    activations = LLAMA_UBATCH * (embed * 4 * 8 + ff * 4 * 3)
    cpu_compute = activations + 2 * vocab * 4  # logits of the last token, and the sampler's copy
    gpu_compute = activations + LLAMA_UBATCH * vocab * 4  # reserved in full on a GPU
    overhead = _LLAMA_RUNTIME_BYTES + vocab * _LLAMA_VOCAB_BYTES_PER_TOKEN
    # The token embeddings stay on the CPU; the output layer and each block can move.
    bits = 8 * weights / info.parameter_count if info.parameter_count else 4.5
    embedding_bytes = int(vocab * embed * bits / 8)
    layer_bytes = (max(weights - embedding_bytes, 0) // layers + kv // layers) if layers else 0
    notes = []
    if info.context_length and context_tokens > info.context_length:
        notes.append(f"{info.name} was trained for {info.context_length} tokens of context.")
    ram_cpu = weights + kv + cpu_compute + overhead
    vram_all = weights - embedding_bytes + kv + gpu_compute + _CUDA_CONTEXT_BYTES
    whole = FitEstimate(
        kind=info.kind,
        weights_bytes=weights,
        kv_cache_bytes=kv,
        compute_bytes=cpu_compute,
        gpu_compute_bytes=gpu_compute,
        overhead_bytes=overhead,
        ram_bytes=ram_cpu,
        vram_bytes=vram_all,
        layers=layers,
        layer_bytes=layer_bytes,
        gpu_layers=None,
        context_tokens=context_tokens,
        notes=tuple(notes),
    )
    if gpu_layers is None or layers == 0:
        return whole
    k = layers if gpu_layers < 0 else min(int(gpu_layers), layers)
    on_gpu = k * layer_bytes
    vram = on_gpu + gpu_compute + _CUDA_CONTEXT_BYTES if k else 0
    if k == layers:
        vram = vram_all
    ram = max(ram_cpu - on_gpu, overhead + embedding_bytes)
    return replace(whole, ram_bytes=ram, vram_bytes=vram, gpu_layers=k)


# -- diffusion --------------------------------------------------------------------------------

_TOP_ATTENTION_HEADS = {"sd1": 8, "sd2": 5}


def estimate_diffusion(info: ModelInfo, width: int, height: int, batch: int = 1) -> FitEstimate:
    """Return the memory a diffusers ONNX folder needs in onnxruntime for ``batch`` images of width × height.

    Counts the text encoder(s), UNet and VAE decoder (not the VAE encoder, which only
    image-to-image loads). Raises ValueError for a model that is not a diffusion folder.
    """
    if info.kind != "diffusion":
        raise ValueError(f"{info.name} is not a diffusion model; use estimate_text or estimate_model.")
    d = info.details
    width, height, batch = max(8, int(width)), max(8, int(height)), max(1, int(batch))
    component_bytes = d.get("component_bytes") or {}
    needed = [c for c in component_bytes if c != "vae_encoder"]
    weights = sum(int(component_bytes[c]) for c in needed) or int(info.size_bytes)
    precision = str(d.get("precision") or "fp32")
    variant = str(d.get("variant") or "sd1")
    base = str(d.get("base") or "sd1")
    factor = int(d.get("vae_scale_factor") or 8)
    guidance = 1 if variant in ("turbo", "lcm") else 2  # classifier-free guidance doubles the UNet batch
    tokens = (width // factor) * (height // factor)
    unet_width = int(d.get("unet_base_channels") or (640 if base == "sdxl" else 320))
    vae_width = int(d.get("vae_decoder_channels") or 128)
    if base == "sdxl":
        # SDXL's first level has no attention: its largest is at half resolution, 10 heads.
        attention = (tokens // 4) ** 2 * 10
    else:
        attention = tokens**2 * _TOP_ATTENTION_HEADS.get(base, 8)
    unet_images = batch * guidance
    unet_fp32 = unet_images * (attention * 4 * _ATTENTION_COPIES + tokens * unet_width * 4 * 16)
    vae_fp32 = batch * (width * height * vae_width * 4 * _VAE_LIVE_MAPS + tokens**2 * 4 * 2)
    half = precision in ("fp16", "bf16")
    cpu_compute = int(unet_fp32 + vae_fp32)
    gpu_compute = int((unet_fp32 + vae_fp32) / (2 if half else 1))
    ram = int(weights * (2 if half else 1)) + cpu_compute + _ORT_RUNTIME_BYTES
    vram = weights + gpu_compute + _ORT_GPU_CONTEXT_BYTES
    cuda_only = bool(d.get("cuda_only_operators"))
    notes = []
    if cuda_only:
        notes.append("This export uses operators that onnxruntime runs on NVIDIA GPUs (CUDA) only.")
    sample = d.get("sample_size")
    if isinstance(sample, int) and sample and max(width, height) > 1.5 * sample:
        notes.append(f"{info.name} was trained for {sample}x{sample} images; larger ones repeat shapes.")
    return FitEstimate(
        kind="diffusion",
        weights_bytes=weights,
        kv_cache_bytes=0,
        compute_bytes=cpu_compute,
        gpu_compute_bytes=gpu_compute,
        overhead_bytes=_ORT_RUNTIME_BYTES,
        ram_bytes=ram,
        vram_bytes=vram,
        width=width,
        height=height,
        batch=batch,
        cuda_only=cuda_only,
        notes=tuple(notes),
    )


def estimate_text_model(info: ModelInfo, context_tokens: int, width: int, height: int) -> FitEstimate:
    """The estimate of the text and guard kinds: :func:`estimate_text` at ``context_tokens``, wholly on one device."""
    return estimate_text(info, context_tokens)


def estimate_diffusion_model(info: ModelInfo, context_tokens: int, width: int, height: int) -> FitEstimate:
    """The estimate of the diffusion kind: :func:`estimate_diffusion` for one image of width × height."""
    return estimate_diffusion(info, width, height)


def estimate_image_graph(info: ModelInfo, context_tokens: int, width: int, height: int) -> FitEstimate:
    """The estimate of a single ONNX graph that makes an image (a GAN generator, an upscaler): its weights
    and working memory for one width × height image, times the upscaler's ``scale`` a side."""
    scale = int(info.details.get("scale") or 1)
    return _single_graph(info, (width * scale) * (height * scale) * 64 * 4, width, height)


def estimate_onnx_graph(info: ModelInfo, context_tokens: int, width: int, height: int) -> FitEstimate:
    """The estimate of a kind that names none (a voice, say): a single ONNX graph's weights and 64 MiB of
    working memory (a sentence of speech)."""
    return _single_graph(info, 64 * MiB, width, height)


def _single_graph(info: ModelInfo, working: int, width: int, height: int) -> FitEstimate:
    weights = int(info.size_bytes)
    return FitEstimate(
        kind=info.kind,
        weights_bytes=weights,
        kv_cache_bytes=0,
        compute_bytes=working,
        gpu_compute_bytes=working,
        overhead_bytes=_ORT_RUNTIME_BYTES,
        ram_bytes=weights + working + _ORT_RUNTIME_BYTES,
        vram_bytes=weights + working + _ORT_GPU_CONTEXT_BYTES,
        width=width,
        height=height,
        batch=1,
    )


def estimate_model(info: ModelInfo, context_tokens: int = 4096, width: int = 512, height: int = 512) -> FitEstimate:
    """Return an estimate for any model at everyday settings (4096 tokens, 512x512 images): its kind's.

    Raises ValueError when the model's metadata does not suit its kind's estimate, and EmberError
    when the kind names an estimate that cannot be imported.
    """
    known = model_kind(info.kind)
    return estimate_of(known.estimate if known is not None else "")(info, context_tokens, width, height)


@cache
def estimate_of(name: str) -> Estimate:
    """Return the estimate a kind names ("module:function"); "" is :func:`estimate_onnx_graph`.

    Raises EmberError naming the kind's estimate when it cannot be imported.
    """
    if not name:
        return estimate_onnx_graph
    module, _, function = name.partition(":")
    try:
        found = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise EmberError(f"The fit estimate '{name}' that a model kind names cannot be loaded ({exc}).") from None
    if not callable(found):
        raise EmberError(f"The fit estimate '{name}' that a model kind names is not a function.")
    return found


# -- verdict ----------------------------------------------------------------------------------


def _about(n: int | float) -> str:
    """Every size a verdict names is an estimate: "9.1 GB", "640 MB"."""
    return human_bytes(n, approximate=True)


def usable_ram_bytes(machine: Machine) -> int:
    """Return the RAM a model may use: the total less what the system and other apps keep."""
    total = machine.ram_total_bytes
    return total - min(int(total * _RAM_RESERVE_FRACTION), _RAM_RESERVE_MAX_BYTES)


def gpu_budget_bytes(gpu: GpuInfo) -> int:
    """Return the GPU memory a model may use on ``gpu``."""
    if gpu.unified_memory:
        return int(gpu.vram_total_bytes * _UNIFIED_GPU_FRACTION)
    free = gpu.vram_free_bytes if gpu.vram_free_bytes is not None else gpu.vram_total_bytes
    return int(min(free, gpu.vram_total_bytes * (1 - _VRAM_MARGIN_FRACTION)))


def verdict(estimate: FitEstimate, machine: Machine, gpus: Sequence[GpuInfo]) -> Fit:
    """Return whether the model fits: on the GPU, partly offloaded, on the CPU only, or not at all.

    Picks the GPU with the most usable memory. A text model that does not fit on the GPU
    whole is split layer by layer (not on unified memory, where that gains nothing). A
    diffusion export that needs CUDA does not fit on a machine without an NVIDIA GPU.
    """
    ram_total = machine.ram_total_bytes
    ram_ok = usable_ram_bytes(machine)
    gpu = max(gpus, key=gpu_budget_bytes, default=None)
    budget = gpu_budget_bytes(gpu) if gpu is not None else 0
    has_cuda = any(g.backend == "CUDA" for g in gpus)

    if estimate.cuda_only and not has_cuda:
        return Fit(
            Verdict.DOES_NOT_FIT,
            "does not fit: needs an NVIDIA GPU",
            "This export was built for onnxruntime's CUDA provider (its operators have no CPU version), "
            "and this machine has no NVIDIA GPU. Pick a CPU-friendly export of the same model.",
            "CPU",
            0,
            estimate.ram_bytes,
            ram_ok,
        )

    if estimate.gpu_layers is not None and gpu is not None:
        return _fixed_split(estimate, gpu, budget, ram_ok, ram_total)

    if gpu is not None and estimate.vram_bytes <= budget and (not estimate.cuda_only or gpu.backend == "CUDA"):
        where = "the GPU's share of this Mac's memory" if gpu.unified_memory else f"the {gpu.name}"
        return Fit(
            Verdict.FITS_GPU,
            "fits on the GPU",
            f"It needs about {_about(estimate.vram_bytes)} and {where} has {_about(budget)} free for it, "
            f"so it runs wholly on the GPU ({gpu.backend}).",
            gpu.backend,
            -1,
            estimate.vram_bytes,
            budget,
        )

    if gpu is not None and not gpu.unified_memory and estimate.layers and estimate.layer_bytes:
        fixed = estimate.vram_bytes - estimate.layers * estimate.layer_bytes
        k = min(estimate.layers - 1, max(0, (budget - fixed) // estimate.layer_bytes))
        rest = estimate.ram_bytes - k * estimate.layer_bytes
        if k >= 1 and rest <= ram_ok:
            return Fit(
                Verdict.PARTIAL,
                f"partly offloaded: {k} of {estimate.layers} layers on the GPU",
                f"The whole model needs about {_about(estimate.vram_bytes)} on the GPU but the {gpu.name} has "
                f"{_about(budget)} free, so {k} of its {estimate.layers} layers run there and the rest on the "
                f"CPU (about {_about(rest)} of RAM). It is slower than a model that fits whole.",
                gpu.backend,
                int(k),
                estimate.vram_bytes,
                budget,
            )

    if estimate.ram_bytes <= ram_ok:
        reason = "This machine has no GPU Ember can use" if gpu is None else "It does not fit in the GPU's memory"
        return Fit(
            Verdict.CPU_ONLY,
            "runs on the CPU",
            f"{reason}, so it runs on the CPU, using about {_about(estimate.ram_bytes)} of the "
            f"{_about(ram_total)} of RAM. Expect it to be slower than on a GPU.",
            "CPU",
            0,
            estimate.ram_bytes,
            ram_ok,
        )

    needed = estimate.ram_bytes if gpu is None else min(estimate.ram_bytes, estimate.vram_bytes)
    return Fit(
        Verdict.DOES_NOT_FIT,
        f"does not fit: needs {_about(needed)}, this machine has {_about(ram_total)}",
        f"It needs about {_about(estimate.ram_bytes)} of memory, and this machine has {_about(ram_total)} "
        f"of RAM, of which the system and other apps keep about {_about(ram_total - ram_ok)}"
        + (f"; the GPU has {_about(budget)} free." if gpu is not None else ".")
        + " Pick a smaller model or quantisation, or a shorter context.",
        "CPU",
        0,
        needed,
        ram_ok,
    )


def _fixed_split(estimate: FitEstimate, gpu: GpuInfo, budget: int, ram_ok: int, ram_total: int) -> Fit:
    """The verdict for an estimate made with a chosen number of GPU layers."""
    k = int(estimate.gpu_layers or 0)
    if estimate.vram_bytes > budget:
        return Fit(
            Verdict.DOES_NOT_FIT,
            f"does not fit: needs {_about(estimate.vram_bytes)} on the GPU, it has {_about(budget)} free",
            f"{k} layers on the {gpu.name} need about {_about(estimate.vram_bytes)}; offload fewer layers.",
            gpu.backend,
            k,
            estimate.vram_bytes,
            budget,
        )
    if estimate.ram_bytes > ram_ok:
        return Fit(
            Verdict.DOES_NOT_FIT,
            f"does not fit: needs {_about(estimate.ram_bytes)}, this machine has {_about(ram_total)}",
            f"The layers left on the CPU need about {_about(estimate.ram_bytes)} of RAM; offload more layers "
            "or pick a smaller model.",
            gpu.backend,
            k,
            estimate.ram_bytes,
            ram_ok,
        )
    if k >= estimate.layers:
        return Fit(
            Verdict.FITS_GPU,
            "fits on the GPU",
            f"Every layer runs on the {gpu.name}, using about {_about(estimate.vram_bytes)}.",
            gpu.backend,
            -1,
            estimate.vram_bytes,
            budget,
        )
    if k == 0:
        return Fit(
            Verdict.CPU_ONLY,
            "runs on the CPU",
            f"No layers are offloaded, so it runs on the CPU using about {_about(estimate.ram_bytes)}.",
            "CPU",
            0,
            estimate.ram_bytes,
            ram_ok,
        )
    return Fit(
        Verdict.PARTIAL,
        f"partly offloaded: {k} of {estimate.layers} layers on the GPU",
        f"{k} layers run on the {gpu.name} (about {_about(estimate.vram_bytes)}) and the rest on the CPU "
        f"(about {_about(estimate.ram_bytes)} of RAM).",
        gpu.backend,
        k,
        estimate.vram_bytes,
        budget,
    )


def layers_that_fit(estimate: FitEstimate, budget_bytes: int) -> int:
    """Return how many of a text model's layers fit in ``budget_bytes`` of GPU memory (all: ``layers``)."""
    if not estimate.layers or not estimate.layer_bytes:
        return 0
    if estimate.vram_bytes <= budget_bytes:
        return estimate.layers
    fixed = estimate.vram_bytes - estimate.layers * estimate.layer_bytes
    return max(0, min(estimate.layers, math.floor((budget_bytes - fixed) / estimate.layer_bytes)))


def estimate_entry(entry: CatalogEntry) -> FitEstimate:
    """Return the estimate for a catalog entry before it is downloaded, from the needs the catalog gives.

    The catalog's figures were computed with :func:`estimate_model` at the entry's defaults (its
    context length or image size), so the verdict matches the one the downloaded file will get.
    """
    return FitEstimate(
        kind=entry.kind,
        weights_bytes=entry.size_bytes,
        kv_cache_bytes=0,
        compute_bytes=0,
        gpu_compute_bytes=0,
        overhead_bytes=0,
        ram_bytes=entry.ram_bytes,
        vram_bytes=entry.vram_bytes,
        cuda_only=entry.backends == ("cuda",),
    )


def fit_of_entry(entry: CatalogEntry, machine: Machine, gpus: Sequence[GpuInfo]) -> Fit:
    """Return the verdict for a catalog entry on this machine, before it is downloaded."""
    return verdict(estimate_entry(entry), machine, gpus)


def fit_of_model(info: ModelInfo, machine: Machine, gpus: Sequence[GpuInfo]) -> Fit | None:
    """Return the verdict for a model on disk at everyday settings, or None when its metadata cannot tell."""
    try:
        return verdict(estimate_model(info), machine, gpus)
    except (ValueError, TypeError, ZeroDivisionError, KeyError):
        log.info("No fit estimate for %s", info.path, exc_info=True)
        return None
    except EmberError:  # a kind naming an estimate that is not there: a bug, but no reason to stop a listing
        log.warning("No fit estimate for %s", info.path, exc_info=True)
        return None


_PREFERENCE = {Verdict.FITS_GPU: 0, Verdict.PARTIAL: 1, Verdict.CPU_ONLY: 2}


def recommended(
    entries: Sequence[CatalogEntry], kind: str, machine: Machine, gpus: Sequence[GpuInfo], count: int = 3
) -> list[tuple[CatalogEntry, Fit]]:
    """The catalog entries of ``kind`` that run on this machine, best first: on the GPU before partly on
    it before the CPU only, then the smaller download first; those that do not fit are left out."""
    ranked = []
    for entry in entries:
        if entry.kind != kind:
            continue
        fit = fit_of_entry(entry, machine, gpus)
        if fit.verdict in _PREFERENCE:
            ranked.append((_PREFERENCE[fit.verdict], entry.size_bytes, entry.id, entry, fit))
    ranked.sort(key=lambda r: r[:3])
    return [(entry, fit) for *_, entry, fit in ranked[:count]]
