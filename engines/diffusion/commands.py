"""The image modality's command line: ``main.py image``, ``main.py convert`` and ``main.py bench image``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from engines.cli import eta_suffix, output_json, step_printer
from engines.errors import EmberError
from engines.modality import Bench, Command


def _parse_size(value: str) -> tuple[int, int]:
    try:
        width, _, height = value.lower().partition("x")
        return int(width), int(height or width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a size; write it as WIDTHxHEIGHT, e.g. 512x512") from None


def _diffusion_folder(value: str | None) -> str:
    """Return the diffusion model folder for ``--model``: a folder path (or, without one, say how to get one)."""
    if not value:
        raise EmberError(
            "No image model was given. Pass --model FOLDER (a diffusers ONNX folder), "
            "or download one first: python main.py models --catalog"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise EmberError(f"There is no model folder '{value}'. Give the folder that holds model_index.json.")
    return str(path)


def _output_paths(out: str | None, count: int) -> list[Path | None]:
    if not out:
        return [None] * count
    path = Path(out).expanduser()
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix or '.png'}") for i in range(count)]


def _arguments(image: argparse.ArgumentParser) -> None:
    from engines.diffusion.requests import SCHEDULERS

    image.add_argument("prompt", help="what to make, or '-' to read it from standard input")
    image.add_argument(
        "-o", "--output", metavar="PATH", help="also save here (.png, .jpg, .webp); a batch adds -1, -2..."
    )
    image.add_argument("--model", metavar="FOLDER", help="a diffusers ONNX folder (model_index.json, unet/, ...)")
    image.add_argument("--negative", default="", metavar="TEXT", help="what the image should not show")
    image.add_argument("--seed", type=int, default=None, help="fixed seed (default: random, printed in the record)")
    image.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    image.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    image.add_argument("--width", type=int, default=512)
    image.add_argument("--height", type=int, default=512)
    image.add_argument("--size", type=_parse_size, metavar="WxH", help="width and height at once, e.g. 768x512")
    image.add_argument("--scheduler", choices=list(SCHEDULERS))
    image.add_argument("--batch", type=int, default=1, help="images to make at once")
    image.add_argument("--init", metavar="IMAGE", help="start from this image (image-to-image)")
    image.add_argument("--strength", type=float, default=0.75, help="how much to change --init (0-1)")
    image.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores but one)")
    image.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    image.add_argument("--quiet", action="store_true", help="no progress on standard error")
    image.add_argument("--json", action="store_true", help="one JSON line per image: path, parameters, timings")


def _request(args: argparse.Namespace) -> Any:
    from engines.diffusion.requests import DiffusionOptions, ImageRequest

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise EmberError("The prompt is empty. Give a text, or '-' to read it from standard input.")
    width, height = args.size or (args.width, args.height)
    try:
        return ImageRequest(
            DiffusionOptions(_diffusion_folder(args.model), device=args.device, threads=args.threads),
            prompt,
            negative_prompt=args.negative,
            seed=args.seed,
            steps=args.steps,
            guidance_scale=args.guidance,
            width=width,
            height=height,
            batch_size=args.batch,
            scheduler=args.scheduler or "",
            init_image=args.init,
            strength=args.strength,
            preview=False,
        )
    except ValueError as exc:
        raise EmberError(str(exc)) from None


def _result(args: argparse.Namespace, result: Any) -> int:
    """Write each image also to -o; exit 0 when all were made, 3 when the safety filter withheld some."""
    from engines.provenance.files import save_image

    written = []
    for item, saved, target in zip(
        result.delivered, result.paths, _output_paths(args.output, len(result.paths)), strict=True
    ):
        path = save_image(item, target) if target else Path(saved)
        written.append(path)
        if args.json:
            print(output_json(item, path, saved))
        else:
            print(path)
    for reason in result.withheld:
        print(f"ember: one image was withheld: {reason}", file=sys.stderr)
    if not args.quiet and not args.json:
        started = getattr(args, "started_s", time.monotonic())
        print(f"{len(written)} image(s) in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 3 if result.withheld else 0


IMAGE_COMMAND = Command(
    name="image",
    help="make images from a prompt with an ONNX diffusion model (or change an image: --init)",
    description="Make images with a diffusers-layout ONNX model folder. Each image passes the safety filter, "
    "gets a watermark and Content Credentials, and is saved to the library folder (and to -o). "
    "Exit status: 0 made, 3 withheld by the safety filter, 1 error, 130 cancelled (Ctrl+C stops before "
    "the next step).",
    arguments=_arguments,
    request=_request,
    on_event=step_printer(lambda step: f"step {step.done}/{step.total}{eta_suffix(step)}"),
    result=_result,
)


def _convert_arguments(convert: argparse.ArgumentParser) -> None:
    convert.add_argument("source", help="a diffusers checkpoint folder (with model_index.json)")
    convert.add_argument("--to", choices=["onnx"], default="onnx", help="the format to write (onnx)")
    precision = convert.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    precision.add_argument("--int8", action="store_true", help="quantize the UNet and text encoders to int8")
    convert.add_argument("-o", "--output", metavar="FOLDER", help="where to write (default: SOURCE-onnx[-fp16|-int8])")


def _convert(args: argparse.Namespace) -> int:
    """Export a diffusers checkpoint folder to ONNX; exit 0 on success, 1 with a reason otherwise."""
    from engines.diffusion.convert import convert_to_onnx

    source = Path(args.source).expanduser()
    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    suffix = "" if precision == "fp32" else f"-{precision}"
    out = Path(args.output).expanduser() if args.output else source.with_name(f"{source.name}-onnx{suffix}")
    result = convert_to_onnx(source, out, precision, progress=lambda message: print(message, file=sys.stderr))
    print(result.out)
    return 0


CONVERT_COMMAND = Command(
    name="convert",
    help="export a diffusers checkpoint folder to the ONNX layout Ember runs (fp32, fp16, int8)",
    description="Export a diffusers checkpoint folder (safetensors) to the ONNX folder layout Ember runs, with "
    "optimum; --fp16 halves the weights, --int8 quantizes the UNet and text encoders. Needs: pip install "
    "'ember-studio[convert]'. Pickle checkpoints (.ckpt, .bin, .pt) are refused.",
    arguments=_convert_arguments,
    run=_convert,
)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--quick", action="store_true", help="a narrower model, about 10 s")
    bench.add_argument("--model", metavar="FOLDER", help="an ONNX diffusion folder (default: random SD 1.5)")
    bench.add_argument("--checkpoint", metavar="FOLDER", help="the diffusers checkpoint of --model, for torch")
    bench.add_argument("--steps", type=int, default=None, help="denoising steps (default 8; --quick 4)")
    bench.add_argument("--size", type=int, default=None, help="width and height in pixels (default 256)")
    bench.add_argument("--threads", type=int, default=None, help="CPU threads for every path")


def _bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.image import run_image_bench

    return run_image_bench(
        quick=args.quick,
        model=args.model,
        checkpoint=args.checkpoint,
        steps=args.steps,
        size=args.size,
        threads=args.threads,
    )


IMAGE_BENCH = Bench(
    name="image",
    help="Ember's image path beside bare onnxruntime and diffusers' torch pipeline, each in its own process",
    arguments=_bench_arguments,
    run=_bench,
)
