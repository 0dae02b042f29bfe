"""inspect_model: real embedded GGUFs, graphs built here, and the files Ember must refuse."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engines.errors import ModelFileError
from engines.models.inspect import ModelInfo, UnsupportedModel, inspect_model

# -- GGUF ----------------------------------------------------------------------------------


def test_reads_the_embedded_chat_model(smollm2_path: str) -> None:
    info = inspect_model(smollm2_path)
    assert (info.kind, info.format, info.architecture) == ("text", "gguf", "llama")
    assert info.parameter_count == 134_515_008
    assert info.context_length == 8192
    assert info.quantisation == "Q4_1"
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.licence == "apache-2.0"
    assert info.size_bytes == os.path.getsize(smollm2_path)
    d = info.details
    assert (d["block_count"], d["head_count"], d["head_count_kv"], d["vocab_size"]) == (30, 9, 3, 49152)
    assert d["tensor_types"]["Q4_1"] > d["tensor_types"]["F32"]


def test_reads_the_embedded_base_model(gemma_path: str) -> None:
    info = inspect_model(gemma_path)
    assert (info.kind, info.architecture, info.quantisation) == ("text", "gemma3", "Q4_K_M")
    assert info.chat_template is None and info.details["base_model"] is True
    assert info.context_length == 32768
    assert info.licence == "gemma"
    d = info.details
    assert (d["key_length"], d["value_length"], d["sliding_window"], d["vocab_size"]) == (256, 256, 512, 262144)


def test_metadata_agrees_with_the_gguf_package(smollm2_path: str) -> None:
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(smollm2_path)

    def field(key: str) -> object:
        f = reader.fields[key]
        value = f.parts[f.data[0]]
        return bytes(value).decode() if f.types[0] == gguf.GGUFValueType.STRING else int(value[0])

    info = inspect_model(smollm2_path)
    assert info.architecture == field("general.architecture")
    assert info.context_length == field("llama.context_length")
    assert info.details["file_type"] == field("general.file_type")
    assert info.chat_template == field("tokenizer.chat_template")
    assert info.parameter_count == sum(int(t.n_elements) for t in reader.tensors)


def test_info_survives_a_json_round_trip(smollm2_path: str) -> None:
    info = inspect_model(smollm2_path)
    again = ModelInfo.from_json(json.loads(json.dumps(info.to_json())))
    assert again == info and again.details == info.details


def test_guard_models_are_recognised_by_name(make_gguf: Callable[..., Path]) -> None:
    assert inspect_model(make_gguf("lg.gguf", model_name="Llama Guard 3 1B")).kind == "guard"
    assert inspect_model(make_gguf("sg.gguf", model_name="ShieldGemma 2B")).kind == "guard"
    assert inspect_model(make_gguf("chat.gguf", model_name="Llama 3.2 1B Instruct")).kind == "text"


def test_quantisation_falls_back_to_the_tensor_types(make_gguf: Callable[..., Path]) -> None:
    info = inspect_model(make_gguf())  # no general.file_type: the F32 tensor decides
    assert info.quantisation == "F32"
    assert info.details["file_type"] is None


def test_a_vision_projector_is_not_a_model_on_its_own(make_gguf: Callable[..., Path]) -> None:
    with pytest.raises(UnsupportedModel, match="vision projector"):
        inspect_model(make_gguf("mmproj-model-f16.gguf", arch="clip"))


def test_a_split_model_is_read_from_its_first_part(make_gguf: Callable[..., Path]) -> None:
    first = make_gguf("m-00001-of-00002.gguf", **{"split.count": 2, "split.no": 0})
    second = make_gguf("m-00002-of-00002.gguf", **{"split.count": 2, "split.no": 1})
    info = inspect_model(first)
    assert info.details["split_count"] == 2
    assert info.size_bytes == first.stat().st_size + second.stat().st_size
    with pytest.raises(ModelFileError, match="Pick the first part"):
        inspect_model(second)
    second.unlink()
    with pytest.raises(ModelFileError, match=r"m-00002-of-00002.gguf is not beside it"):
        inspect_model(first)


def test_a_truncated_copy_is_refused(smollm2_path: str, tmp_path: Path) -> None:
    data = Path(smollm2_path).read_bytes()
    for keep in (len(data) // 2, 1000):
        cut = tmp_path / f"cut-{keep}.gguf"
        cut.write_bytes(data[:keep])
        with pytest.raises(ModelFileError, match="is incomplete: it is") as err:
            inspect_model(cut)
        assert f"{keep:,} bytes" in str(err.value)


def test_a_zip_renamed_to_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"not a model")
    with pytest.raises(ModelFileError, match=r"'model.gguf' is not a GGUF model: it is a ZIP archive"):
        inspect_model(path)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    noise = bytes([0x13]) + random.Random(7).randbytes(4095)
    gguf_noise, onnx_noise = tmp_path / "noise.gguf", tmp_path / "noise.onnx"
    gguf_noise.write_bytes(noise)
    onnx_noise.write_bytes(noise)
    with pytest.raises(ModelFileError, match=r"This file is not a GGUF model \(it starts with '\\x13"):
        inspect_model(gguf_noise)
    with pytest.raises(ModelFileError, match="is not an ONNX model Ember can read"):
        inspect_model(onnx_noise)


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.pth", "pytorch_model.bin"])
def test_pickle_files_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"state_dict": [1, 2, 3]}))
    with pytest.raises(ModelFileError, match="can run code when loaded, so Ember does not open it"):
        inspect_model(path)


def test_a_folder_whose_weights_are_only_pickles_is_refused(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ModelFileError, match="can run code when loaded"):
        inspect_model(tmp_path)


def test_a_gguf_is_refused_under_a_pickle_name(smollm2_path: str, tmp_path: Path) -> None:
    # The text engine refuses pickle names before reading a byte; so does inspection, whatever is inside.
    renamed = tmp_path / "ggml-model.bin"
    renamed.symlink_to(smollm2_path)
    with pytest.raises(ModelFileError, match="can run code when loaded"):
        inspect_model(renamed)


def test_the_old_ggml_format_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "ggml-model-q4_0.bin"
    path.write_bytes(b"tjgg" + bytes(64))
    with pytest.raises(ModelFileError, match="old GGJT format"):
        inspect_model(path)


def test_a_missing_path_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        inspect_model(tmp_path / "gone.gguf")


# -- single ONNX graphs ---------------------------------------------------------------------


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_a_pixel_shuffle_upscaler_is_recognised(upscaler_onnx: Path) -> None:
    info = inspect_model(upscaler_onnx)
    assert (info.kind, info.format, info.quantisation) == ("upscaler", "onnx", "fp32")
    assert info.details["scale"] == 2 and info.details["tile_size"] is None
    assert info.parameter_count == 12 * 3 * 3 * 3
    out = _run(upscaler_onnx, {"input": np.zeros((1, 3, 8, 6), np.float32)})
    assert out.shape == (1, 3, 16, 12)  # the graph really is a x2 upscaler


def test_a_resize_upscaler_is_recognised(resize_upscaler_onnx: Path) -> None:
    info = inspect_model(resize_upscaler_onnx)
    assert info.kind == "upscaler" and info.details["scale"] == 4
    assert _run(resize_upscaler_onnx, {"input": np.zeros((1, 3, 5, 7), np.float32)}).shape == (1, 3, 20, 28)


def test_a_fixed_tile_upscaler_reports_its_tile(tmp_path: Path, need_onnx: None) -> None:
    from onnx import TensorProto, helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1, 1, 4, 4], dtype=np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["image", "", "scales"], ["upscaled"], mode="nearest")],
        "tile",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 128, 128])],
        [helper.make_tensor_value_info("upscaled", TensorProto.FLOAT, [1, 3, 512, 512])],
        [scales],
    )
    import onnx

    path = tmp_path / "Real-ESRGAN-x4plus.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    info = inspect_model(path)
    assert info.details["scale"] == 4 and info.details["tile_size"] == [128, 128]


def test_a_gan_generator_is_recognised(gan_onnx: Path) -> None:
    info = inspect_model(gan_onnx)
    assert info.kind == "gan"
    assert info.details["latent_dim"] == 16 and info.details["image_size"] == [8, 8]
    assert _run(gan_onnx, {"z": np.zeros((1, 16), np.float32)}).shape == (1, 3, 8, 8)


def test_a_piper_voice_is_recognised_with_its_settings(piper_voice: Path) -> None:
    info = inspect_model(piper_voice)
    assert (info.kind, info.format, info.name) == ("voice", "piper", "en_US-test-medium")
    assert info.details["sample_rate_hz"] == 22050 and info.details["language"] == "en_US"
    config = piper_voice.with_name(piper_voice.name + ".json")
    assert info.size_bytes == piper_voice.stat().st_size + config.stat().st_size
    assert inspect_model(config) == info  # picking the .onnx.json opens the voice


def test_a_voice_without_its_settings_is_refused(piper_voice: Path) -> None:
    piper_voice.with_name(piper_voice.name + ".json").unlink()
    with pytest.raises(ModelFileError, match=r"needs its settings file 'en_US-test-medium.onnx.json'"):
        inspect_model(piper_voice)


def test_a_graph_ember_has_no_panel_for_is_refused(classifier_onnx: Path) -> None:
    with pytest.raises(UnsupportedModel, match=r"has no panel for \(inputs image\[1x3x224x224\]"):
        inspect_model(classifier_onnx)


def test_a_truncated_onnx_graph_is_refused(resize_upscaler_onnx: Path, tmp_path: Path) -> None:
    data = resize_upscaler_onnx.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelFileError, match=r"'cut.onnx' is incomplete: it is"):
        inspect_model(cut)


def test_weights_in_an_external_file_are_counted_and_must_be_there(tmp_path: Path, upscaler_onnx: Path) -> None:
    import onnx

    model = onnx.load(str(upscaler_onnx))
    external = tmp_path / "ext" / "model.onnx"
    external.parent.mkdir()
    onnx.save_model(model, str(external), save_as_external_data=True, location="weights.pb", size_threshold=0)
    info = inspect_model(external)
    assert info.parameter_count == 324 and info.details["external_files"] == ["weights.pb"]
    assert info.size_bytes == external.stat().st_size + (external.parent / "weights.pb").stat().st_size
    (external.parent / "weights.pb").unlink()
    with pytest.raises(ModelFileError, match=r"keeps its weights in 'weights.pb', which is not beside it"):
        inspect_model(external)


# -- diffusers ONNX folders ----------------------------------------------------------------------


def test_an_sd1_folder_is_recognised(make_diffusers_folder: Callable[..., Path]) -> None:
    folder = make_diffusers_folder("tiny-sd15")
    info = inspect_model(folder)
    assert (info.kind, info.format, info.name) == ("diffusion", "onnx-diffusers", "tiny-sd15")
    d = info.details
    assert (d["variant"], d["base"], d["precision"]) == ("sd1", "sd1", "fp32")
    assert d["unet_inputs"] == ["sample", "timestep", "encoder_hidden_states"]
    assert (d["sample_size"], d["vae_scale_factor"], d["cross_attention_dim"]) == (512, 8, 768)
    assert (d["unet_base_channels"], d["vae_decoder_channels"]) == (8, 16)
    assert info.parameter_count == sum(d["component_parameters"].values())
    assert info.size_bytes == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_sdxl_is_told_by_its_unet_inputs(make_diffusers_folder: Callable[..., Path]) -> None:
    info = inspect_model(make_diffusers_folder("tiny-xl", variant="sdxl", half=True))
    assert (info.details["variant"], info.details["precision"]) == ("sdxl", "fp16")
    assert {"text_embeds", "time_ids"} <= set(info.details["unet_inputs"])
    assert "text_encoder_2" in info.details["components"]


def test_lcm_is_told_by_timestep_cond(make_diffusers_folder: Callable[..., Path]) -> None:
    info = inspect_model(make_diffusers_folder("tiny-lcm", variant="lcm"))
    assert info.details["variant"] == "lcm" and info.details["base"] == "sd1"


def test_sd2_turbo_is_told_by_width_and_name(make_diffusers_folder: Callable[..., Path]) -> None:
    info = inspect_model(make_diffusers_folder("sd-turbo-onnx", variant="sd2"))
    assert (info.details["variant"], info.details["base"]) == ("turbo", "sd2")


def test_picking_a_component_sends_you_to_the_folder(make_diffusers_folder: Callable[..., Path]) -> None:
    folder = make_diffusers_folder("tiny-sd")
    with pytest.raises(UnsupportedModel, match="is the unet of the diffusion model in 'tiny-sd'"):
        inspect_model(folder / "unet" / "model.onnx")


def test_a_folder_without_model_index_is_read_from_its_components(make_diffusers_folder: Callable[..., Path]) -> None:
    info = inspect_model(make_diffusers_folder("onnxstack-export", index=False))
    assert info.kind == "diffusion" and info.details["pipeline"] is None


def test_an_incomplete_folder_names_what_is_missing(make_diffusers_folder: Callable[..., Path]) -> None:
    folder = make_diffusers_folder("broken")
    shutil.rmtree(folder / "vae_decoder")
    with pytest.raises(ModelFileError, match=r"'broken' is incomplete: vae_decoder/model.onnx is missing"):
        inspect_model(folder)


def test_a_pytorch_diffusers_folder_is_sent_to_convert(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"{}")
    with pytest.raises(ModelFileError, match=r"PyTorch format.*convert it"):
        inspect_model(tmp_path)


@pytest.mark.parametrize(("fixture", "variant"), [("tiny_sd", "sd1"), ("tiny_turbo", "turbo"), ("tiny_sdxl", "sdxl")])
def test_the_tiny_generated_pipelines(request: pytest.FixtureRequest, fixture: str, variant: str) -> None:
    try:
        folder = request.getfixturevalue(fixture)
    except pytest.FixtureLookupError:
        pytest.skip(f"the {fixture} fixture is not available")
    info = inspect_model(folder)
    assert info.kind == "diffusion" and info.details["variant"] == variant
    assert info.details["precision"] == "fp32" and info.details["vae_scale_factor"] == 8
