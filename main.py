"""Ember: the window by default, and a headless command line for scripts, tests and benchmarks.

python main.py                 open the window
python main.py chat "Hello"    stream a reply from the embedded model to stdout
python main.py --help          list the commands
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engines.errors import EmberError

COMMANDS_HELP = """commands:
  (none)      open the window
  chat        chat with a local GGUF model; the reply streams to stdout
  models      list the models Ember has (the embedded defaults)
  image       make images from a prompt with an ONNX diffusion model (or change an image: --init)
  convert     export a diffusers checkpoint folder to the ONNX layout Ember runs (fp32, fp16, int8)
  check       run the safety filter on a text, a text file or an image
  verify      say whether files carry Ember's watermark, valid Content Credentials, a library record
  bench       measure Ember against the bare libraries (bench text)
  self-test   check that the install works: load the embedded model and generate a few tokens
"""


def _model_path(value: str | None) -> str:
    """Return a GGUF path for ``--model``: an embedded model id, or a file path."""
    from engines.models.embedded import DEFAULT_TEXT_MODEL, EMBEDDED_TEXT_MODELS

    if not value:
        return str(DEFAULT_TEXT_MODEL.path())
    for model in EMBEDDED_TEXT_MODELS:
        if value == model.id:
            return str(model.path())
    path = Path(value).expanduser()
    if not path.exists():
        ids = ", ".join(m.id for m in EMBEDDED_TEXT_MODELS)
        raise EmberError(f"There is no model file '{value}'. Give a .gguf path or one of: {ids}.")
    return str(path)


def _sampling(args: argparse.Namespace) -> Any:
    from engines.text.requests import Sampling

    try:
        return Sampling(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            min_p=args.min_p,
            repeat_penalty=args.repeat_penalty,
            seed=args.seed,
            max_tokens=args.max_tokens,
        )
    except ValueError as exc:
        raise EmberError(str(exc)) from None


def cmd_chat(args: argparse.Namespace) -> int:
    """Stream one reply to stdout; with --json print the delivered output and its record instead."""
    from engines.jobs import EventKind, JobEvent
    from engines.pipeline import require_delivered
    from engines.studio import Studio
    from engines.text.gguf_header import read_gguf_header
    from engines.text.requests import ChatRequest, CompletionRequest, Message, ModelOptions

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise EmberError("The prompt is empty. Give a text, or '-' to read it from standard input.")
    path = _model_path(args.model)
    header = read_gguf_header(path)
    options = ModelOptions(path, context_tokens=args.context, threads=args.threads, device=args.device)
    sampling = _sampling(args)
    if header.chat_template is None or args.complete:
        if not args.complete:
            print(f"ember: {header.name} has no chat template; continuing your text instead.", file=sys.stderr)
        request: Any = CompletionRequest(options, prompt, sampling)
    else:
        request = ChatRequest(options, (Message("user", prompt),), system_prompt=args.system, sampling=sampling)

    def show(event: JobEvent) -> None:
        if event.kind is EventKind.TOKEN and not args.json:
            sys.stdout.write(event.data)
            sys.stdout.flush()
        elif event.kind is EventKind.NOTICE:
            print(f"\nember: {event.data}", file=sys.stderr)

    studio = Studio()
    try:
        job = studio.submit(request, listener=show)
        try:
            final = job.wait()
        except KeyboardInterrupt:
            job.cancel()
            final = job.wait(5)
            print("\nember: stopped.", file=sys.stderr)
            return 130
        assert final is not None
        if final.kind is EventKind.RESULT:
            delivered = require_delivered(final.data)
            if args.json:
                print(json.dumps({"output": asdict(delivered.output), "record": asdict(delivered.record)}, indent=2))
            else:
                print()
                stats = delivered.record.timings
                print(
                    f"ember: {stats['generated_tokens']:.0f} tokens, {stats['tokens_per_s']:.1f} tok/s, "
                    f"{delivered.record.provenance.backend}, seed {delivered.record.provenance.seed}",
                    file=sys.stderr,
                )
            return 0
        if final.kind is EventKind.BLOCKED:
            raise EmberError(getattr(final.data, "reason", "") or "The output was withheld by the safety filter.")
        if final.kind is EventKind.FAILED:
            raise EmberError(str(final.data))
        raise EmberError("The reply was cancelled.")
    finally:
        studio.close()


def _check_one(safety: Any, source: str, text: str | None = None, path: Path | None = None) -> dict[str, Any]:
    """Check one text or file with the safety filter; returns the decision as a dict."""
    subject = "prompt"
    if path is not None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                import numpy as np

                pixels = np.asarray(img.convert("RGB"))
            subject = "image"
        except UnidentifiedImageError:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise EmberError(f"'{path}' is neither a picture Ember can read nor UTF-8 text.") from None
        except OSError as exc:
            raise EmberError(f"Ember cannot read '{path}' ({exc.strerror or exc}).") from None
    verdict = safety.check_image(pixels) if subject == "image" else safety.check_text(text or "", "prompt", guard=True)
    safety.log(verdict, subject)
    return {
        "source": source,
        "kind": "image" if subject == "image" else "text",
        "allowed": verdict.allowed,
        "action": verdict.action.value,
        "category": verdict.category.value if verdict.category else None,
        "score": round(float(verdict.score), 4),
        "checker": verdict.checker,
        "rule": verdict.rule,
        "message": verdict.message("This text" if subject != "image" else "This image"),
    }


_DONE = {"block": "blocked", "blur": "blurred", "allow": "allowed"}


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


def cmd_image(args: argparse.Namespace) -> int:
    """Make images; exit 0 when all were made, 3 when the safety filter withheld some or all, 1 on errors."""
    import signal
    import time

    from engines.diffusion.requests import DiffusionOptions, ImageRequest
    from engines.jobs import EventKind, JobEvent
    from engines.progress import Loading, Step
    from engines.provenance.files import save_image
    from engines.studio import Studio

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise EmberError("The prompt is empty. Give a text, or '-' to read it from standard input.")
    width, height = args.size or (args.width, args.height)
    try:
        request = ImageRequest(
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

    def show(event: JobEvent) -> None:
        if args.quiet or event.kind is not EventKind.PROGRESS:
            return
        data = event.data
        if isinstance(data, Step):
            eta = f", about {data.eta_s:.0f} s left" if data.eta_s is not None else ""
            print(f"\rstep {data.done}/{data.total}{eta}   ", end="", file=sys.stderr, flush=True)
        elif isinstance(data, Loading):
            print(f"loading {data.model}...", file=sys.stderr, flush=True)

    studio = Studio()
    started = time.monotonic()
    try:
        job = studio.submit(request, listener=show)
        previous = signal.signal(signal.SIGINT, lambda *_: job.cancel())
        try:
            final = job.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        if not args.quiet:
            print(file=sys.stderr)
        assert final is not None
        if final.kind is EventKind.CANCELLED:
            print("ember: cancelled", file=sys.stderr)
            return 130
        if final.kind is EventKind.BLOCKED:
            print(f"ember: {getattr(final.data, 'reason', final.data)}", file=sys.stderr)
            return 3
        if final.kind is not EventKind.RESULT:
            raise EmberError(str(final.data))
        result = final.data
        written = []
        for item, saved, target in zip(
            result.delivered, result.paths, _output_paths(args.output, len(result.paths)), strict=True
        ):
            path = save_image(item, target) if target else Path(saved)
            written.append(path)
            if args.json:
                print(
                    json.dumps(
                        {
                            "path": str(path),
                            "library_path": saved,
                            "output_id": item.record.output_id,
                            "parameters": item.output.parameters,
                            "timings": item.record.timings,
                        },
                        default=str,
                    )
                )
            else:
                print(path)
        for reason in result.withheld:
            print(f"ember: one image was withheld: {reason}", file=sys.stderr)
        if not args.quiet and not args.json:
            print(f"{len(written)} image(s) in {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 3 if result.withheld else 0
    finally:
        studio.close()


def cmd_convert(args: argparse.Namespace) -> int:
    """Export a diffusers checkpoint folder to ONNX; exit 0 on success, 1 with a reason otherwise."""
    from engines.diffusion.convert import convert_to_onnx

    source = Path(args.source).expanduser()
    precision = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    suffix = "" if precision == "fp32" else f"-{precision}"
    out = Path(args.output).expanduser() if args.output else source.with_name(f"{source.name}-onnx{suffix}")
    result = convert_to_onnx(source, out, precision, progress=lambda message: print(message, file=sys.stderr))
    print(result.out)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Run the safety filter; exit 0 when everything is allowed, 3 when something is blocked."""
    from engines.studio import open_safety_filter

    if not args.text and not args.file:
        raise EmberError("Give a text to check, or --file PATH (--file - reads one text per line).")
    safety, close = open_safety_filter()
    results: list[dict[str, Any]] = []
    try:
        if args.text:
            results.append(_check_one(safety, "argument", text=args.text))
        for name in args.file or ():
            if name == "-":
                for n, line in enumerate(sys.stdin, 1):
                    if line.strip():
                        result = _check_one(safety, f"stdin:{n}", text=line.rstrip("\n"))
                        print(json.dumps(result), flush=True)
                        results.append(result)
                continue
            path = Path(name).expanduser()
            if not path.exists():
                raise EmberError(f"There is no file '{name}'.")
            results.append(_check_one(safety, str(path), path=path))
    finally:
        close()
    streamed = "-" in (args.file or ())
    for result in results:
        if streamed and result["source"].startswith("stdin:"):
            continue
        if args.json or streamed:
            print(json.dumps(result))
        elif result["allowed"]:
            print(
                f"{result['source']}: allowed "
                f"(highest score {result['score']:.2f}, {result['checker'] or 'no findings'})"
            )
        else:
            print(
                f"{result['source']}: {_DONE[result['action']]}: {result['category']} "
                f"(score {result['score']:.2f}, checker {result['checker']}, rule {result['rule'] or '-'})"
            )
    return 0 if all(r["allowed"] for r in results) else 3


def _report_dict(report: Any) -> dict[str, Any]:
    creds = report.credentials
    mark = report.watermark
    return {
        "path": report.path,
        "kind": report.kind,
        "summary": report.summary,
        "error": report.error or None,
        "watermark": asdict(mark) if mark else None,
        "credentials": {
            "present": bool(getattr(creds, "present", False)),
            "valid": bool(getattr(creds, "valid", False)),
            "state": getattr(creds, "validation_state", None),
        }
        if creds is not None
        else None,
        "parameters": report.parameters,
        "records": [
            {"output_id": r.output_id, "created_utc": r.created_utc, "model": r.provenance.model_name}
            for r in report.records
        ],
    }


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify files; exit 0 when every file carries Ember's watermark, 3 when some do not, 1 on errors."""
    from engines.jobs import EventKind
    from engines.provenance.verify import VerifyRequest
    from engines.studio import Studio

    studio = Studio()
    try:
        final = studio.submit(VerifyRequest(tuple(args.files))).wait()
    finally:
        studio.close()
    assert final is not None
    if final.kind is not EventKind.RESULT:
        raise EmberError(str(final.data))
    reports = final.data
    for report in reports:
        if args.json:
            print(json.dumps(_report_dict(report)))
        else:
            print(f"{report.path}: {report.summary}")
            if report.watermark and report.watermark.detail:
                print(f"  {report.watermark.detail}")
    if any(r.error for r in reports):
        return 1
    return 0 if all(r.watermark and r.watermark.found for r in reports) else 3


def cmd_models(args: argparse.Namespace) -> int:
    """List, download, import or remove models; exit 0 on success, 1 with a reason, 130 when paused by Ctrl+C."""
    if args.download:
        return _models_download(args)
    from engines.database import Database
    from engines.hardware import gpus, machine
    from engines.models.fit import fit_of_entry, fit_of_model
    from engines.models.library import ModelLibrary
    from engines.paths import database_path

    db = Database(database_path())
    try:
        library = ModelLibrary(db)
        if args.import_path:
            model = library.import_path(args.import_path)
            print(f"imported {model.name} ({model.kind}) where it is: {model.path}")
            return 0
        if args.remove:
            library.remove(args.remove)  # raises for an unknown or embedded model
            print(f"removed {args.remove} from the list (an imported file stays where it is)")
            return 0
        here, cards = machine(), gpus()
        if args.catalog:
            from engines.models.catalog import load_catalog

            rows = []
            for entry in load_catalog():
                fit = fit_of_entry(entry, here, cards)
                rows.append({
                    "id": entry.id, "name": entry.name, "kind": entry.kind, "panel": entry.panel,
                    "repo": entry.repo, "size_bytes": entry.size_bytes, "licence": entry.licence,
                    "gated": entry.gated, "fit": fit.summary, "purpose": entry.purpose,
                })  # fmt: skip
        else:
            rows = []
            for model in library.discover():
                verdict = fit_of_model(model.info, here, cards)
                fit = verdict.summary if verdict else "unknown"
                rows.append({
                    "id": model.id, "name": model.name, "kind": model.kind, "source": model.source,
                    "path": model.path, "size_bytes": model.size_bytes, "licence": model.info.licence, "fit": fit,
                })  # fmt: skip
            for problem in library.problems:
                print(f"ember: skipped {problem.path}: {problem.reason}", file=sys.stderr)
    finally:
        db.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        where = r.get("source") or ("gated" if r.get("gated") else "")
        print(f"{r['id']:<34} {r['kind']:<9} {r['size_bytes'] / 1e9:6.2f} GB  {where:<11} {r['fit']:<24} {r['name']}")
    return 0


def _models_download(args: argparse.Namespace) -> int:
    import signal

    from engines.jobs import EventKind, JobEvent
    from engines.models.catalog import download_request, find_entry, load_catalog
    from engines.studio import Studio

    entry = find_entry(load_catalog(), args.download)
    request = download_request(entry, token=args.token or None)

    def show(event: JobEvent) -> None:
        if event.kind is EventKind.PROGRESS and hasattr(event.data, "bytes_done"):
            p = event.data
            eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
            line = f"{p.bytes_done / 1e6:9.1f} / {p.bytes_total / 1e6:.1f} MB ({p.fraction:.0%}){eta}"
            print(f"\r{line}   ", end="", file=sys.stderr, flush=True)

    studio = Studio()
    try:
        print(f"{entry.name} from {entry.repo} ({entry.licence}: {entry.licence_url})", file=sys.stderr)
        job = studio.download(request, listener=show)
        download_id = job.request.download_id
        previous = signal.signal(signal.SIGINT, lambda *_: studio.pause_download(download_id))
        try:
            final = job.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        print(file=sys.stderr)
        assert final is not None
        if final.kind is EventKind.CANCELLED:
            print("ember: paused; run the same command again to continue", file=sys.stderr)
            return 130
        if final.kind is not EventKind.RESULT:
            raise EmberError(str(final.data))
        for path in final.data.paths.values():
            print(path)
        return 0
    finally:
        studio.close()


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark, print its table, and write its JSON when asked."""
    from engines.benchmarks import run_benchmark

    options: dict[str, Any] = {"tokens": args.tokens, "repetitions": args.reps}
    if args.name == "text":
        try:  # the window's bridge, so that tokens are timed where the window receives them
            from desktop.bench_text import QtReceiver

            receiver = QtReceiver()
            options.update(receiver=receiver, where=receiver.where)
        except ImportError:
            pass
    if args.name == "provenance":
        options = {"quick": args.quick}
    if args.name == "image":
        options = {
            "quick": args.quick,
            "model": args.model,
            "checkpoint": args.checkpoint,
            "steps": args.steps,
            "size": args.size,
            "threads": args.threads,
        }
    report = run_benchmark(args.name, **options)
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def cmd_self_test(args: argparse.Namespace) -> int:
    """Load the embedded model through the full path and generate a few tokens."""
    from engines.jobs import EventKind
    from engines.models.embedded import DEFAULT_TEXT_MODEL
    from engines.studio import Studio
    from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

    studio = Studio()
    try:
        request = ChatRequest(
            ModelOptions(str(DEFAULT_TEXT_MODEL.path()), context_tokens=1024),
            (Message("user", "Say hello."),),
            sampling=Sampling(temperature=0.0, max_tokens=8, seed=1),
        )
        final = studio.submit(request).wait(120)
        if final is None or final.kind is not EventKind.RESULT:
            raise EmberError(f"Self-test failed: {final.data if final else 'no answer within 120 s'}")
        rec = final.data.record
        print(
            f"ok: {rec.provenance.model_name} on {rec.provenance.backend}, {rec.timings['generated_tokens']:.0f} tokens"
        )
        return 0
    finally:
        studio.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ember",
        description="Ember, an offline generative-AI studio. Without a command, the window opens.",
        epilog=COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = sub.add_parser("chat", help="chat with a local GGUF model; the reply streams to stdout")
    chat.add_argument("prompt", help="your message, or '-' to read it from standard input")
    chat.add_argument("--model", help="a .gguf file or an embedded model id (default: smollm2-135m-instruct)")
    chat.add_argument("--system", default="", help="system prompt")
    chat.add_argument("--complete", action="store_true", help="continue the text instead of replying to it")
    chat.add_argument("--temperature", type=float, default=0.7)
    chat.add_argument("--top-p", type=float, default=0.95)
    chat.add_argument("--top-k", type=int, default=40)
    chat.add_argument("--min-p", type=float, default=0.05)
    chat.add_argument("--repeat-penalty", type=float, default=1.1)
    chat.add_argument("--seed", type=int, default=None, help="fixed seed (default: random, printed at the end)")
    chat.add_argument("--max-tokens", type=int, default=512)
    chat.add_argument("--context", type=int, default=4096, help="context length in tokens")
    chat.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores but one)")
    chat.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    chat.add_argument("--json", action="store_true", help="print the delivered output and its record as JSON")
    chat.set_defaults(func=cmd_chat)

    models = sub.add_parser(
        "models",
        help="list, download, import or remove models",
        description="Without options: the models on this computer (embedded, imported, downloaded, and those "
        "found in the Hugging Face cache, LM Studio and GPT4All), each with whether it fits this machine.",
    )
    models.add_argument("--catalog", action="store_true", help="list the catalog of models to download instead")
    models.add_argument("--download", metavar="ID", help="download a catalog entry (Ctrl+C pauses it)")
    models.add_argument("--token", help="a Hugging Face token, for gated models (never stored)")
    models.add_argument("--import", dest="import_path", metavar="PATH", help="use a model file or folder where it is")
    models.add_argument("--remove", metavar="ID", help="forget a model (imported files are never deleted)")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    image = sub.add_parser(
        "image",
        help="make images from a prompt with an ONNX diffusion model",
        description="Make images with a diffusers-layout ONNX model folder. Each image passes the safety filter, "
        "gets a watermark and Content Credentials, and is saved to the library folder (and to -o). "
        "Exit status: 0 made, 3 withheld by the safety filter, 1 error, 130 cancelled (Ctrl+C stops before "
        "the next step).",
    )
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
    image.add_argument("--scheduler", choices=["euler", "euler_a", "dpmpp_2m_karras", "ddim", "lcm"])
    image.add_argument("--batch", type=int, default=1, help="images to make at once")
    image.add_argument("--init", metavar="IMAGE", help="start from this image (image-to-image)")
    image.add_argument("--strength", type=float, default=0.75, help="how much to change --init (0-1)")
    image.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores but one)")
    image.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    image.add_argument("--quiet", action="store_true", help="no progress on standard error")
    image.add_argument("--json", action="store_true", help="one JSON line per image: path, parameters, timings")
    image.set_defaults(func=cmd_image)

    convert = sub.add_parser(
        "convert",
        help="export a diffusers checkpoint folder to ONNX (needs the [convert] extra)",
        description="Export a diffusers checkpoint folder (safetensors) to the ONNX folder layout Ember runs, with "
        "optimum; --fp16 halves the weights, --int8 quantizes the UNet and text encoders. Needs: pip install "
        "'ember-studio[convert]'. Pickle checkpoints (.ckpt, .bin, .pt) are refused.",
    )
    convert.add_argument("source", help="a diffusers checkpoint folder (with model_index.json)")
    convert.add_argument("--to", choices=["onnx"], default="onnx", help="the format to write (onnx)")
    precision = convert.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    precision.add_argument("--int8", action="store_true", help="quantize the UNet and text encoders to int8")
    convert.add_argument("-o", "--output", metavar="FOLDER", help="where to write (default: SOURCE-onnx[-fp16|-int8])")
    convert.set_defaults(func=cmd_convert)

    check = sub.add_parser(
        "check",
        help="run the safety filter on a text, a text file or an image",
        description="Run Ember's safety filter (your policy from Settings). Exit status: 0 allowed, 3 blocked, "
        "1 error. With --file -, one text per line is read from standard input and one JSON line is printed each.",
    )
    check.add_argument("text", nargs="?", help="the text to check")
    check.add_argument("--file", action="append", metavar="PATH", help="a text file or an image; '-' for stdin")
    check.add_argument("--json", action="store_true", help="print each decision as a JSON line")
    check.set_defaults(func=cmd_check)

    verify = sub.add_parser(
        "verify",
        help="say whether files carry Ember's watermark, valid Content Credentials, a library record",
        description="Read images, WAV files or text files and report Ember's watermark (with its p-value), the "
        "C2PA manifest and the matching library record. Exit status: 0 all watermarked, 3 some not, 1 error.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.add_argument("--json", action="store_true", help="one JSON line per file")
    verify.set_defaults(func=cmd_verify)

    bench = sub.add_parser("bench", help="measure Ember against the bare libraries in the same run")
    bench.add_argument("name", choices=["text", "safety", "provenance", "image"], help="what to measure")
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    bench.add_argument("--tokens", type=int, default=128, help="tokens to generate per run")
    bench.add_argument("--reps", type=int, default=5, help="repetitions of each path")
    bench.add_argument("--quick", action="store_true", help="a smaller run (provenance: about a minute)")
    bench.add_argument("--model", metavar="FOLDER", help="image: an ONNX diffusion folder (default: random SD 1.5)")
    bench.add_argument("--checkpoint", metavar="FOLDER", help="image: the diffusers checkpoint of --model, for torch")
    bench.add_argument("--steps", type=int, default=None, help="image: denoising steps (default 8; --quick 4)")
    bench.add_argument("--size", type=int, default=None, help="image: width and height in pixels (default 256)")
    bench.add_argument("--threads", type=int, default=None, help="image: CPU threads for every path")
    bench.set_defaults(func=cmd_bench)

    selftest = sub.add_parser("self-test", help="check that the install works")
    selftest.set_defaults(func=cmd_self_test)
    return parser


def configure_logging() -> None:
    """Log warnings of Ember's own to stderr; llama.cpp's chatter only with EMBER_LOG=DEBUG or INFO."""
    level = getattr(logging, os.environ.get("EMBER_LOG", "WARNING").upper(), logging.WARNING)
    logging.basicConfig(level=level, format="ember: %(name)s: %(message)s")
    logging.getLogger("engines.llama_cpp").setLevel(level if level < logging.WARNING else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (or the window); return the exit code."""
    configure_logging()
    args = build_parser().parse_args(argv)
    if args.command is None:
        from desktop.app import run_app

        return run_app(sys.argv[:1])
    try:
        return int(args.func(args))
    except EmberError as exc:
        print(f"ember: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
