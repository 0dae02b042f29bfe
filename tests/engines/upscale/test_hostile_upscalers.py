"""Hostile ONNX upscalers: a person's upscaler file whose weights are outside its folder, missing or short, that
declares absurd shapes, is cut in half or is not ONNX at all.

Each variant (tests/tools/hostile_onnx.py) is made from the embedded Real-ESRGAN x2 graph and opened
the way a person opens an upscaler file: its path as the model of an upscale, through a real
Studio. The job must fail with a message for a person in bounded time, nothing outside the file's
folder may be read (the outside target is a named pipe: reading it would hang the job), and the
same Studio must then upscale with an untouched copy of the same graph.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_onnx import BOUND_S, VARIANTS, assert_refused_plainly, outside_pipe, write_hostile

from engines.jobs import EventKind
from engines.studio import Studio
from engines.upscale.models import converted_path, upscaler
from engines.upscale.requests import UpscaleOptions, UpscaleRequest


@pytest.fixture(scope="module")
def x2_graph(tmp_path_factory: pytest.TempPathFactory, session_home: Path) -> Path:
    """A copy of the embedded x2 upscaler's ONNX graph, as a file a person would pick."""
    copy = tmp_path_factory.mktemp("x2") / "realesr-x2.onnx"
    shutil.copyfile(converted_path(upscaler("animevideo-x2")), copy)
    return copy


def _upscale(studio: Studio, graph: Path, photo: np.ndarray) -> object:
    options = UpscaleOptions(str(graph), device="cpu", threads=1)
    request = UpscaleRequest(options, np.ascontiguousarray(photo[:32, :32]), scale=2, tile_size=32, overlap=8)
    return studio.submit(request).wait(BOUND_S * 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_hostile_upscaler_fails_plainly_reads_nothing_outside_and_the_studio_carries_on(
    studio: Studio, x2_graph: Path, photo: np.ndarray, tmp_path: Path, variant: str
) -> None:
    outside = outside_pipe(tmp_path / "outside.bin")
    hostile = write_hostile(x2_graph, tmp_path / "upscalers" / "mine.onnx", variant, outside)

    started = time.perf_counter()
    final = _upscale(studio, hostile, photo)

    assert final is not None, f"{variant}: the job did not end (did it open {outside}?)"
    assert time.perf_counter() - started < BOUND_S, variant
    assert final.kind is EventKind.FAILED, (variant, final.kind, final.data)
    assert_refused_plainly(final.data, variant)
    good = _upscale(studio, x2_graph, photo)
    assert good is not None and good.kind is EventKind.RESULT, good
