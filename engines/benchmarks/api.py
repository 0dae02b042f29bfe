"""`bench api`: requests per second and time to first token through the local API (the openai package's
client, streaming, on loopback) with 1, 4 and 16 concurrent clients, beside the same requests submitted
to the Studio directly in the same run.

Both paths run the same greedy chat request on the embedded model through the same Studio (one queue,
one engine process, the OutputPipeline), so the difference is what the API adds: HTTP, JSON, server-sent
events, the client library, and the check of the request's fields. Each round runs the direct path,
then the API path, with the same number of clients each sending the same number of requests one after
another; every client of the API is a client of its own (its own connection and "user").
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.benchmarks import Figure, Report, median
from engines.errors import EmberError
from engines.jobs import EventKind, JobEvent
from engines.models.embedded import DEFAULT_TEXT_MODEL

PROMPT = "Write a short poem about a lighthouse keeper and the sea."
_MODEL_ID = DEFAULT_TEXT_MODEL.id


def _direct_request(studio: Any, tokens: int, context: int) -> Callable[[], float]:
    """One request submitted to the Studio; returns its time to first token (s)."""
    from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

    request = ChatRequest(
        ModelOptions(f"embedded:{_MODEL_ID}", context_tokens=context),
        (Message("user", PROMPT),),
        sampling=Sampling(temperature=0.0, top_k=0, min_p=0.0, repeat_penalty=1.0, max_tokens=tokens, seed=0),
        overflow="error",
    )

    def run() -> float:
        first: list[float] = []

        def listen(event: JobEvent) -> None:
            if event.kind is EventKind.TOKEN and not first:
                first.append(time.perf_counter())

        start = time.perf_counter()
        final = studio.submit(request, listener=listen).wait(600)
        if final is None or final.kind is not EventKind.RESULT or not first:
            raise EmberError(f"A direct request did not finish: {final.data if final else 'no result'}")
        return first[0] - start

    return run


def _api_request(url: str, tokens: int, user: str) -> Callable[[], float]:
    """One streamed request through the openai client (a client of its own); returns its time to first token (s)."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600)

    def run() -> float:
        start = time.perf_counter()
        first = None
        stream = client.chat.completions.create(
            model=_MODEL_ID,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=tokens,
            temperature=0,
            seed=0,
            stream=True,
            user=user,
        )
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
        if first is None:
            raise EmberError("An API request streamed no text.")
        return first - start

    return run


def _round(runners: list[Callable[[], float]], requests_each: int) -> tuple[float, list[float]]:
    """Every runner on a thread of its own, ``requests_each`` times in a row; returns (requests/s, TTFTs)."""
    ttfts: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(run: Callable[[], float]) -> None:
        try:
            for _ in range(requests_each):
                ttft = run()
                with lock:
                    ttfts.append(ttft)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(run,)) for run in runners]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise EmberError(f"The benchmark's clients failed: {errors[0]}")
    return len(ttfts) / wall, ttfts


def run_api_bench(tokens: int = 32, clients: list[int] | None = None, requests_each: int = 2) -> Report:
    """Measure the API beside the Studio at each client count; return the report."""
    from engines.api.server import ApiServer, ServerSettings
    from engines.studio import Studio

    counts = clients or [1, 4, 16]
    context = 2048
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as home:
        studio = Studio(db_path=Path(home) / "bench.sqlite3")
        server = ApiServer(studio, ServerSettings(port=0, rate_per_minute=0, context_tokens=context)).start()
        try:
            direct = _direct_request(studio, tokens, context)
            direct()  # starts the engine process and loads the model
            _api_request(server.url, tokens, "warm-up")()
            info = next((i for _, i in studio.engines.loaded() if i.kind == "text"), None)
            for count in counts:
                base_rps, base_ttft = _round([direct] * count, requests_each)
                api_rps, api_ttft = _round(
                    [_api_request(server.url, tokens, f"client-{i}") for i in range(count)], requests_each
                )
                goal_rps = ">= 0.9" if count == 1 else "ratio >= 0.9 (the queue is shared)"
                figures += [
                    Figure(f"{count} client(s): requests/s", api_rps, "req/s", base_rps, goal_rps),
                    Figure(
                        f"{count} client(s): time to first token (median)",
                        median(api_ttft).scaled(1000),
                        "ms",
                        median(base_ttft).scaled(1000),
                        "<= +30 ms" if count == 1 else "queueing included",
                    ),
                ]
        finally:
            server.close()
            studio.close()
    report = Report(
        "api",
        conditions={
            "model": DEFAULT_TEXT_MODEL.name,
            "backend": info.backend if info else "?",
            "tokens a request": tokens,
            "requests a client a round": requests_each,
            "context_tokens": context,
            "ember path": "openai client (stream) -> HTTP on 127.0.0.1 -> ApiServer -> Studio queue + pipeline",
            "baseline": "the same request submitted to the same Studio (queue + engine process + pipeline)",
        },
    )
    report.figures += figures
    return report
