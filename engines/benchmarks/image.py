"""`bench image`: Ember's whole image path beside the same ONNX sessions run bare, and diffusers' torch pipeline.

Each path runs in its own process, one after the other, so that its peak memory is its own
and no path warms a cache for the next. All three make the same image: the same model, prompt,
initial latents, scheduler (Euler), steps, guidance and thread count.

- ember: ``Studio.submit(ImageRequest)``: queue, engine, per-step previews checked by the
  safety filter, the finished image's safety check, watermark, Content Credentials and PNG file.
- bare: onnxruntime sessions on the same files with the same options, called in a plain loop
  (text encoder, UNet with both guidance halves in one batch, Euler in numpy, VAE decoder).
- diffusers: ``StableDiffusionPipeline`` in torch (CPU, float32) from the same checkpoint.

With no ``--model``, a random-weight pipeline of Stable Diffusion 1.5's architecture is built
once with diffusers and converted with Ember's own converter (both need the ``[convert]``
extra); random weights cost exactly what trained ones do.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.benchmarks import Figure, Report, median
from engines.errors import EmberError

PROMPT = "a lighthouse on a rocky coast at dusk, oil painting"
NEGATIVE = "blurry, low quality"
SEED = 1234


def _peak_rss_bytes(pid: int | str = "self") -> int:
    """A process's peak resident memory (this one's by default). On Linux VmHWM, which starts afresh
    at exec; ru_maxrss would carry the parent's peak over into the child."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if pid != "self":  # no /proc: the other process's resident memory now (its peak is not told)
        import psutil

        return int(psutil.Process(int(pid)).memory_info().rss)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _latents(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal((1, 4, height // 8, width // 8)).astype(np.float32)


def _run_ember(folder: str, settings: dict[str, Any]) -> dict[str, Any]:
    from engines.diffusion.requests import DiffusionOptions, ImageRequest
    from engines.jobs import EventKind, JobEvent
    from engines.progress import Step
    from engines.studio import Studio

    step_times: list[float] = []

    def listen(event: JobEvent) -> None:
        if event.kind is EventKind.PROGRESS and isinstance(event.data, Step):
            step_times.append(event.time_s)

    request = ImageRequest(
        DiffusionOptions(folder, device="cpu", threads=settings["threads"]),
        PROMPT,
        negative_prompt=NEGATIVE,
        seed=SEED,
        steps=settings["steps"],
        guidance_scale=settings["guidance"],
        width=settings["width"],
        height=settings["height"],
        scheduler="euler",
        preview=True,
        latents=_latents(settings["height"], settings["width"]),
    )
    studio = Studio()
    try:
        started = time.perf_counter()
        final = studio.submit(request, listener=listen).wait()
        total = time.perf_counter() - started
        # The engines run in engine processes: their peaks count with this process's.
        engines_peak = sum(_peak_rss_bytes(h.pid) for h in studio.engines.hosts() if h.pid is not None)
    finally:
        studio.close()
    if final is None or final.kind is not EventKind.RESULT:
        ended = f"{final.kind.value}: {final.data}" if final else "nothing"
        raise EmberError(f"Ember's image job ended as {ended}")
    record = final.data.delivered[0].record
    load_s = record.timings.get("load_s", 0.0)
    steps = [b - a for a, b in itertools.pairwise(step_times)]
    pixels = final.data.delivered[0].output.pixels
    return {
        "load_s": load_s,
        "total_s": record.timings.get("generation_s", total - load_s),
        "end_to_end_s": total - load_s,
        "step_s": steps,
        "pixels_mean": float(pixels.mean()),
        "engines_peak_rss_bytes": engines_peak,
    }


def _run_bare(folder: str, settings: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime as ort

    from engines.diffusion.tokenizer import ClipTokenizer

    root = Path(folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings["threads"]
    options.inter_op_num_threads = 1
    started = time.perf_counter()

    def session(name: str) -> Any:
        return ort.InferenceSession(str(root / name / "model.onnx"), options, providers=["CPUExecutionProvider"])

    text_encoder, unet, vae = session("text_encoder"), session("unet"), session("vae_decoder")
    tokenizer = ClipTokenizer.from_folder(root / "tokenizer")
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    ids = np.array([tokenizer.encode(NEGATIVE).ids, tokenizer.encode(PROMPT).ids], dtype=np.int64)
    ids = ids.astype(np.int64 if "int64" in text_encoder.get_inputs()[0].type else np.int32)
    embeddings = text_encoder.run(None, {"input_ids": ids})[0]
    config = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    betas = np.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, config["num_train_timesteps"]) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    steps = settings["steps"]
    ratio = config["num_train_timesteps"] // steps
    timesteps = (np.arange(0, steps) * ratio).round()[::-1].astype(np.float32) + config.get("steps_offset", 0)
    all_sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    sigmas = np.interp(timesteps, np.arange(len(all_sigmas)), all_sigmas)
    sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
    latents = _latents(settings["height"], settings["width"]) * np.float32((sigmas.max() ** 2 + 1) ** 0.5)
    step_s = []
    for i, t in enumerate(timesteps):
        tick = time.perf_counter()
        scaled = latents / np.float32((sigmas[i] ** 2 + 1) ** 0.5)
        batch = np.concatenate([scaled, scaled])
        feed = {"sample": batch, "timestep": np.array(t, np.float32), "encoder_hidden_states": embeddings}
        noise = unet.run(None, feed)[0]
        uncond, cond = noise[:1], noise[1:]
        guided = uncond + settings["guidance"] * (cond - uncond)
        latents = (latents + guided * (sigmas[i + 1] - sigmas[i])).astype(np.float32)
        step_s.append(time.perf_counter() - tick)
    image = vae.run(None, {"latent_sample": latents / np.float32(0.18215)})[0]
    pixels = np.clip(image / 2 + 0.5, 0, 1)
    return {
        "load_s": load_s,
        "total_s": time.perf_counter() - started,
        "step_s": step_s[1:],
        "pixels_mean": float(pixels.mean() * 255),
    }


def _run_diffusers(checkpoint: str, settings: dict[str, Any]) -> dict[str, Any]:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    torch.set_num_threads(settings["threads"])
    started = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(checkpoint, torch_dtype=torch.float32, safety_checker=None)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started
    ticks: list[float] = []

    def on_step(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        ticks.append(time.perf_counter())
        return kwargs

    started = time.perf_counter()
    with torch.inference_mode():
        image = pipe(
            PROMPT,
            negative_prompt=NEGATIVE,
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance"],
            width=settings["width"],
            height=settings["height"],
            latents=torch.from_numpy(_latents(settings["height"], settings["width"])),
            output_type="np",
            callback_on_step_end=on_step,
        ).images[0]
    total = time.perf_counter() - started
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    return {"load_s": load_s, "total_s": total, "step_s": steps, "pixels_mean": float(image.mean() * 255)}


def worker(path: str, folder: str, checkpoint: str, settings_json: str) -> None:
    """Run one path in this process and print its figures as one JSON line (``python -m`` entry)."""
    settings = json.loads(settings_json)
    if path == "ember":
        result = _run_ember(folder, settings)
    elif path == "bare":
        result = _run_bare(folder, settings)
    else:
        result = _run_diffusers(checkpoint, settings)
    result["peak_rss_bytes"] = _peak_rss_bytes() + result.pop("engines_peak_rss_bytes", 0)
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(path: str, folder: str, checkpoint: str, settings: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(settings["threads"]))
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    args = [sys.executable, "-m", "engines.benchmarks.image", path, folder, checkpoint, json.dumps(settings)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=root, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    raise EmberError(f"The {path} path of the image benchmark failed: " + " | ".join(tail))


def _has_diffusers() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "transformers"))


def run_image_bench(
    *,
    model: str | None = None,
    checkpoint: str | None = None,
    quick: bool = False,
    steps: int | None = None,
    size: int | None = None,
    threads: int | None = None,
    **_: Any,
) -> Report:
    """Measure the three paths and return the report; raises EmberError when a path fails."""
    from engines.benchmarks.random_pipeline import random_pipeline
    from engines.hardware import default_threads

    preset = "small" if quick else "sd15"
    if model is None:
        built = random_pipeline(preset)
        folder, checkpoint = str(built.onnx), str(built.checkpoint)
    else:
        folder = model
    side = size or 256
    settings = {
        "steps": steps or (4 if quick else 8),
        "guidance": 7.5,
        "width": side,
        "height": side,
        "threads": threads or default_threads(),
    }
    results = {"bare": _spawn("bare", folder, checkpoint or "", settings)}
    results["ember"] = _spawn("ember", folder, checkpoint or "", settings)
    if checkpoint and _has_diffusers():
        results["diffusers"] = _spawn("diffusers", folder, checkpoint, settings)

    report = Report(
        "image",
        conditions={
            "model": folder if model else f"random-weight {preset} architecture (Stable Diffusion 1.5 UNet/VAE/CLIP)",
            "size": f"{side}x{side}",
            "steps": settings["steps"],
            "guidance": settings["guidance"],
            "scheduler": "euler",
            "threads": settings["threads"],
            "ember path": "Studio queue + engine + previews + safety + watermark + C2PA PNG",
            "baseline": "the same ONNX sessions run bare; diffusers' torch pipeline where shown",
        },
    )
    ember, bare = results["ember"], results["bare"]
    report.figures += [
        Figure("seconds per step, ember vs bare onnxruntime", median(ember["step_s"]), "s", median(bare["step_s"]),
               "ratio <= 1.03"),
        Figure("generation s (encode+steps+decode) vs bare", ember["total_s"], "s", bare["total_s"],
               "ratio <= 1.03"),
        Figure("submit to saved file (after load), ember", ember["end_to_end_s"], "s", None,
               "informational: + safety, watermark, C2PA, PNG"),
        Figure("load seconds, ember vs bare", ember["load_s"], "s", bare["load_s"], "informational"),
        Figure("peak RAM, ember vs bare", ember["peak_rss_bytes"] / 2**20, "MiB", bare["peak_rss_bytes"] / 2**20,
               "informational"),
    ]  # fmt: skip
    if "diffusers" in results:
        torch_run = results["diffusers"]
        report.figures += [
            Figure("seconds per step, ember vs diffusers (torch)", median(ember["step_s"]), "s",
                   median(torch_run["step_s"]), "ratio < 1"),
            Figure("generation seconds, ember vs diffusers", ember["total_s"], "s", torch_run["total_s"], "ratio < 1"),
            Figure("peak RAM, ember vs diffusers", ember["peak_rss_bytes"] / 2**20, "MiB",
                   torch_run["peak_rss_bytes"] / 2**20, "informational"),
        ]  # fmt: skip
    else:
        report.conditions["diffusers"] = "not measured: pass --checkpoint, and install the [convert] extra"
    return report


if __name__ == "__main__":
    worker(*sys.argv[1:5])
