"""A tiny random-weight CLIP for tests, in the layout of the transformers.js export Ember's catalog offers.

``tiny_clip()`` returns a folder shaped like ``Xenova/clip-vit-base-patch32``::

    config.json  preprocessor_config.json  tokenizer.json (+ vocab.json, merges.txt, ...)
    onnx/text_model.onnx      input_ids[batch, sequence] -> text_embeds[batch, 32], last_hidden_state
    onnx/vision_model.onnx    pixel_values[batch, 3, 224, 224] -> image_embeds[batch, 32], last_hidden_state

built from a transformers ``CLIPModel`` with a tiny ``CLIPConfig`` (fixed torch seed) whose checkpoint
(safetensors) is kept beside it (``tiny_clip_checkpoint()``), so a test can compare Ember's scorer with
transformers' own model on the same weights. The image geometry is CLIP's (224 px, 32 px patches) and
the preprocessor settings are CLIP ViT-B/32's, so the real preprocessing is exercised; the towers are
2 layers of width 32. ``text_model_with_mask.onnx`` beside the folder is the text tower exported with
an ``attention_mask`` input as well (some exports have one).

The logit scale is 100, as in the trained model, so ``logits_per_image / 100`` is the cosine. The
tokenizer is tests/tools/tiny_diffusion.py's byte-level CLIP BPE. The cache lives in
``~/.cache/ember-tests/tiny-clip/<hash>`` (or under ``$EMBER_TINY_CLIP_CACHE``); the hash covers this
file's and tiny_diffusion.py's source and the versions of the libraries that build it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
import built_once

_DISTS = ("torch", "transformers", "tokenizers", "onnx")

# openai/clip-vit-base-patch32's preprocessor_config.json (the old spelling: sizes as numbers).
PREPROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}


def version_hash() -> str:
    """A short hash of this builder's source (and the tokenizer's) and the libraries' versions."""
    ours = built_once.version_hash(Path(__file__), _DISTS)
    theirs = built_once.version_hash(Path(__file__).with_name("tiny_diffusion.py"), ())
    return hashlib.sha256((ours + theirs).encode()).hexdigest()[:16]


def cache_root() -> Path:
    """The folder that holds the built model of this source version."""
    return built_once.cache_root("tiny-clip", "EMBER_TINY_CLIP_CACHE", version_hash())


def _build(out: Path) -> None:
    import torch
    from tiny_diffusion import write_clip_tokenizer
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast
    from transformers.models.clip.configuration_clip import CLIPVisionConfig

    model_dir, checkpoint = out / "clip", out / "checkpoint"
    ids = write_clip_tokenizer(model_dir)
    fast = CLIPTokenizerFast.from_pretrained(str(model_dir))
    fast.save_pretrained(str(model_dir))  # writes tokenizer.json beside the slow tokenizer's files
    (model_dir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2), encoding="utf-8")

    text = {
        "vocab_size": ids["vocab_size"],
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
    }
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=32,
        hidden_act="quick_gelu",
    )
    config = CLIPConfig(
        text_config=text, vision_config=vision.to_dict(), projection_dim=32, logit_scale_init_value=math.log(100.0)
    )
    config._attn_implementation = "eager"  # traces to plain MatMul/Softmax for the exporter
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    model.save_pretrained(str(checkpoint))  # safetensors
    config.save_pretrained(str(model_dir))

    class TextTower(torch.nn.Module):
        def __init__(self, masked: bool) -> None:
            super().__init__()
            self.text_model, self.text_projection, self.masked = model.text_model, model.text_projection, masked

        def forward(self, input_ids, attention_mask=None):  # type: ignore[no-untyped-def]
            out = self.text_model(input_ids=input_ids, attention_mask=attention_mask if self.masked else None)
            return self.text_projection(out.pooler_output), out.last_hidden_state

    class VisionTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision_model, self.visual_projection = model.vision_model, model.visual_projection

        def forward(self, pixel_values):  # type: ignore[no-untyped-def]
            out = self.vision_model(pixel_values=pixel_values)
            return self.visual_projection(out.pooler_output), out.last_hidden_state

    onnx_dir = model_dir / "onnx"
    onnx_dir.mkdir()
    ids_example = torch.full((1, 77), ids["pad"], dtype=torch.int64)
    ids_example[0, :3] = torch.tensor([ids["bos"], 5, ids["eos"]])
    mask_example = (torch.arange(77) < 3).to(torch.int64)[None]
    seq = {0: "batch_size", 1: "sequence_length"}
    with torch.no_grad():
        torch.onnx.export(
            TextTower(False),
            (ids_example,),
            str(onnx_dir / "text_model.onnx"),
            input_names=["input_ids"],
            output_names=["text_embeds", "last_hidden_state"],
            dynamic_axes={"input_ids": seq, "text_embeds": {0: "batch_size"}, "last_hidden_state": seq},
            opset_version=17,
            dynamo=False,
        )
        torch.onnx.export(
            TextTower(True),
            (ids_example, mask_example),
            str(out / "text_model_with_mask.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["text_embeds", "last_hidden_state"],
            dynamic_axes={"input_ids": seq, "attention_mask": seq, "text_embeds": {0: "batch_size"}},
            opset_version=17,
            dynamo=False,
        )
        torch.onnx.export(
            VisionTower(),
            (torch.zeros(1, 3, 224, 224),),
            str(onnx_dir / "vision_model.onnx"),
            input_names=["pixel_values"],
            output_names=["image_embeds", "last_hidden_state"],
            dynamic_axes={"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"}},
            opset_version=17,
            dynamo=False,
        )


def _built() -> Path:
    return built_once.build_once(cache_root() / "tiny", _build)


def tiny_clip() -> Path:
    """The tiny CLIP model's folder (Xenova's layout), built on first use. Raises ImportError without torch."""
    return _built() / "clip"


def tiny_clip_checkpoint() -> Path:
    """The transformers checkpoint (safetensors) of :func:`tiny_clip`'s weights."""
    return _built() / "checkpoint"


def text_tower_with_mask() -> Path:
    """The text tower exported with ``input_ids`` and ``attention_mask``."""
    return _built() / "text_model_with_mask.onnx"


def copy_of(target: Path) -> Path:
    """A copy of the tiny model's folder at ``target`` (for tests that damage or change a file)."""
    shutil.copytree(tiny_clip(), target)
    return target


if __name__ == "__main__":
    print(tiny_clip())
