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
            raise EmberError(f"The output was withheld by the safety filter: {final.data}")
        if final.kind is EventKind.FAILED:
            raise EmberError(str(final.data))
        raise EmberError("The reply was cancelled.")
    finally:
        studio.close()


def cmd_models(args: argparse.Namespace) -> int:
    """List the embedded models and whether they are installed."""
    from engines.models.embedded import EMBEDDED_TEXT_MODELS

    rows = [
        {
            "id": m.id,
            "name": m.name,
            "purpose": m.purpose,
            "license": m.license,
            "package": m.package,
            "installed": m.installed,
        }
        for m in EMBEDDED_TEXT_MODELS
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            state = "installed" if r["installed"] else "not installed"
            print(f"{r['id']:<24} {r['purpose']:<11} {r['license']:<20} {state:<14} {r['name']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark, print its table, and write its JSON when asked."""
    from engines.benchmarks import run_benchmark

    report = run_benchmark(args.name, tokens=args.tokens, repetitions=args.reps)
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

    models = sub.add_parser("models", help="list the models Ember has")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    bench = sub.add_parser("bench", help="measure Ember against the bare libraries in the same run")
    bench.add_argument("name", choices=["text"], help="what to measure")
    bench.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    bench.add_argument("--tokens", type=int, default=128, help="tokens to generate per run")
    bench.add_argument("--reps", type=int, default=5, help="repetitions of each path")
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
