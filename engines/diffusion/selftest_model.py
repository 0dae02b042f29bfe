"""A tiny diffusion model folder, built with the ``onnx`` package alone, for ``main.py self-test``.

The self-test runs one small image step through Ember's own diffusion engine on the person's
machine, where torch (and so diffusers and optimum) is not installed. This module writes a
model for that: a folder in the diffusers ONNX layout, with the file names, graph input and
output names, dtypes and dynamic dimensions that optimum's exporter writes for an SD 1.x
pipeline (``tests/tools/tiny_diffusion.py`` builds the real thing with optimum; its graphs
were the reference)::

    model_index.json                  StableDiffusionPipeline
    scheduler/scheduler_config.json   Euler with SD 1.5's betas, "leading" spacing
    tokenizer/                        byte-level CLIP BPE: 256 byte symbols + a few merges
    text_encoder/model.onnx           input_ids -> last_hidden_state, pooler_output
    unet/model.onnx                   sample, timestep, encoder_hidden_states -> out_sample
    vae_decoder/model.onnx            latent_sample -> sample (8x larger)
    vae_encoder/model.onnx            sample -> latent_parameters (so img2img runs too)

The graphs are small but compute for real (embedding lookups, matrix products, convolutions, a
sinusoidal timestep embedding, an 8x upsampling), with fixed-seed random weights: the picture
means nothing, but every tensor the pipeline passes between the graphs is exercised, and the
same seed gives the same pixels. The folder is about 120 KB and builds in well under a second.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EmberError

# Bump whenever anything this module writes changes: a folder with another version is rebuilt.
SELFTEST_VERSION = "1"

# Written last into the staging folder; a folder without it (or with another version) is rebuilt.
MARKER = "ember_selftest.json"

# Opset 17 with IR version 8 is what onnxruntime from 1.13 on reads (optimum writes IR 8 too);
# onnx.helper would otherwise stamp the installed onnx's newest IR version, which an older
# onnxruntime refuses to load.
OPSET = 17
IR_VERSION = 8

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77  # CLIP's context: the pipeline always sends 77 ids

# A few merges so that the BPE merges something in "a red cat" and "a photo of the dog" (the same
# ones tests/tools/tiny_diffusion.py uses).
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

HIDDEN = 32  # text embedding width (the UNet's cross-attention dim)
UNET_CHANNELS = 16
VAE_CHANNELS = 8
LATENT_CHANNELS = 4
SCALING_FACTOR = 0.18215  # SD 1.x's latent scale
TIME_FREQUENCIES = 8  # the sinusoidal timestep embedding has twice this many features

# SD 1.5's settings with Euler, as tiny_diffusion's "sd" kind writes them.
_SCHEDULER = {
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

_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_name_or_path": "ember/selftest-diffusion",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# The pipeline reads these configs to size its latents and estimate memory; they describe the
# graphs below. The VAE's four block widths give its scale factor, 2 ** (4 - 1) = 8, which is what
# the decoder's upsampling does; no UNet block has attention, and one head keeps the memory
# estimate's attention term (which assumes full-resolution self-attention) small.
_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "block_out_channels": [UNET_CHANNELS],
    "down_block_types": ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"],
    "attention_head_dim": 1,
    "cross_attention_dim": HIDDEN,
    "sample_size": 8,
    "time_cond_proj_dim": None,
}
_VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": LATENT_CHANNELS,
    "block_out_channels": [VAE_CHANNELS] * 4,
    "sample_size": 64,
    "scaling_factor": SCALING_FACTOR,
}


def write_selftest_model(folder: Path) -> Path:
    """Write the tiny self-test model into ``folder`` unless a current one is there; return ``folder``.

    The model is built in a temporary folder beside ``folder`` and renamed into place, so a
    reader (or a second process building at the same time) never sees half a model. A folder
    from another :data:`SELFTEST_VERSION`, or one missing a file, is replaced. Raises EmberError
    when the folder cannot be written or the onnx package is missing.
    """
    folder = Path(folder).expanduser()
    if _is_current(folder):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    except OSError as exc:
        raise _write_error(folder, exc) from None
    try:
        built = staging / folder.name
        _build(built)
        _move_into_place(built, folder, staging / "replaced")
    except OSError as exc:
        raise _write_error(folder, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_error(folder: Path, exc: OSError) -> EmberError:
    return EmberError(
        f"Ember cannot write its self-test model into '{folder}' ({exc.strerror or exc}). "
        "Check that the folder is writable and the disk has free space, then run the self-test again."
    )


def _is_current(folder: Path) -> bool:
    """Whether ``folder`` holds a complete model of this version (its marker names every file)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("version") != SELFTEST_VERSION:
        return False
    files = marker.get("files")
    return isinstance(files, list) and all(isinstance(f, str) and (folder / f).is_file() for f in files)


def _move_into_place(built: Path, folder: Path, graveyard: Path) -> None:
    """Rename ``built`` to ``folder``, first moving an outdated ``folder`` to ``graveyard`` (deleted later)."""
    if folder.exists():
        try:
            os.rename(folder, graveyard)
        except FileNotFoundError:
            pass  # another process moved it away first
    try:
        os.rename(built, folder)
    except OSError:
        # Another process renamed its own copy in between: theirs is as good as ours.
        if not _is_current(folder):
            raise


# -- the folder -------------------------------------------------------------------------------
def _build(out: Path) -> None:
    """Write every file of the model into ``out`` (created), the marker last."""
    try:
        import onnx  # only here: importing onnx takes a moment, and only a rebuild needs it
    except ImportError:
        raise EmberError(
            "Ember's self-test model is built with the 'onnx' package, which is missing from this install. "
            "Reinstall Ember (its dependencies include onnx), or run: pip install onnx"
        ) from None

    out.mkdir(parents=True)
    files: list[str] = []

    def write_json(relative: str, data: dict[str, Any]) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        files.append(relative)

    write_json("model_index.json", _MODEL_INDEX)
    write_json("scheduler/scheduler_config.json", _SCHEDULER)
    write_json("unet/config.json", _UNET_CONFIG)
    write_json("vae_decoder/config.json", _VAE_CONFIG)
    vocab = _tokenizer_vocab()
    files += _write_tokenizer(out / "tokenizer", vocab)

    # One generator for all weights, drawn in a fixed order: the same bytes on every machine.
    rng = np.random.default_rng(0)
    graphs = {
        "text_encoder": _text_encoder(rng, vocab),
        "unet": _unet(rng),
        "vae_decoder": _vae_decoder(rng),
        "vae_encoder": _vae_encoder(rng),
    }
    for name, model in graphs.items():
        (out / name).mkdir(exist_ok=True)
        onnx.save_model(model, str(out / name / "model.onnx"))
        files.append(f"{name}/model.onnx")
    write_json(MARKER, {"version": SELFTEST_VERSION, "files": sorted(files)})


def _tokenizer_vocab() -> dict[str, int]:
    """CLIP's vocabulary layout in miniature: byte symbols, the same with "</w>", merges, specials."""
    from engines.diffusion.tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in _MERGES] + [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}


def _write_tokenizer(folder: Path, vocab: dict[str, int]) -> list[str]:
    """Write vocab.json, merges.txt and the two configs CLIPTokenizer writes; return their paths."""
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # Tokenizers skip the first line of merges.txt: the real files start with a "#version" header.
    merges = "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in _MERGES) + "\n"
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}
    config = {**special, "model_max_length": MAX_LENGTH, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    names = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
    return [f"tokenizer/{name}" for name in names]


# -- the graphs ---------------------------------------------------------------------------------
class _Graph:
    """Collects the nodes and weights of one graph, naming intermediate values uniquely."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def weight(self, name: str, shape: tuple[int, ...], scale: float = 1.0) -> str:
        """A random float32 weight of ``shape``, scaled by 1/sqrt(fan-in) so activations stay near unit size."""
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        values = self.rng.standard_normal(shape).astype(np.float32) * np.float32(scale / np.sqrt(fan_in))
        return self.constant(name, values)

    def constant(self, name: str, values: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(values), name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes: Any) -> str:
        """Add one node; return the name of its (single) output."""
        from onnx import helper

        if output is None:
            self._count += 1
            output = f"/{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def silu(self, x: str, output: str | None = None) -> str:
        return self.op("Mul", x, self.op("Sigmoid", x), output=output)

    def model(self, name: str, inputs: list[Any], outputs: list[Any]) -> Any:
        """The finished ModelProto, checked, at Ember's opset and IR version."""
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="ember-selftest",
            producer_version=SELFTEST_VERSION,
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model


def _tensor(name: str, elem_type: int, shape: list[int | str]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem_type, shape)


def _text_encoder(rng: np.random.Generator, vocab: dict[str, int]) -> Any:
    """input_ids [batch, seq] int64 -> last_hidden_state [batch, seq, 32], pooler_output [batch, 32].

    Token and position embeddings, one tanh layer with a residual, a final layer norm; the pooled
    output is the hidden state at the first end token, as in CLIP.
    """
    from onnx import TensorProto

    g = _Graph(rng)
    tokens = g.op("Gather", g.weight("token_embedding", (len(vocab), HIDDEN), scale=np.sqrt(HIDDEN)), "input_ids")
    positions = g.weight("position_embedding", (MAX_LENGTH, HIDDEN), scale=np.sqrt(HIDDEN) * 0.1)
    # The position table has 77 rows; slice it to the sequence the caller sends.
    length = g.op("Shape", "input_ids", start=1, end=2)
    zero = g.constant("zero", np.array([0], dtype=np.int64))
    x = g.op("Add", tokens, g.op("Slice", positions, zero, length, zero))
    layer = g.op("Add", g.op("MatMul", x, g.weight("mlp_w", (HIDDEN, HIDDEN))), g.weight("mlp_b", (HIDDEN,), 0.1))
    x = g.op("Add", x, g.op("Tanh", layer))
    gamma = g.constant("final_layer_norm_scale", np.ones(HIDDEN, dtype=np.float32))
    beta = g.constant("final_layer_norm_bias", np.zeros(HIDDEN, dtype=np.float32))
    hidden = g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=1e-5, output="last_hidden_state")
    # ArgMax picks the first maximum: the first end token of each row.
    is_end = g.op("Cast", g.op("Equal", "input_ids", g.constant("eos_id", np.array(vocab[EOS]))), to=TensorProto.FLOAT)
    end_at = g.op("ArgMax", is_end, axis=1, keepdims=1)
    g.op("GatherND", hidden, end_at, batch_dims=1, output="pooler_output")
    return g.model(
        "text_encoder",
        [_tensor("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [
            _tensor("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN]),
            _tensor("pooler_output", TensorProto.FLOAT, ["batch_size", HIDDEN]),
        ],
    )


def _unet(rng: np.random.Generator) -> Any:
    """sample [batch, 4, h, w], timestep (float scalar), encoder_hidden_states [batch, seq, 32] -> out_sample.

    A convolution in, plus a sinusoidal timestep embedding and the mean of the text embedding
    (each projected to the channels and added everywhere, as a UNet's resnet blocks add the
    time embedding), a residual convolution, and a convolution out.
    """
    from onnx import TensorProto

    g = _Graph(rng)
    c = UNET_CHANNELS
    frequencies = np.exp(-np.log(10000.0) * np.arange(TIME_FREQUENCIES) / TIME_FREQUENCIES).astype(np.float32)
    angles = g.op("Mul", "timestep", g.constant("time_frequencies", frequencies))
    embedding = g.op("Concat", g.op("Cos", angles), g.op("Sin", angles), axis=0)  # cos first, as SD's flip_sin_to_cos
    time_row = g.op("Unsqueeze", embedding, g.constant("axis_0", np.array([0], dtype=np.int64)))
    time_w, time_b = g.weight("time_w", (2 * TIME_FREQUENCIES, c)), g.weight("time_b", (c,), 0.1)
    time = g.silu(g.op("Add", g.op("MatMul", time_row, time_w), time_b))
    spatial = g.constant("axes_2_3", np.array([2, 3], dtype=np.int64))
    time = g.op("Unsqueeze", time, spatial)  # [1, c, 1, 1]
    text = g.op("ReduceMean", "encoder_hidden_states", axes=[1], keepdims=0)
    text = g.op("Unsqueeze", g.op("MatMul", text, g.weight("text_w", (HIDDEN, c))), spatial)  # [batch, c, 1, 1]

    pads = [1, 1, 1, 1]
    in_w, in_b = g.weight("conv_in_w", (c, LATENT_CHANNELS, 3, 3)), g.weight("conv_in_b", (c,))
    h = g.op("Conv", "sample", in_w, in_b, pads=pads)
    h = g.silu(g.op("Add", g.op("Add", h, time), text))
    mid = g.op("Conv", h, g.weight("conv_mid_w", (c, c, 3, 3)), g.weight("conv_mid_b", (c,)), pads=pads)
    h = g.op("Add", h, g.silu(mid))
    out_w, out_b = g.weight("conv_out_w", (LATENT_CHANNELS, c, 3, 3)), g.weight("conv_out_b", (LATENT_CHANNELS,))
    g.op("Conv", h, out_w, out_b, pads=pads, output="out_sample")
    return g.model(
        "unet",
        [
            _tensor("sample", TensorProto.FLOAT, ["batch_size", LATENT_CHANNELS, "height", "width"]),
            _tensor("timestep", TensorProto.FLOAT, []),  # optimum exports a float scalar
            _tensor("encoder_hidden_states", TensorProto.FLOAT, ["batch_size", "sequence_length", HIDDEN]),
        ],
        [_tensor("out_sample", TensorProto.FLOAT, ["batch_size", LATENT_CHANNELS, "height", "width"])],
    )


def _vae_decoder(rng: np.random.Generator) -> Any:
    """latent_sample [batch, 4, h, w] -> sample [batch, 3, 8h, 8w] in [-1, 1]: conv, 8x bilinear resize, conv, tanh."""
    from onnx import TensorProto

    g = _Graph(rng)
    # The pipeline divides the latents by the scaling factor first (they grow ~5x); scaling the
    # first convolution back keeps the tanh out of saturation, so the image is not just 0 and 255.
    w_in = g.weight("conv_in_w", (VAE_CHANNELS, LATENT_CHANNELS, 3, 3), scale=SCALING_FACTOR)
    h = g.silu(g.op("Conv", "latent_sample", w_in, g.weight("conv_in_b", (VAE_CHANNELS,), 0.1), pads=[1, 1, 1, 1]))
    scales = g.constant("upsample_scales", np.array([1.0, 1.0, 8.0, 8.0], dtype=np.float32))
    h = g.op("Resize", h, "", scales, mode="linear")
    w_out, b_out = g.weight("conv_out_w", (3, VAE_CHANNELS, 3, 3)), g.weight("conv_out_b", (3,), 0.1)
    g.op("Tanh", g.op("Conv", h, w_out, b_out, pads=[1, 1, 1, 1]), output="sample")
    return g.model(
        "vae_decoder",
        [_tensor("latent_sample", TensorProto.FLOAT, ["batch_size", LATENT_CHANNELS, "latent_height", "latent_width"])],
        [_tensor("sample", TensorProto.FLOAT, ["batch_size", 3, "latent_height * 8", "latent_width * 8"])],
    )


def _vae_encoder(rng: np.random.Generator) -> Any:
    """sample [batch, 3, H, W] -> latent_parameters [batch, 8, H/8, W/8]: the latents' mean and log-variance.

    One 8x8 convolution with stride 8; the log-variance half gets a bias of -4 so the sampled
    latents stay close to their mean, as a trained VAE's do.
    """
    from onnx import TensorProto

    g = _Graph(rng)
    weight = g.weight("conv_w", (2 * LATENT_CHANNELS, 3, 8, 8))
    bias = g.constant("conv_b", np.array([0.0] * LATENT_CHANNELS + [-4.0] * LATENT_CHANNELS, dtype=np.float32))
    g.op("Conv", "sample", weight, bias, kernel_shape=[8, 8], strides=[8, 8], output="latent_parameters")
    return g.model(
        "vae_encoder",
        [_tensor("sample", TensorProto.FLOAT, ["batch_size", 3, "sample_height", "sample_width"])],
        [_tensor("latent_parameters", TensorProto.FLOAT, ["batch_size", 8, "sample_height / 8", "sample_width / 8"])],
    )
