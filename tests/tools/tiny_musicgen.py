"""Tiny random-weight MusicGen models for tests: a transformers checkpoint and its optimum ONNX export.

The tiny model has MusicGen's whole shape at a few hundred kB: a T5 text encoder (2 layers, d_model
24), a MusicGen decoder (2 layers, hidden 16, so the encoder-to-decoder projection is exercised)
over 4 codebooks of 64 codes, and an EnCodec at 32 kHz with the real upsampling ratios (8, 5, 4, 4:
640 samples a frame, 50 frames a second) but 4 filters. Weights are random, drawn after a fixed
torch seed, so every build is the same model. The tokenizer is a small T5-style Unigram
(``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, "▁" word pieces, ``</s>`` appended) written as
``tokenizer.json`` with the transformers configs beside it, and copied into the ONNX folder so
that Ember reads the folder's own tokenizer.

Use from tests (after ``sys.path.insert(0, "tests/tools")``)::

    from tiny_musicgen import tiny_musicgen_checkpoint, tiny_musicgen_onnx
    ckpt_dir = tiny_musicgen_checkpoint()   # transformers folder (safetensors)
    onnx_dir = tiny_musicgen_onnx()         # text_encoder.onnx, decoder_model.onnx, ...

or as a script: ``python tests/tools/tiny_musicgen.py OUTDIR`` writes ``OUTDIR/checkpoint`` and
``OUTDIR/onnx`` and prints each graph's inputs and outputs; ``--small-architecture`` builds a
random-weight model with facebook/musicgen-small's real architecture instead (for benchmarks:
about 5.7 GB with its checkpoint: 2.2 GB of safetensors, 3.5 GB of ONNX; two minutes to build here). The cache lives in
``~/.cache/ember-tests/tiny-musicgen/<hash>`` (or under ``$EMBER_TINY_MUSICGEN_CACHE``); the hash
covers this file's source and the versions of the libraries that build it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if str(Path(__file__).parent) not in sys.path:  # loaded by file path (the music bench), not from tests/tools
    sys.path.insert(0, str(Path(__file__).parent))
import built_once

# T5's special tokens, at T5's ids.
PAD = "<pad>"
EOS = "</s>"
UNK = "<unk>"
_SPACE = "\u2581"  # SentencePiece's word-start marker

# Words a music prompt uses, as whole pieces; every other word falls back to letters.
_WORDS = (
    "a the and with of in lo fi hip hop beat jazz piano drums bass guitar synth slow fast calm "
    "happy sad epic orchestral ambient rock pop electronic melody chill upbeat dark bright song "
    "track loop groove violin strings warm soft loud 80s 90s"
).split()
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789,.-!?'"

# The tiny model's sizes.
TINY_CODEBOOKS = 4
TINY_CODES = 64  # codes per codebook; the pad / start token is this id
TINY_PROMPT_TOKENS = 32  # text_encoder n_positions: the longest prompt, in tokens

# facebook/musicgen-small's config.json, as published (transformers 4.31): the sub-model
# configs that define its architecture. The weights built from them are random.
MUSICGEN_SMALL_TEXT_ENCODER = {  # t5-base
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 3072,
    "num_layers": 12,
    "num_decoder_layers": 12,
    "num_heads": 12,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-06,
    "initializer_factor": 1.0,
    "feed_forward_proj": "relu",
    "is_encoder_decoder": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "n_positions": 512,
}
MUSICGEN_SMALL_AUDIO_ENCODER = {  # facebook/encodec_32khz
    "audio_channels": 1,
    "chunk_length_s": None,
    "codebook_dim": 128,
    "codebook_size": 2048,
    "compress": 2,
    "dilation_growth_rate": 2,
    "hidden_size": 128,
    "kernel_size": 7,
    "last_kernel_size": 7,
    "norm_type": "weight_norm",
    "normalize": False,
    "num_filters": 64,
    "num_lstm_layers": 2,
    "num_residual_layers": 1,
    "overlap": None,
    "pad_mode": "reflect",
    "residual_kernel_size": 3,
    "sampling_rate": 32000,
    "target_bandwidths": [2.2],
    "trim_right_ratio": 1.0,
    "upsampling_ratios": [8, 5, 4, 4],
    "use_causal_conv": False,
    "use_conv_shortcut": False,
}
MUSICGEN_SMALL_DECODER = {
    "activation_dropout": 0.0,
    "activation_function": "gelu",
    "attention_dropout": 0.0,
    "bos_token_id": 2048,
    "dropout": 0.1,
    "ffn_dim": 4096,
    "hidden_size": 1024,
    "initializer_factor": 0.02,
    "layerdrop": 0.0,
    "max_position_embeddings": 2048,
    "num_attention_heads": 16,
    "num_codebooks": 4,
    "num_hidden_layers": 24,
    "pad_token_id": 2048,
    "scale_embedding": False,
    "tie_word_embeddings": False,
    "vocab_size": 2048,
}
# facebook/musicgen-small's generation_config.json.
MUSICGEN_SMALL_GENERATION = {
    "bos_token_id": 2048,
    "decoder_start_token_id": 2048,
    "do_sample": True,
    "guidance_scale": 3.0,
    "max_length": 1500,
    "pad_token_id": 2048,
}

TINY_TEXT_ENCODER = {
    **MUSICGEN_SMALL_TEXT_ENCODER,
    "vocab_size": 160,  # at least the tokenizer's size
    "d_model": 24,
    "d_kv": 6,
    "d_ff": 32,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
    "n_positions": TINY_PROMPT_TOKENS,
}
TINY_AUDIO_ENCODER = {
    **MUSICGEN_SMALL_AUDIO_ENCODER,
    "codebook_dim": 16,
    "codebook_size": TINY_CODES,
    "hidden_size": 16,
    "num_filters": 4,
    "num_lstm_layers": 1,
}
TINY_DECODER = {
    **MUSICGEN_SMALL_DECODER,
    "bos_token_id": TINY_CODES,
    "pad_token_id": TINY_CODES,
    "vocab_size": TINY_CODES,
    # MusicGen's 0.02 leaves a two-layer random decoder almost deaf to the text (guidance changed 1 %
    # of the codes); 0.1 makes both the prompt and the guidance change about half of them.
    "initializer_factor": 0.1,
    "ffn_dim": 32,
    "hidden_size": 16,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "num_codebooks": TINY_CODEBOOKS,
}
TINY_GENERATION = {
    **MUSICGEN_SMALL_GENERATION,
    "bos_token_id": TINY_CODES,
    "decoder_start_token_id": TINY_CODES,
    "pad_token_id": TINY_CODES,
}


def write_t5_tokenizer(folder: Path, *, model_max_length: int) -> int:
    """Write a tiny T5-style Unigram tokenizer (tokenizer.json and the transformers configs) into ``folder``.

    Returns the vocabulary size.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    pieces: list[tuple[str, float]] = [(PAD, 0.0), (EOS, 0.0), (UNK, 0.0), (_SPACE, -2.0)]
    # Whole words score better than their letters, so Unigram picks them where it can.
    pieces += [(_SPACE + w, -3.0) for w in _WORDS]
    pieces += [(_SPACE + c, -6.0) for c in _CHARS]
    pieces += [(c, -7.0) for c in _CHARS]
    tokenizer = Tokenizer(Unigram(pieces, unk_id=2, byte_fallback=False))
    # T5's own normalizer is a precompiled NFKC map followed by this collapse of runs of spaces.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, 1)]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always", split=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="right",
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return tokenizer.get_vocab_size()


def _save_model(out: Path, *, text: dict, audio: dict, decoder: dict, generation: dict) -> None:
    import torch
    from transformers import (
        EncodecConfig,
        GenerationConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    vocab = write_t5_tokenizer(out, model_max_length=text["n_positions"])
    if vocab > text["vocab_size"]:
        raise ValueError(f"The tokenizer has {vocab} pieces, more than the text encoder's {text['vocab_size']}.")
    config = MusicgenConfig.from_sub_models_config(
        T5Config(**text),
        EncodecConfig(**audio),
        MusicgenDecoderConfig(**decoder),
        decoder_start_token_id=generation["decoder_start_token_id"],
        pad_token_id=generation["pad_token_id"],
    )
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(config).eval()
    # EnCodec's codebooks start as zeros (the real ones are learnt cluster centres), which would
    # make the audio the same whatever the codes; give every code its own random vector.
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.cluster_size.fill_(1.0)
    model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(str(out), safe_serialization=True)


def build_checkpoint(out: Path, *, small_architecture: bool = False) -> Path:
    """Build the tiny MusicGen checkpoint (or, with ``small_architecture``, MusicGen-small's shape) into ``out``.

    ``out`` is created and must not exist. Returns ``out``. Raises ImportError without torch/transformers.
    """
    out.mkdir(parents=True)
    if small_architecture:
        _save_model(
            out,
            text=MUSICGEN_SMALL_TEXT_ENCODER,
            audio=MUSICGEN_SMALL_AUDIO_ENCODER,
            decoder=MUSICGEN_SMALL_DECODER,
            generation=MUSICGEN_SMALL_GENERATION,
        )
    else:
        _save_model(
            out, text=TINY_TEXT_ENCODER, audio=TINY_AUDIO_ENCODER, decoder=TINY_DECODER, generation=TINY_GENERATION
        )
    return out


def export_onnx(checkpoint: Path, out: Path) -> Path:
    """Export a MusicGen checkpoint folder with Ember's own converter (``main.py convert-music``) into ``out``."""
    from engines.music.convert import export_musicgen

    return export_musicgen(checkpoint, out)


def version_hash() -> str:
    """Return a short hash of this file's source and the builder libraries' versions."""
    return built_once.version_hash(Path(__file__), ("torch", "transformers", "tokenizers", "optimum-onnx", "onnx"))


def cache_root() -> Path:
    """Return the folder that holds the built models of this source version."""
    return built_once.cache_root("tiny-musicgen", "EMBER_TINY_MUSICGEN_CACHE", version_hash())


_build_once = built_once.build_once


def tiny_musicgen_checkpoint(root: Path | None = None) -> Path:
    """Return the folder of the tiny MusicGen transformers checkpoint, building it on first use.

    ``root`` defaults to :func:`cache_root`. Raises ImportError when torch or transformers are missing.
    """
    base = Path(root) if root is not None else cache_root()
    return _build_once(base / "checkpoint", build_checkpoint)


def tiny_musicgen_onnx(root: Path | None = None) -> Path:
    """Return the ONNX folder (optimum's MusicGen export) of the tiny model, building it on first use.

    Built from :func:`tiny_musicgen_checkpoint` and cached under ``root`` (default
    :func:`cache_root`). Raises ImportError when torch, transformers or optimum are missing.
    """
    base = Path(root) if root is not None else cache_root()
    checkpoint = tiny_musicgen_checkpoint(base)
    return _build_once(base / "onnx", lambda out: export_onnx(checkpoint, out))


def describe_onnx(folder: Path) -> dict[str, dict[str, list[tuple[str, str, list]]]]:
    """Return every graph's inputs and outputs: ``{graph: {"inputs": [(name, dtype, shape)], ...}}``."""
    return built_once.describe_onnx(sorted(folder.glob("*.onnx")), lambda path: path.stem)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a tiny random-weight MusicGen (checkpoint + ONNX export).")
    parser.add_argument("outdir", type=Path, nargs="?", help="writes OUTDIR/checkpoint and OUTDIR/onnx")
    parser.add_argument(
        "--small-architecture",
        type=Path,
        metavar="OUTDIR",
        help="instead, build random weights in facebook/musicgen-small's architecture into OUTDIR (a benchmark model)",
    )
    args = parser.parse_args(argv)
    if args.small_architecture is not None:
        root = args.small_architecture
        t0 = time.perf_counter()
        ckpt = _build_once(root / "checkpoint", lambda out: build_checkpoint(out, small_architecture=True))
        t1 = time.perf_counter()
        onnx_dir = _build_once(root / "onnx", lambda out: export_onnx(ckpt, out))
    elif args.outdir is not None:
        t0 = time.perf_counter()
        ckpt = tiny_musicgen_checkpoint(args.outdir)
        t1 = time.perf_counter()
        onnx_dir = tiny_musicgen_onnx(args.outdir)
    else:
        parser.error("give OUTDIR or --small-architecture OUTDIR")
    t2 = time.perf_counter()
    print(
        f"checkpoint {_folder_bytes(ckpt) / 1e6:.2f} MB in {t1 - t0:.1f} s, "
        f"onnx {_folder_bytes(onnx_dir) / 1e6:.2f} MB in {t2 - t1:.1f} s -> {onnx_dir}"
    )
    for graph, io in describe_onnx(onnx_dir).items():
        print(f"  {graph}")
        for direction in ("inputs", "outputs"):
            for name, dtype, shape in io[direction]:
                print(f"    {direction[:-1]:6} {name:36} {dtype:8} {shape}")
    print(json.dumps({"checkpoint": str(ckpt), "onnx": str(onnx_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
