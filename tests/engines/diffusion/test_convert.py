"""Converting a diffusers checkpoint to ONNX fp32/fp16/int8 (engines/diffusion/convert.py), on the tiny SD."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.diffusion import convert
from engines.diffusion.convert import ConvertResult, convert_to_onnx, inspect_checkpoint
from engines.errors import EmberError, ModelFileError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# torch's ONNX tracer warns about every Python branch in diffusers' models; they are expected.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python"),
    pytest.mark.filterwarnings("ignore:Constant folding"),
    pytest.mark.filterwarnings("ignore:Iterating over a tensor"),
]

REPO = Path(__file__).resolve().parents[3]
GRAPHS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")


@pytest.fixture(scope="module")
def converted(tiny_sd_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ConvertResult]:
    """The tiny SD converted once to each precision."""
    root = tmp_path_factory.mktemp("converted")
    return {p: convert_to_onnx(tiny_sd_checkpoint, root / p, p) for p in ("fp32", "fp16", "int8")}  # type: ignore[arg-type]


def _session(graph: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])


def _unet_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "sample": rng.standard_normal((2, 4, 8, 8)).astype(np.float32),
        "timestep": np.array(999.0, dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 77, 32)).astype(np.float32),
    }


def _graph_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_graph_loads_and_the_unet_runs(converted: dict[str, ConvertResult], precision: str) -> None:
    result = converted[precision]
    assert result.kind == "sd" and result.precision == precision
    assert sorted(result.component_bytes) == list(GRAPHS)
    for name in GRAPHS:
        _session(result.out / name / "model.onnx")
    unet = _session(result.out / "unet" / "model.onnx")
    # Every precision keeps float32 inputs and outputs, so the runtime feeds them all the same way.
    assert {i.name: i.type for i in unet.get_inputs()} == {
        "sample": "tensor(float)",
        "timestep": "tensor(float)",
        "encoder_hidden_states": "tensor(float)",
    }
    (out,) = unet.run(None, _unet_feeds())
    assert out.shape == (2, 4, 8, 8) and out.dtype == np.float32 and np.isfinite(out).all()


def test_fp16_and_int8_unet_stay_close_to_fp32(converted: dict[str, ConvertResult]) -> None:
    feeds = _unet_feeds()
    (ref,) = _session(converted["fp32"].out / "unet" / "model.onnx").run(None, feeds)
    (half,) = _session(converted["fp16"].out / "unet" / "model.onnx").run(None, feeds)
    (int8,) = _session(converted["int8"].out / "unet" / "model.onnx").run(None, feeds)
    scale = float(np.abs(ref).max())
    assert np.abs(half - ref).max() < 0.01 * scale
    assert np.abs(int8 - ref).max() < 0.15 * scale


def _float_weight_types(graph: Path) -> set[int]:
    """The element types of a graph's float initializers, leaving out Resize scales (always float32)."""
    model = onnx.load(str(graph))
    resize_scales = {n.input[2] for n in model.graph.node if n.op_type == "Resize" and len(n.input) > 2}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    return {i.data_type for i in model.graph.initializer if i.data_type in floats and i.name not in resize_scales}


def test_fp16_weights_are_float16(converted: dict[str, ConvertResult]) -> None:
    assert converted["fp16"].fp32_components == ()
    for name in GRAPHS:
        # Small fp32 leftovers are allowed only where an operator requires float (Resize scales).
        assert _float_weight_types(converted["fp16"].out / name / "model.onnx") == {onnx.TensorProto.FLOAT16}, name


def test_sdxl_fp16_keeps_its_vae_in_fp32(tiny_sdxl_checkpoint: Path, tmp_path: Path) -> None:
    result = convert_to_onnx(tiny_sdxl_checkpoint, tmp_path / "sdxl-fp16", "fp16")
    assert result.kind == "sdxl"
    # SDXL's VAE overflows float16 (its config says force_upcast); everything else is halved.
    assert result.fp32_components == ("vae_decoder", "vae_encoder")
    for name in ("text_encoder", "text_encoder_2", "unet"):
        assert _float_weight_types(result.out / name / "model.onnx") == {onnx.TensorProto.FLOAT16}, name
    for name in result.fp32_components:
        assert _float_weight_types(result.out / name / "model.onnx") == {onnx.TensorProto.FLOAT}, name
    assert (result.out / "tokenizer_2" / "vocab.json").is_file()
    rng = np.random.default_rng(0)
    feeds = {
        "sample": rng.standard_normal((1, 4, 8, 8)).astype(np.float32),
        "timestep": np.array(999.0, dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((1, 77, 64)).astype(np.float32),
        "text_embeds": rng.standard_normal((1, 32)).astype(np.float32),
        "time_ids": np.array([[64, 64, 0, 0, 64, 64]], dtype=np.float32),
    }
    (out,) = _session(result.out / "unet" / "model.onnx").run(None, feeds)
    assert out.shape == (1, 4, 8, 8) and np.isfinite(out).all()


def test_int8_quantizes_unet_and_text_encoder_and_keeps_the_vae(converted: dict[str, ConvertResult]) -> None:
    fp32, int8 = converted["fp32"], converted["int8"]
    for name in ("unet", "text_encoder"):
        model = onnx.load(str(int8.out / name / "model.onnx"))
        ops = {n.op_type for n in model.graph.node}
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, name
        assert any(i.data_type == onnx.TensorProto.INT8 for i in model.graph.initializer), name
    assert "ConvInteger" in {n.op_type for n in onnx.load(str(int8.out / "unet" / "model.onnx")).graph.node}
    assert int8.component_bytes["unet"] < 0.5 * fp32.component_bytes["unet"]
    assert int8.total_bytes < fp32.total_bytes
    assert int8.fp32_components == ("vae_decoder", "vae_encoder")
    for name in ("vae_decoder", "vae_encoder"):
        assert (int8.out / name / "model.onnx").read_bytes() == (fp32.out / name / "model.onnx").read_bytes()


def test_output_has_the_layout_and_a_record(converted: dict[str, ConvertResult], tiny_sd_checkpoint: Path) -> None:
    for result in converted.values():
        for rel in (
            "model_index.json",
            "scheduler/scheduler_config.json",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "unet/config.json",
        ):
            assert (result.out / rel).is_file(), rel
        record = json.loads((result.out / "ember_convert.json").read_text())
        assert record["precision"] == result.precision
        assert record["kind"] == "sd"
        assert Path(record["source"]) == tiny_sd_checkpoint.resolve()
        assert record["components"] == result.component_bytes
        assert record["fp32_components"] == list(result.fp32_components)
        assert "onnx" in record["versions"] and "torch" in record["versions"]
        # Nothing but the folder itself was left beside it (no temporary folders).
        assert not [p for p in result.out.parent.iterdir() if p.name.startswith(".")]
    scheduler = json.loads((converted["fp16"].out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["timestep_spacing"] == "leading" and scheduler["steps_offset"] == 1


def test_fp32_size_estimate_matches_the_export(converted: dict[str, ConvertResult], tiny_sd_checkpoint: Path) -> None:
    estimate = inspect_checkpoint(tiny_sd_checkpoint).fp32_bytes
    assert 0.8 * converted["fp32"].total_bytes < estimate < 1.2 * converted["fp32"].total_bytes


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_pickle_weights_are_refused(tiny_sd_checkpoint: Path, tmp_path: Path) -> None:
    source = _copy_checkpoint(tiny_sd_checkpoint, tmp_path / "pickled")
    weights = source / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    out = tmp_path / "out"
    with pytest.raises(ModelFileError, match=r"pickle weights \(unet/diffusion_pytorch_model\.bin\).*safetensors"):
        convert_to_onnx(source, out, "fp32")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pickled"]


def test_a_pickle_file_given_as_source_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "v1-5-pruned.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 not opened")
    with pytest.raises(ModelFileError, match=r"pickle checkpoint.*can run code"):
        convert_to_onnx(ckpt, tmp_path / "out", "fp32")


def test_pickle_files_beside_safetensors_are_not_opened(tiny_sd_checkpoint: Path, tmp_path: Path) -> None:
    source = _copy_checkpoint(tiny_sd_checkpoint, tmp_path / "both")
    (source / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not a pickle: loading it would fail")
    found = inspect_checkpoint(source)
    assert all(p.suffix == ".safetensors" for p in found.weight_files)


def test_a_folder_that_is_not_a_pipeline_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"\x89PNG")
    with pytest.raises(ModelFileError, match=r"not a diffusers pipeline folder \(it has no model_index\.json\)"):
        convert_to_onnx(folder, tmp_path / "out", "fp32")
    assert not (tmp_path / "out").exists()


def test_a_pipeline_without_unet_or_parts_is_refused(tiny_sd_checkpoint: Path, tmp_path: Path) -> None:
    source = _copy_checkpoint(tiny_sd_checkpoint, tmp_path / "partial")
    shutil.rmtree(source / "text_encoder")
    with pytest.raises(ModelFileError, match="missing text_encoder/"):
        inspect_checkpoint(source)
    index = json.loads((source / "model_index.json").read_text())
    del index["unet"]
    (source / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFileError, match="without a UNet"):
        inspect_checkpoint(source)


def test_an_onnx_folder_is_refused(converted: dict[str, ConvertResult], tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="already in the ONNX layout"):
        convert_to_onnx(converted["fp32"].out, tmp_path / "out", "fp16")


def test_a_full_disk_is_refused_before_writing(
    tiny_sd_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(convert, "_free_disk_bytes", lambda folder: 1_000_000)

    def no_export(*args: object) -> None:
        raise AssertionError("the converter was started although the disk is full")

    monkeypatch.setattr(convert, "_import_converter", no_export)
    parent = tmp_path / "models"
    expected = (
        r"Not enough disk space in .*models: converting checkpoint to fp16 needs about 7\d MB free and there is 1\.0 MB"
    )
    with pytest.raises(EmberError, match=expected):
        convert_to_onnx(tiny_sd_checkpoint, parent / "out", "fp16")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_refused(tiny_sd_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(EmberError, match="already exists"):
        convert_to_onnx(tiny_sd_checkpoint, out, "fp32")
    assert _graph_files(out) == ["keep.txt"]


def test_a_failure_leaves_nothing_behind(
    tiny_sd_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(src: Path, dst: Path) -> None:
        raise RuntimeError("simulated converter crash")

    monkeypatch.setattr(convert, "convert_graph_to_fp16", broken)
    expected = r"failed while converting to fp16 \(RuntimeError: simulated converter crash\)\. Nothing was written"
    with pytest.raises(EmberError, match=expected):
        convert_to_onnx(tiny_sd_checkpoint, tmp_path / "out", "fp16")
    assert list(tmp_path.iterdir()) == []


def test_big_graphs_keep_their_weights_in_an_external_file(
    converted: dict[str, ConvertResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = converted["fp32"].out / "unet" / "model.onnx"
    assert not convert.needs_external_data(onnx.load(str(unet)))
    # Pretend the tiny UNet is past protobuf's 2 GiB limit: the same code path as a real SDXL UNet.
    monkeypatch.setattr(convert, "EXTERNAL_DATA_THRESHOLD_BYTES", 1000)
    assert convert.needs_external_data(onnx.load(str(unet)))
    convert.convert_graph_to_fp16(unet, tmp_path / "fp16" / "model.onnx")
    assert (tmp_path / "fp16" / "model.onnx_data").stat().st_size > (tmp_path / "fp16" / "model.onnx").stat().st_size
    (out,) = _session(tmp_path / "fp16" / "model.onnx").run(None, _unet_feeds())
    assert np.isfinite(out).all()

    # An fp32 graph with external data (as optimum writes one past 2 GiB) is quantized to external data too.
    model = onnx.load(str(unet))
    external = tmp_path / "fp32-external"
    external.mkdir()
    onnx.save_model(model, str(external / "model.onnx"), save_as_external_data=True, location="model.onnx_data")
    convert.quantize_graph_to_int8(external / "model.onnx", tmp_path / "int8" / "model.onnx", ("MatMul", "Conv"))
    assert [p.name for p in (tmp_path / "int8").iterdir() if p.name != "model.onnx"]
    (out,) = _session(tmp_path / "int8" / "model.onnx").run(None, _unet_feeds())
    assert np.isfinite(out).all()


def test_module_imports_without_torch_and_says_what_to_install(tmp_path: Path) -> None:
    # A checkpoint that passes the source checks, written without torch (one tiny tensor a component).
    source = tmp_path / "ckpt"
    components = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    for name in components:
        (source / name).mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    for name in ("unet", "vae", "text_encoder"):
        (source / name / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    index = {"_class_name": "StableDiffusionPipeline", **{name: ["diffusers", "X"] for name in components}}
    (source / "model_index.json").write_text(json.dumps(index))
    out = tmp_path / "out"
    code = f"""
import sys
from pathlib import Path
for name in ("torch", "diffusers", "optimum", "optimum.exporters.onnx"):
    sys.modules[name] = None  # as if they were not installed
import engines.diffusion.convert as c
assert "onnx" not in sys.modules and "onnxruntime" not in sys.modules
try:
    c.convert_to_onnx(Path({str(source)!r}), Path({str(out)!r}), "fp32")
except c.EmberError as e:
    print("ERR", e)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ERR Converting needs the optional converter (torch is not installed): pip install " in done.stdout
    assert "'ember-studio[convert]'" in done.stdout
    assert not out.exists()
