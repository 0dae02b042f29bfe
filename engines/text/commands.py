"""The text modality's command line: ``main.py chat`` (and its benchmark, ``main.py bench text``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engines.errors import EmberError
from engines.jobs import EventKind, JobEvent
from engines.modality import Bench, Command


def model_path(value: str | None) -> str:
    """Return a GGUF path for ``--model``: an embedded model id, or a file path (raises EmberError for neither)."""
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


def _arguments(chat: argparse.ArgumentParser) -> None:
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


def _request(args: argparse.Namespace) -> Any:
    from engines.text.gguf_header import read_gguf_header
    from engines.text.requests import Message, ModelOptions, Sampling, is_base_model, text_request

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise EmberError("The prompt is empty. Give a text, or '-' to read it from standard input.")
    path = model_path(args.model)
    header = read_gguf_header(path)
    options = ModelOptions(path, context_tokens=args.context, threads=args.threads, device=args.device)
    try:
        sampling = Sampling(
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
    if is_base_model(header.chat_template) and not args.complete:
        print(f"ember: {header.name} has no chat template; continuing your text instead.", file=sys.stderr)
    return text_request(
        options,
        (Message("user", prompt),),
        sampling=sampling,
        base_model=args.complete or is_base_model(header.chat_template),
        system_prompt=args.system,
    )


def _on_event(args: argparse.Namespace, event: JobEvent) -> None:
    if event.kind is EventKind.TOKEN and not args.json:
        sys.stdout.write(event.data)
        sys.stdout.flush()
    elif event.kind is EventKind.NOTICE:
        print(f"\nember: {event.data}", file=sys.stderr)


def _result(args: argparse.Namespace, delivered: Any) -> int:
    if args.json:
        print(json.dumps({"output": asdict(delivered.output), "record": asdict(delivered.record)}, indent=2))
        return 0
    print()
    stats = delivered.record.timings
    print(
        f"ember: {stats['generated_tokens']:.0f} tokens, {stats['tokens_per_s']:.1f} tok/s, "
        f"{delivered.record.provenance.backend}, seed {delivered.record.provenance.seed}",
        file=sys.stderr,
    )
    return 0


CHAT = Command(
    name="chat",
    help="chat with a local GGUF model; the reply streams to stdout",
    description="Reply to one message with a GGUF model (a base model without a chat template continues the text). "
    "The reply passes the safety filter as it streams and carries the text watermark when sampled. Exit status: "
    "0 done, 3 withheld by the safety filter, 1 error, 130 stopped (Ctrl+C keeps what was written).",
    arguments=_arguments,
    request=_request,
    on_event=_on_event,
    result=_result,
)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--tokens", type=int, default=128, help="tokens to generate per run")
    bench.add_argument("--reps", type=int, default=7, help="repetitions of each path")


def _bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.text import run_text_bench

    receiver = args.receiver() if callable(getattr(args, "receiver", None)) else None
    where = getattr(receiver, "where", "")
    return run_text_bench(tokens=args.tokens, repetitions=args.reps, receiver=receiver, where=where)


BENCH = Bench(
    name="text",
    help="Ember's text path (engine process, pipeline, the window's bridge) beside bare llama-cpp-python",
    arguments=_bench_arguments,
    run=_bench,
)


def _kernels_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--tokens", type=int, default=64, help="tokens to generate per run")
    bench.add_argument("--rounds", type=int, default=3, help="rounds over every variant")
    bench.add_argument("--variants", metavar="A,B", help="only these variants (default: every one this CPU runs)")


def _kernels(args: argparse.Namespace) -> Any:
    from engines.benchmarks.cpu_kernels import run_cpu_kernels_bench

    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    return run_cpu_kernels_bench(tokens=args.tokens, rounds=args.rounds, variants=variants)


KERNELS_BENCH = Bench(
    name="cpu-kernels",
    help="llama.cpp's CPU variants of this build on this CPU, beside the AVX2 one (a fixed baseline)",
    arguments=_kernels_arguments,
    run=_kernels,
)
