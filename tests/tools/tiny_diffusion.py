"""Tiny random-weight diffusion pipelines for tests: diffusers checkpoints and their ONNX exports.

Three kinds, each a few MB, built deterministically (fixed torch seeds) with diffusers and exported
with optimum to the diffusers ONNX folder layout Ember runs:

- ``sd``: SD 1.x style (CLIPTextModel with quick_gelu, Euler with SD 1.5's betas, "leading").
- ``turbo``: SD-Turbo style (SD 2.x: gelu text encoder, linear projections in the UNet, pad token
  "!", Euler with "trailing" spacing as stabilityai/sd-turbo ships it).
- ``sdxl``: SDXL style (two text encoders, the second with a projection; "text_time" added
  conditioning; VAE scaling 0.13025; Euler "leading").

The VAE has four blocks so that its scale factor is 8, as in the real models: a 64x64 image has
8x8 latents. Every tokenizer is a byte-level CLIP BPE over the 256 byte symbols plus a handful of
merges, so that merging is exercised without a 49k-entry vocabulary.

Use from tests (after ``sys.path.insert(0, "tests/tools")``)::

    from tiny_diffusion import tiny_pipeline, tiny_checkpoint
    onnx_dir = tiny_pipeline("sd")        # built once, then cached
    ckpt_dir = tiny_checkpoint("sdxl")

or as a script: ``python tests/tools/tiny_diffusion.py OUTDIR [--kinds sd,turbo,sdxl]``, which
writes ``OUTDIR/<kind>/checkpoint`` and ``OUTDIR/<kind>/onnx`` and prints each graph's inputs and
outputs. The cache lives in ``~/.cache/ember-tests/tiny-diffusion/<hash>/<kind>`` (or under
``$EMBER_TINY_DIFFUSION_CACHE``); the hash covers this file's source and the versions of the
libraries that build it, so an edit or an upgrade rebuilds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:  # loaded by file path (the music bench), not from tests/tools
    sys.path.insert(0, str(Path(__file__).parent))
import built_once

KINDS = ("sd", "turbo", "sdxl")

# The special tokens of every CLIP tokenizer; real vocabularies put them last (49406, 49407).
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# A few merges so that the BPE actually merges something: "the", "a", "cat", "photo", "of",
# "dog", "red". Each merge's result is added to the vocabulary after the byte symbols.
_MERGES = (
    ("t", "h"),
    ("th", "e</w>"),
    ("a", "t</w>"),
    ("c", "at</w>"),
    ("o", "f</w>"),
    ("p", "h"),
    ("ph", "o"),
    ("t", "o</w>"),
    ("pho", "to</w>"),
    ("d", "o"),
    ("do", "g</w>"),
    ("r", "e"),
    ("re", "d</w>"),
    ("i", "n"),
    ("a", "n"),
)

# SD 1.5's scheduler settings (runwayml/stable-diffusion-v1-5 ships PNDM with these betas; Euler
# with the same settings is what most SD 1.5 front ends run, and what Ember's runtime implements).
_SD15_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "sample_max_value": 1.0,
    "trained_betas": None,
}

# stabilityai/sd-turbo's scheduler_config.json: Euler, "trailing" spacing, epsilon prediction
# (SD-Turbo is distilled from SD 2.1 but predicts noise, unlike the 768 px SD 2.1 base).
_TURBO_SCHEDULER = {**_SD15_SCHEDULER, "timestep_spacing": "trailing"}

# stabilityai/stable-diffusion-xl-base-1.0's scheduler_config.json.
_SDXL_SCHEDULER = dict(_SD15_SCHEDULER)


def write_clip_tokenizer(folder: Path, *, pad_token: str = EOS) -> dict[str, int]:
    """Write a tiny CLIP BPE tokenizer (vocab.json, merges.txt, configs) into ``folder``.

    Returns the ids of the special tokens: ``{"bos": ..., "eos": ..., "pad": ..., "vocab_size": ...}``.
    """
    from transformers import CLIPTokenizer

    from engines.diffusion.tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in _MERGES] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "_raw"
    raw.mkdir(exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # CLIPTokenizer skips the first line of merges.txt (a "#version" header in the real files).
    merges = "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in _MERGES) + "\n"
    (raw / "merges.txt").write_text(merges, encoding="utf-8")
    tok = CLIPTokenizer(
        str(raw / "vocab.json"),
        str(raw / "merges.txt"),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=pad_token,
        model_max_length=77,
    )
    tok.save_pretrained(str(folder))
    shutil.rmtree(raw)
    return {
        "bos": vocab[BOS],
        "eos": vocab[EOS],
        "pad": vocab[pad_token],
        "vocab_size": len(vocab),
    }


def _clip_text_config(ids: dict[str, int], *, hidden_act: str, projection_dim: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=ids["vocab_size"],
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=hidden_act,
        projection_dim=projection_dim,
        layer_norm_eps=1e-5,
        # The pooled output is taken at eos_token_id; transformers' legacy id 2 would pool at argmax.
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
    )


def _vae(scaling_factor: float):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    # Four blocks give the real models' scale factor of 8 (2 ** (blocks - 1)). force_upcast stays at
    # its default (true), as in every real VAE config; only SDXL pipelines act on it.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def _scheduler(config: dict):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def _build_sd(out: Path, *, turbo: bool) -> None:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    tok_dir = out / "_tokenizer"
    # SD 2.x tokenizers (SD-Turbo's included) pad with "!" (id 0), SD 1.x with the end token.
    ids = write_clip_tokenizer(tok_dir, pad_token="!" if turbo else EOS)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        # SD 2.x uses linear projections in its transformer blocks and per-block head counts.
        attention_head_dim=(2, 4) if turbo else 8,
        use_linear_projection=turbo,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config(ids, hidden_act="gelu" if turbo else "quick_gelu"))
    vae = _vae(0.18215)
    scheduler = _scheduler(_TURBO_SCHEDULER if turbo else _SD15_SCHEDULER)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    shutil.rmtree(tok_dir)


def _build_sdxl(out: Path) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    ids = write_clip_tokenizer(out / "_tokenizer", pad_token=EOS)
    # SDXL's second tokenizer pads with "!" like SD 2.x's.
    ids_2 = write_clip_tokenizer(out / "_tokenizer_2", pad_token="!")
    tokenizer = CLIPTokenizer.from_pretrained(str(out / "_tokenizer"))
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(out / "_tokenizer_2"))

    addition_time_embed_dim = 8
    projection_dim = 32
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        # The two encoders' hidden states are concatenated: 32 + 32.
        cross_attention_dim=64,
        addition_embed_type="text_time",
        addition_time_embed_dim=addition_time_embed_dim,
        # Six time ids (original size, crop, target size) each embedded, plus the pooled text.
        projection_class_embeddings_input_dim=6 * addition_time_embed_dim + projection_dim,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config(ids, hidden_act="quick_gelu"))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(
        _clip_text_config(ids_2, hidden_act="gelu", projection_dim=projection_dim)
    )
    vae = _vae(0.13025)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=_scheduler(_SDXL_SCHEDULER),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    shutil.rmtree(out / "_tokenizer")
    shutil.rmtree(out / "_tokenizer_2")


def build_checkpoint(kind: str, out: Path) -> Path:
    """Build the tiny diffusers checkpoint of ``kind`` into ``out`` (created; must not exist).

    Returns ``out``. Raises ValueError for an unknown kind and ImportError without torch/diffusers.
    """
    _check_kind(kind)
    out.mkdir(parents=True)
    if kind == "sdxl":
        _build_sdxl(out)
    else:
        _build_sd(out, turbo=kind == "turbo")
    return out


def export_onnx(checkpoint: Path, out: Path) -> Path:
    """Export a diffusers checkpoint folder to the diffusers ONNX layout in ``out`` with optimum.

    Returns ``out``. Raises ImportError without optimum, and whatever optimum raises on failure.
    """
    from optimum.exporters.onnx import main_export

    main_export(
        str(checkpoint),
        output=str(out),
        task="text-to-image",
        device="cpu",
        # Validation runs every graph against torch a second time; the tests that use these
        # pipelines compare against diffusers themselves.
        do_validation=False,
    )
    return out


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown tiny pipeline kind {kind!r}; choose one of {', '.join(KINDS)}.")


def version_hash() -> str:
    """Return a short hash of this file's source and the builder libraries' versions."""
    return built_once.version_hash(Path(__file__), ("torch", "diffusers", "transformers", "optimum-onnx", "onnx"))


def cache_root() -> Path:
    """Return the folder that holds the built pipelines of this source version."""
    return built_once.cache_root("tiny-diffusion", "EMBER_TINY_DIFFUSION_CACHE", version_hash())


_build_once = built_once.build_once


def tiny_checkpoint(kind: str, root: Path | None = None) -> Path:
    """Return the folder of the tiny diffusers checkpoint of ``kind``, building it on first use.

    ``root`` defaults to :func:`cache_root`. Raises ValueError for an unknown kind and ImportError
    when torch or diffusers are missing.
    """
    _check_kind(kind)
    base = Path(root) if root is not None else cache_root()
    return _build_once(base / kind / "checkpoint", lambda out: build_checkpoint(kind, out))


def tiny_pipeline(kind: str, root: Path | None = None) -> Path:
    """Return the ONNX folder (diffusers/optimum layout) of the tiny pipeline ``kind``.

    Built from :func:`tiny_checkpoint` on first use and cached under ``root`` (default
    :func:`cache_root`). Raises ValueError for an unknown kind and ImportError when torch,
    diffusers or optimum are missing.
    """
    _check_kind(kind)
    base = Path(root) if root is not None else cache_root()
    checkpoint = tiny_checkpoint(kind, base)
    return _build_once(base / kind / "onnx", lambda out: export_onnx(checkpoint, out))


def describe_onnx(folder: Path) -> dict[str, dict[str, list[tuple[str, str, list]]]]:
    """Return every graph's inputs and outputs: ``{component: {"inputs": [(name, dtype, shape)], ...}}``."""
    return built_once.describe_onnx(sorted(folder.glob("*/model.onnx")), lambda path: path.parent.name)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build tiny random-weight diffusion pipelines (checkpoint + ONNX).")
    parser.add_argument("outdir", type=Path, help="writes OUTDIR/<kind>/checkpoint and OUTDIR/<kind>/onnx")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: sd,turbo,sdxl")
    args = parser.parse_args(argv)
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        t0 = time.perf_counter()
        ckpt = tiny_checkpoint(kind, args.outdir)
        t1 = time.perf_counter()
        onnx_dir = tiny_pipeline(kind, args.outdir)
        t2 = time.perf_counter()
        print(
            f"{kind}: checkpoint {_folder_bytes(ckpt) / 1e6:.2f} MB in {t1 - t0:.1f} s, "
            f"onnx {_folder_bytes(onnx_dir) / 1e6:.2f} MB in {t2 - t1:.1f} s -> {onnx_dir}"
        )
        for component, io in describe_onnx(onnx_dir).items():
            print(f"  {component}")
            for direction in ("inputs", "outputs"):
                for name, dtype, shape in io[direction]:
                    print(f"    {direction[:-1]:6} {name:24} {dtype:8} {shape}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # engines/, for the tokenizer's byte table
    sys.exit(main())
