"""`bench text`: Ember's whole path (queue, engine process, pipeline, and the window's Qt bridge when
main.py passes one) beside bare llama-cpp-python in this process, on the same model.

Both paths load the embedded model with the same context, threads and CPU kernels, generate
greedily from the same prompt tokens with the prompt cache cleared, and alternate, so drift in
the machine's speed touches both alike. Ember's tokens are timed where they arrive: in the
receiver's callback (a Qt slot with the window's bridge), after crossing the engine process's pipe.

The second table is the price of "same seed, same reply" (engines/text/llama.py): time to the
first token of each later turn of one conversation, with Ember's reuse of whole aligned prompt
blocks, beside llama-cpp-python's own prefix reuse (reuses everything it can, but changes the
logits) and beside evaluating every prompt whole.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from engines.benchmarks import Figure, Report, median
from engines.benchmarks.text_bare import TextRun, open_bare, run_bare
from engines.errors import EmberError
from engines.hardware import default_threads
from engines.jobs import EventKind, JobEvent
from engines.models.embedded import DEFAULT_TEXT_MODEL
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

PROMPT = (
    "You are helping me write a children's book. Write a long, gentle story about a small dragon "
    "called Ember who lives in a lighthouse by the sea, is afraid of the dark, and learns to light "
    "the lamp for the fishing boats. Describe the lighthouse, the keeper, the storms and the gulls, "
    "and give every chapter a title. Use simple words that a six-year-old understands, and end each "
    "chapter with a question for the reader. Begin with the first chapter now."
)
FOLLOW_UPS = (
    "Now write the second chapter, where a storm comes.",
    "Write the third chapter: the keeper falls ill and Ember must light the lamp alone.",
    "Write the last chapter, and end the book with a question for the reader.",
)


class Receiver(Protocol):
    """Submits a request to the Studio and times where its text arrives."""

    def __call__(self, studio: Studio, request: ChatRequest) -> tuple[float, list[float], JobEvent | None]:
        """Return (when it was submitted, when each TOKEN event arrived, the terminal event)."""


def listener_receiver(studio: Studio, request: ChatRequest) -> tuple[float, list[float], JobEvent | None]:
    """Times tokens in a job listener, on the queue's event thread (no window)."""
    arrivals: list[float] = []

    def listen(event: JobEvent) -> None:
        if event.kind is EventKind.TOKEN:
            arrivals.append(time.perf_counter())

    start = time.perf_counter()
    final = studio.submit(request, listener=listen).wait(600)
    return start, arrivals, final


def _ember_run(receive: Receiver, studio: Studio, request: ChatRequest) -> TextRun:
    return _ember_timed(receive, studio, request)[0]


def _ember_timed(receive: Receiver, studio: Studio, request: ChatRequest) -> tuple[TextRun, float]:
    """One run of the Ember path, and how much of its time to first token the engine itself spent (s)."""
    start, arrivals, final = receive(studio, request)
    if final is None or final.kind is not EventKind.RESULT or not arrivals:
        raise EmberError(f"The Ember path did not finish: {final.data if final else 'no result'}")
    timings = final.data.record.timings
    # The safety guard releases text a few words at a time, so one arrival can hold several tokens:
    # count the tokens the engine made, timed from the first text shown to the last.
    generated = int(timings["generated_tokens"])
    run = TextRun(int(timings["prompt_tokens"]), generated, arrivals[0] - start, arrivals[-1] - arrivals[0])
    return run, float(timings["prompt_s"])


def run_text_bench(
    tokens: int = 128, repetitions: int = 7, receiver: Receiver | None = None, where: str = ""
) -> Report:
    """Measure prompt and generation throughput, time to first token, and the prompt cache's cost; return the report."""
    receive = receiver or listener_receiver
    threads = default_threads()
    context = 2048
    path = str(DEFAULT_TEXT_MODEL.path())
    options = ModelOptions(path, context_tokens=context, threads=threads, device="cpu")
    request = ChatRequest(
        options,
        (Message("user", PROMPT),),
        sampling=Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens, seed=0),
    )
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as home:
        studio = Studio(db_path=Path(home) / "bench.sqlite3")
        try:
            _ember_run(receive, studio, request)  # starts the engine process and loads the model; warm-up
            prompt = studio.engines.call("cpu", options, "prompt_tokens", request)
            info = studio.engines.call("cpu", options, "info")
            bare = open_bare(path, context, threads)
            run_bare(bare, prompt, tokens)  # warm-up
            ember_runs: list[TextRun] = []
            bare_runs: list[TextRun] = []
            outside: list[float] = []  # of Ember's time to first token, what was not the engine's own work
            for _ in range(repetitions):
                studio.engines.settle("cpu")  # no idle work of the engine process beside the bare run
                bare_runs.append(run_bare(bare, prompt, tokens))
                studio.engines.call("cpu", options, "reset_cache")
                run, engine_s = _ember_timed(receive, studio, request)
                ember_runs.append(run)
                outside.append(run.first_token_s - engine_s)
            cache, turns = _prompt_cache_figures(studio, receive, options, bare, tokens)
            bare.close()
        finally:
            studio.close()

    def med(runs: list[TextRun], attr: str) -> float:
        return median([getattr(r, attr) for r in runs])

    ttft_ember = med(ember_runs, "first_token_s").scaled(1000)
    ttft_bare = med(bare_runs, "first_token_s").scaled(1000)

    def prompt_speed(runs: list[TextRun]) -> float:
        return median([len(prompt) / r.first_token_s for r in runs])

    # Runs are paired (bare, then Ember): the median of the pairs' differences is steadier than a difference of
    # medians on a busy machine, where one prompt's time drifts by more than the overhead measured.
    overhead = median([(e.first_token_s - b.first_token_s) * 1000 for e, b in zip(ember_runs, bare_runs, strict=True)])
    report = Report(
        "text",
        conditions={
            "model": f"{DEFAULT_TEXT_MODEL.name}",
            "backend": info.backend,
            "llama.cpp CPU variant": info.details.get("cpu_variant") or "built in",
            "threads": threads,
            "context_tokens": context,
            "prompt_tokens": len(prompt),
            "generated_tokens (ember/bare)": f"{med(ember_runs, 'generated_tokens'):.0f}/"
            f"{med(bare_runs, 'generated_tokens'):.0f}",
            "repetitions": repetitions,
            "later turns (prompt tokens)": turns,
            "ember path": f"JobQueue + engine process (pipe) + OutputPipeline{where}",
            "baseline": "llama-cpp-python create_completion(stream=True) in this process, same model/threads/context",
        },
    )
    report.figures += [
        Figure("prompt tokens/s", prompt_speed(ember_runs), "tok/s", prompt_speed(bare_runs), ""),
        Figure("generation tokens/s", med(ember_runs, "tokens_per_s"), "tok/s", med(bare_runs, "tokens_per_s"), ""),
        Figure(
            "generation tokens/s ratio (paired)",
            median([e.tokens_per_s / b.tokens_per_s for e, b in zip(ember_runs, bare_runs, strict=True)]),
            "x",
            None,
            ">= 0.97",
        ),
        Figure("time to first token", ttft_ember, "ms", ttft_bare, ""),
        Figure("time to first token overhead (paired)", overhead, "ms", None, "<= 30 ms"),
        Figure(
            "  of which outside the engine", median(outside).scaled(1000), "ms", None, "pipe, queue, pipeline, guard"
        ),
        *cache,
    ]
    return report


def _prompt_cache_figures(
    studio: Studio, receive: Receiver, options: ModelOptions, bare: Any, tokens: int
) -> tuple[list[Figure], str]:
    """Time to first token of turns 2..4 of one conversation: Ember's block reuse, llama-cpp-python's, none."""
    greedy = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=min(tokens, 96), seed=0)
    messages: list[Message] = [Message("user", PROMPT)]
    requests: list[ChatRequest] = []
    for follow_up in (None, *FOLLOW_UPS):
        if follow_up is not None:
            messages.append(Message("user", follow_up))
        requests.append(ChatRequest(options, tuple(messages), sampling=greedy))
        final = studio.submit(requests[-1]).wait(600)
        if final is None or final.kind is not EventKind.RESULT:
            raise EmberError(f"The conversation for the prompt-cache figures failed: {final.data if final else ''}")
        messages.append(Message("assistant", final.data.output.text))
    prompts = [studio.engines.call("cpu", options, "prompt_tokens", r) for r in requests]

    ember: list[float] = []
    studio.engines.call("cpu", options, "reset_cache")
    _ember_run(receive, studio, requests[0])
    for request in requests[1:]:
        studio.engines.settle("cpu")  # the person reads the reply and types: the engine's idle work is done
        ember.append(_ember_run(receive, studio, request).first_token_s * 1000)

    def bare_turns(reuse: bool) -> list[float]:
        out = []
        for prompt, follow_up in zip(prompts[1:], FOLLOW_UPS, strict=True):
            if reuse:
                # What a chat with llama-cpp-python has in its cache when the person sends the next message:
                # everything up to it (the earlier turns and the reply, as generated).
                new = len(bare.tokenize(follow_up.encode(), add_bos=False)) + 6  # the message and its template
                bare.reset()
                bare.eval(prompt[: len(prompt) - new])
            out.append(_first_token_s(bare, prompt, reuse=reuse) * 1000)
        return out

    prefix, whole = bare_turns(reuse=True), bare_turns(reuse=False)
    turns = ", ".join(str(len(p)) for p in prompts[1:])
    goal = "informational: the price of bit-exact reuse"
    return [
        Figure("later turns: TTFT vs llama.cpp prefix reuse", median(ember), "ms", median(prefix), goal),
        Figure("later turns: TTFT vs no prompt reuse", median(ember), "ms", median(whole), "ratio < 1"),
    ], turns


def _first_token_s(llm: Any, prompt: list[int], *, reuse: bool) -> float:
    """Time from asking to the first token with llama-cpp-python's generate (its prefix reuse on or off)."""
    if not reuse:
        llm.reset()
    start = time.perf_counter()
    generator = llm.generate(prompt, temp=0.0, repeat_penalty=1.0, reset=True)
    next(generator)
    elapsed = time.perf_counter() - start
    generator.close()
    return elapsed


QtReceiverFactory = Callable[[], Receiver]
