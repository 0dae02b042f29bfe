"""The layout of a diffusers ONNX model folder: whether a folder is one, and what it lacks.

The engine (``pipeline.read_model_folder``), the inspector, the library's scan and the Images
panel all ask here, so that none of them accepts a folder that another refuses. It reads only
names and JSON (no graph, no onnxruntime), so the desktop can ask it too.

optimum's exporter writes ``model_index.json`` beside the component folders; OnnxStack's exports
have no ``model_index.json``, only the components. Either file makes a folder a diffusers ONNX
folder; whether it holds every part the engine needs is a second question (:func:`missing_parts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MODEL_INDEX = "model_index.json"
UNET_GRAPH = "unet/model.onnx"
MARKERS = (MODEL_INDEX, UNET_GRAPH)
"""Files of which a diffusers ONNX folder holds at least one (optimum's exports both, OnnxStack's the UNet)."""


def is_diffusion_folder(path: Path | str) -> bool:
    """Return whether ``path`` is a folder laid out as a diffusers ONNX model (complete or not).

    True when it holds model_index.json or unet/model.onnx. Raises nothing.
    """
    folder = Path(path)
    return any((folder / marker).is_file() for marker in MARKERS)


def diffusion_roots(names: Iterable[str]) -> set[str]:
    """Return the diffusers ONNX folders that a listing of relative file paths (``names``, with "/")
    shows, by the rule of :func:`is_diffusion_folder`, each relative to the listing ("" for its root)."""
    roots: set[str] = set()
    for name in names:
        for marker in MARKERS:
            if name == marker:
                roots.add("")
            elif name.endswith(f"/{marker}"):
                roots.add(name[: -len(marker) - 1])
    return roots


def is_pytorch_checkpoint(path: Path | str) -> bool:
    """Return whether ``path`` is a diffusers checkpoint for PyTorch: a UNet in safetensors and none in ONNX."""
    unet = Path(path) / "unet"
    return not (unet / "model.onnx").is_file() and unet.is_dir() and any(unet.glob("*.safetensors"))


def layout_problem(path: Path | str) -> str:
    """Return why ``path`` is not a diffusers ONNX folder, in words for a person, or "" when it is one.

    Says nothing of missing parts (see :func:`missing_parts`): a folder that is one but lacks a
    part is refused, with what it lacks, when the engine reads it.
    """
    folder = Path(path)
    if not folder.is_dir():
        return f"'{folder}' is not a folder. Pick the folder of a diffusers ONNX model."
    if is_pytorch_checkpoint(folder):
        return (
            f"'{folder}' is a diffusers checkpoint for PyTorch, not an ONNX model: its weights are in PyTorch "
            "format (safetensors). Ember runs the ONNX export: convert it with Ember's Convert command "
            "(main.py convert), then pick the folder that writes."
        )
    if not is_diffusion_folder(folder):
        return (
            f"'{folder}' is not a diffusers ONNX folder: it has no model_index.json and no unet/model.onnx. "
            "Pick the folder optimum's exporter wrote (with unet/, vae_decoder/, text_encoder/, tokenizer/)."
        )
    return ""


def text_encoders(path: Path | str, model_index: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return the (text encoder, tokenizer) folder pairs the model conditions on, in the order their
    states are joined: those its model_index.json lists or its folders hold ("text_encoder" alone
    when neither says; SDXL has "text_encoder_2" too, an SDXL refiner only that one)."""
    folder = Path(path)
    pairs = [
        (encoder, tokenizer)
        for encoder, tokenizer in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2"))
        if _listed(model_index, encoder) or (folder / encoder).is_dir()
    ]
    return pairs or [("text_encoder", "tokenizer")]


def missing_parts(path: Path | str, model_index: Mapping[str, Any]) -> list[str]:
    """Return the files the engine needs that the diffusers ONNX folder ``path`` lacks ([] when none).

    ``model_index`` is its model_index.json ({} when it has none). The parts: the UNet, the VAE
    decoder, each text encoder (:func:`text_encoders`) and its tokenizer (vocab.json and
    merges.txt, or tokenizer.json), and the scheduler's config.
    """
    folder = Path(path)
    wanted = [UNET_GRAPH, "vae_decoder/model.onnx"]
    for encoder, tokenizer in text_encoders(folder, model_index):
        wanted.append(f"{encoder}/model.onnx")
        if not (folder / tokenizer / "tokenizer.json").is_file():
            wanted += [f"{tokenizer}/vocab.json", f"{tokenizer}/merges.txt"]
    wanted.append("scheduler/scheduler_config.json")
    return [part for part in wanted if not (folder / part).is_file()]


def _listed(model_index: Mapping[str, Any], component: str) -> bool:
    """Whether model_index.json names a class for ``component`` (diffusers writes [null, null] for one it lacks)."""
    entry = model_index.get(component)
    return isinstance(entry, list) and bool(entry) and bool(entry[0])
