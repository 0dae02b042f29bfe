"""The diffusion engine's behaviour on the tiny ONNX pipelines: steps, cancel, previews, batches,
defaults, precision, memory, errors, and no torch at run time."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.diffusion.engine import DiffusionEngine
from engines.diffusion.pipeline import DiffusionPipeline
from engines.diffusion.requests import DiffusionOptions, ImageRequest
from engines.diffusion.tiling import tile_starts
from engines.errors import Cancelled, EmberError, ModelFileError, OutOfMemoryError
from engines.jobs import CancelToken

SIZE = 64


class RecordingProgress:
    """A Progress that records what the engine reports, and can cancel the job after some steps."""

    def __init__(self, cancel: CancelToken | None = None, cancel_after: int | None = None, previews: bool = True):
        self.steps: list[tuple[int, int]] = []
        self.previews: list[tuple[int, np.ndarray]] = []
        self.notices: list[str] = []
        self._cancel, self._cancel_after, self._previews = cancel, cancel_after, previews

    def token(self, text: str) -> None:
        raise AssertionError("an image engine streams no text")

    def step(self, done: int, total: int) -> None:
        self.steps.append((done, total))
        if self._cancel is not None and done == self._cancel_after:
            self._cancel.cancel()

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def preview(self, image: Any, index: int = 0) -> None:
        self.previews.append((index, image))

    def wants_preview(self) -> bool:
        return self._previews


def request(folder: Path, **changes: Any) -> ImageRequest:
    settings: dict[str, Any] = {"prompt": "a photo of a red cat", "width": SIZE, "height": SIZE, "seed": 42}
    settings.update(changes)
    return ImageRequest(DiffusionOptions(str(folder), device="cpu", threads=1), **settings)


@pytest.fixture
def engine(tiny_sd: Path, ember_home: Path) -> DiffusionEngine:
    made = DiffusionEngine(DiffusionOptions(str(tiny_sd), device="cpu", threads=1))
    yield made
    made.unload()


def test_progress_counts_every_step_and_previews_arrive_each_step(engine: DiffusionEngine, tiny_sd: Path) -> None:
    progress = RecordingProgress()
    out = engine.run(request(tiny_sd, steps=6, batch_size=2), progress, CancelToken())
    assert progress.steps == [(i, 6) for i in range(1, 7)]
    assert [index for index, _ in progress.previews] == [0, 1] * 6
    for _, picture in progress.previews:
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
        assert max(picture.shape[:2]) <= 256
    assert len(out.images) == 2 and out.images[0].shape == (SIZE, SIZE, 3) and out.images[0].dtype == np.uint8
    assert out.timings["steps"] == 6 and out.timings["step_s_median"] > 0


def test_no_previews_are_made_when_nobody_shows_them(engine: DiffusionEngine, tiny_sd: Path) -> None:
    unwanted = RecordingProgress(previews=False)
    engine.run(request(tiny_sd, steps=3), unwanted, CancelToken())
    turned_off = RecordingProgress()
    engine.run(request(tiny_sd, steps=3, preview=False), turned_off, CancelToken())
    assert unwanted.previews == [] and turned_off.previews == []
    assert len(unwanted.steps) == len(turned_off.steps) == 3


def test_cancel_stops_before_the_next_step(engine: DiffusionEngine, tiny_sd: Path) -> None:
    cancel = CancelToken()
    progress = RecordingProgress(cancel, cancel_after=2)
    with pytest.raises(Cancelled):
        engine.run(request(tiny_sd, steps=10), progress, cancel)
    assert progress.steps == [(1, 10), (2, 10)]


def test_batch_of_two_equals_two_single_runs_with_seeds_s_and_s_plus_1(engine: DiffusionEngine, tiny_sd: Path) -> None:
    for sampler in ("euler_a", "lcm"):  # the stochastic ones: each image has its own noise stream
        batch = engine.run(
            request(tiny_sd, steps=4, batch_size=2, seed=100, scheduler=sampler), RecordingProgress(), CancelToken()
        )
        first = engine.run(request(tiny_sd, steps=4, seed=100, scheduler=sampler), RecordingProgress(), CancelToken())
        second = engine.run(request(tiny_sd, steps=4, seed=101, scheduler=sampler), RecordingProgress(), CancelToken())
        assert [p["seed"] for p in batch.parameters] == [100, 101]
        for mine, alone in zip(batch.images, (first.images[0], second.images[0]), strict=True):
            assert np.abs(mine.astype(int) - alone.astype(int)).max() <= 1
        assert np.abs(batch.images[0].astype(int) - batch.images[1].astype(int)).max() > 0


def test_img2img_batch_equals_single_runs(tiny_sd: Path) -> None:
    pipeline = DiffusionPipeline(tiny_sd)
    picture = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    args = {"width": SIZE, "height": SIZE, "steps": 5, "init_image": picture, "strength": 0.8, "output_type": "float"}
    batch = pipeline("a cat", seeds=[5, 6], **args).images
    singles = [pipeline("a cat", seeds=[s], **args).images[0] for s in (5, 6)]
    for mine, alone in zip(batch, singles, strict=True):
        assert np.abs(mine - alone).max() < 1e-4


def test_same_seed_same_image_and_parameters_say_how_it_was_made(engine: DiffusionEngine, tiny_sd: Path) -> None:
    made = engine.run(
        request(tiny_sd, steps=3, guidance_scale=5.0, negative_prompt="dark"), RecordingProgress(), CancelToken()
    )
    again = engine.run(
        request(tiny_sd, steps=3, guidance_scale=5.0, negative_prompt="dark"), RecordingProgress(), CancelToken()
    )
    assert np.array_equal(made.images[0], again.images[0])
    params = made.parameters[0]
    assert params == {
        "prompt": "a photo of a red cat",
        "negative_prompt": "dark",
        "steps": 3,
        "sampler": "euler",
        "guidance": 5.0,
        "seed": 42,
        "width": SIZE,
        "height": SIZE,
        "model": engine.name,
        "batch_index": 0,
        "mode": "txt2img",
    }


def test_model_defaults_turbo_one_step_no_guidance(tiny_turbo: Path, tiny_sd: Path, ember_home: Path) -> None:
    turbo = DiffusionEngine(DiffusionOptions(str(tiny_turbo), device="cpu", threads=1))
    progress = RecordingProgress()
    out = turbo.run(request(tiny_turbo), progress, CancelToken())
    assert progress.steps == [(1, 1)]
    assert out.parameters[0]["steps"] == 1 and out.parameters[0]["guidance"] == 0.0
    ordinary = DiffusionEngine(DiffusionOptions(str(tiny_sd), device="cpu", threads=1))
    assert ordinary.defaults(request(tiny_sd)) == (25, 7.5, "euler")
    assert ordinary.model.family == "standard" and turbo.model.family == "turbo"
    # Turbo's single step at strength 0.5 would run no step: the default grows to 2, of which 1 runs.
    picture = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    progress = RecordingProgress()
    out = turbo.run(request(tiny_turbo, init_image=picture, strength=0.5), progress, CancelToken())
    assert out.parameters[0]["steps"] == 1 and progress.steps == [(1, 1)]
    assert turbo.defaults(request(tiny_turbo, init_image=picture, strength=0.5))[0] == 2


def test_img2img_records_strength_and_runs_the_last_part_of_the_schedule(
    engine: DiffusionEngine, tiny_sd: Path, tmp_path: Path
) -> None:
    from PIL import Image

    path = tmp_path / "start.png"
    Image.fromarray(np.full((SIZE * 2, SIZE * 2, 3), 180, dtype=np.uint8)).save(path)  # resized to 64x64
    progress = RecordingProgress()
    out = engine.run(request(tiny_sd, steps=10, init_image=str(path), strength=0.5), progress, CancelToken())
    assert progress.steps[-1] == (5, 5)
    assert out.parameters[0]["mode"] == "img2img" and out.parameters[0]["strength"] == 0.5
    assert out.parameters[0]["init_image"] == str(path)


def test_unreadable_starting_image_says_what_to_do(engine: DiffusionEngine, tiny_sd: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text, not a PNG")
    with pytest.raises(EmberError, match=r"cannot read the starting image .* Pick a PNG, JPEG or WebP file"):
        engine.run(request(tiny_sd, steps=2, init_image=str(bad)), RecordingProgress(), CancelToken())


def test_provenance_names_the_model_its_unet_hash_and_the_settings(engine: DiffusionEngine, tiny_sd: Path) -> None:
    req = request(tiny_sd, steps=2)
    out = engine.run(req, RecordingProgress(), CancelToken())
    record = engine.provenance(req, out)
    assert record.model_sha256 == hashlib.sha256((tiny_sd / "unet" / "model.onnx").read_bytes()).hexdigest()
    assert record.model_path == str(tiny_sd) and record.model_name == engine.name
    assert record.backend == engine.backend == "CPU"
    assert record.seed == 42 and record.settings["steps"] == 2 and record.settings["sampler"] == "euler"


def test_a_request_too_big_for_memory_is_refused_before_it_starts(engine: DiffusionEngine, tiny_sd: Path) -> None:
    small = engine.memory_estimate(512, 512, 1)
    assert engine.memory_estimate(1024, 1024, 1) > small and engine.memory_estimate(512, 512, 4) > small
    engine.check_fits(request(tiny_sd))  # the tiny model at 64x64 fits anywhere
    big = request(tiny_sd, width=2048, height=2048, batch_size=4)
    progress = RecordingProgress()
    with pytest.raises(
        OutOfMemoryError, match=r"A 2048x2048 image at batch 4 needs about .*; .* is free\. Lower the size or batch\."
    ):
        engine.run(big, progress, CancelToken())
    assert progress.steps == []


def test_tiled_decode_is_close_to_the_whole_decode_and_seamless(tiny_sd: Path) -> None:
    pipeline = DiffusionPipeline(tiny_sd)
    latents = np.random.default_rng(0).standard_normal((1, 4, 32, 32), dtype=np.float32)
    whole = pipeline.decode(latents)
    tiled = pipeline.decode(latents, tiled=True, tile=24, overlap=8)
    assert tiled.shape == whole.shape == (1, 3, 256, 256)
    difference = tiled - whole
    # The random VAE's group norms and attention see a tile, not the image: close, not equal.
    assert np.abs(difference).mean() < 0.01
    # Seamless: the difference image has no step where tiles meet. Pasting the tiles without
    # blending makes such a step (this proves the measure sees seams).
    blended_step = np.abs(np.diff(difference, axis=3)).max()
    decoder = pipeline.graphs["vae_decoder"]
    vae_latents = pipeline._to_vae_latents(latents)
    pasted = whole.copy()
    for y0 in tile_starts(32, 24, 8):
        for x0 in tile_starts(32, 24, 8):
            part = decoder.run({"latent_sample": vae_latents[:, :, y0 : y0 + 24, x0 : x0 + 24]})["sample"]
            pasted[:, :, y0 * 8 : (y0 + 24) * 8, x0 * 8 : (x0 + 24) * 8] = np.clip(part * 0.5 + 0.5, 0, 1)
    pasted_step = np.abs(np.diff(pasted - whole, axis=3)).max()
    assert blended_step < 0.2 < pasted_step


def test_large_images_are_decoded_in_tiles(tiny_sd: Path) -> None:
    pipeline = DiffusionPipeline(tiny_sd)
    assert pipeline.should_tile(2048, 1024) and not pipeline.should_tile(512, 512)


def test_io_binding_path_gives_the_same_image(tiny_sdxl: Path) -> None:
    # On CUDA the text conditioning stays bound on the GPU; the same code runs on the CPU here.
    latents = np.random.default_rng(1).standard_normal((1, 4, 8, 8), dtype=np.float32)
    args = {"width": SIZE, "height": SIZE, "steps": 3, "latents": latents, "output_type": "float"}
    plain = DiffusionPipeline(tiny_sdxl, io_binding=False)("a red cat", "dark", **args).images[0]
    bound = DiffusionPipeline(tiny_sdxl, io_binding=True)("a red cat", "dark", **args).images[0]
    assert np.abs(plain - bound).max() < 1e-6


def test_fp16_model_runs_close_to_fp32(tiny_sd: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from engines.diffusion.convert import convert_graph_to_fp16

    half = tmp_path / "sd-fp16"
    shutil.copytree(tiny_sd, half)
    for component in ("text_encoder", "vae_decoder", "vae_encoder"):
        convert_graph_to_fp16(tiny_sd / component / "model.onnx", half / component / "model.onnx")
    # A UNet whose inputs are fp16 too (the timestep included), so the casts to the graph's dtypes are exercised.
    unet = convert_float_to_float16(str(tiny_sd / "unet" / "model.onnx"), keep_io_types=False, op_block_list=["Resize"])
    onnx.save(unet, str(half / "unet" / "model.onnx"))

    full_pipe, half_pipe = DiffusionPipeline(tiny_sd), DiffusionPipeline(half)
    assert half_pipe.graphs["unet"].input_dtype("timestep") == np.float16
    latents = np.random.default_rng(2).standard_normal((1, 4, 8, 8), dtype=np.float32)
    args = {"width": SIZE, "height": SIZE, "steps": 4, "latents": latents, "output_type": "float"}
    full = full_pipe("a red cat", "dark", **args).images[0]
    reduced = half_pipe("a red cat", "dark", **args).images[0]
    assert reduced.dtype == np.float32
    assert np.abs(full - reduced).max() < 0.02
    assert half_pipe.weights_bytes < full_pipe.weights_bytes


def test_truncated_onnx_file_gives_a_clear_error(tiny_sd: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    unet = broken / "unet" / "model.onnx"
    unet.write_bytes(unet.read_bytes()[: unet.stat().st_size // 3])
    engine = DiffusionEngine(DiffusionOptions(str(broken), device="cpu", threads=1))
    with pytest.raises(ModelFileError, match=r"unet of this model cannot be used: 'model\.onnx' is incomplete"):
        engine.load()


def test_folders_that_are_not_diffusers_onnx_say_what_they_are(
    tiny_sd: Path, tiny_sd_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelFileError, match="not a diffusers ONNX folder"):
        DiffusionEngine(DiffusionOptions(str(tmp_path)))
    with pytest.raises(ModelFileError, match="diffusers checkpoint for PyTorch, not an ONNX model"):
        DiffusionEngine(DiffusionOptions(str(tiny_sd_checkpoint)))
    with pytest.raises(ModelFileError, match="is not a folder"):
        DiffusionEngine(DiffusionOptions(str(tmp_path / "nowhere")))
    partial = tmp_path / "partial"
    shutil.copytree(tiny_sd, partial)
    shutil.rmtree(partial / "vae_decoder")
    with pytest.raises(ModelFileError, match=r"no vae_decoder/model\.onnx"):
        DiffusionEngine(DiffusionOptions(str(partial)))
    no_encoder = tmp_path / "no-encoder"
    shutil.copytree(tiny_sd, no_encoder)
    shutil.rmtree(no_encoder / "vae_encoder")
    pipeline = DiffusionPipeline(no_encoder)
    picture = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    with pytest.raises(EmberError, match="no vae_encoder, so it cannot start from an image"):
        pipeline("a cat", width=SIZE, height=SIZE, steps=2, init_image=picture)


def test_components_unload_and_load_again_when_needed(engine: DiffusionEngine, tiny_sd: Path) -> None:
    engine.load()
    engine.unload_component("unet")
    assert not engine.pipeline.graphs["unet"].loaded
    engine.run(request(tiny_sd, steps=2), RecordingProgress(), CancelToken())
    assert engine.pipeline.graphs["unet"].loaded
    engine.unload()
    assert engine._pipeline is None


def test_the_runtime_never_imports_torch(tiny_sdxl: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now fails
        from engines.diffusion.engine import DiffusionEngine
        from engines.diffusion.requests import DiffusionOptions, ImageRequest
        from engines.jobs import CancelToken

        class Quiet:
            def step(self, done, total): pass
            def notice(self, message): pass
            def preview(self, image, index=0): pass
            def wants_preview(self): return True

        options = DiffusionOptions({str(tiny_sdxl)!r}, device="cpu", threads=1)
        engine = DiffusionEngine(options)
        for sampler in ("euler", "euler_a", "dpmpp_2m_karras", "ddim", "lcm"):
            req = ImageRequest(options, "a red cat", width=64, height=64, steps=2, seed=1, scheduler=sampler)
            out = engine.run(req, Quiet(), CancelToken())
            assert out.images[0].shape == (64, 64, 3)
        assert sys.modules.get("torch") is None, "torch was imported"
        loaded = [name for name in sys.modules if name.startswith(("diffusers", "transformers"))]
        assert not loaded, f"torch libraries were imported: {{loaded[:3]}}"
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "EMBER_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_asking_for_the_gpu_without_one_runs_on_the_cpu_and_says_so(tiny_sd: Path, ember_home: Path) -> None:
    from engines.diffusion.engine import cuda_usable

    gpu = DiffusionEngine(DiffusionOptions(str(tiny_sd), device="gpu", threads=1))
    progress = RecordingProgress()
    gpu.run(request(tiny_sd, steps=2), progress, CancelToken())
    if cuda_usable():
        assert gpu.backend == "CUDA"
    else:
        assert gpu.backend == "CPU"
        assert any("runs on the CPU" in notice for notice in progress.notices)


def test_cuda_pipeline_falls_back_to_the_cpu_provider_and_makes_the_same_image(tiny_sd: Path) -> None:
    latents = np.random.default_rng(4).standard_normal((1, 4, 8, 8), dtype=np.float32)
    args = {"width": SIZE, "height": SIZE, "steps": 3, "latents": latents, "output_type": "float"}
    on_cpu = DiffusionPipeline(tiny_sd)("a red cat", **args).images[0]
    cuda = DiffusionPipeline(tiny_sd, device="cuda")
    image = cuda("a red cat", **args).images[0]
    assert cuda.provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert np.abs(image - on_cpu).max() < 1e-3
