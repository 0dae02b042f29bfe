"""The upscale modality's command line: ``main.py upscale`` and ``main.py bench upscale``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from engines.cli import eta_suffix, output_json, step_printer
from engines.errors import EmberError
from engines.modality import Bench, Command


def _arguments(upscale: argparse.ArgumentParser) -> None:
    from engines.upscale.models import UPSCALERS

    upscale.add_argument("image", help="the image to upscale (PNG, JPEG, WebP, BMP, TIFF)")
    upscale.add_argument("-o", "--output", metavar="PATH", help="also save here (.png or .webp keep transparency)")
    upscale.add_argument("--scale", type=int, choices=[2, 3, 4], default=4, help="how many times larger a side")
    upscale.add_argument(
        "--model",
        metavar="ID|FILE",
        help="an embedded upscaler (" + ", ".join(m.id for m in UPSCALERS) + "), an ONNX upscaler or an ncnn "
        ".param (default: animevideo-x2/x3/x4 for the scale)",
    )
    upscale.add_argument("--tile", type=int, default=192, help="tile size in source pixels (default 192)")
    upscale.add_argument("--overlap", type=int, default=16, help="pixels neighbouring tiles share (default 16)")
    upscale.add_argument(
        "--context", type=int, default=None, help="pixels each tile reads around it (default: the model's reach)"
    )
    upscale.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores but one)")
    upscale.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    upscale.add_argument("--quiet", action="store_true", help="no progress on standard error")
    upscale.add_argument("--json", action="store_true", help="one JSON line: path, parameters, timings")


def _request(args: argparse.Namespace) -> Any:
    from engines.upscale.models import DEFAULT_FOR_SCALE
    from engines.upscale.requests import UpscaleOptions, UpscaleRequest

    path = Path(args.image).expanduser()
    if not path.is_file():
        raise EmberError(f"There is no image '{args.image}'. Check the path.")
    model = args.model or DEFAULT_FOR_SCALE[args.scale]
    try:
        return UpscaleRequest(
            UpscaleOptions(model, device=args.device, threads=args.threads),
            str(path),
            scale=args.scale,
            tile_size=args.tile,
            overlap=args.overlap,
            context=args.context,
            source_name=path.name,
        )
    except ValueError as exc:
        raise EmberError(str(exc)) from None


def _result(args: argparse.Namespace, result: Any) -> int:
    """Write the image also to -o; exit 0 when made, 3 when the safety filter withheld it."""
    from engines.provenance.files import save_image

    for item, saved in zip(result.delivered, result.paths, strict=True):
        path = save_image(item, Path(args.output).expanduser()) if args.output else Path(saved)
        if args.json:
            print(output_json(item, path, saved))
        else:
            print(path)
            if not args.quiet:
                height, width = item.output.pixels.shape[:2]
                took = time.monotonic() - getattr(args, "started_s", time.monotonic())
                print(f"{width}x{height} in {took:.1f} s", file=sys.stderr)
    for reason in result.withheld:
        print(f"ember: the upscaled image was withheld: {reason}", file=sys.stderr)
    return 3 if result.withheld else 0


UPSCALE_COMMAND = Command(
    name="upscale",
    help="make an image 2, 3 or 4 times larger with Real-ESRGAN (tiled: any size fits in memory)",
    description="Upscale an image with an embedded Real-ESRGAN model (converted from ncnn to ONNX on first use) or "
    "an ONNX upscaler. The model runs in overlapping blended tiles; transparency is kept. The result passes the "
    "safety filter, gets a fresh watermark and Content Credentials, and its record links to the source image "
    "(its Ember record, or its SHA-256). Exit status: 0 made, 3 withheld by the safety filter, 1 error, "
    "130 cancelled (Ctrl+C stops before the next tile).",
    arguments=_arguments,
    request=_request,
    on_event=step_printer(lambda step: f"tile {step.done}/{step.total}{eta_suffix(step)}"),
    result=_result,
)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--quick", action="store_true", help="the two small x2/x4 models on a 160 px image (about 30 s)")
    bench.add_argument("--models", default="", help="comma-separated embedded ids (default: all five; --quick: x2, x4)")
    bench.add_argument("--size", type=int, default=None, help="source image side in pixels (default 256; --quick 160)")
    bench.add_argument("--tile", type=int, default=192, help="tile size in source pixels (default 192, as upscale)")
    bench.add_argument("--threads", type=int, default=None, help="CPU threads for every path")
    bench.add_argument("--repeats", type=int, default=2, help="runs of each path; the best counts")


def _bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.upscale import run_upscale_bench

    models = tuple(m for m in args.models.split(",") if m) or None
    return run_upscale_bench(
        quick=args.quick, models=models, size=args.size, tile=args.tile, threads=args.threads, repeats=args.repeats
    )


UPSCALE_BENCH = Bench(
    name="upscale",
    help="kilopixels a second of Ember's tiled upscaler beside the bare onnxruntime session on the same tiles",
    arguments=_bench_arguments,
    run=_bench,
)
