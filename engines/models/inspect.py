"""What a model file or folder is, read from its own metadata: kind, format, size, context, quantisation.

``inspect_model`` never loads weights. A GGUF file's header and tensor table are read with the
light reader in ``engines.text.gguf_header`` (tens of milliseconds; ``gguf.GGUFReader`` takes
seconds on a 262k-token vocabulary, too slow to scan a user's model folders); ONNX graphs are
read with ``engines.models.onnx_header``, which skips every weight with a seek. Files Ember must
not or cannot open are refused with a reason a person can act on: pickle-based checkpoints
(they can run code when loaded), truncated downloads, other formats.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engines.diffusion.folder import is_diffusion_folder, is_pytorch_checkpoint, missing_parts, text_encoders
from engines.errors import ModelFileError
from engines.modalities import model_kinds
from engines.models.formats import PICKLE_SUFFIXES
from engines.models.onnx_header import FLOAT, FLOAT16, OnnxHeader, OnnxValue, read_onnx_header
from engines.text.gguf_header import GGUFHeader, read_gguf_header
from engines.text.requests import is_base_model

# Contrib operators that onnxruntime implements for CUDA (and ROCm) only: a graph using them
# fails at session start on the CPU with NOT_IMPLEMENTED. ONNX Runtime's own SD exports use them.
CUDA_ONLY_OPERATORS = frozenset(
    f"com.microsoft.{op}" for op in ("NhwcConv", "GroupNorm", "SkipGroupNorm", "BiasSplitGelu", "BiasAdd")
)
_GGML_MAGICS = {b"lmgg": "GGML", b"fmgg": "GGMF", b"tjgg": "GGJT", b"algg": "GGLA"}
_GUARD_NAME = re.compile(r"guard|shieldgemma", re.IGNORECASE)
_SPLIT_GGUF = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_SCALE_IN_DIM = re.compile(r"\*\s*(\d+)\s*$")


def __getattr__(name: str) -> Any:
    """``KINDS`` and ``FORMATS``: the kinds of model (and their formats) that the registered modalities run."""
    if name == "KINDS":
        return tuple(k.kind for k in model_kinds())
    if name == "FORMATS":
        return tuple(dict.fromkeys(k.format for k in model_kinds()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UnsupportedModel(ModelFileError):
    """A readable file or folder that is not a kind of model Ember runs (a classifier, a projector...)."""


@dataclass(frozen=True)
class ModelInfo:
    """What one model is. ``details`` holds format-specific facts (JSON values only).

    ``size_bytes`` is the whole model on disk (every part of a split GGUF, every file of a
    diffusers folder, a voice's config). ``parameter_count`` and ``context_length`` are None
    where the format has no such thing.
    """

    path: Path
    kind: str
    format: str
    name: str
    architecture: str
    parameter_count: int | None
    context_length: int | None
    quantisation: str | None
    chat_template: str | None
    licence: str
    size_bytes: int
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict that ``from_json`` turns back into an equal ModelInfo."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        """Return the ModelInfo that ``to_json`` wrote. Raises KeyError or TypeError on other data."""
        values = dict(data)
        values["path"] = Path(values["path"])
        return cls(**values)


def inspect_model(path: Path | str) -> ModelInfo:
    """Return what the model at ``path`` (a file, or a diffusers ONNX folder) is.

    Reads metadata only, never weights. Raises ModelFileError, with a reason a person can
    act on, when the path is missing, pickle-based, truncated or damaged, in a format Ember
    does not run, or a graph Ember has no panel for.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"'{path}' does not exist. It may have been moved or deleted.")
    if path.is_dir():
        return _inspect_folder(path)
    lower = path.name.lower()
    if lower.endswith(".onnx.json"):
        voice = path.with_name(path.name[: -len(".json")])
        if voice.exists():
            return inspect_model(voice)
        raise ModelFileError(
            f"'{path.name}' is a voice's settings; its model '{voice.name}' is not beside it. "
            "Download both files of the voice."
        )
    magic = _magic(path)
    suffix = path.suffix.lower()
    if suffix == ".gguf" or (magic.startswith(b"GGUF") and suffix not in PICKLE_SUFFIXES):
        return _inspect_gguf(path)
    if magic[:4] in _GGML_MAGICS:
        raise ModelFileError(
            f"'{path.name}' is in the old {_GGML_MAGICS[magic[:4]]} format, which llama.cpp no longer reads. "
            "Download the GGUF version of the model."
        )
    if suffix in PICKLE_SUFFIXES or magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80":
        raise ModelFileError(_pickle_message(path.name))
    if suffix == ".safetensors":
        raise ModelFileError(
            f"'{path.name}' holds PyTorch weights (safetensors), which Ember does not run directly. "
            "Pick its GGUF version, or convert a diffusers checkpoint to ONNX with Ember's Convert command."
        )
    if suffix == ".onnx":
        return _inspect_onnx(path)
    raise UnsupportedModel(
        f"Ember does not know what '{path.name}' is. It opens GGUF text models (.gguf), diffusers ONNX "
        "folders (with model_index.json), and ONNX upscalers, GAN generators and piper voices (.onnx)."
    )


def _pickle_message(name: str) -> str:
    return (
        f"'{name}' is a pickle-based file, which can run code when loaded, so Ember does not open it. "
        "Use the safetensors or GGUF version."
    )


def _magic(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(8)
    except OSError as exc:
        raise ModelFileError(f"Ember cannot read '{path}' ({exc.strerror or exc}).") from None


# -- GGUF -----------------------------------------------------------------------------------


def _inspect_gguf(path: Path) -> ModelInfo:
    header = read_gguf_header(path)
    parts = _split_parts(path, header)
    headers = [header] + [read_gguf_header(p) for p in parts[1:]]
    if header.architecture == "clip":
        raise UnsupportedModel(
            f"'{path.name}' is a vision projector (mmproj) that goes with a language model, not a model "
            "on its own. Pick the language model's .gguf file."
        )
    elements: dict[int, int] = {}
    for h in headers:
        for t, n in h.tensor_elements.items():
            elements[t] = elements.get(t, 0) + n
    type_names = _ggml_type_names(elements)
    quantisation = header.quantization
    if header.metadata.get("general.file_type") is None:
        quantisation = _dominant_type(elements, type_names)
    meta = header.metadata
    name = header.name
    guard_text = " ".join(
        str(meta.get(k, ""))
        for k in ("general.name", "general.basename", "general.finetune", "general.base_model.0.name")
    )
    is_guard = bool(_GUARD_NAME.search(guard_text) or _GUARD_NAME.search(path.name))
    context = header.arch_value("context_length")
    kv_heads = header.arch_value("attention.head_count_kv")
    ff = header.arch_value("feed_forward_length")
    details: dict[str, Any] = {
        "gguf_version": header.version,
        "file_type": meta.get("general.file_type"),
        "size_label": meta.get("general.size_label"),
        "block_count": header.block_count,
        "embedding_length": _int_or_none(header.arch_value("embedding_length")),
        "feed_forward_length": max(ff) if isinstance(ff, list) and ff else _int_or_none(ff),
        "head_count": _int_or_none(header.arch_value("attention.head_count")),
        "head_count_kv": kv_heads if isinstance(kv_heads, list) else _int_or_none(kv_heads),
        "key_length": _int_or_none(header.arch_value("attention.key_length")),
        "value_length": _int_or_none(header.arch_value("attention.value_length")),
        "sliding_window": _int_or_none(header.arch_value("attention.sliding_window")),
        "expert_count": _int_or_none(header.arch_value("expert_count")),
        "vocab_size": _vocab_size(header),
        "tensor_count": sum(h.tensor_count for h in headers),
        "tensor_types": {type_names[t]: n for t, n in sorted(elements.items())},
        "data_bytes": sum(h.data_bytes for h in headers),
        "split_count": len(parts),
        "split_files": [p.name for p in parts] if len(parts) > 1 else [],
        "base_model": is_base_model(header.chat_template),
        "organization": meta.get("general.organization"),
    }
    return ModelInfo(
        path=path,
        kind="guard" if is_guard else "text",
        format="gguf",
        name=name,
        architecture=header.architecture,
        parameter_count=sum(elements.values()) or None,
        context_length=_int_or_none(context),
        quantisation=quantisation,
        chat_template=header.chat_template,
        licence=str(meta.get("general.license") or meta.get("general.license.name") or ""),
        size_bytes=sum(h.file_bytes for h in headers),
        details=details,
    )


def _split_parts(path: Path, header: GGUFHeader) -> list[Path]:
    """Return every part of a split GGUF (this file first), or [path]. Raises if a part is missing."""
    count = header.metadata.get("split.count")
    match = _SPLIT_GGUF.match(path.name)
    if not count or int(count) <= 1 or match is None:
        return [path]
    index = int(header.metadata.get("split.no", int(match["part"]) - 1))
    if index != 0:
        first = path.with_name(f"{match['stem']}-00001-of-{match['count']}.gguf")
        raise ModelFileError(
            f"'{path.name}' is part {index + 1} of a model split into {count} files. Pick the first part, "
            f"'{first.name}'; Ember reads the others from beside it."
        )
    parts = [path.with_name(f"{match['stem']}-{i:05d}-of-{match['count']}.gguf") for i in range(1, int(count) + 1)]
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise ModelFileError(
            f"'{path.name}' is the first of {count} parts, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not beside it. Download every part."
        )
    return parts


def _ggml_type_names(elements: dict[int, int]) -> dict[int, str]:
    names: dict[int, str] = {}
    try:
        import gguf  # only for the names of tensor types; imported here because it takes ~0.1 s

        for t in elements:
            try:
                names[t] = gguf.GGMLQuantizationType(t).name
            except ValueError:
                names[t] = f"type {t}"
    except ImportError:
        names = {t: f"type {t}" for t in elements}
    return names


def _dominant_type(elements: dict[int, int], names: dict[int, str]) -> str | None:
    """Return the tensor type that holds most weights, leaving out the small F32 norms and biases."""
    weights = {t: n for t, n in elements.items() if names.get(t) not in ("F32", "F64", "I32", "I64")}
    if not weights:
        return "F32" if elements else None
    return names[max(weights, key=weights.__getitem__)]


def _vocab_size(header: GGUFHeader) -> int | None:
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, int):
        return tokens
    return _int_or_none(header.arch_value("vocab_size"))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- single ONNX graphs -----------------------------------------------------------------------


def _inspect_onnx(path: Path) -> ModelInfo:
    folder = path.parent.parent
    components = ("unet", "vae_decoder", "vae_encoder", "text_encoder", "text_encoder_2")
    if path.parent.name in components and is_diffusion_folder(folder):
        raise UnsupportedModel(
            f"'{path.name}' is the {path.parent.name} of the diffusion model in '{folder.name}'. "
            "Open that folder instead: Ember reads all of its parts together."
        )
    header = read_onnx_header(path)
    names = {v.name for v in header.inputs}
    config = path.with_name(path.name + ".json")
    if config.exists() or {"input", "input_lengths", "scales"} <= names:
        return _inspect_piper(path, header, config)
    common = {
        "precision": header.precision,
        "inputs": [_describe_value(v) for v in header.inputs],
        "outputs": [_describe_value(v) for v in header.outputs],
        "producer": header.producer,
        "opsets": header.opsets,
        "external_files": list(header.external_files),
    }
    tower = _clip_tower(header)
    if tower == "image":
        variant = path.name[len("vision_model") :] if path.name.startswith("vision_model") else ".onnx"
        raise UnsupportedModel(
            f"'{path.name}' is the image tower of a CLIP model. Open its folder, or the text tower "
            f"'text_model{variant}' beside it: Ember reads both towers together."
        )
    if tower == "text":
        return _inspect_clip(path, header, common)
    kind, extra = _classify_graph(header)
    if kind is None:
        shown_in = ", ".join(_describe_value(v) for v in header.inputs) or "none"
        shown_out = ", ".join(_describe_value(v) for v in header.outputs) or "none"
        raise UnsupportedModel(
            f"'{path.name}' is an ONNX model Ember has no panel for (inputs {shown_in}; outputs {shown_out}). "
            "Ember runs ONNX upscalers (image to a larger image), GAN generators (a latent vector to an "
            "image), piper voices, and diffusers ONNX folders."
        )
    return ModelInfo(
        path=path,
        kind=kind,
        format="onnx",
        name=header.metadata.get("name") or path.stem,
        architecture=header.metadata.get("model_type") or header.metadata.get("architecture") or f"onnx {kind}",
        parameter_count=header.parameter_count or None,
        context_length=None,
        quantisation=header.precision,
        chat_template=None,
        licence=header.metadata.get("license", ""),
        size_bytes=header.weight_bytes,
        details={**common, **extra},
    )


def _clip_tower(header: OnnxHeader) -> str | None:
    """Return "text" or "image" for a CLIP tower as transformers.js and optimum export them, else None."""
    names = {v.name for v in header.inputs}
    outputs = {v.name for v in header.outputs}
    if "input_ids" in names and names <= {"input_ids", "attention_mask"} and "text_embeds" in outputs:
        return "text"
    if names == {"pixel_values"} and "image_embeds" in outputs:
        return "image"
    return None


def _inspect_clip(path: Path, header: OnnxHeader, common: dict[str, Any]) -> ModelInfo:
    """A CLIP model, opened by its text tower: both towers are read (and their sizes counted), and the
    tokenizer must be there. Raises ModelFileError naming a part that is missing or damaged."""
    from engines.evaluation.clip import clip_files

    files = clip_files(path)
    vision = read_onnx_header(files.vision)
    if _clip_tower(vision) != "image":
        raise ModelFileError(
            f"'{files.vision.name}' beside the CLIP text tower '{path.name}' is not a CLIP image tower "
            "(it takes no pixel_values or gives no image_embeds). Download the CLIP model again."
        )
    config = _read_json(files.config) if files.config is not None else {}
    name = _folder_model_name(files.root, path.stem)
    return ModelInfo(
        path=path,
        kind="clip",
        format="onnx",
        name=name,
        architecture=str(config.get("model_type") or "clip"),
        parameter_count=(header.parameter_count + vision.parameter_count) or None,
        context_length=None,
        quantisation=header.precision,
        chat_template=None,
        licence=header.metadata.get("license", ""),
        size_bytes=header.weight_bytes + vision.weight_bytes,
        details={
            **common,
            "vision_tower": str(files.vision),
            "vision_inputs": [_describe_value(v) for v in vision.inputs],
            "vision_outputs": [_describe_value(v) for v in vision.outputs],
            "tokenizer": str(files.tokenizer),
            "root": str(files.root),
        },
    )


def _describe_value(value: OnnxValue) -> str:
    if value.shape is None:
        return value.name
    dims = ["?" if d is None else str(d) for d in value.shape]
    return f"{value.name}[{'x'.join(dims)}]"


def _image_layout(value: OnnxValue) -> tuple[int | None, int, int] | None:
    """Return (channels, height axis, width axis) for a rank-4 image tensor, NCHW or NHWC, else None."""
    if value.rank != 4 or value.elem_type not in (FLOAT, FLOAT16, 16):
        return None
    c_first, c_last = value.dim(1), value.dim(3)
    if c_last in (1, 3) and c_first not in (1, 3, 4):
        return c_last, 1, 2
    return c_first, 2, 3


def _classify_graph(header: OnnxHeader) -> tuple[str | None, dict[str, Any]]:
    """Return ("upscaler" | "gan" | None, details) from the graph's inputs and outputs."""
    if len(header.inputs) != 1 or not header.outputs:
        return None, {}
    inp, out = header.inputs[0], header.outputs[0]
    out_layout = _image_layout(out)
    if out_layout is None or out_layout[0] not in (1, 3, None):
        return None, {}
    out_channels, out_h, out_w = out_layout
    if inp.rank == 2 or (inp.rank == 4 and inp.dim(2) == 1 and inp.dim(3) == 1):
        return "gan", {
            "latent_dim": inp.dim(1),
            "latent_shape": list(inp.shape or ()),
            "image_channels": out_channels,
            "image_size": [out.dim(out_h), out.dim(out_w)],
        }
    in_layout = _image_layout(inp)
    if in_layout is None:
        return None, {}
    in_channels, in_h, in_w = in_layout
    if in_channels is not None and in_channels > 3:
        return "gan", {  # a decoder from a spatial latent (a VAE decoder): latent to image
            "latent_dim": in_channels,
            "latent_shape": list(inp.shape or ()),
            "image_channels": out_channels,
            "image_size": [out.dim(out_h), out.dim(out_w)],
        }
    scale = _upscale_factor(header, inp, out, (in_h, in_w), (out_h, out_w))
    return "upscaler", {
        "scale": scale,
        "channels": in_channels,
        "tile_size": [inp.dim(in_h), inp.dim(in_w)] if inp.dim(in_h) and inp.dim(in_w) else None,
        "channels_last": in_h == 1,
    }


def _upscale_factor(
    header: OnnxHeader, inp: OnnxValue, out: OnnxValue, in_axes: tuple[int, int], out_axes: tuple[int, int]
) -> int | None:
    """Return how many times larger the output image is, from fixed shapes or the graph's operators."""
    in_h, out_h = inp.dim(in_axes[0]), out.dim(out_axes[0])
    if in_h and out_h:
        return max(1, round(out_h / in_h))
    shape = out.shape or ()
    dim = shape[out_axes[0]] if len(shape) > out_axes[0] else None
    if isinstance(dim, str) and (match := _SCALE_IN_DIM.search(dim)):
        return int(match.group(1))
    factor = 1.0
    for block in header.depth_to_space_blocks:
        factor *= block
    for scales in header.resize_scales:
        if len(scales) == 4 and scales[2] > 0:
            factor *= scales[2]
    return round(factor) if factor >= 1 else None


def _inspect_piper(path: Path, header: OnnxHeader, config_path: Path) -> ModelInfo:
    if not config_path.exists():
        raise ModelFileError(
            f"The voice '{path.name}' needs its settings file '{config_path.name}' beside it (it holds the "
            "phonemes and the sample rate). Download both files of the voice."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        sample_rate = int(config["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelFileError(
            f"'{config_path.name}' is not a piper voice's settings (no audio sample rate in it). "
            "Download the voice's .onnx.json file again."
        ) from None
    language = config.get("language") or {}
    details = {
        "sample_rate_hz": sample_rate,
        "quality": (config.get("audio") or {}).get("quality"),
        "language": language.get("code") if isinstance(language, dict) else None,
        "num_speakers": config.get("num_speakers", 1),
        "espeak_voice": (config.get("espeak") or {}).get("voice"),
        "phoneme_type": config.get("phoneme_type"),
        "dataset": config.get("dataset"),
        "precision": header.precision,
        "config_file": config_path.name,
    }
    return ModelInfo(
        path=path,
        kind="voice",
        format="piper",
        name=path.name[: -len(".onnx")],
        architecture="piper (VITS)",
        parameter_count=header.parameter_count or None,
        context_length=None,
        quantisation=header.precision,
        chat_template=None,
        licence=str(config.get("license", "")),
        size_bytes=header.weight_bytes + config_path.stat().st_size,
        details=details,
    )


# -- diffusers ONNX folders ---------------------------------------------------------------------


def _inspect_folder(path: Path) -> ModelInfo:
    from engines.evaluation.clip import clip_files, is_clip_folder

    if is_clip_folder(path):
        return _inspect_onnx(clip_files(path).text)
    index_path = path / "model_index.json"
    if not is_diffusion_folder(path) and not is_pytorch_checkpoint(path):
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if ggufs:
            raise ModelFileError(f"'{path.name}' is a folder of GGUF files; pick one of them: {', '.join(ggufs[:6])}.")
        if _only_pickles(path):
            raise ModelFileError(_pickle_message(path.name))
        raise UnsupportedModel(
            f"'{path.name}' is not a model folder Ember knows: it has no model_index.json and no unet/model.onnx. "
            "Ember opens diffusers ONNX folders (unet/, vae_decoder/, text_encoder/, tokenizer/, scheduler/, "
            "with or without model_index.json) and single model files."
        )
    try:
        # Some exports (OnnxStack's) have no model_index.json: the component folders say enough.
        index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.is_file() else {}
        if not isinstance(index, dict):
            raise ValueError
    except (OSError, ValueError):
        raise ModelFileError(
            f"The model_index.json in '{path.name}' is damaged (it is not a JSON object). Download the model again."
        ) from None
    unet_path = path / "unet" / "model.onnx"
    if not unet_path.exists():
        if _only_pickles(path):
            raise ModelFileError(_pickle_message(path.name))
        if is_pytorch_checkpoint(path):
            raise ModelFileError(
                f"'{path.name}' is a diffusers checkpoint in PyTorch format (safetensors). Ember runs the "
                "ONNX export: convert it with Ember's Convert command (main.py convert), then open the result."
            )
    sdxl_pair = any(encoder == "text_encoder_2" for encoder, _ in text_encoders(path, index))
    missing = missing_parts(path, index)
    if missing:
        raise ModelFileError(
            f"The diffusion model folder '{path.name}' is incomplete: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Download the whole folder again."
        )
    graphs: dict[str, OnnxHeader] = {}
    for component in ("unet", "text_encoder", "text_encoder_2", "vae_decoder", "vae_encoder"):
        graph = path / component / "model.onnx"
        if graph.is_file():
            try:
                graphs[component] = read_onnx_header(graph)
            except ModelFileError as exc:
                raise ModelFileError(f"In the diffusion model '{path.name}', {component}: {exc}") from None
    unet = graphs["unet"]
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json")
    unet_inputs = [v.name for v in unet.inputs]
    is_sdxl = {"text_embeds", "time_ids"} <= set(unet_inputs) or sdxl_pair
    scheduler_class = str(scheduler.get("_class_name", ""))
    is_lcm = "timestep_cond" in unet_inputs or scheduler_class.startswith("LCM")
    source = str(index.get("_name_or_path", ""))
    name = _folder_model_name(path, source)
    prediction = str(scheduler.get("prediction_type", "epsilon"))
    base = "sdxl" if is_sdxl else _sd_base(unet, graphs.get("text_encoder"), prediction)
    spacing = str(scheduler.get("timestep_spacing", ""))
    is_turbo = not is_lcm and ("turbo" in f"{name} {source} {path}".lower() or spacing == "trailing")
    variant = "lcm" if is_lcm else "turbo" if is_turbo else base
    vae_factor = _vae_factor(graphs.get("vae_decoder"))
    sample_size = _sample_size(path, unet, base, is_turbo or is_lcm, prediction, vae_factor)
    cuda_only = sorted({op for g in graphs.values() for op in g.operators if op in CUDA_ONLY_OPERATORS})
    component_parameters = {c: g.parameter_count for c, g in graphs.items()}
    component_bytes = {c: g.weight_bytes for c, g in graphs.items()}
    details: dict[str, Any] = {
        "variant": variant,
        "base": base,
        "pipeline": index.get("_class_name"),
        "diffusers_version": index.get("_diffusers_version"),
        "source_model": source or None,
        "scheduler": scheduler_class or None,
        "prediction_type": prediction,
        "timestep_spacing": spacing or None,
        "precision": unet.precision,
        "sample_size": sample_size,
        "vae_scale_factor": vae_factor,
        "unet_inputs": unet_inputs,
        "components": sorted(graphs),
        "component_parameters": component_parameters,
        "component_bytes": component_bytes,
        "cross_attention_dim": _cross_attention_dim(unet),
        # Widths that set how much memory activations take: the UNet's first block, the VAE's last.
        "unet_base_channels": _first_conv_width(unet, in_channels=(4, 8, 9)),
        "vae_decoder_channels": _last_conv_width(graphs.get("vae_decoder")),
        "cuda_only_operators": cuda_only,
        "external_files": {c: list(g.external_files) for c, g in graphs.items() if g.external_files},
    }
    return ModelInfo(
        path=path,
        kind="diffusion",
        format="onnx-diffusers",
        name=name,
        architecture=str(index.get("_class_name") or "diffusers"),
        parameter_count=sum(component_parameters.values()) or None,
        context_length=None,
        quantisation=unet.precision,
        chat_template=None,
        licence=_readme_licence(path),
        size_bytes=_folder_bytes(path),
        details=details,
    )


def _only_pickles(path: Path) -> bool:
    """True when the folder's weights are all pickles (and none are ONNX, safetensors or GGUF)."""
    # Two levels are enough for a checkpoint folder (unet/diffusion_pytorch_model.bin), and cheap
    # even when someone picks a large folder by mistake.
    candidates = [*path.glob("*"), *path.glob("*/*")]
    weights = [p for p in candidates if p.suffix.lower() in (*PICKLE_SUFFIXES, *_SAFE_WEIGHTS) and p.is_file()]
    return bool(weights) and all(p.suffix.lower() in PICKLE_SUFFIXES for p in weights)


_SAFE_WEIGHTS = frozenset({".onnx", ".safetensors", ".gguf", ".pb", ".onnx_data", ".data"})


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ModelFileError(
            f"'{path.parent.name}/{path.name}' is damaged (not JSON). Download the model again."
        ) from None
    return data if isinstance(data, dict) else {}


def _folder_model_name(path: Path, source: str) -> str:
    # A Hugging Face snapshot folder is named by its commit: name the model by its repository.
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name[len("models--") :].replace("--", "/")
    if path.name in ("onnx", "model") and path.parent.name:
        return path.parent.name
    return path.name or source


def _cross_attention_dim(unet: OnnxHeader) -> int | None:
    for value in unet.inputs:
        if value.name == "encoder_hidden_states":
            return value.dim(-1)
    return None


def _first_conv_width(graph: OnnxHeader, in_channels: tuple[int, ...]) -> int | None:
    """Return the output channels of the convolution that reads the latent (``conv_in``)."""
    for shape in graph.conv_weight_shapes:
        if shape[1] in in_channels and shape[2:] == (3, 3):
            return int(shape[0])
    return None


def _last_conv_width(graph: OnnxHeader | None) -> int | None:
    """Return the input channels of the convolution that writes the RGB image (``conv_out``)."""
    if graph is None:
        return None
    for shape in reversed(graph.conv_weight_shapes):
        if shape[0] == 3 and shape[2:] == (3, 3):
            return int(shape[1])
    return None


def _sd_base(unet: OnnxHeader, text_encoder: OnnxHeader | None, prediction: str) -> str:
    """Return "sd1" or "sd2": SD 2.x conditions on 1024-wide OpenCLIP states, SD 1.x on 768-wide CLIP."""
    width = _cross_attention_dim(unet)
    if width is None and text_encoder is not None:
        for value in text_encoder.outputs:
            if value.name == "last_hidden_state":
                width = value.dim(-1)
    if width == 1024:
        return "sd2"
    if width == 768:
        return "sd1"
    return "sd2" if prediction == "v_prediction" else "sd1"


def _vae_factor(vae: OnnxHeader | None) -> int:
    if vae is not None and vae.outputs and vae.inputs:
        out, inp = vae.outputs[0], vae.inputs[0]
        if inp.dim(2) and out.dim(2):
            return max(1, out.dim(2) // inp.dim(2))
        shape = out.shape or ()
        if len(shape) == 4 and isinstance(shape[2], str) and (match := _SCALE_IN_DIM.search(shape[2])):
            return int(match.group(1))
    return 8


def _sample_size(path: Path, unet: OnnxHeader, base: str, distilled: bool, prediction: str, factor: int) -> int:
    """Return the image side the model was trained for, in pixels."""
    for value in unet.inputs:
        if value.name == "sample" and value.dim(2):
            return int(value.dim(2)) * factor
    config = path / "unet" / "config.json"
    if config.is_file():
        size = _read_json(config).get("sample_size")
        if isinstance(size, int) and size > 0:
            return size * factor
    if base == "sdxl":
        return 512 if distilled and "turbo" in str(path).lower() else 1024
    if base == "sd2" and prediction == "v_prediction" and not distilled:
        return 768
    return 512


def _readme_licence(path: Path) -> str:
    """Return the ``license:`` of a Hugging Face model card's front matter, or ""."""
    readme = path / "README.md"
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")[:8000]
    except OSError:
        return ""
    if not text.startswith("---"):
        return ""
    for line in text.splitlines()[1:]:
        if line.strip() == "---":
            break
        if line.lower().startswith("license:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return ""


def _folder_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    return total
