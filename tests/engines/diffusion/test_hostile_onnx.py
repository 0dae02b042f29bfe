"""Hostile ONNX graphs in a diffusion folder: weights outside the folder, missing or short, absurd shapes, cut files.

Each variant (tests/tools/hostile_onnx.py) replaces the UNet of a copy of the tiny test pipeline and
one image is asked for through a real Studio: the job must fail with a message for a person,
nothing outside the model's folder may be read (the outside target is a named pipe: opening it to
read would hang the job), and the same Studio must then make an image with the untouched pipeline.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from hostile_onnx import BOUND_S, VARIANTS, assert_refused_plainly, outside_pipe, write_hostile

from engines.diffusion.requests import DiffusionOptions, ImageRequest
from engines.jobs import EventKind
from engines.studio import Studio


def _hostile_folder(tiny_sd: Path, tmp_path: Path, variant: str) -> tuple[Path, Path]:
    """A copy of the tiny pipeline with ``variant`` as its UNet; returns it and the outside pipe a UNet points at."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd, folder)
    outside = outside_pipe(tmp_path / "outside.bin")
    unet = folder / "unet" / "model.onnx"
    write_hostile(tiny_sd / "unet" / "model.onnx", unet, variant, outside)
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

    started = time.perf_counter()
    final = _image(studio, folder)

    assert final is not None, f"{variant}: the job did not end (did it open {outside}?)"
    assert time.perf_counter() - started < BOUND_S, variant
    assert final.kind is EventKind.FAILED, (variant, final.kind, final.data)
    assert_refused_plainly(final.data, variant)
    good = _image(studio, tiny_sd)
    assert good is not None and good.kind is EventKind.RESULT, good
