"""`bench text`: Ember's full path (queue + pipeline + Qt bridge) beside bare llama-cpp-python.

Both paths load the same embedded model with the same context and thread count,
generate greedily from the same prompt tokens with the prompt cache cleared, and
alternate, so drift in the machine's speed touches both alike. Ember's tokens are
timed where the window would receive them: in a slot on the Qt event loop.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop

from desktop.bridge import EventBridge
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


def _ember_run(bridge: EventBridge, request: ChatRequest) -> TextRun:
    loop = QEventLoop()
    arrivals: list[float] = []
    finished: list[JobEvent] = []
    start = time.perf_counter()
    op = bridge.submit(request)
    op.on_token(lambda _text: arrivals.append(time.perf_counter()))
    op.on_finished(lambda event: (finished.append(event), loop.quit()))
    loop.exec()
    final = finished[0] if finished else None
    if final is None or final.kind is not EventKind.RESULT:
        raise EmberError(f"The Ember path did not finish: {final.data if final else 'no result'}")
    timings = final.data.record.timings
    # The safety guard releases text a few words at a time, so one arrival can hold several tokens:
    # count the tokens the engine made, timed from the first text shown to the last.
    generated = int(timings["generated_tokens"])
    return TextRun(int(timings["prompt_tokens"]), generated, arrivals[0] - start, arrivals[-1] - arrivals[0])


def run_text_bench(tokens: int = 128, repetitions: int = 5) -> Report:
    """Measure prompt and generation throughput and time to first token on both paths; return the report."""
    _app = QCoreApplication.instance() or QCoreApplication([])  # the bridge needs an event loop
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
        bridge = EventBridge(studio)
        try:
            _ember_run(bridge, request)  # loads the model; warm-up
            engine = studio.registry.loaded()[0][1]
            prompt = engine.prompt_tokens(request)
            bare = open_bare(path, context, threads)
            run_bare(bare, prompt, tokens)  # warm-up
            ember_runs: list[TextRun] = []
            bare_runs: list[TextRun] = []
            for _ in range(repetitions):
                bare_runs.append(run_bare(bare, prompt, tokens))
                engine.reset_cache()
                ember_runs.append(_ember_run(bridge, request))
            bare.close()
        finally:
            bridge.detach()
            studio.close()

    def med(runs: list[TextRun], attr: str) -> float:
        return median([getattr(r, attr) for r in runs])

    ttft_ember = med(ember_runs, "first_token_s") * 1000
    ttft_bare = med(bare_runs, "first_token_s") * 1000
    report = Report(
        "text",
        conditions={
            "model": f"{DEFAULT_TEXT_MODEL.name}",
            "backend": "CPU",
            "threads": threads,
            "context_tokens": context,
            "prompt_tokens": len(prompt),
            "generated_tokens (ember/bare)": f"{med(ember_runs, 'generated_tokens'):.0f}/"
            f"{med(bare_runs, 'generated_tokens'):.0f}",
            "repetitions": repetitions,
            "ember path": "JobQueue + OutputPipeline + EventBridge (Qt queued signal), timed in the slot",
            "baseline": "llama-cpp-python create_completion(stream=True), same model/threads/context",
        },
    )
    report.figures += [
        Figure("prompt tokens/s", len(prompt) / (ttft_ember / 1000), "tok/s", len(prompt) / (ttft_bare / 1000), ""),
        Figure(
            "generation tokens/s",
            med(ember_runs, "tokens_per_s"),
            "tok/s",
            med(bare_runs, "tokens_per_s"),
            "ratio >= 0.97",
        ),
        Figure("time to first token", ttft_ember, "ms", ttft_bare, ""),
        Figure("time to first token overhead", ttft_ember - ttft_bare, "ms", None, "<= 30 ms"),
    ]
    return report
