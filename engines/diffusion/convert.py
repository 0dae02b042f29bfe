"""Converting a diffusers checkpoint folder to the diffusers ONNX layout Ember runs.

``python main.py convert SOURCE --to onnx [--fp16 | --int8] [-o OUT]`` lands in
:func:`convert_to_onnx`. The steps:

1. Check the source without importing torch: a diffusers pipeline folder (model_index.json) whose
   components Ember runs (UNet, VAE, CLIP text encoders), with safetensors weights. Pickle weights
   are refused: loading them can run code.
2. Check the free disk space beside OUT against an estimate read from the safetensors headers.
3. Export fp32 with optimum into a temporary folder beside OUT, then convert it to fp16 or
   quantize it to int8 there, check every graph, write ``ember_convert.json`` and rename the
   folder into place. A failure or an interruption leaves nothing at OUT.

torch, diffusers and optimum (the ``[convert]`` extra) are imported only inside the conversion,
so importing this module costs nothing and works without them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engines.diffusion.folder import UNET_GRAPH
from engines.errors import EmberError, ModelFileError, OutOfMemoryError
from engines.models.formats import is_pickle
from engines.units import human_bytes

if TYPE_CHECKING:
    import onnx

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

# The components Ember's runtime uses. A pipeline's other parts (safety_checker, feature_extractor,
# image_encoder) are not exported: Ember checks every image with its own safety filter.
_MODEL_COMPONENTS: tuple[str, ...] = ("unet", "vae", "text_encoder", "text_encoder_2")
_REQUIRED_COMPONENTS: tuple[str, ...] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_SKIPPED_COMPONENTS: tuple[str, ...] = ("safety_checker", "feature_extractor", "image_encoder")

# Graphs that int8 quantizes. The VAE stays fp32: it turns latents into pixels, and its
# activations (large, with outlier channels) lose so much to 8 bits that images come out blotchy
# and colour-shifted, while it is a small share of the weights (about 80 MB of SD 1.5's 2 GB).
_QUANTIZED_GRAPHS: dict[str, tuple[str, ...]] = {
    "unet": ("MatMul", "Gemm", "Conv"),
    "text_encoder": ("MatMul", "Gemm"),
    "text_encoder_2": ("MatMul", "Gemm"),
}

# A protobuf message cannot be larger than 2 GiB, so bigger graphs keep their weights in a
# separate file (model.onnx_data, as optimum writes them). Below the limit, with room for the graph.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000
_EXTERNAL_DATA_NAME = "model.onnx_data"

# What the conversion writes, as a multiple of the fp32 weights: the fp32 export itself, and for
# fp16/int8 the converted copy beside it until the fp32 graph is removed.
_DISK_FACTOR: dict[str, float] = {"fp32": 1.0, "fp16": 1.5, "int8": 1.3}
_DISK_MARGIN_BYTES = 64 * 1024 * 1024

_CONVERT_EXTRA_MESSAGE = (
    "Converting needs the optional converter ({missing} is not installed): pip install 'ember-studio[convert]'"
)

_SAFETENSORS_BYTES_PER_ELEMENT = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


@dataclass(frozen=True)
class ConvertResult:
    """A finished conversion: where it is, what it was, how big each graph is, how long it took."""

    out: Path
    kind: str  # "sd", "sdxl" or "lcm"
    precision: str
    component_bytes: dict[str, int] = field(default_factory=dict)  # "unet" -> bytes of its graph files
    # Graphs an fp16 or int8 conversion left in fp32 on purpose (the VAE; see _convert_folder).
    fp32_components: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        """The size of every ONNX graph in the output folder together."""
        return sum(self.component_bytes.values())


@dataclass(frozen=True)
class SourceCheckpoint:
    """A diffusers checkpoint folder that passed the checks, as read without torch."""

    folder: Path
    kind: str
    pipeline_class: str
    components: tuple[str, ...]  # the model components that will be exported
    variant: str | None  # "fp16" when the folder only has *.fp16.safetensors weights
    weight_files: tuple[Path, ...]
    fp32_bytes: int  # the weights' size as float32, which the fp32 export will be


def default_output(source: Path, precision: Precision) -> Path:
    """Return the folder a conversion writes to when none is given: ``SOURCE-onnx[-fp16|-int8]``."""
    suffix = "" if precision == "fp32" else f"-{precision}"
    return source.with_name(f"{source.name}-onnx{suffix}")


def inspect_checkpoint(source: Path) -> SourceCheckpoint:
    """Check that ``source`` is a diffusers pipeline folder Ember can convert, without importing torch.

    Returns what was found. Raises ModelFileError when it is not a folder, not a diffusers pipeline,
    already ONNX, not a pipeline Ember runs, incomplete, or has pickle weights only.
    """
    source = Path(source)
    if source.is_file():
        if is_pickle(source.name):
            raise ModelFileError(
                f"{source.name} is a pickle checkpoint, which Ember refuses: loading it can run code. "
                "Get the model as a diffusers folder with .safetensors weights and convert that folder."
            )
        raise ModelFileError(
            f"{source.name} is a single file; Ember converts diffusers pipeline folders (model_index.json, unet/, "
            "vae/, text_encoder/ ...). Pick the folder, or get the model in the diffusers layout."
        )
    if not source.is_dir():
        raise ModelFileError(f"There is no folder at {source}. Check the path.")
    if (source / UNET_GRAPH).is_file():  # an ONNX export, OnnxStack's (no model_index.json) too
        raise ModelFileError(f"{source.name} is already in the ONNX layout; Ember can open it as it is.")
    index_path = source / "model_index.json"
    if not index_path.is_file():
        raise ModelFileError(
            f"{source.name} is not a diffusers pipeline folder (it has no model_index.json). Pick the folder that "
            "holds model_index.json beside unet/, vae/ and text_encoder/."
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if not isinstance(index, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(
            f"The model_index.json in {source.name} cannot be read ({exc}). The folder may be damaged; "
            "download it again."
        ) from None

    pipeline_class = str(index.get("_class_name", ""))
    if pipeline_class.startswith(("ORT", "Onnx")):
        raise ModelFileError(f"{source.name} is already in the ONNX layout; Ember can open it as it is.")
    listed = {name for name, value in index.items() if not name.startswith("_") and _is_component(value)}
    if "unet" not in listed:
        raise ModelFileError(
            f"{source.name} holds a {pipeline_class or 'diffusers'} pipeline without a UNet; Ember converts "
            "Stable Diffusion pipelines (SD 1.x, SD 2.x, SD-Turbo, LCM, SDXL, SDXL-Turbo)."
        )
    missing = [name for name in _REQUIRED_COMPONENTS if name not in listed or not (source / name).is_dir()]
    if "text_encoder_2" in listed and not (source / "text_encoder_2").is_dir():
        missing.append("text_encoder_2")
    if "tokenizer_2" in listed and not (source / "tokenizer_2").is_dir():
        missing.append("tokenizer_2")
    if missing:
        raise ModelFileError(
            f"{source.name} is missing {', '.join(m + '/' for m in missing)}, which a text-to-image pipeline needs. "
            "Download the whole pipeline folder (an SDXL refiner, which has no first text encoder, cannot be "
            "converted on its own)."
        )

    components = tuple(name for name in _MODEL_COMPONENTS if name in listed)
    variant, weight_files = _pick_weights(source, components)
    kind = "sdxl" if "XL" in pipeline_class or "text_encoder_2" in listed else "sd"
    if "LatentConsistency" in pipeline_class:
        kind = "lcm"
    return SourceCheckpoint(
        folder=source,
        kind=kind,
        pipeline_class=pipeline_class,
        components=components,
        variant=variant,
        weight_files=weight_files,
        fp32_bytes=sum(_safetensors_fp32_bytes(p) for p in weight_files),
    )


def required_disk_bytes(fp32_bytes: int, precision: Precision) -> int:
    """Return the free disk space a conversion needs, from the weights' size as float32."""
    return int(fp32_bytes * _DISK_FACTOR[precision]) + _DISK_MARGIN_BYTES


def convert_to_onnx(
    source: Path,
    out: Path,
    precision: Precision = "fp32",
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Export the diffusers checkpoint folder ``source`` to the diffusers ONNX layout in ``out``.

    ``precision`` "fp32" writes optimum's export as it is; "fp16" stores the graphs' weights in
    float16 (inputs and outputs stay float32, so the runtime feeds every precision the same way),
    except an SDXL VAE whose config asks for fp32 (``force_upcast``); "int8" quantizes the weights
    of the UNet and the text encoders (dynamic quantization) and keeps the VAE in fp32. The result's
    ``fp32_components`` names the graphs left in fp32. ``progress`` receives a line for each stage.

    Returns a ConvertResult. Raises ModelFileError for a source that cannot be converted (see
    :func:`inspect_checkpoint`), EmberError when ``out`` already exists, the disk is too full, the
    converter is not installed or the export fails, and OutOfMemoryError when the machine runs out
    of memory. On any failure nothing is left at ``out``.
    """
    started = time.monotonic()
    say = progress or (lambda _message: None)
    source, out = Path(source), Path(out)
    if precision not in PRECISIONS:
        raise EmberError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    checkpoint = inspect_checkpoint(source)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise EmberError(f"{out} already exists. Pick another output folder (-o), or delete that one first.")

    parent = out.parent
    needed = required_disk_bytes(checkpoint.fp32_bytes, precision)
    # Measured on the deepest folder that exists, so that nothing is created before the checks pass.
    free = _free_disk_bytes(_existing_ancestor(parent))
    if free < needed:
        raise EmberError(
            f"Not enough disk space in {parent}: converting {source.name} to {precision} needs about "
            f"{human_bytes(needed, approximate=True)} free and there is {human_bytes(free, approximate=True)}. "
            "Free some space or pick another output folder (-o)."
        )
    modules = _import_converter()

    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmberError(f"Ember cannot create {parent} ({exc.strerror or exc}). Pick another output folder.") from None
    fp32 = human_bytes(checkpoint.fp32_bytes, approximate=True)
    say(f"Converting {source.name} ({checkpoint.kind}, {fp32} as fp32) to ONNX {precision}")
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.converting-"))
    except OSError as exc:
        raise EmberError(
            f"Ember cannot write to {parent} ({exc.strerror or exc}). Pick another output folder."
        ) from None
    stage = "exporting to ONNX"
    try:
        exported = tmp / "fp32"
        _export_fp32(modules, checkpoint, exported, say)
        if precision == "fp32":
            final, kept_fp32 = exported, ()
        else:
            final = tmp / precision
            stage = f"converting to {precision}"
            kept_fp32 = _convert_folder(exported, final, precision, checkpoint.kind, say)
        stage = "checking the graphs"
        say("Checking every graph")
        component_bytes = _check_graphs(final)
        seconds = time.monotonic() - started
        _write_record(final, checkpoint, precision, component_bytes, kept_fp32, seconds)
        stage = "moving the result into place"
        if out.is_dir():
            out.rmdir()  # an empty folder the person made for it; checked above
        os.replace(final, out)
    except EmberError:
        raise
    except MemoryError:
        raise OutOfMemoryError(
            f"The machine ran out of memory while {stage} ({source.name}). Close other programs and try again; "
            "converting needs about twice the model's fp32 size in memory. Nothing was written."
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise EmberError(
                f"The disk filled up while {stage}. Nothing was written to {out}; free some space and try again."
            ) from None
        raise EmberError(
            f"Converting {source.name} failed while {stage} ({exc}). Nothing was written to {out}."
        ) from exc
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        summary = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise EmberError(
            f"Converting {source.name} failed while {stage} ({summary}). Nothing was written to {out}. "
            "If the checkpoint loads in diffusers, please report this."
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    written = human_bytes(sum(component_bytes.values()), approximate=True)
    say(f"Wrote {out} ({written} of ONNX) in {seconds:.0f} s")
    return ConvertResult(
        out=out,
        kind=checkpoint.kind,
        precision=precision,
        component_bytes=component_bytes,
        fp32_components=kept_fp32,
        seconds=seconds,
    )


def needs_external_data(model: onnx.ModelProto) -> bool:
    """Return whether ``model`` is too big for one protobuf file and must keep its weights apart."""
    return _tensor_bytes(model) > EXTERNAL_DATA_THRESHOLD_BYTES


def convert_graph_to_fp16(src: Path, dst: Path) -> None:
    """Write ``src`` (an fp32 ONNX graph) to ``dst`` with float16 weights and float32 inputs/outputs.

    Raises whatever onnx and onnxruntime raise for a graph they cannot read.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # Given a path, the converter infers shapes through a file, which works past 2 GiB; that
    # inference is also what lets it keep Resize's scales float32 (it needs their types).
    model = convert_float_to_float16(str(src), keep_io_types=True)
    _keep_resize_scales_fp32(model)
    # The converter appends its input casts at the end of the node list; onnxruntime sorts nodes
    # itself, but the ONNX standard (and onnx's checker) wants them in order.
    _sort_nodes(model.graph)
    _save_graph(model, dst)


def quantize_graph_to_int8(src: Path, dst: Path, op_types: tuple[str, ...]) -> None:
    """Write ``src`` to ``dst`` with the weights of ``op_types`` nodes quantized to int8 (dynamic).

    Raises whatever onnxruntime's quantizer raises for a graph it cannot read.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_root_logger():
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=list(op_types),
            # Signed int8 weights run on onnxruntime's CPU kernels (MatMulInteger, ConvInteger) and
            # per-channel scales keep one outlier channel from flattening a whole layer.
            weight_type=QuantType.QInt8,
            per_channel=True,
            use_external_data_format=(src.parent / _EXTERNAL_DATA_NAME).exists(),
        )


# ----------------------------------------------------------------------------------------------
# Source checks (no torch)


def _is_component(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and value[0] is not None and value[1] is not None


def _pick_weights(source: Path, components: tuple[str, ...]) -> tuple[str | None, tuple[Path, ...]]:
    """Choose the safetensors files diffusers will load, refusing components with pickle weights only."""
    plain: list[Path] = []
    fp16: list[Path] = []
    plain_complete = fp16_complete = True
    pickled: list[str] = []
    for name in components:
        files = [p for p in (source / name).iterdir() if p.is_file()]
        safetensors = [p for p in files if p.name.endswith(".safetensors")]
        component_plain = [p for p in safetensors if not p.name.endswith(".fp16.safetensors")]
        component_fp16 = [p for p in safetensors if p.name.endswith(".fp16.safetensors")]
        if not safetensors:
            pickles = [p.name for p in files if is_pickle(p.name)]
            if pickles:
                pickled.append(f"{name}/{pickles[0]}")
                continue
            raise ModelFileError(
                f"{source.name}/{name}/ has no weights (no .safetensors file). Download the whole pipeline folder."
            )
        plain += component_plain
        fp16 += component_fp16
        plain_complete &= bool(component_plain)
        fp16_complete &= bool(component_fp16)
    if pickled:
        raise ModelFileError(
            f"{source.name} has pickle weights ({', '.join(pickled)}), which Ember refuses: loading them can run "
            "code. Get the model with .safetensors weights (most model pages offer them) and convert that."
        )
    # A component with both kinds of files is loaded from safetensors; pickle files beside them
    # are never opened, so they are no reason to refuse the folder.
    if plain_complete:
        return None, tuple(plain)
    if fp16_complete:
        return "fp16", tuple(fp16)
    raise ModelFileError(
        f"{source.name} mixes full-precision and fp16-only components; Ember cannot tell which weights to load. "
        "Download the pipeline again with one kind of weights."
    )


def _safetensors_fp32_bytes(path: Path) -> int:
    """The size of a safetensors file's tensors as float32, read from its header."""
    try:
        with path.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(header_len))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelFileError(
            f"{path.parent.name}/{path.name} is not a readable safetensors file ({exc}). It may be truncated; "
            "download it again."
        ) from None
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        count = 1
        for dim in info.get("shape", []):
            count *= int(dim)
        dtype = str(info.get("dtype", ""))
        # Floating point weights are exported as float32; integer tensors (position ids) keep their size.
        total += count * (4 if dtype.startswith(("F", "BF")) else _SAFETENSORS_BYTES_PER_ELEMENT.get(dtype, 4))
    return total


def _free_disk_bytes(folder: Path) -> int:
    """Free bytes on the disk that holds ``folder`` (tests replace this to simulate a full disk)."""
    return shutil.disk_usage(folder).free


def _existing_ancestor(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


# ----------------------------------------------------------------------------------------------
# The conversion (torch, diffusers, optimum and onnx imported here only)


@dataclass(frozen=True)
class _Converter:
    torch: Any
    diffusers: Any
    onnx_export_from_model: Callable[..., Any]


def _import_converter() -> _Converter:
    missing = None
    try:
        import torch
    except ImportError:
        missing = "torch"
    if missing is None:
        try:
            import diffusers
        except ImportError:
            missing = "diffusers"
    if missing is None:
        try:
            import onnx  # noqa: F401
        except ImportError:
            missing = "onnx"
    if missing is None:
        try:
            from optimum.exporters.onnx import onnx_export_from_model
        except ImportError:
            missing = "optimum-onnx"
    if missing is not None:
        raise EmberError(_CONVERT_EXTRA_MESSAGE.format(missing=missing))
    return _Converter(torch=torch, diffusers=diffusers, onnx_export_from_model=onnx_export_from_model)


def _export_fp32(modules: _Converter, checkpoint: SourceCheckpoint, out: Path, say: Callable[[str], None]) -> None:
    say("Loading the checkpoint (safetensors)")
    kwargs: dict[str, Any] = {
        "torch_dtype": modules.torch.float32,
        "use_safetensors": True,
        "local_files_only": True,
    }
    if checkpoint.variant:
        kwargs["variant"] = checkpoint.variant
    index = json.loads((checkpoint.folder / "model_index.json").read_text(encoding="utf-8"))
    for name in _SKIPPED_COMPONENTS:
        if _is_component(index.get(name)):
            kwargs[name] = None
    if "safety_checker" in kwargs:
        kwargs["requires_safety_checker"] = False
    with _offline():
        pipeline = modules.diffusers.DiffusionPipeline.from_pretrained(str(checkpoint.folder), **kwargs)
        say(f"Exporting {', '.join(checkpoint.components)} to ONNX fp32 (the UNet takes longest)")
        modules.onnx_export_from_model(
            pipeline,
            output=str(out),
            task="text-to-image",
            device="cpu",
            # optimum's validation runs every graph against torch again, doubling time and memory;
            # the graphs are checked below, and Ember's pipeline tests compare images with diffusers.
            do_validation=False,
        )
    del pipeline


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Keep the Hugging Face libraries from reaching the network while they read a local folder."""
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({key: "1" for key in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _convert_folder(src: Path, dst: Path, precision: str, kind: str, say: Callable[[str], None]) -> tuple[str, ...]:
    """Copy the fp32 export ``src`` to ``dst``, converting each graph; each fp32 graph is deleted once done.

    Returns the components left in fp32.
    """
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.onnx*"))
    kept: list[str] = []
    for graph in sorted(src.glob("*/model.onnx")):
        component = graph.parent.name
        target = dst / component / "model.onnx"
        if precision == "fp16" and not _vae_needs_fp32(graph.parent, kind):
            say(f"Converting {component} to fp16")
            convert_graph_to_fp16(graph, target)
        elif precision == "int8" and component in _QUANTIZED_GRAPHS:
            say(f"Quantizing {component} to int8")
            quantize_graph_to_int8(graph, target, _QUANTIZED_GRAPHS[component])
        else:
            say(f"Keeping {component} in fp32")
            kept.append(component)
            for path in graph.parent.iterdir():
                if _is_graph_file(path):
                    shutil.copy2(path, target.parent / path.name)
        # Free the space of the fp32 graph now rather than at the end (see _DISK_FACTOR).
        for path in list(graph.parent.iterdir()):
            if _is_graph_file(path):
                path.unlink()
    return tuple(kept)


def _vae_needs_fp32(component_folder: Path, kind: str) -> bool:
    """Whether an SDXL VAE must stay fp32: its activations overflow float16 and images come out black.

    SDXL's VAE says so with ``force_upcast: true`` (diffusers' SDXL pipelines decode it in fp32);
    VAEs fixed for fp16 (madebyollin/sdxl-vae-fp16-fix) say false. SD 1.x/2.x pipelines ignore the
    flag (it defaults to true everywhere), and their VAEs run well in fp16.
    """
    if kind != "sdxl" or not component_folder.name.startswith("vae"):
        return False
    try:
        config = json.loads((component_folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return bool(config.get("force_upcast", True))


def _is_graph_file(path: Path) -> bool:
    """model.onnx and its external weights (optimum's model.onnx_data, the quantizer's model.onnx.data)."""
    return path.name == "model.onnx" or path.name.startswith("model.onnx")


def _tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the model's initializers and Constant tensors (what decides the protobuf's size)."""
    import numpy as np
    from onnx import helper

    def size(t: onnx.TensorProto) -> int:
        if t.raw_data:
            return len(t.raw_data)
        count = 1
        for d in t.dims:
            count *= d
        return count * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize

    total = sum(size(t) for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            total += sum(size(a.t) for a in node.attribute if a.name == "value")
    return total


def _save_graph(model: onnx.ModelProto, path: Path) -> None:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    if needs_external_data(model):
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=_EXTERNAL_DATA_NAME,
            # As optimum does: tiny tensors stay in the graph, where some operators expect them.
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def _keep_resize_scales_fp32(model: onnx.ModelProto) -> None:
    """Turn Resize "scales" that ended up float16 back into float32; onnxruntime rejects fp16 scales.

    The fp16 converter keeps them float32 when shape inference told it their type; this catches
    the constants it could not see (a Constant node feeding Resize directly).
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    scales = {node.input[2] for node in model.graph.node if node.op_type == "Resize" and len(node.input) > 2}
    scales.discard("")
    if not scales:
        return
    for init in model.graph.initializer:
        if init.name in scales and init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in scales:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT16:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32)))
    for info in model.graph.value_info:
        if info.name in scales and info.type.tensor_type.elem_type == TensorProto.FLOAT16:
            info.type.tensor_type.elem_type = TensorProto.FLOAT


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Order the graph's nodes so that each comes after the nodes whose outputs it reads.

    Kahn's algorithm, always taking the earliest ready node, so an ordered graph stays as it is.
    """
    import heapq

    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}

    def reads(node: onnx.NodeProto) -> set[str]:
        names = {name for name in node.input if name}
        # A subgraph (If, Loop) may read the outer graph's values directly.
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                for inner in sub.node:
                    names |= reads(inner)
        return names

    waiting = [0] * len(nodes)
    readers: list[list[int]] = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        for j in {producer[name] for name in reads(node) if name in producer} - {i}:
            waiting[i] += 1
            readers[j].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in readers[i]:
            waiting[k] -= 1
            if waiting[k] == 0:
                heapq.heappush(ready, k)
    if len(order) != len(nodes):
        raise EmberError("The converted graph has a cycle; this is a bug in the fp16 conversion, please report it.")
    if order != list(range(len(nodes))):
        sorted_nodes = [nodes[i] for i in order]
        del graph.node[:]
        graph.node.extend(sorted_nodes)


def _check_graphs(folder: Path) -> dict[str, int]:
    """Check every graph with onnx's full checker (types included); return each component's bytes."""
    import onnx

    sizes: dict[str, int] = {}
    graphs = sorted(folder.glob("*/model.onnx"))
    if not any(g.parent.name == "unet" for g in graphs):
        raise EmberError("The export wrote no UNet graph.")
    for graph in graphs:
        # Given a path, the checker reads external data itself and works past 2 GiB.
        onnx.checker.check_model(str(graph), full_check=True)
        sizes[graph.parent.name] = sum(p.stat().st_size for p in graph.parent.iterdir() if _is_graph_file(p))
    return sizes


def _write_record(
    folder: Path,
    checkpoint: SourceCheckpoint,
    precision: str,
    component_bytes: dict[str, int],
    kept_fp32: tuple[str, ...],
    seconds: float,
) -> None:
    versions = {}
    for dist in ("ember-studio", "torch", "diffusers", "transformers", "optimum-onnx", "onnx", "onnxruntime-gpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    if "onnxruntime-gpu" not in versions:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["onnxruntime"] = metadata.version("onnxruntime")
    record = {
        "source": str(checkpoint.folder.resolve()),
        "pipeline": checkpoint.pipeline_class,
        "kind": checkpoint.kind,
        "precision": precision,
        "source_variant": checkpoint.variant,
        "components": component_bytes,
        "fp32_components": list(kept_fp32),
        "seconds": round(seconds, 2),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "versions": versions,
    }
    (folder / "ember_convert.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs advice and shape-inference notes on the root logger; hide them."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
