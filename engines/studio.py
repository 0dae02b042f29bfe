"""The Studio: one queue, one pipeline, the engines and the stores, wired together.

The window, the command line, the benchmarks and the tests all make a Studio and
submit requests to it; none of them calls an engine directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engines.conversations import ConversationStore
from engines.database import Database
from engines.engine import Engine
from engines.errors import Cancelled, EmberError, OutputBlocked
from engines.hardware import llama_gpu_backend
from engines.jobs import EventKind, Job, JobQueue, Listener
from engines.paths import database_path
from engines.pipeline import Delivered, OutputPipeline, OutputSession, Stage, StageDecision
from engines.records import RecordStore
from engines.registry import ModelRegistry
from engines.text.requests import ChatRequest, CompletionRequest, ModelOptions, TextOutput

RequestCheck = Callable[[Any], None]
_KINDS: dict[type, str] = {ChatRequest: "text", CompletionRequest: "text"}


class JobProgress:
    """The :class:`engines.engine.Progress` an engine gets: events for one job, text via the pipeline."""

    def __init__(self, job: Job, session: OutputSession) -> None:
        self._job = job
        self._session = session

    def token(self, text: str) -> None:
        self._session.feed(text)

    def step(self, done: int, total: int) -> None:
        self._job.emit(EventKind.PROGRESS, {"done": done, "total": total})

    def notice(self, message: str) -> None:
        self._job.emit(EventKind.NOTICE, message)


def make_engine(key: Any) -> Engine:
    """Return a (not yet loaded) engine for load options ``key``; raises EmberError for unknown kinds."""
    if isinstance(key, ModelOptions):
        from engines.text.llama import LlamaEngine

        return LlamaEngine(key)
    raise EmberError(f"Ember has no engine for {type(key).__name__}.")


class Studio:
    """Everything behind the window and the command line."""

    def __init__(
        self,
        db_path: Path | str | None = None,
        stages: Sequence[Stage] = (),
        engine_factory: Callable[[Any], Engine] = make_engine,
    ) -> None:
        self.db = Database(db_path or database_path())
        self.records = RecordStore(self.db)
        self.conversations = ConversationStore(self.db)
        self.pipeline = OutputPipeline(stages, [self.records])
        self.registry = ModelRegistry(engine_factory)
        self._handlers: dict[type, Callable[[Job], Any]] = {
            ChatRequest: self._run_text,
            CompletionRequest: self._run_text,
        }
        self._request_checks: list[RequestCheck] = []
        self.queue = JobQueue(self._run, route=self._route, what="text engine")

    def add_request_check(self, check: RequestCheck) -> None:
        """Run ``check`` on every request at submission; it raises OutputBlocked to refuse one."""
        self._request_checks.append(check)

    def submit(self, request: Any, *, priority: int = 0, listener: Listener | None = None) -> Job:
        """Queue a request; its events go to ``listener`` and to every subscriber.

        A request the checks refuse (an unsafe prompt) still returns a job: it ends at
        once as ``blocked`` with the reason, and its refusal is recorded.
        """
        if type(request) not in self._handlers:
            raise EmberError(f"Ember does not know how to run a {type(request).__name__}.")
        try:
            for check in self._request_checks:
                check(request)
        except OutputBlocked as blocked:
            job = self.queue.reject(request, blocked.decision, listener=listener)
            decisions = (blocked.decision,) if isinstance(blocked.decision, StageDecision) else ()
            self.pipeline.record_refusal(job.id, _KINDS.get(type(request), "text"), decisions)
            return job
        return self.queue.submit(request, priority=priority, listener=listener)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self.queue.subscribe(listener)

    def unload_models(self) -> dict[str, int]:
        """Unload every idle model; returns {model name: estimated bytes freed}."""
        freed: dict[str, int] = {}
        for key, engine in self.registry.loaded():
            estimate = engine.memory_estimate()
            if self.registry.unload(key):
                freed[getattr(engine, "name", str(key))] = estimate
        return freed

    def close(self, timeout_s: float = 5.0) -> bool:
        """Cancel all jobs, stop the threads, unload the models; returns whether all threads ended."""
        ended = self.queue.shutdown(timeout_s)
        self.registry.unload_all()
        self.db.close()
        return ended

    # -- on the worker threads ---------------------------------------------------------------
    def _route(self, request: Any) -> str:
        device = getattr(getattr(request, "model", None), "device", "cpu")
        if device == "gpu":
            return "gpu"
        if device == "auto" and llama_gpu_backend.cache_info().currsize and llama_gpu_backend():
            return "gpu"
        return "cpu"

    def _run(self, job: Job) -> Any:
        return self._handlers[type(job.request)](job)

    def _run_text(self, job: Job) -> Delivered:
        request: ChatRequest | CompletionRequest = job.request
        started = time.monotonic()

        def loading(engine: Engine) -> None:
            job.emit(EventKind.PROGRESS, {"stage": "loading", "model": getattr(engine, "name", "")})

        with self.registry.use(request.model, on_loading=loading) as engine:
            loaded = time.monotonic()
            job.emit(EventKind.PROGRESS, {"stage": "generating", "backend": engine.backend})
            session = self.pipeline.open(job.id, "text", request, on_text=lambda t: job.emit(EventKind.TOKEN, t))
            try:
                output: TextOutput = engine.run(request, JobProgress(job, session), job.cancel_token)
            except Cancelled as stop:
                partial = stop.partial
                if isinstance(partial, TextOutput) and partial.text:
                    timings = _timings(job, started, loaded, partial)
                    delivered = session.finish(partial, engine.provenance(request, partial), timings, partial=True)
                    raise Cancelled(delivered) from None
                raise
            timings = _timings(job, started, loaded, output)
            return session.finish(output, engine.provenance(request, output), timings)


def _timings(job: Job, started: float, loaded: float, output: TextOutput) -> dict[str, float]:
    return {
        "queued_s": started - job.created_s,
        "load_s": loaded - started,
        "prompt_s": output.prompt_s,
        "generation_s": output.generation_s,
        "prompt_tokens": output.prompt_tokens,
        "generated_tokens": output.generated_tokens,
        "tokens_per_s": output.tokens_per_s,
    }
