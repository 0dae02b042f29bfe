"""The check an ONNX file passes before onnxruntime opens it: weights only from inside its folder, whole and
as large as declared (engines/models/onnx_header.py, ``check_external_data``), for every door that opens one."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hostile_onnx import VARIANTS, assert_refused_plainly, outside_pipe, write_hostile

from engines.errors import ModelFileError
from engines.models.onnx_header import read_onnx_header


def _external(source: Path, target: Path, location: str) -> Path:
    model = onnx.load(str(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(target), save_as_external_data=True, location=location, size_threshold=0)
    return target


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_hostile_variant_is_refused_before_onnxruntime_sees_it(
    upscaler_onnx: Path, tmp_path: Path, variant: str
) -> None:
    outside = outside_pipe(tmp_path / "outside.bin")
    hostile = write_hostile(upscaler_onnx, tmp_path / "model" / "upscaler.onnx", variant, outside)
    started = time.perf_counter()
    with pytest.raises(ModelFileError) as refused:
        read_onnx_header(hostile)
    assert time.perf_counter() - started < 5, variant
    assert_refused_plainly(str(refused.value), variant)


def test_weights_linked_into_a_hugging_face_cache_are_read(upscaler_onnx: Path, tmp_path: Path) -> None:
    # The cache keeps every file of a snapshot as a link into its blobs folder, the graph's too.
    made = _external(upscaler_onnx, tmp_path / "made" / "model.onnx", "model.onnx_data")
    blobs = tmp_path / "models--someone--upscaler" / "blobs"
    snapshot = tmp_path / "models--someone--upscaler" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name, blob in (("model.onnx", "1111"), ("model.onnx_data", "2222")):
        shutil.copyfile(made.parent / name, blobs / blob)
        (snapshot / name).symlink_to(os.path.relpath(blobs / blob, snapshot))

    header = read_onnx_header(snapshot / "model.onnx")

    assert header.external_files == ("model.onnx_data",)
    assert header.external_bytes == (blobs / "2222").stat().st_size
    session = ort.InferenceSession(str(snapshot / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((1, 3, 4, 4), np.float32)})[0]
    assert out.shape == (1, 3, 8, 8)


def test_weights_in_a_named_pipe_inside_the_folder_are_refused_without_opening_it(
    upscaler_onnx: Path, tmp_path: Path
) -> None:
    graph = _external(upscaler_onnx, tmp_path / "model" / "model.onnx", "weights.bin")
    (graph.parent / "weights.bin").unlink()
    os.mkfifo(graph.parent / "weights.bin")  # opening it to read would block

    with pytest.raises(ModelFileError, match="which is not a file"):
        read_onnx_header(graph)


def test_weights_in_a_subfolder_of_the_model_are_read(upscaler_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "model" / "weights").mkdir(parents=True)
    graph = _external(upscaler_onnx, tmp_path / "model" / "model.onnx", "weights/model.bin")
    assert read_onnx_header(graph).external_files == ("weights/model.bin",)
