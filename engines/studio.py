"""The Studio: one queue, one pipeline, the engines and the stores, wired together.

The window, the command line, the benchmarks and the tests all make a Studio and
submit requests to it; none of them calls an engine directly.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from engines.conversations import ConversationStore
from engines.database import Database
from engines.documents.service import EMBED_LANE, Documents, EmbedTextsRequest, IndexFolderRequest
from engines.documents.service import LANE as DOCUMENTS_LANE
from engines.documents.watch import FolderWatch
from engines.errors import Cancelled, EmberError, EngineCrashed, EngineRestarted, OutputBlocked, describe_exit
from engines.heap import release_free_memory
from engines.host import EnginePool
from engines.host.wire import LOADING, NOTICE, PREVIEW, RUNNING, STEP, TOKEN, EngineContext, EngineFactory, Ran
from engines.jobs import EventKind, Job, JobQueue, Listener
from engines.library import Library
from engines.modalities import media_of, modality_for_options, modality_of
from engines.modality import Finished, Modality
from engines.models.downloads import DownloadRequest, DownloadResult, DownloadState, DownloadStore
from engines.paths import database_path
from engines.pending_jobs import PendingJob, PendingJobs
from engines.pipeline import OutputPipeline, OutputRecord, OutputSession, Stage, StageDecision
from engines.progress import Checking, Loading, Preview, Running, Step
from engines.provenance.keys import installation_key
from engines.provenance.stage import ProvenanceStage
from engines.provenance.verify import VerifyReport, VerifyRequest, verify_file
from engines.records import RecordStore
from engines.safety.audit import AuditLog
from engines.safety.filter import SafetyFilter, prompt_texts
from engines.safety.policy import Policy
from engines.safety.stage import SafetyStage
from engines.settings import SettingsStore
from engines.text.requests import ModelOptions

log = logging.getLogger(__name__)

RequestCheck = Callable[[Any], None]


@dataclass(frozen=True)
class QueuedDownload:
    """A download as the queue runs it: the request, its row in the downloads table, and its pause switch.

    The pause event travels with the job, so a pause set before the worker starts it is seen too.
    """

    PROMPTLESS: ClassVar[bool] = True  # a model to fetch, no text a person wrote

    download_id: int
    request: DownloadRequest
    pause: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


class JobProgress:
    """Turns what an engine process reports into the job's events, each through the pipeline.

    Runs on the worker thread. Streamed text goes into the (single) session, which shows
    what its watchers release; each preview is checked by its own image's session.
    """

    def __init__(self, job: Job, sessions: list[OutputSession]) -> None:
        self._job = job
        self._sessions = sessions
        self.info: Any = None  # the EngineInfo, once the engine reported it
        self.started_s = time.monotonic()
        self.running_s: float | None = None

    def on_event(self, kind: str, data: Any) -> None:
        job = self._job
        if kind == TOKEN:
            self._sessions[0].feed(data)
        elif kind == STEP:
            done, total = data
            elapsed = time.monotonic() - (self.running_s or self.started_s)
            eta = elapsed / done * (total - done) if done else None
            job.emit(EventKind.PROGRESS, Step(done, total, elapsed, eta))
        elif kind == PREVIEW:
            index, image = data
            shown = self._sessions[index].preview(image)
            if shown is not None:
                job.emit(EventKind.PREVIEW, Preview(index, shown))
        elif kind == NOTICE:
            job.emit(EventKind.NOTICE, data)
        elif kind == LOADING:
            job.emit(EventKind.PROGRESS, Loading(data.name))
        elif kind == RUNNING:
            self.info = data
            self.running_s = time.monotonic()
            job.emit(EventKind.PROGRESS, Running(data.name, data.backend))

    def timings(self) -> dict[str, float]:
        """When the job waited, and how long its model took to load (0 when it was loaded already)."""
        ran = self.running_s or time.monotonic()
        return {"queued_s": self.started_s - self._job.created_s, "load_s": ran - self.started_s}


def engine_factory_for(options: Any) -> EngineFactory:
    """The engine factory for load options: a modality's, or one of the safety checkers' and the verifier's.

    Raises EmberError for options no engine loads.
    """
    from engines.evaluation.clip import ClipOptions, make_clip_engine
    from engines.evaluation.perplexity import PerplexityOptions, make_perplexity_engine
    from engines.safety.image import ImageClassifierOptions, make_image_classifier
    from engines.safety.semantic import SemanticOptions, make_semantic_engine
    from engines.selftest import SystemOptions, make_system_engine
    from engines.text.vocab import VocabOptions, make_vocab_engine

    modality = modality_for_options(options)
    if modality is not None:
        return modality.make_engine
    if isinstance(options, ImageClassifierOptions):
        return make_image_classifier
    if isinstance(options, SemanticOptions):
        return make_semantic_engine
    if isinstance(options, VocabOptions):
        return make_vocab_engine
    if isinstance(options, SystemOptions):
        return make_system_engine
    if isinstance(options, PerplexityOptions):
        return make_perplexity_engine
    if isinstance(options, ClipOptions):
        return make_clip_engine
    raise EmberError(f"Ember has no engine for {type(options).__name__}.")


def _engine_context(text_watermark_key: bytes | None = None) -> EngineContext:
    return EngineContext(text_watermark_key=text_watermark_key, log_level=logging.getLogger().getEffectiveLevel())


_GUARD_CONTEXT_TOKENS = 4096


def _load_policy(settings: SettingsStore) -> Policy:
    saved = settings.get("safety.policy")
    return Policy.from_json(saved) if isinstance(saved, str) else Policy()


def _safety_filter(policy: Policy, audit: AuditLog, engines: EnginePool) -> SafetyFilter:
    """The filter whose models (image classifier, the meaning layer's embedder) run in ``engines``' safety process."""
    from engines.safety.image import RemoteImageSafety
    from engines.safety.semantic import SemanticLayer
    from engines.safety.text import TextSafety

    text = TextSafety(semantic=SemanticLayer.in_engine_process(engines))
    return SafetyFilter(policy, audit, text=text, image_factory=lambda: RemoteImageSafety(engines))


def open_safety_filter(db_path: Path | str | None = None) -> tuple[SafetyFilter, Callable[[], None]]:
    """Return the person's safety filter (their saved policy, the audit log) without a whole Studio, and a closer.

    For ``main.py check``. The guard model, if one is set, runs here too.
    """

    db = Database(db_path or database_path())
    settings = SettingsStore(db)
    engines = EnginePool(_engine_context(), engine_factory_for)
    safety = _safety_filter(_load_policy(settings), AuditLog(db), engines)
    guard = settings.get("safety.guard_model")
    if isinstance(guard, str) and guard:
        safety.guard = _guard_checker(engines, guard)

    def close() -> None:
        engines.close()
        db.close()

    return safety, close


def _guard_checker(engines: EnginePool, path: str) -> Any:
    from engines.safety.guard import GuardChecker
    from engines.text.gguf_header import read_gguf_header

    read_gguf_header(path)  # a clear ModelFileError for a missing or broken file, before anything loads
    return GuardChecker(engines, ModelOptions(path, context_tokens=_GUARD_CONTEXT_TOKENS)).check


class Studio:
    """Everything behind the window and the command line.

    Engines run in engine processes (:attr:`engines`): one per lane, and one for the safety
    checkers that run models; no inference library loads in the Studio's own process.
    """

    def __init__(self, db_path: Path | str | None = None, stages: Sequence[Stage] = ()) -> None:
        self.db = Database(db_path or database_path())
        self.settings = SettingsStore(self.db)
        self.records = RecordStore(self.db)
        self.conversations = ConversationStore(self.db)
        self.library = Library(self.db)
        # After a crash between a file and its row, repair adopts the file. It reads a folder a day (tens of
        # ms for 10,000 outputs), so it runs beside the start; it is safe beside outputs being added.
        self.library_repaired = threading.Event()
        self._repair = threading.Thread(target=self._repair_library, name="ember-library-repair", daemon=True)
        self._repair.start()
        self.pending = PendingJobs(self.db)
        self._last_run: list[PendingJob] = self.pending.orphaned()
        self.audit = AuditLog(self.db)
        self.key = installation_key()

        self.engines = EnginePool(_engine_context(self.key.derive("text-watermark")), engine_factory_for)
        self.registry = self.engines  # what is loaded where: loaded(), unload(), unload_all()
        self.safety = _safety_filter(_load_policy(self.settings), self.audit, self.engines)
        # Safety first, then the watermarks: no stage list a caller passes can go around them.
        self.pipeline = OutputPipeline((SafetyStage(self.safety), ProvenanceStage(self.key), *stages), [self.records])
        # Jobs that are not a modality's: reports about files, and model downloads.
        self._handlers: dict[type, Callable[[Job], Any]] = {VerifyRequest: self._run_verify}
        self._request_checks: list[RequestCheck] = [self._check_prompt]
        self._warmed = threading.Event()  # the safety filter's learned layers are loaded
        self._check_on_worker: set[int] = set()  # ids of requests the whole filter has yet to judge
        self._check_lock = threading.Lock()
        self._tokenizers: dict[str, Callable[[str], list[int]]] = {}
        guard = self.settings.get("safety.guard_model")
        self._guard_path: str | None = guard if isinstance(guard, str) and guard else None
        if self._guard_path:
            try:
                self.safety.guard = _guard_checker(self.engines, self._guard_path)
            except EmberError:
                log.warning("The guard model %s cannot be used any more; checking without it.", guard)
        self._gpu: bool | None = None
        self.downloads = DownloadStore(self.db)
        self._download_jobs: dict[int, Job] = {}
        self._handlers[QueuedDownload] = self._run_download
        # The person's documents (chat with your files): index runs are jobs of their own lane.
        self.documents = Documents.for_studio(self)
        self._handlers[IndexFolderRequest] = self.documents.run_job
        self._handlers[EmbedTextsRequest] = self.documents.run_embed_job
        # Downloads, index runs and texts to embed (the API's) get their own lanes, so a model can arrive
        # or a folder be read while another one generates, and an embedding waits for no index run.
        self.queue = JobQueue(
            self._run,
            route=self._route,
            lanes=("cpu", "gpu", "download", DOCUMENTS_LANE, EMBED_LANE),
            what="engine",
            on_idle=release_free_memory,  # what finished jobs freed goes back to the system (engines/heap.py)
        )
        # Folders a stopped run left half-read, and files changed since: brought up to date in the background.
        for refresh in self.documents.refresh_requests():
            self.submit(refresh)
        self.folder_watch = FolderWatch(self.documents, self.submit)  # and while Ember runs, as files change
        self.folder_watch.start()
        # The classifier takes about a second to load: load it now, off the caller's thread,
        # so the first prompt check at submission is as fast as the rest.
        self._warm_up = threading.Thread(target=self._warm, name="ember-safety-warmup", daemon=True)
        self._warm_up.start()

    def _repair_library(self) -> None:
        try:
            self.library.repair()
        except Exception as exc:  # a check beside the start must not stop it; the next start checks again
            log.warning("The library could not be checked at start: %s", exc)
        finally:
            self.library_repaired.set()

    def wait_warm(self, timeout_s: float | None = None) -> bool:
        """Wait for the start-up warm-up (the safety filter's models, the GPU probe); returns whether it is done."""
        self._warm_up.join(timeout_s)
        return not self._warm_up.is_alive()

    def _warm(self) -> None:
        from engines.hardware import gpus

        try:
            self.safety.warm_up()
        finally:
            self._warmed.set()
        self._gpu = bool(gpus())

    def _check_prompt(self, request: Any) -> None:
        """The safety filter's check at submission, on the caller's thread (the window's, often).

        In the first seconds after start the learned layers are still loading, and waiting for them
        here froze the window for up to a second (``bench window``). Until they are loaded, the word
        rules judge at submission (they load nothing) and the whole filter judges again on the
        worker, before the engine runs: nothing goes around it, and the window never waits.
        """
        if self._warmed.is_set():
            self.safety.check_request(request)
            return
        self.safety.check_request(request, rules_only=True)
        if prompt_texts(request):  # a request with no text a person wrote (Verify, a download) has nothing more
            with self._check_lock:
                self._check_on_worker.add(id(request))

    def _checked_later(self, request: Any) -> bool:
        with self._check_lock:
            if id(request) in self._check_on_worker:
                self._check_on_worker.discard(id(request))
                return True
            return False

    # -- settings ------------------------------------------------------------------------------
    def set_policy(self, policy: Policy, *, save: bool = True) -> None:
        """Apply a safety policy at once (to the next check) and save it (the window saves off its thread)."""
        self.safety.policy = policy
        if save:
            self.save_safety_settings()

    def save_safety_settings(self) -> None:
        """Write the policy and the guard model in use to the settings store."""
        self.settings.set("safety.policy", self.safety.policy.to_json())
        self.settings.set("safety.guard_model", self._guard_path or "")

    def guard_model(self) -> str | None:
        """The guard model's path, or None when none is set."""
        return self._guard_path

    def set_guard_model(self, path: str | None, *, save: bool = True) -> None:
        """Use a Llama Guard 3 / ShieldGemma GGUF as an extra judge (None: no guard model), and save the choice.

        Raises EmberError (ModelFileError) for a missing or broken file; nothing changes then.
        """
        if path:
            self.safety.guard = _guard_checker(self.engines, path)
        else:
            self.safety.guard = None
        self._guard_path = path or None
        if save:
            self.save_safety_settings()

    def add_request_check(self, check: RequestCheck) -> None:
        """Run ``check`` on every request at submission; it raises OutputBlocked to refuse one."""
        self._request_checks.append(check)

    def submit(self, request: Any, *, priority: int = 0, listener: Listener | None = None) -> Job:
        """Queue a request; its events go to ``listener`` and to every subscriber.

        A request the checks refuse (an unsafe prompt) still returns a job: it ends at
        once as ``blocked`` with the reason, and its refusal is recorded. (In the first seconds
        after start, what only the learned layers catch is refused on the worker instead, as the
        job starts: see :meth:`_check_prompt`.)
        """
        return self._submit(request, priority, listener, None)

    def _submit(self, request: Any, priority: int, listener: Listener | None, kept: str | None) -> Job:
        """Submit, keeping the request in ``pending_jobs`` while it waits or runs: in a new row, or in row
        ``kept`` (a job resumed after a crash, whose row this process takes over)."""
        if type(request) not in self._handlers and modality_of(request) is None:
            raise EmberError(f"Ember does not know how to run a {type(request).__name__}.")
        try:
            for check in self._request_checks:
                check(request)
        except OutputBlocked as blocked:
            if kept:
                self.pending.remove(kept)
            job = self.queue.reject(request, blocked.decision, listener=listener)
            decisions = (blocked.decision,) if isinstance(blocked.decision, StageDecision) else ()
            self.pipeline.record_refusal(job.id, media_of(request), decisions)
            return job
        if isinstance(request, IndexFolderRequest) and listener is None and not kept:
            waiting = self.documents.queued_job(request.folder)
            if waiting is not None:  # the run that waits will see the folder as it is then
                return waiting
        # Written before it is queued, removed at its end: what a crash interrupts is offered at the next start.
        key = self.pending.claim(kept) if kept else self.pending.add(request, priority)
        try:
            job = self.queue.submit(
                request, priority=priority, listener=self.pending.removed_when_done(key, listener) if key else listener
            )
        except BaseException:
            if key:
                self.pending.remove(key)
            raise
        if isinstance(request, IndexFolderRequest):
            self.documents.track(job)
        return job

    # -- after a crash -------------------------------------------------------------------------
    def pending_from_last_run(self) -> list[Any]:
        """The requests that were queued or running when an Ember process ended without closing (a crash, a
        kill), oldest first; offered until :meth:`resume_pending` or :meth:`discard_pending`.

        Requests holding pixels or samples in memory (not a file path) are not kept, so not offered.
        """
        return [pending.request for pending in self._last_run]

    def resume_pending(self, requests: Sequence[Any] | None = None, *, listener: Listener | None = None) -> list[Job]:
        """Queue again the requests of :meth:`pending_from_last_run` (all, or those given) and forget the rest.

        Returns the new jobs; a request the checks refuse now ends blocked, as any submission.
        """
        last_run, self._last_run = self._last_run, []
        chosen = [p for p in last_run if requests is None or any(p.request is r or p.request == r for r in requests)]
        keys = {p.key for p in chosen}
        for pending in last_run:
            if pending.key not in keys:
                self.pending.remove(pending.key)
        # Each keeps its row (now this process's): a crash in the middle offers every one again, none twice.
        return [self._submit(p.request, p.priority, listener, p.key) for p in chosen]

    def discard_pending(self) -> None:
        """Forget the requests of :meth:`pending_from_last_run` (the person chose not to resume them)."""
        for pending in self._last_run:
            self.pending.remove(pending.key)
        self._last_run = []

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
        """Unload every idle model; returns {model name: estimated bytes freed}.

        The safety filter's own checkers stay loaded: they are part of every check, not a choice.
        """
        freed: dict[str, int] = {}
        for key, info in self.engines.loaded():
            if info.kind != "safety" and self.engines.unload(key):
                freed[info.name] = info.memory_bytes
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
        self.folder_watch.stop(timeout_s)
        ended = self.queue.shutdown(timeout_s)
        for job in interrupted:
            self.downloads.mark(job.request.download_id, DownloadState.QUEUED)
        self._warm_up.join(timeout_s)
        self._repair.join(timeout_s)
        self.engines.close()
        self.db.close()
        return ended

    # -- on the worker threads ---------------------------------------------------------------
    def _route(self, request: Any) -> str:
        if isinstance(request, QueuedDownload):
            return "download"
        if isinstance(request, IndexFolderRequest):
            return DOCUMENTS_LANE
        if isinstance(request, EmbedTextsRequest):
            return EMBED_LANE
        modality = modality_of(request)
        device = modality.device_of(request) if modality is not None else "cpu"
        if device == "gpu" or (device == "auto" and self._has_gpu()):
            return "gpu"
        return "cpu"

    def _has_gpu(self) -> bool:
        # Found by the warm-up thread (nvidia-smi can take seconds); "auto" means the CPU lane until then.
        return bool(self._gpu)

    def _run(self, job: Job) -> Any:
        if self._checked_later(job.request):  # submitted while the learned layers loaded: they judge it now
            job.emit(EventKind.PROGRESS, Checking())
            self.safety.check_request(job.request, job_id=job.id)
        if self.safety.guard is not None and not isinstance(
            job.request, (VerifyRequest, QueuedDownload, IndexFolderRequest, EmbedTextsRequest)
        ):
            # The guard model is too slow for submission time: it judges the prompt here, before the engine runs.
            job.emit(EventKind.PROGRESS, Checking())
            self.safety.check_request(job.request, guard_only=True, job_id=job.id)
        handler = self._handlers.get(type(job.request))
        if handler is not None:
            return handler(job)
        modality = modality_of(job.request)
        assert modality is not None  # submit() let only known requests in
        return self._run_modality(job, modality)

    def _run_modality(self, job: Job, modality: Modality) -> Any:
        """The one run path: the engine (in the lane's engine process), then every output through the pipeline.

        Text streams through its session as it is made; each image of a batch has its own
        session (its previews are checked by it). What the pipeline delivers goes to the
        modality's sink. A cancel keeps what was made (a partial reply); a crash of the engine
        process keeps it too, and the job fails with a message that says what happened.
        """
        request = job.request
        on_text = (lambda text: job.emit(EventKind.TOKEN, text)) if modality.media == "text" else None
        count = modality.outputs(request)
        sessions = [self.pipeline.open(job.id, modality.media, request, on_text=on_text) for _ in range(count)]
        progress = JobProgress(job, sessions)
        options = modality.options_of(request)
        try:
            ran: Ran = self.engines.run(
                job.lane, options, request, on_event=progress.on_event, cancel=job.cancel_token, what=modality.title
            )
        except Cancelled as stop:
            partial = stop.partial if isinstance(stop.partial, Ran) else None
            if partial is not None and partial.output is not None:
                finished = modality.split(request, partial)
            else:  # the process was ended for not stopping: keep what had arrived
                finished = modality.salvage(request, sessions, progress.info)
            raise Cancelled(self._deliver(modality, request, sessions, finished, progress, partial=True)) from None
        except EngineCrashed as crash:
            finished = modality.salvage(request, sessions, progress.info)
            try:
                self._deliver(modality, request, sessions, finished, progress, partial=True)
            except OutputBlocked:
                pass  # an unsafe partial reply is not kept; the failure is still what the person must hear
            doing = "loading" if crash.phase == "loading" else "generating with"
            model = crash.model or getattr(progress.info, "name", "") or "the model"
            raise EngineRestarted(
                f"The {modality.title} stopped unexpectedly while {doing} {model} ({describe_exit(crash.exit_code)}). "
                f"Ember restarted it; {modality.lost}"
            ) from None
        return self._deliver(modality, request, sessions, modality.split(request, ran), progress, partial=False)

    def _deliver(
        self,
        modality: Modality,
        request: Any,
        sessions: list[OutputSession],
        finished: list[Finished],
        progress: JobProgress,
        *,
        partial: bool,
    ) -> Any:
        """Finish each output through its session and hand the delivered ones to the sink; None when none were.

        Raises the first OutputBlocked when every output was withheld.
        """
        delivered, withheld = [], []
        first_block: OutputBlocked | None = None
        base = progress.timings()
        for session, (output, provenance, timings) in zip(sessions, finished, strict=False):
            try:
                delivered.append(session.finish(output, provenance, {**base, **timings}, partial=partial))
            except OutputBlocked as blocked:
                first_block = first_block or blocked
                withheld.append(getattr(blocked.decision, "reason", "") or str(blocked))
        if not delivered:
            if first_block is not None:
                raise first_block
            return None
        return modality.sink(self, request, delivered, withheld)

    def _run_verify(self, job: Job) -> list[VerifyReport]:
        paths = job.request.paths
        reports = []
        for done, path in enumerate(paths, 1):
            job.cancel_token.raise_if_cancelled()
            reports.append(
                verify_file(path, self.key, find_records=self._find_records, text_tokenizers=self._text_tokenizers)
            )
            job.emit(EventKind.PROGRESS, Step(done, len(paths)))
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
        from engines.text.vocab import VocabOptions

        paths = [str(m.path()) for m in EMBEDDED_TEXT_MODELS if m.installed]
        paths += [r.provenance.model_path for r in self.records.recent(200) if r.kind == "text"]
        for path in dict.fromkeys(paths):
            if path and path not in self._tokenizers and Path(path).exists():
                options = VocabOptions(path)
                try:
                    self.engines.call("safety", options, "load", what="verifier")
                except EmberError:
                    continue
                self._tokenizers[path] = functools.partial(self.engines.call, "safety", options, "tokenize")
        return list(self._tokenizers.values())
