"""The command line's shared runner, and the commands that belong to no modality.

A modality's command (engines/*/commands.py) builds a request; :func:`submit` runs it through a
Studio like the window does and turns how the job ended into an exit status: 0 done, 3 withheld
by the safety filter, 1 failed (its reason on one line), 130 stopped with Ctrl+C. main.py only
builds the parser from :func:`commands` and dispatches.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.api.commands import API_BENCH, SERVE
from engines.documents.commands import DOCS_COMMAND
from engines.errors import EmberError
from engines.evaluation.commands import EVALUATE
from engines.modality import Bench, Command

if TYPE_CHECKING:
    from engines.jobs import JobEvent


def commands() -> tuple[Command, ...]:
    """Every command of main.py: each modality's, then the general ones."""
    from engines.modalities import modalities

    return (*(c for m in modalities() for c in m.commands), *GENERAL)


def benches() -> tuple[Bench, ...]:
    """Every benchmark of ``main.py bench``: each modality's, then the general ones."""
    from engines.modalities import modalities

    return (*(b for m in modalities() for b in m.benches), *GENERAL_BENCHES)


def run(command: Command, args: argparse.Namespace) -> int:
    """Run ``command`` with parsed ``args`` and return the exit status; raises EmberError with the reason to print."""
    if command.run is not None:
        return command.run(args)
    assert command.request is not None and command.result is not None
    return submit(command, args, command.request(args))


def submit(command: Command, args: argparse.Namespace, request: Any) -> int:
    """Submit ``request`` to a Studio, show its events with ``command.on_event``, and return the exit status.

    Ctrl+C cancels the job (what was made so far is kept, as in the window) and exits 130.
    """
    from engines.jobs import EventKind
    from engines.studio import Studio

    args.started_s = time.monotonic()
    studio = Studio()
    try:
        job = studio.submit(request, listener=lambda event: command.on_event(args, event))
        previous = signal.signal(signal.SIGINT, lambda *_: job.cancel())
        try:
            final = job.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        assert final is not None
        if final.kind is EventKind.RESULT:
            assert command.result is not None
            return command.result(args, final.data)
        if final.kind is EventKind.BLOCKED:
            reason = getattr(final.data, "reason", "") or "The output was withheld by the safety filter."
            print(f"ember: {reason}", file=sys.stderr)
            return 3
        if final.kind is EventKind.CANCELLED:
            kept = " (what was made so far is kept)" if final.data is not None else ""
            print(f"\nember: stopped{kept}.", file=sys.stderr)
            return 130
        raise EmberError(str(final.data))
    finally:
        studio.close()


def step_printer(step_line: Callable[[Any], str]) -> Callable[[argparse.Namespace, JobEvent], None]:
    """An ``on_event`` that shows a job's progress on stderr: ``step_line(step)`` rewritten in place, a line
    when a model loads, notices on their own line, and the line ended when the job ends (silent with --quiet)."""
    from engines.jobs import EventKind
    from engines.progress import Loading, Step

    def on_event(args: argparse.Namespace, event: JobEvent) -> None:
        if getattr(args, "quiet", False):
            return
        data = event.data
        if event.kind is EventKind.PROGRESS and isinstance(data, Step):
            print(f"\r{step_line(data)}   ", end="", file=sys.stderr, flush=True)
        elif event.kind is EventKind.PROGRESS and isinstance(data, Loading):
            print(f"loading {data.model}...", file=sys.stderr, flush=True)
        elif event.kind is EventKind.NOTICE:
            print(f"\nember: {data}", file=sys.stderr, flush=True)
        elif event.kind.terminal:
            print(file=sys.stderr)  # end the progress line

    return on_event


def output_json(item: Any, path: Path | str, library_path: str, **extra: Any) -> str:
    """One --json line for a delivered output: where it was written, where the library keeps it, its record
    (and ``extra`` fields after the output id)."""
    line = {
        "path": str(path),
        "library_path": library_path,
        "output_id": item.record.output_id,
        **extra,
        "parameters": item.output.parameters,
        "timings": item.record.timings,
    }
    return json.dumps(line, default=str)


def eta_suffix(step: Any) -> str:
    """ ", about N s left" for a step that knows its time left, else ""."""
    return f", about {step.eta_s:.0f} s left" if step.eta_s is not None else ""


# -- models ---------------------------------------------------------------------------------------
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

    from engines.jobs import EventKind
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


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", action="store_true", help="list the catalog of models to download instead")
    parser.add_argument("--download", metavar="ID", help="download a catalog entry (Ctrl+C pauses it)")
    parser.add_argument("--token", help="a Hugging Face token, for gated models (never stored)")
    parser.add_argument("--import", dest="import_path", metavar="PATH", help="use a model file or folder where it is")
    parser.add_argument("--remove", metavar="ID", help="forget a model (imported files are never deleted)")
    parser.add_argument("--json", action="store_true")


MODELS = Command(
    name="models",
    help="list, download, import or remove models",
    description="Without options: the models on this computer (embedded, imported, downloaded, and those "
    "found in the Hugging Face cache, LM Studio and GPT4All), each with whether it fits this machine.",
    arguments=_models_arguments,
    run=cmd_models,
)


# -- check ------------------------------------------------------------------------------------------
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


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="the text to check")
    parser.add_argument("--file", action="append", metavar="PATH", help="a text file or an image; '-' for stdin")
    parser.add_argument("--json", action="store_true", help="print each decision as a JSON line")


CHECK = Command(
    name="check",
    help="run the safety filter on a text, a text file or an image",
    description="Run Ember's safety filter (your policy from Settings). Exit status: 0 allowed, 3 blocked, "
    "1 error. With --file -, one text per line is read from standard input and one JSON line is printed each.",
    arguments=_check_arguments,
    run=cmd_check,
)


# -- verify -----------------------------------------------------------------------------------------
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


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="one JSON line per file")


VERIFY = Command(
    name="verify",
    help="say whether files carry Ember's watermark, valid Content Credentials, a library record",
    description="Read images, WAV files or text files and report Ember's watermark (with its p-value), the "
    "C2PA manifest and the matching library record. Exit status: 0 all watermarked, 3 some not, 1 error.",
    arguments=_verify_arguments,
    run=cmd_verify,
)


# -- bench ------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark, print its table, and write its JSON when asked."""
    report = args.bench.run(args)
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    names = parser.add_subparsers(dest="bench_name", metavar="NAME", required=True)
    for bench in benches():
        one = names.add_parser(bench.name, help=bench.help, description=bench.help)
        one.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
        bench.arguments(one)
        one.set_defaults(bench=bench)


def _safety_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.safety import run_safety_bench

    return run_safety_bench()


def _provenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    parser.add_argument(
        "--only", choices=("image", "text", "files"), help="measure one part (the image watermark takes ~10 minutes)"
    )


def _provenance_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.provenance import run_provenance_bench

    return run_provenance_bench(quick=args.quick, only=args.only)


def _library_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=10_000, help="how many outputs to fill the library with")
    parser.add_argument("--runs", type=int, default=7, help="repetitions of each figure (the median is shown)")


def _library_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.library import run_library_bench

    if args.items < 1 or args.runs < 1:
        raise EmberError("--items and --runs must be at least 1.")
    return run_library_bench(items=args.items, runs=args.runs)


def _start_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.start import run_start_bench

    if args.runs < 1:
        raise EmberError("--runs must be at least 1.")
    return run_start_bench(runs=args.runs)


def _start_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=5, help="launches of each window (the median is shown)")


def _window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=3, help="window processes (the median is shown)")
    parser.add_argument("--engines", default="", help="just these engines (comma-separated): "
                        "chat, image, speech, music, upscale, dictation")  # fmt: skip
    parser.add_argument("--image-model", help="a diffusion model folder for the Images row")
    parser.add_argument("--quick", action="store_true", help="one run")


def _window_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.window import ENGINES, run_window_bench

    chosen = tuple(n.strip() for n in args.engines.split(",") if n.strip()) or ENGINES
    unknown = set(chosen) - set(ENGINES)
    if unknown:
        raise EmberError(f"No engine named {', '.join(sorted(unknown))}; there are: {', '.join(ENGINES)}.")
    if args.runs < 1:
        raise EmberError("--runs must be at least 1.")
    return run_window_bench(runs=1 if args.quick else args.runs, engines=chosen, image_model=args.image_model)


def _soak_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=1000, help="how many jobs to run (at least 101)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the random jobs and cancels")
    parser.add_argument("--quick", action="store_true", help="200 jobs")


def _soak_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.soak import run_soak_bench

    jobs = 200 if args.quick else args.jobs
    if jobs < 101:
        raise EmberError("--jobs must be at least 101: memory growth is measured from the 100th job to the last.")
    return run_soak_bench(jobs, seed=args.seed)[0]


def _fuzz_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz each target (default 60)")
    from engines.benchmarks.fuzz import TARGETS

    parser.add_argument("--only", default="", help=f"just these targets (comma-separated): {', '.join(TARGETS)}")
    parser.add_argument("--out", type=Path, help="keep the corpus, the findings' inputs and the logs in this folder")
    parser.add_argument("--quick", action="store_true", help="10 seconds a target")


def _fuzz_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.fuzz import run_fuzz_bench

    return run_fuzz_bench(seconds=10 if args.quick else args.seconds, only=args.only, out=args.out)


def _all_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("bench-report"), help="folder for the JSON, Markdown, charts")
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick run, where it has one")
    parser.add_argument("--skip", default="", help="benchmarks to leave out (comma-separated)")
    parser.add_argument("--only", default="", help="just these benchmarks (comma-separated)")


def _all_bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.all import run_all

    known = [b for b in benches() if b.name != "all"]
    names = {b.name for b in known}
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = (only | skip) - names
    if unknown:
        raise EmberError(f"No benchmark named {', '.join(sorted(unknown))}; there are: {', '.join(sorted(names))}.")
    chosen = [b for b in known if (not only or b.name in only) and b.name not in skip]
    summary, _ = run_all(chosen, args.out, quick=args.quick)
    return summary


GENERAL_BENCHES = (
    Bench("safety", "the safety filter on the labeled set, human prose and images", lambda parser: None, _safety_bench),
    Bench(
        "provenance",
        "watermarks and Content Credentials: strength, invisibility, speed",
        _provenance_arguments,
        _provenance_bench,
    ),
    Bench(
        "library",
        "the gallery's first screen and its searches over 10,000 outputs, beside bare SQLite and LIKE",
        _library_arguments,
        _library_bench,
    ),
    API_BENCH,
    Bench(
        "start",
        "seconds until the window is shown and its memory, beside a bare Qt window, in the same run",
        _start_arguments,
        _start_bench,
    ),
    Bench(
        "window",
        "the longest event-loop stall while each engine runs, beside the idle window, and idle memory",
        _window_arguments,
        _window_bench,
    ),
    Bench(
        "soak",
        "1,000 mixed jobs with random cancels on the real engines: deadlocks, leaks, memory growth",
        _soak_arguments,
        _soak_bench,
    ),
    Bench(
        "fuzz",
        "atheris on the file readers and watermark detectors for --seconds each: executions, exec/s, findings",
        _fuzz_arguments,
        _fuzz_bench,
    ),
    Bench(
        "all",
        "every benchmark above, one after another: one JSON, a Markdown report and PNG charts (--out FOLDER)",
        _all_arguments,
        _all_bench,
    ),
)

BENCH = Command(
    name="bench",
    help="measure Ember against the bare libraries in the same run",
    description="Each benchmark prints its figures beside the baseline measured in the same run (and writes them "
    "as JSON with --json).",
    arguments=_bench_arguments,
    run=cmd_bench,
)


# -- self-test --------------------------------------------------------------------------------------
def cmd_self_test(args: argparse.Namespace) -> int:
    """Report the CPU, the llama.cpp kernels and onnxruntime providers in use; generate text and one image step."""
    from engines.selftest import run_self_test
    from engines.studio import Studio

    studio = Studio()
    try:
        report = run_self_test(studio)
    finally:
        studio.close()
    text = json.dumps(report.as_dict(), indent=2, default=str) if args.json else "\n".join(report.lines())
    if args.output is not None:  # a Windows window build has no console to print to
        args.output.write_text(text + "\n", encoding="utf-8")
    if sys.stdout is not None:
        print(text)
    if report.failure:
        raise EmberError(f"Self-test failed: {report.failure}")
    return 0


def _self_test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument("--output", type=Path, help="also write the report to this file")


SELF_TEST = Command(
    name="self-test",
    help="check that the install works; what to paste into a bug report",
    description="Report the CPU's instruction sets, the llama.cpp CPU kernels and onnxruntime providers the "
    "engine process uses, then generate a few tokens and one image step there. Exit status 1 with the "
    "reason when something does not work.",
    arguments=_self_test_arguments,
    run=cmd_self_test,
)

GENERAL = (MODELS, CHECK, VERIFY, DOCS_COMMAND, SERVE, EVALUATE, BENCH, SELF_TEST)
