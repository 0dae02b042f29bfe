"""The Studio: one queue, one pipeline, the engines and the stores, wired together.

The window, the command line, the benchmarks and the tests all make a Studio and
submit requests to it; none of them calls an engine directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engines.conversations import ConversationStore
from engines.database import Database
from engines.diffusion.requests import DiffusionOptions, GeneratedImages, ImageBatchResult, ImageRequest
from engines.engine import Engine
from engines.errors import Cancelled, EmberError, OutputBlocked
from engines.hardware import llama_gpu_backend
from engines.jobs import EventKind, Job, JobQueue, Listener
from engines.media import ImageOutput
from engines.models.downloads import DownloadRequest, DownloadResult, DownloadState, DownloadStore
from engines.paths import database_path, outputs_dir
from engines.pipeline import Delivered, OutputPipeline, OutputRecord, OutputSession, Stage, StageDecision
from engines.provenance.keys import installation_key
from engines.provenance.stage import ProvenanceStage
from engines.provenance.verify import VerifyReport, VerifyRequest, verify_file
from engines.records import RecordStore
from engines.registry import ModelRegistry
from engines.safety.audit import AuditLog
from engines.safety.filter import SafetyFilter
from engines.safety.policy import Policy
from engines.safety.stage import SafetyStage
from engines.settings import SettingsStore
from engines.text.requests import ChatRequest, CompletionRequest, ModelOptions, TextOutput

log = logging.getLogger(__name__)

RequestCheck = Callable[[Any], None]


@dataclass(frozen=True)
class QueuedDownload:
    """A download as the queue runs it: the request, its row in the downloads table, and its pause switch.

    The pause event travels with the job, so a pause set before the worker starts it is seen too.
    """

    download_id: int
    request: DownloadRequest
    pause: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


_KINDS: dict[type, str] = {ChatRequest: "text", CompletionRequest: "text", ImageRequest: "image"}


class JobProgress:
    """The :class:`engines.engine.Progress` an engine gets: events for one job, text via the pipeline."""

    def __init__(self, job: Job, session: OutputSession, *more: OutputSession) -> None:
        self._job = job
        self._session = session
        # A batch of images has one session per image, so each preview is checked as its own.
        self._sessions = (session, *more)

    def token(self, text: str) -> None:
        self._session.feed(text)

    def step(self, done: int, total: int) -> None:
        self._job.emit(EventKind.PROGRESS, {"done": done, "total": total})

    def notice(self, message: str) -> None:
        self._job.emit(EventKind.NOTICE, message)

    def preview(self, image: Any, index: int = 0) -> None:
        shown = self._sessions[index].preview(image)
        if shown is not None:
            self._job.emit(EventKind.PREVIEW, {"index": index, "image": shown})

    def wants_preview(self) -> bool:
        return bool(getattr(self._job.request, "preview", False))


class ImageJobProgress(JobProgress):
    """Progress for a batch of images (one pipeline session per image): steps carry the time left."""

    def __init__(self, job: Job, sessions: Sequence[OutputSession]) -> None:
        super().__init__(job, *sessions)
        self._started_s = time.monotonic()

    def step(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self._started_s
        eta = elapsed / done * (total - done) if done else None
        self._job.emit(EventKind.PROGRESS, {"done": done, "total": total, "elapsed_s": elapsed, "eta_s": eta})


def make_engine(key: Any, *, text_watermark_key: bytes | None = None) -> Engine:
    """Return a (not yet loaded) engine for load options ``key``; raises EmberError for unknown kinds.

    Text engines sample with the watermark keyed by ``text_watermark_key`` when one is given.
    """
    if isinstance(key, ModelOptions):
        from engines.text.llama import LlamaEngine

        return LlamaEngine(key, watermark_key=text_watermark_key)
    if isinstance(key, DiffusionOptions):
        from engines.diffusion.engine import DiffusionEngine

        return DiffusionEngine(key)
    raise EmberError(f"Ember has no engine for {type(key).__name__}.")


_GUARD_CONTEXT_TOKENS = 4096


def _load_policy(settings: SettingsStore) -> Policy:
    saved = settings.get("safety.policy")
    return Policy.from_json(saved) if isinstance(saved, str) else Policy()


def open_safety_filter(db_path: Path | str | None = None) -> tuple[SafetyFilter, Callable[[], None]]:
    """Return the person's safety filter (their saved policy, the audit log) without a whole Studio, and a closer.

    For ``main.py check``. The guard model, if one is set, runs here too.
    """
    db = Database(db_path or database_path())
    settings = SettingsStore(db)
    safety = SafetyFilter(_load_policy(settings), AuditLog(db))
    registry = ModelRegistry(make_engine)
    guard = settings.get("safety.guard_model")
    if isinstance(guard, str) and guard:
        safety.guard = _guard_checker(registry, guard)

    def close() -> None:
        registry.unload_all()
        db.close()

    return safety, close


def _guard_checker(registry: ModelRegistry, path: str) -> Any:
    from engines.safety.guard import GuardChecker
    from engines.text.gguf_header import read_gguf_header

    read_gguf_header(path)  # a clear ModelFileError for a missing or broken file, before anything loads
    return GuardChecker(registry, ModelOptions(path, context_tokens=_GUARD_CONTEXT_TOKENS)).check


class Studio:
    """Everything behind the window and the command line."""

    def __init__(
        self,
        db_path: Path | str | None = None,
        stages: Sequence[Stage] = (),
        engine_factory: Callable[[Any], Engine] | None = None,
    ) -> None:
        self.db = Database(db_path or database_path())
        self.settings = SettingsStore(self.db)
        self.records = RecordStore(self.db)
        self.conversations = ConversationStore(self.db)
        self.audit = AuditLog(self.db)
        self.key = installation_key()
        self.safety = SafetyFilter(_load_policy(self.settings), self.audit)
        # Safety first, then the watermarks: no stage list a caller passes can go around them.
        self.pipeline = OutputPipeline((SafetyStage(self.safety), ProvenanceStage(self.key), *stages), [self.records])
        text_key = self.key.derive("text-watermark")
        self.registry = ModelRegistry(
            engine_factory or (lambda options: make_engine(options, text_watermark_key=text_key))
        )
        self._handlers: dict[type, Callable[[Job], Any]] = {
            ChatRequest: self._run_text,
            CompletionRequest: self._run_text,
            VerifyRequest: self._run_verify,
            ImageRequest: self._run_image,
        }
        self._request_checks: list[RequestCheck] = [self.safety.check_request]
        self._tokenizers: dict[str, Callable[[str], list[int]]] = {}
        guard = self.settings.get("safety.guard_model")
        if isinstance(guard, str) and guard:
            try:
                self.safety.guard = _guard_checker(self.registry, guard)
            except EmberError:
                log.warning("The guard model %s cannot be used any more; checking without it.", guard)
        self.downloads = DownloadStore(self.db)
        self._download_jobs: dict[int, Job] = {}
        self._handlers[QueuedDownload] = self._run_download
        # Downloads get their own lane, so a model can arrive while another one generates.
        self.queue = JobQueue(self._run, route=self._route, lanes=("cpu", "gpu", "download"), what="engine")
        # The classifier takes about a second to load: load it now, off the caller's thread,
        # so the first prompt check at submission is as fast as the rest.
        self._warm_up = threading.Thread(target=self.safety.warm_up, name="ember-safety-warmup", daemon=True)
        self._warm_up.start()

    # -- settings ------------------------------------------------------------------------------
    def set_policy(self, policy: Policy) -> None:
        """Apply a safety policy at once (to the next check) and save it."""
        self.safety.policy = policy
        self.settings.set("safety.policy", policy.to_json())

    def guard_model(self) -> str | None:
        """The guard model's path, or None when none is set."""
        value = self.settings.get("safety.guard_model")
        return value if isinstance(value, str) and value else None

    def set_guard_model(self, path: str | None) -> None:
        """Use a Llama Guard 3 / ShieldGemma GGUF as an extra judge (None: no guard model).

        Raises EmberError (ModelFileError) for a missing or broken file; nothing changes then.
        """
        if path:
            self.safety.guard = _guard_checker(self.registry, path)
        else:
            self.safety.guard = None
        self.settings.set("safety.guard_model", path or "")

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

    # -- downloads -----------------------------------------------------------------------------
    def download(self, request: DownloadRequest, *, listener: Listener | None = None) -> Job:
        """Remember a download (so it survives a restart) and queue it; PROGRESS events carry DownloadProgress."""
        download_id = self.downloads.add(request)
        return self._queue_download(download_id, request, listener)

    def resume_download(self, download_id: int, *, token: str | None = None, listener: Listener | None = None) -> Job:
        """Queue a paused, failed or interrupted download again; it continues from the bytes on disk.

        Raises EmberError when there is no such download or it is running or finished.
        """
        record = self.downloads.get(download_id)
        if record is None:
            raise EmberError("There is no such download any more.")
        running = self._download_jobs.get(download_id)
        if running is not None and not running.done:
            raise EmberError(f"{record.request.name} is already downloading.")
        if record.state is DownloadState.DONE:
            raise EmberError(f"{record.request.name} is already downloaded.")
        request = replace(record.request, token=token) if token else record.request
        self.downloads.mark(download_id, DownloadState.QUEUED)
        return self._queue_download(download_id, request, listener)

    def pause_download(self, download_id: int) -> bool:
        """Pause a running or queued download, keeping its partial files; returns whether one was running."""
        job = self._download_jobs.get(download_id)
        if job is None or job.done:
            return False
        # Only the pause event: a cancel would win over it and delete the partial files.
        job.request.pause.set()
        self.downloads.mark(download_id, DownloadState.PAUSED)
        return True

    def cancel_download(self, download_id: int) -> None:
        """Stop a download and delete its partial files (files already complete stay in the shared cache)."""
        from engines.models.downloads import discard_partial_files

        job = self._download_jobs.get(download_id)
        if job is not None and not job.done:
            job.cancel()
            return
        record = self.downloads.get(download_id)
        if record is not None and record.state is not DownloadState.DONE:
            try:
                discard_partial_files(record.request)
            except EmberError as exc:
                log.warning("Partial files of %s were not deleted: %s", record.request.name, exc)
            self.downloads.mark(download_id, DownloadState.CANCELLED)

    def resume_unfinished_downloads(self) -> list[Job]:
        """Queue again the downloads a restart interrupted (queued or running then); paused ones wait for the person.

        Downloads that need a token are left for the person too (tokens are never stored).
        """
        jobs = []
        for record in self.downloads.pending():
            if record.state is DownloadState.PAUSED or record.needs_token:
                continue
            jobs.append(self._queue_download(record.id, record.request, None))
        return jobs

    def _queue_download(self, download_id: int, request: DownloadRequest, listener: Listener | None) -> Job:
        job = self.submit(QueuedDownload(download_id, request), listener=listener)
        self._download_jobs[download_id] = job
        return job

    def _run_download(self, job: Job) -> DownloadResult:
        from engines.models.downloads import run_recorded

        queued: QueuedDownload = job.request
        return run_recorded(
            self.downloads,
            queued.download_id,
            queued.request,
            lambda progress: job.emit(EventKind.PROGRESS, progress),
            job.cancel_token,
            pause=queued.pause,
        )

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
        """Cancel all jobs, stop the threads, unload the models; returns whether all threads ended.

        Unfinished downloads are paused, not cancelled: their partial files stay, and the next
        start queues them again (:meth:`resume_unfinished_downloads`).
        """
        interrupted = []
        for download_id, job in list(self._download_jobs.items()):
            record = self.downloads.get(download_id)
            if not job.done and record is not None and record.state is not DownloadState.PAUSED:
                job.request.pause.set()
                interrupted.append(job)
        for job in interrupted:  # a paused transfer lets go within about 50 ms; a cancel would delete its part
            job.wait(timeout_s)
        ended = self.queue.shutdown(timeout_s)
        for job in interrupted:
            self.downloads.mark(job.request.download_id, DownloadState.QUEUED)
        self._warm_up.join(timeout_s)
        self.registry.unload_all()
        self.db.close()
        return ended

    # -- on the worker threads ---------------------------------------------------------------
    def _route(self, request: Any) -> str:
        if isinstance(request, QueuedDownload):
            return "download"
        device = getattr(getattr(request, "model", None), "device", "cpu")
        if device == "gpu":
            return "gpu"
        if device == "auto" and llama_gpu_backend.cache_info().currsize and llama_gpu_backend():
            return "gpu"
        return "cpu"

    def _run(self, job: Job) -> Any:
        if self.safety.guard is not None and not isinstance(job.request, (VerifyRequest, QueuedDownload)):
            # The guard model is too slow for submission time: it judges the prompt here, before the engine runs.
            job.emit(EventKind.PROGRESS, {"stage": "checking"})
            self.safety.check_request(job.request, guard_only=True, job_id=job.id)
        return self._handlers[type(job.request)](job)

    def _run_verify(self, job: Job) -> list[VerifyReport]:
        paths = job.request.paths
        reports = []
        for done, path in enumerate(paths, 1):
            job.cancel_token.raise_if_cancelled()
            reports.append(
                verify_file(path, self.key, find_records=self._find_records, text_tokenizers=self._text_tokenizers)
            )
            job.emit(EventKind.PROGRESS, {"done": done, "total": len(paths)})
        return reports

    def _find_records(self, kind: str, payload: int | None, text: str) -> list[OutputRecord]:
        if kind == "id":
            record = self.records.get(text)
            return [record] if record else []
        if kind == "text":
            output_id = self.conversations.find_reply(text)
            record = self.records.get(output_id) if output_id else None
            return [record] if record else []
        if payload is None:
            return []
        if kind == "image":
            from engines.provenance.image_mark import PAYLOAD_BITS
        else:
            from engines.provenance.audio_mark import PAYLOAD_BITS
        return [r for r in self.records.find_by_mark(payload, PAYLOAD_BITS) if r.kind == kind]

    def _text_tokenizers(self) -> list[Callable[[str], list[int]]]:
        """The tokenizers of the embedded models and of every model in recent records (made once each)."""
        from engines.models.embedded import EMBEDDED_TEXT_MODELS
        from engines.provenance.text_mark import gguf_tokenizer

        paths = [str(m.path()) for m in EMBEDDED_TEXT_MODELS if m.installed]
        paths += [r.provenance.model_path for r in self.records.recent(200) if r.kind == "text"]
        for path in dict.fromkeys(paths):
            if path and path not in self._tokenizers and Path(path).exists():
                try:
                    self._tokenizers[path] = gguf_tokenizer(path)
                except EmberError:
                    continue
        return list(self._tokenizers.values())

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

    def _run_image(self, job: Job) -> ImageBatchResult:
        request: ImageRequest = job.request
        started = time.monotonic()

        def loading(engine: Engine) -> None:
            job.emit(EventKind.PROGRESS, {"stage": "loading", "model": getattr(engine, "name", "")})

        with self.registry.use(request.model, on_loading=loading) as engine:
            loaded = time.monotonic()
            job.emit(EventKind.PROGRESS, {"stage": "generating", "backend": engine.backend})
            sessions = [self.pipeline.open(job.id, "image", request) for _ in range(request.batch_size)]
            output: GeneratedImages = engine.run(request, ImageJobProgress(job, sessions), job.cancel_token)
            base = engine.provenance(request, output)
        delivered: list[Delivered] = []
        withheld: list[str] = []
        first_block: OutputBlocked | None = None
        timings = {"queued_s": started - job.created_s, "load_s": loaded - started}
        timings.update({k: float(v) for k, v in output.timings.items() if isinstance(v, (int, float))})
        for index, (pixels, parameters) in enumerate(zip(output.images, output.parameters, strict=True)):
            image = ImageOutput(pixels, dict(parameters), index=index)
            provenance = replace(base, settings=dict(parameters), seed=parameters.get("seed", base.seed))
            try:
                delivered.append(sessions[index].finish(image, provenance, timings))
            except OutputBlocked as blocked:
                first_block = first_block or blocked
                withheld.append(getattr(blocked.decision, "reason", "") or str(blocked))
        if first_block is not None and not delivered:
            raise first_block
        paths = tuple(str(self._save_image(item)) for item in delivered)
        return ImageBatchResult(tuple(delivered), paths, tuple(withheld))

    def _save_image(self, item: Delivered) -> Path:
        from engines.provenance.files import save_image

        folder = outputs_dir() / item.record.created_utc[:10]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmberError(f"Ember cannot make the folder {folder} for the image ({exc.strerror}).") from exc
        return save_image(item, folder / f"{item.record.output_id}.png")


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
