"""Hostile ONNX graphs in a diffusion folder: weights outside the folder, missing or short, absurd shapes, cut files.

Each variant replaces the UNet of a copy of the tiny test pipeline and one image is asked for
through a real Studio: the job must fail with a message for a person, nothing outside the model's
folder may be read (the outside target is a named pipe: opening it to read would hang the job),
and the same Studio must then make an image with the untouched pipeline.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

from engines.diffusion.requests import DiffusionOptions, ImageRequest
from engines.jobs import EventKind
from engines.studio import Studio

_PYTHON_ERROR = re.compile(r"\b(Traceback|[A-Z]\w*(Error|Exception))\b")
VARIANTS = ("escapes_folder", "absolute_path", "missing_weights", "short_weights", "absurd_shape", "cut_in_half")


def _largest(model: onnx.ModelProto) -> TensorProto:
    return max(model.graph.initializer, key=lambda t: len(t.raw_data))


def _external(tensor: TensorProto, location: str, offset: int = 0, length: int | None = None) -> None:
    data = tensor.raw_data
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length or len(data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.ClearField("raw_data")


def _hostile_folder(tiny_sd: Path, tmp_path: Path, variant: str) -> tuple[Path, Path]:
    """A copy of the tiny pipeline with ``variant`` as its UNet; returns it and the outside file a UNet points at."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd, folder)
    outside = tmp_path / "outside.bin"
    os.mkfifo(outside)  # reading it would block: proof enough that nothing did
    unet = folder / "unet" / "model.onnx"
    model = onnx.load(str(unet))
    tensor = _largest(model)
    if variant == "escapes_folder":
        _external(tensor, "../../outside.bin")
    elif variant == "absolute_path":
        _external(tensor, str(outside))
    elif variant == "missing_weights":
        _external(tensor, "weights.bin")
    elif variant == "short_weights":
        size = len(tensor.raw_data)
        (unet.parent / "weights.bin").write_bytes(tensor.raw_data[: size // 4])
        _external(tensor, "weights.bin")
    elif variant == "absurd_shape":
        del tensor.dims[:]
        tensor.dims.extend([2**20, 2**20, 2**10])  # 4 PiB of float32 declared, a few KB stored
    if variant == "cut_in_half":
        data = unet.read_bytes()
        unet.write_bytes(data[: len(data) // 2])
    else:
        onnx.save(model, str(unet))
    return folder, outside


def _image(studio: Studio, folder: Path) -> object:
    request = ImageRequest(DiffusionOptions(str(folder), device="cpu"), "a red apple", seed=1, steps=1, width=64,
                           height=64, preview=False)  # fmt: skip
    return studio.submit(request).wait(120)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_hostile_unet_fails_its_image_plainly_reads_nothing_outside_and_the_studio_carries_on(
    studio: Studio, tiny_sd: Path, tmp_path: Path, variant: str
) -> None:
    folder, outside = _hostile_folder(tiny_sd, tmp_path, variant)

    final = _image(studio, folder)

    assert final is not None, f"{variant}: the job did not end (did it open {outside}?)"
    assert final.kind is EventKind.FAILED, (variant, final.kind, final.data)
    message = final.data
    assert isinstance(message, str) and not _PYTHON_ERROR.search(message), message
    assert "Re-download" in message or "re-convert" in message or "memory" in message, message
    if variant in ("escapes_folder", "absolute_path"):
        assert "outside its folder" in message, message
    good = _image(studio, tiny_sd)
    assert good is not None and good.kind is EventKind.RESULT, good
