"""Random-weight diffusion pipelines of real architectures, for benchmarks.

No text-to-image model ships in a package and nothing may be downloaded, yet speed and memory
depend only on the architecture and the image size, not on what the weights learned. So the
image benchmark builds Stable Diffusion 1.5's architecture (UNet 860M parameters, its VAE,
a CLIP ViT-L/14-sized text encoder) with random weights, saves it as a diffusers checkpoint,
and converts it with Ember's own converter. Both steps need the ``[convert]`` extra; the
result is cached, so later runs start at once.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EmberError
from engines.paths import cache_dir

# Stable Diffusion 1.5's component settings (runwayml/stable-diffusion-v1-5's config.json files).
_PRESETS: dict[str, dict[str, Any]] = {
    "sd15": {
        "unet": {
            "sample_size": 64,
            "block_out_channels": (320, 640, 1280, 1280),
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
        },
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "norm_num_groups": 32},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
    },
    # A fifth of the widths and half the depth: the same kinds of blocks at a small fraction of the work, for --quick.
    "small": {
        "unet": {
            "sample_size": 64,
            "block_out_channels": (64, 128, 256, 256),
            "layers_per_block": 1,
            "cross_attention_dim": 192,
            "attention_head_dim": 8,
        },
        "vae": {"block_out_channels": (32, 64, 128, 128), "layers_per_block": 1, "norm_num_groups": 32},
        "text": {"hidden_size": 192, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4},
    },
}

_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
}


@dataclass(frozen=True)
class RandomPipeline:
    """A built pipeline: the diffusers checkpoint and its ONNX export."""

    checkpoint: Path
    onnx: Path


def write_byte_tokenizer(folder: Path) -> dict[str, int]:
    """Write a byte-level CLIP tokenizer (no merges) with CLIP's real special-token ids 49406/49407.

    Returns {"bos", "eos", "vocab_size"}. Every prompt byte becomes one token, so prompts cost
    what they cost with the real 49408-token vocabulary.
    """
    from engines.diffusion.tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = 49406, 49407
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return {"bos": 49406, "eos": 49407, "vocab_size": 49408}


def _build_checkpoint(preset: str, out: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    settings = _PRESETS[preset]
    ids = write_byte_tokenizer(out / "_tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(out / "_tokenizer"))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        **settings["unet"],
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        sample_size=512,
        scaling_factor=0.18215,
        **settings["vae"],
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=ids["vocab_size"],
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=ids["bos"],
            eos_token_id=ids["eos"],
            pad_token_id=ids["eos"],
            **settings["text"],
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    shutil.rmtree(out / "_tokenizer")


def random_pipeline(preset: str = "sd15", root: Path | None = None) -> RandomPipeline:
    """Return the random-weight pipeline ``preset`` ("sd15" or "small"), building it on first use.

    Raises EmberError when the ``[convert]`` extra (torch, diffusers, optimum) is missing, and
    whatever the converter raises (a full disk, say).
    """
    if preset not in _PRESETS:
        raise EmberError(f"There is no benchmark model preset {preset!r}; choose one of {', '.join(_PRESETS)}.")
    base = (root or cache_dir() / "bench-models") / f"random-{preset}-v1"
    checkpoint, onnx = base / "checkpoint", base / "onnx"
    if checkpoint.joinpath("model_index.json").exists() and onnx.joinpath("model_index.json").exists():
        return RandomPipeline(checkpoint, onnx)
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise EmberError(
            "Building the benchmark model needs the optional converter: pip install 'ember-studio[convert]' "
            "(or pass --model FOLDER with an ONNX diffusion model)."
        ) from None
    from engines.diffusion.convert import convert_to_onnx

    if not checkpoint.joinpath("model_index.json").exists():
        shutil.rmtree(checkpoint, ignore_errors=True)
        partial = base / "checkpoint.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _build_checkpoint(preset, partial)
        partial.rename(checkpoint)
    if not onnx.joinpath("model_index.json").exists():
        shutil.rmtree(onnx, ignore_errors=True)
        convert_to_onnx(checkpoint, onnx, "fp32")
    return RandomPipeline(checkpoint, onnx)
