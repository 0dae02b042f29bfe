"""Small model files built in the test: ONNX graphs of each kind, a diffusers ONNX folder, tiny GGUFs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

try:  # onnx comes with the test extra; the catalog and fit tests run without it
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    FLOAT = TensorProto.FLOAT
except ImportError:  # pragma: no cover
    onnx = None


@pytest.fixture
def need_onnx() -> None:
    """Skip a test that builds ONNX graphs when the onnx package is not installed."""
    if onnx is None:
        pytest.skip("the onnx package is not installed")


def _save(graph: object, path: Path, **kwargs: object) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ember-tests")
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), **kwargs)
    return path


def _weights(name: str, shape: tuple[int, ...], dtype: type = np.float32, seed: int = 0) -> object:
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 0.1
    return numpy_helper.from_array(data, name)


@pytest.fixture
def upscaler_onnx(tmp_path: Path, need_onnx: None) -> Path:
    """A x2 upscaler: conv to 12 channels, then DepthToSpace (pixel shuffle); height and width are free."""
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["features"], pads=[1, 1, 1, 1]),
            helper.make_node("DepthToSpace", ["features"], ["output"], blocksize=2, mode="CRD"),
        ],
        "upscaler",
        [helper.make_tensor_value_info("input", FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("output", FLOAT, [1, 3, "out_height", "out_width"])],
        [_weights("w", (12, 3, 3, 3))],
    )
    return _save(graph, tmp_path / "pixelshuffle_x2.onnx")


@pytest.fixture
def resize_upscaler_onnx(tmp_path: Path, need_onnx: None) -> Path:
    """A x4 upscaler in Real-ESRGAN's style: nearest-neighbour Resize, then a convolution."""
    scales = numpy_helper.from_array(np.array([1, 1, 4, 4], dtype=np.float32), "scales")
    graph = helper.make_graph(
        [
            helper.make_node("Resize", ["input", "", "scales"], ["big"], mode="nearest"),
            helper.make_node("Conv", ["big", "w"], ["output"], pads=[1, 1, 1, 1]),
        ],
        "resize_upscaler",
        [helper.make_tensor_value_info("input", FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("output", FLOAT, [1, 3, "Resizeoutput_dim_2", "Resizeoutput_dim_3"])],
        [scales, _weights("w", (3, 3, 3, 3))],
    )
    return _save(graph, tmp_path / "realesrgan_like_x4.onnx")


@pytest.fixture
def gan_onnx(tmp_path: Path, need_onnx: None) -> Path:
    """A GAN generator: a 16-number latent vector to a 3x8x8 image."""
    shape = numpy_helper.from_array(np.array([1, 3, 8, 8], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["z", "w"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["raw"]),
            helper.make_node("Tanh", ["raw"], ["image"]),
        ],
        "generator",
        [helper.make_tensor_value_info("z", FLOAT, [1, 16])],
        [helper.make_tensor_value_info("image", FLOAT, [1, 3, 8, 8])],
        [_weights("w", (16, 3 * 8 * 8)), shape],
    )
    return _save(graph, tmp_path / "generator.onnx")


@pytest.fixture
def piper_voice(tmp_path: Path, need_onnx: None) -> Path:
    """A piper-shaped voice stub (inputs input, input_lengths, scales) and its .onnx.json."""
    table = _weights("table", (64,))
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input"], ["frames"]),
            helper.make_node("Unsqueeze", ["frames", "axes"], ["output"]),
        ],
        "voice",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", FLOAT, [1, 1, 1, "time"])],
        [table, numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    path = _save(graph, tmp_path / "voices" / "en_US-test-medium.onnx")
    config = {
        "audio": {"sample_rate": 22050, "quality": "medium"},
        "espeak": {"voice": "en-us"},
        "language": {"code": "en_US"},
        "inference": {"noise_scale": 0.667, "length_scale": 1, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_id_map": {"_": [0], "^": [1], "$": [2], "a": [14]},
        "num_symbols": 64,
        "num_speakers": 1,
        "dataset": "test",
    }
    path.with_name(path.name + ".json").write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.fixture
def classifier_onnx(tmp_path: Path, need_onnx: None) -> Path:
    """An image classifier: a graph Ember has no panel for."""
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w"], ["logits"]),
        ],
        "classifier",
        [helper.make_tensor_value_info("image", FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", FLOAT, [1, 10])],
        [_weights("w", (3, 10))],
    )
    return _save(graph, tmp_path / "classifier.onnx")


DiffusersFactory = Callable[..., Path]


@pytest.fixture
def make_diffusers_folder(tmp_path: Path, need_onnx: None) -> DiffusersFactory:
    """Build a minimal diffusers ONNX folder by hand: model_index.json, tiny graphs, tokenizer, scheduler.

    ``variant``: "sd1" (768-wide text states), "sd2" (1024), "sdxl" (text_embeds/time_ids and a
    second encoder) or "lcm" (timestep_cond). ``half``: fp16 weights.
    """

    def make(name: str = "tiny-sd", variant: str = "sd1", half: bool = False, index: bool = True) -> Path:
        folder = tmp_path / name
        dtype = np.float16 if half else np.float32
        elem = TensorProto.FLOAT16 if half else FLOAT
        width = {"sd1": 768, "sd2": 1024, "lcm": 768, "sdxl": 2048}[variant]
        batch = "batch_size"
        # text encoder: an embedding lookup
        te_width = 1280 if variant == "sdxl" else width
        text = helper.make_graph(
            [helper.make_node("Gather", ["embedding", "input_ids"], ["last_hidden_state"])],
            "text_encoder",
            [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, "sequence_length"])],
            [helper.make_tensor_value_info("last_hidden_state", elem, [batch, "sequence_length", te_width])],
            [_weights("embedding", (8, te_width), dtype)],
        )
        _save(text, folder / "text_encoder" / "model.onnx")
        if variant == "sdxl":
            _save(text, folder / "text_encoder_2" / "model.onnx")
        # UNet: conv_in to 8 channels and conv_out back to 4
        inputs = [
            helper.make_tensor_value_info("sample", elem, [batch, 4, "height", "width"]),
            helper.make_tensor_value_info("timestep", elem, [1]),
            helper.make_tensor_value_info("encoder_hidden_states", elem, [batch, "sequence_length", width]),
        ]
        if variant == "sdxl":
            inputs += [
                helper.make_tensor_value_info("text_embeds", elem, [batch, 1280]),
                helper.make_tensor_value_info("time_ids", elem, [batch, 6]),
            ]
        if variant == "lcm":
            inputs.append(helper.make_tensor_value_info("timestep_cond", elem, [batch, 256]))
        unet = helper.make_graph(
            [
                helper.make_node("Conv", ["sample", "conv_in"], ["h"], pads=[1, 1, 1, 1]),
                helper.make_node("Conv", ["h", "conv_out"], ["out_sample"], pads=[1, 1, 1, 1]),
            ],
            "unet",
            inputs,
            [helper.make_tensor_value_info("out_sample", elem, [batch, 4, "height", "width"])],
            [_weights("conv_in", (8, 4, 3, 3), dtype), _weights("conv_out", (4, 8, 3, 3), dtype)],
        )
        _save(unet, folder / "unet" / "model.onnx")
        # VAE decoder: x8 nearest upsampling, then conv_out to RGB
        scales = numpy_helper.from_array(np.array([1, 1, 8, 8], dtype=np.float32), "scales")
        vae = helper.make_graph(
            [
                helper.make_node("Conv", ["latent_sample", "conv_in"], ["h"], pads=[1, 1, 1, 1]),
                helper.make_node("Resize", ["h", "", "scales"], ["big"], mode="nearest"),
                helper.make_node("Conv", ["big", "conv_out"], ["sample"], pads=[1, 1, 1, 1]),
            ],
            "vae_decoder",
            [helper.make_tensor_value_info("latent_sample", elem, [batch, 4, "latent_height", "latent_width"])],
            [helper.make_tensor_value_info("sample", elem, [batch, 3, "latent_height * 8", "latent_width * 8"])],
            [_weights("conv_in", (16, 4, 3, 3), dtype), scales, _weights("conv_out", (3, 16, 3, 3), dtype)],
        )
        _save(vae, folder / "vae_decoder" / "model.onnx")
        tokenizers = ["tokenizer", "tokenizer_2"] if variant == "sdxl" else ["tokenizer"]
        for tok in tokenizers:
            (folder / tok).mkdir(parents=True, exist_ok=True)
            (folder / tok / "vocab.json").write_text(json.dumps({"a</w>": 0, "<|endoftext|>": 1}), encoding="utf-8")
            (folder / tok / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        scheduler = {
            "_class_name": "LCMScheduler" if variant == "lcm" else "EulerDiscreteScheduler",
            "prediction_type": "v_prediction" if variant == "sd2" else "epsilon",
            "timestep_spacing": "trailing" if "turbo" in name else "leading",
        }
        (folder / "scheduler").mkdir(parents=True, exist_ok=True)
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler), encoding="utf-8")
        if index:
            model_index = {
                "_class_name": "ORTStableDiffusionXLPipeline" if variant == "sdxl" else "ORTStableDiffusionPipeline",
                "_diffusers_version": "0.30.0",
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae_decoder": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", scheduler["_class_name"]],
            }
            if variant == "sdxl":
                model_index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
                model_index["tokenizer_2"] = ["transformers", "CLIPTokenizer"]
            (folder / "model_index.json").write_text(json.dumps(model_index), encoding="utf-8")
        return folder

    return make


@pytest.fixture
def make_gguf(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny real GGUF file with ``gguf.GGUFWriter`` (one small tensor and the given metadata)."""
    gguf = pytest.importorskip("gguf")

    def make(name: str = "tiny.gguf", arch: str = "llama", model_name: str = "Tiny", **metadata: object) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = gguf.GGUFWriter(str(path), arch)
        writer.add_name(model_name)
        writer.add_context_length(256)
        writer.add_block_count(1)
        writer.add_embedding_length(8)
        writer.add_head_count(2)
        for key, value in metadata.items():
            if isinstance(value, int):
                writer.add_uint32(key, value)
            else:
                writer.add_string(key, str(value))
        writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    return make
