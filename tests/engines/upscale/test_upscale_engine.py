"""The upscaler on the embedded Real-ESRGAN models: tiles and seams, alpha, progress, cancel, errors, records."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engines.errors import Cancelled, ModelFileError, OutOfMemoryError
from engines.jobs import CancelToken, EventKind, JobEvent
from engines.progress import Step
from engines.studio import Studio
from engines.upscale.engine import UpscaleEngine, check_fits, plan_tiles, tile_starts, upscale_tiled
from engines.upscale.requests import UpscaleOptions, UpscaleRequest


class Recorder:
    """A Progress that keeps the tiles reported, and can cancel after some of them."""

    def __init__(self, cancel: CancelToken | None = None, cancel_after: int = 0) -> None:
        self.steps: list[tuple[int, int]] = []
        self.cancel, self.cancel_after = cancel, cancel_after

    def step(self, done: int, total: int) -> None:
        self.steps.append((done, total))
        if self.cancel is not None and done == self.cancel_after:
            self.cancel.cancel()

    def token(self, text: str) -> None: ...
    def notice(self, message: str) -> None: ...
    def preview(self, image: Any, index: int = 0) -> None: ...
    def wants_preview(self) -> bool:
        return False


def _bare(engine: UpscaleEngine, rgb: np.ndarray) -> np.ndarray:
    """The model on the whole image at once: onnxruntime, nothing else."""
    x = np.ascontiguousarray((rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])
    return np.clip(np.rint(engine.run_tile(x)[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


# -- tiling -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("length", "core", "overlap"), [(100, 32, 8), (33, 32, 8), (32, 32, 8), (257, 64, 16)])
def test_tiles_cover_the_axis_and_neighbours_share_at_least_the_overlap(length: int, core: int, overlap: int) -> None:
    starts = tile_starts(length, core, overlap)
    assert starts[0] == 0 and starts[-1] + core == max(length, core)
    assert all(b - a <= core - overlap for a, b in itertools.pairwise(starts))


def test_blending_weights_sum_to_one_so_an_exact_model_is_reproduced_exactly() -> None:
    # A "model" that is nearest-neighbour x3 in numpy: whatever the tiling, the result must be its own.
    rgb = np.random.default_rng(1).integers(0, 256, (70, 95, 3), dtype=np.uint8)

    def nearest(tile: np.ndarray) -> np.ndarray:
        return tile.repeat(3, axis=2).repeat(3, axis=3)

    plan = plan_tiles(70, 95, 3, 32, 8)
    assert plan.tiles == len(plan.ys) * len(plan.xs) > 6
    out = upscale_tiled(rgb, nearest, plan)
    np.testing.assert_array_equal(out, rgb.repeat(3, axis=0).repeat(3, axis=1))


def test_a_tiled_upscale_matches_a_single_pass_away_from_the_border(
    x4_engine: UpscaleEngine, photo: np.ndarray
) -> None:
    height, width = photo.shape[:2]
    tiled_plan = plan_tiles(height, width, 4, 48, 12)
    assert tiled_plan.tiles >= 6
    tiled = upscale_tiled(photo, x4_engine.run_tile, tiled_plan)
    one_tile = upscale_tiled(photo, x4_engine.run_tile, plan_tiles(height, width, 4, 4096, 12))
    bare = _bare(x4_engine, photo)
    border = 12 * 4
    inner = (slice(border, -border), slice(border, -border))
    seams_vs_bare = np.abs(tiled.astype(int) - bare.astype(int))[inner]
    seams_vs_one = np.abs(tiled.astype(int) - one_tile.astype(int))
    print(
        f"\nseam figure (x4, {tiled_plan.tiles} tiles of 48 px, 12 px overlap): max |tiled - single pass| away from "
        f"the border {seams_vs_bare.max()}/255 (mean {seams_vs_bare.mean():.4f}); against one tile with the same "
        f"mirrored border {seams_vs_one.max()}/255 over the whole image"
    )
    assert seams_vs_bare.max() < 2
    assert seams_vs_one.max() < 2


def test_the_x4plus_anime_models_reach_is_read_around_each_tile_so_its_seams_vanish(photo: np.ndarray) -> None:
    from dataclasses import replace

    engine = UpscaleEngine(UpscaleOptions("x4plus-anime", device="cpu"))
    engine.load()
    image = np.ascontiguousarray(photo[:80, :80])
    context = engine.context_for(UpscaleRequest(engine.options, image))
    plan = plan_tiles(80, 80, 4, 40, 8, context)
    assert plan.tiles == 9 and context == 48
    tiled = upscale_tiled(image, engine.run_tile, plan)
    one_pass = upscale_tiled(image, engine.run_tile, replace(plan, core_h=80, core_w=80, ys=(0,), xs=(0,)))
    seams = np.abs(tiled.astype(int) - one_pass.astype(int))
    print(f"\nx4plus-anime seams ({plan.tiles} tiles, {context} px context): max {seams.max()}/255")
    assert seams.max() < 2


# -- the engine ------------------------------------------------------------------------------------
def test_progress_is_reported_per_tile(x4_engine: UpscaleEngine, photo: np.ndarray) -> None:
    progress = Recorder()
    out = x4_engine.run(
        UpscaleRequest(x4_engine.options, photo, scale=4, tile_size=48, overlap=8), progress, CancelToken()
    )
    total = plan_tiles(*photo.shape[:2], 4, 48, 8).tiles
    assert progress.steps == [(i, total) for i in range(1, total + 1)]
    assert out.pixels.shape == (photo.shape[0] * 4, photo.shape[1] * 4, 3)
    assert out.parameters["tiles"] == total


def test_cancel_stops_before_the_next_tile(x4_engine: UpscaleEngine, photo: np.ndarray) -> None:
    cancel = CancelToken()
    progress = Recorder(cancel, cancel_after=2)
    with pytest.raises(Cancelled):
        x4_engine.run(UpscaleRequest(x4_engine.options, photo, scale=4, tile_size=32, overlap=8), progress, cancel)
    assert progress.steps[-1][0] == 2 < progress.steps[-1][1]


def test_a_tile_in_flight_stops_when_cancelled(x4_engine: UpscaleEngine) -> None:
    # One big tile: only onnxruntime's terminate flag can stop it before it ends.
    big = np.random.default_rng(2).integers(0, 256, (420, 420, 3), dtype=np.uint8)
    cancel = CancelToken()
    started = time.perf_counter()
    threading.Timer(0.3, cancel.cancel).start()
    with pytest.raises(Cancelled):
        x4_engine.run(UpscaleRequest(x4_engine.options, big, scale=4, tile_size=512, overlap=0), Recorder(), cancel)
    took = time.perf_counter() - started - 0.3
    single = time.perf_counter()
    x4_engine.run_tile(np.zeros((1, 3, 64, 64), np.float32))  # the session still works afterwards
    print(f"\na 420x420 tile stopped {took * 1000:.0f} ms after the cancel ({time.perf_counter() - single:.2f} s/64px)")


def test_the_alpha_channel_is_kept_and_upscaled(x4_engine: UpscaleEngine, photo: np.ndarray) -> None:
    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[:40, :50] = 0
    rgba = np.dstack([photo, alpha])
    out = x4_engine.run(UpscaleRequest(x4_engine.options, rgba, scale=4, tile_size=64), Recorder(), CancelToken())
    assert out.alpha is not None and out.alpha.shape == out.pixels.shape[:2]
    assert out.alpha[: 36 * 4, : 46 * 4].max() == 0  # transparent stays transparent
    assert out.alpha[44 * 4 :, 54 * 4 :].min() == 255  # opaque stays opaque
    assert out.parameters["alpha"] == "bicubic"


def test_a_scale_below_the_models_own_is_resized_down(photo: np.ndarray, session_home: Path) -> None:
    engine = UpscaleEngine(UpscaleOptions("animevideo-x2", device="cpu"))
    engine.load()
    out = engine.run(UpscaleRequest(engine.options, photo, scale=3, tile_size=64), Recorder(), CancelToken())
    assert out.pixels.shape == (photo.shape[0] * 3, photo.shape[1] * 3, 3)
    assert (out.parameters["model_scale"], out.parameters["scale"]) == (2, 3)


# -- errors ----------------------------------------------------------------------------------------
def test_an_image_too_large_for_memory_is_refused_with_its_sizes() -> None:
    with pytest.raises(OutOfMemoryError) as refused:
        check_fits(40000, 50000, 4, 4, 192, 16)
    message = str(refused.value)
    assert "50000x40000" in message and "200000x160000" in message and "free" in message


def test_a_graph_that_is_not_an_upscaler_is_refused(tmp_path: Path, session_home: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    # An image to a smaller image (average pooling): a graph, but no upscaler.
    node = helper.make_node("AveragePool", ["input"], ["output"], kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph(
        [node],
        "pool",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "h2", "w2"])],
    )
    path = tmp_path / "pool.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    engine = UpscaleEngine(UpscaleOptions(str(path), device="cpu"))
    with pytest.raises(ModelFileError, match="not an upscaler"):
        engine.load()
    with pytest.raises(ModelFileError, match=r"no upscaler 'nothing-here\.onnx'"):
        UpscaleEngine(UpscaleOptions("nothing-here.onnx"))


# -- through the Studio: the pipeline, the record and the file ----------------------------------
def _run(studio: Studio, request: UpscaleRequest) -> tuple[JobEvent, list[JobEvent]]:
    events: list[JobEvent] = []
    final = studio.submit(request, listener=events.append).wait(300)
    assert final is not None
    return final, events


def test_an_upscaled_image_is_checked_marked_saved_and_linked_to_its_source(
    studio: Studio, photo: np.ndarray, tmp_path: Path
) -> None:
    from engines.provenance.verify import verify_file

    source = tmp_path / "astronaut.png"
    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[:20, :20] = 0
    Image.fromarray(np.dstack([photo, alpha]), "RGBA").save(source)
    options = UpscaleOptions("animevideo-x2", device="cpu")
    final, events = _run(studio, UpscaleRequest(options, str(source), scale=2, tile_size=64))
    assert final.kind is EventKind.RESULT, final.data
    assert any(isinstance(e.data, Step) for e in events if e.kind is EventKind.PROGRESS)
    (item,) = final.data.delivered
    assert [d.stage for d in item.record.decisions][:2] == ["safety", "provenance"]
    settings = item.record.provenance.settings
    assert settings["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert "source_output_id" not in settings  # a file Ember did not make: linked by its hash
    (path,) = final.data.paths
    with Image.open(path) as saved:
        assert saved.mode == "RGBA" and saved.size == (photo.shape[1] * 2, photo.shape[0] * 2)
        assert np.asarray(saved)[:30, :30, 3].max() == 0
    report = verify_file(path, studio.key, find_records=studio._find_records)
    assert report.watermark is not None and report.watermark.found
    assert report.credentials is not None and report.credentials.valid
    assert [r.output_id for r in report.records] == [item.record.output_id]  # the mark finds the record
    # Upscaling Ember's own output links to its record.
    again, _ = _run(studio, UpscaleRequest(options, path, scale=2, tile_size=96))
    assert again.kind is EventKind.RESULT, again.data
    linked = again.data.delivered[0].record.provenance.settings
    assert linked["source_output_id"] == item.record.output_id
    assert again.data.delivered[0].record.output_id != item.record.output_id


def test_the_safety_filter_blocks_an_upscaled_image_and_nothing_is_saved(
    studio: Studio, photo: np.ndarray, ember_home: Path
) -> None:
    from dataclasses import replace

    from engines.safety.policy import Action, Category, Finding

    studio.set_policy(replace(studio.safety.policy, image_action=Action.BLOCK))
    studio.safety.image.check = lambda pixels: [Finding(Category.SEXUAL, 1.0, "test-checker")]
    final, events = _run(studio, UpscaleRequest(UpscaleOptions("animevideo-x2", device="cpu"), photo, scale=2))
    assert final.kind is EventKind.BLOCKED and final.data.stage == "safety"
    assert not [e for e in events if e.kind in (EventKind.RESULT, EventKind.PREVIEW)]
    assert not list(ember_home.rglob("*.png"))


def test_a_cancelled_upscale_ends_within_200_ms_and_saves_nothing(studio: Studio, ember_home: Path) -> None:
    big = np.random.default_rng(4).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    request = UpscaleRequest(UpscaleOptions("animevideo-x4", device="cpu"), big, scale=4, tile_size=64, overlap=8)
    asked: list[float] = []
    job_box: list[Any] = []

    def listener(event: JobEvent) -> None:
        if event.kind is EventKind.PROGRESS and isinstance(event.data, Step) and event.data.done == 2 and not asked:
            asked.append(time.perf_counter())
            job_box[0].cancel()

    job = studio.submit(request, listener=listener)
    job_box.append(job)
    final = job.wait(300)
    ended = time.perf_counter()
    assert final is not None and final.kind is EventKind.CANCELLED
    assert asked, "the job never reported two tiles"
    print(f"\ncancel to cancelled: {(ended - asked[0]) * 1000:.0f} ms")
    assert ended - asked[0] < 1.0  # the goal is 200 ms; a loaded CI machine gets slack, the figure is printed
    assert not list(ember_home.rglob("*.png"))


def test_an_unreadable_image_fails_with_a_plain_reason(studio: Studio, tmp_path: Path) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture")
    final, _ = _run(studio, UpscaleRequest(UpscaleOptions("animevideo-x2", device="cpu"), str(fake), scale=2))
    assert final.kind is EventKind.FAILED
    assert "'holiday.png' is not an image Ember can read" in str(final.data)


def test_a_huge_image_is_refused_before_it_is_decoded(studio: Studio, tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    Image.new("1", (30000, 30000)).save(huge)  # a few kB on disk, 900 megapixels decoded
    final, _ = _run(studio, UpscaleRequest(UpscaleOptions("animevideo-x4", device="cpu"), str(huge), scale=4))
    assert final.kind is EventKind.FAILED
    assert "30000x30000" in str(final.data) and "120000x120000" in str(final.data)
