"""The bridge: queue events become Qt signals on the GUI thread, and nothing else.

A panel sends work off in one readable line and never touches a thread::

    self.bridge.op(request, parent=self).on_token(self._append).success(self._done).run()
    self.bridge.background(lambda: store.create(title), parent=self).success(self._created).run()

Every callback runs on the GUI thread, in the order the job's events happened. A job that
fails, is blocked by the safety filter or is cancelled gets the shared default (a calm
notice in the panel: ``parent.show_notice``) unless the panel said what to do instead.
Work for the stores (creating a conversation, deleting a message) goes to ``background``:
one worker thread runs it in the order it was asked for, so no store is written on the
GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from PySide6.QtCore import QObject, Qt, Signal

from engines.jobs import EventKind, Job, JobEvent
from engines.studio import Studio

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]


class NoticeBoard(Protocol):
    """Where a panel shows the shared defaults for a job that did not give a result."""

    def show_notice(self, text: str, *, error: bool = False, decision: Any = None) -> None:
        """Show ``text`` calmly in the panel; ``decision`` is the safety filter's, for a blocked job."""


def blocked_reason(decision: Any) -> str:
    """Return the sentence to show for a ``blocked`` event's data (a StageDecision, or anything).

    The safety stage writes a full sentence (what was stopped, the category, what to
    do); a decision without one gets a calm sentence made from its category.
    """
    from engines.safety.policy import Category

    reason = str(getattr(decision, "reason", "") or "").strip()
    if reason:
        return reason
    category = str(getattr(decision, "category", "") or "")
    try:
        label = f" ({Category(category).label})"
    except ValueError:
        label = f" ({category})" if category else ""
    return f"This was stopped by the safety filter{label}. You can rephrase, or change the level in Settings."


class JobOp:
    """Callbacks for one job, chained; each receives the event's data.

    Made by :meth:`EventBridge.op` (submitted by :meth:`run`) or :meth:`EventBridge.track`.
    """

    def __init__(self, job: Job | None, parent: NoticeBoard | None = None) -> None:
        self.job: Job = job  # type: ignore[assignment]  # set by run() for an op made by EventBridge.op
        self._parent = parent
        self._callbacks: dict[EventKind, list[Callback]] = {}
        self.events: list[JobEvent] = []
        self._submit: Callable[[JobOp], Job] | None = None

    def on(self, kind: EventKind, callback: Callback) -> JobOp:
        self._callbacks.setdefault(kind, []).append(callback)
        return self

    def on_started(self, callback: Callback) -> JobOp:
        return self.on(EventKind.STARTED, callback)

    def on_progress(self, callback: Callback) -> JobOp:
        return self.on(EventKind.PROGRESS, callback)

    def on_token(self, callback: Callback) -> JobOp:
        return self.on(EventKind.TOKEN, callback)

    def on_preview(self, callback: Callback) -> JobOp:
        return self.on(EventKind.PREVIEW, callback)

    def on_notice(self, callback: Callback) -> JobOp:
        return self.on(EventKind.NOTICE, callback)

    def on_result(self, callback: Callback) -> JobOp:
        return self.on(EventKind.RESULT, callback)

    def on_blocked(self, callback: Callback) -> JobOp:
        return self.on(EventKind.BLOCKED, callback)

    def on_failed(self, callback: Callback) -> JobOp:
        return self.on(EventKind.FAILED, callback)

    def on_cancelled(self, callback: Callback) -> JobOp:
        return self.on(EventKind.CANCELLED, callback)

    success = on_result
    failure = on_failed

    def on_finished(self, callback: Callable[[JobEvent], None]) -> JobOp:
        """Called with the terminal event, whatever it is, after its own callbacks."""
        self._callbacks.setdefault(_FINISHED, []).append(callback)  # type: ignore[arg-type]
        return self

    def run(self) -> JobOp:
        """Submit the request (for an op made by :meth:`EventBridge.op`); returns this op.

        Raises EmberError (or RuntimeError after shutdown) as ``Studio.submit`` does, before any callback.
        """
        if self._submit is not None and self.job is None:
            self.job = self._submit(self)
        return self

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _deliver(self, event: JobEvent) -> None:
        callbacks = self._callbacks.get(event.kind, ())
        for callback in callbacks:
            callback(event.data)
        if not callbacks and self._parent is not None:
            self._default(event)
        if event.kind.terminal:
            for callback in self._callbacks.get(_FINISHED, ()):  # type: ignore[call-overload]
                callback(event)

    def _default(self, event: JobEvent) -> None:
        """The shared way to show a job that ended without a result, when the panel gave none of its own."""
        assert self._parent is not None
        if event.kind is EventKind.FAILED:
            self._parent.show_notice(str(event.data), error=True)
        elif event.kind is EventKind.BLOCKED:
            self._parent.show_notice(blocked_reason(event.data), decision=event.data)
        elif event.kind is EventKind.CANCELLED and event.data is None:
            self._parent.show_notice("Stopped before anything was made.")


_FINISHED = object()


class BackgroundOp:
    """A piece of work off the GUI thread (a store write, an engine-process call) and what to do with its result."""

    def __init__(self, bridge: EventBridge, work: Callable[[], Any], parent: NoticeBoard | None) -> None:
        self._bridge = bridge
        self._work = work
        self._parent = parent
        self._success: list[Callback] = []
        self._failure: list[Callback] = []
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def success(self, callback: Callback) -> BackgroundOp:
        self._success.append(callback)
        return self

    def failure(self, callback: Callback) -> BackgroundOp:
        self._failure.append(callback)
        return self

    def run(self) -> BackgroundOp:
        """Queue the work behind every background op asked for before it."""
        self._bridge._background(self)
        return self

    def _finish(self) -> None:
        if self.error is None:
            for callback in self._success:
                callback(self.result)
        elif self._failure:
            for callback in self._failure:
                callback(self.error)
        elif self._parent is not None:
            self._parent.show_notice(str(self.error), error=True)
        else:
            log.error("Background work failed: %s", self.error)


class EventBridge(QObject):
    """Subscribes to the Studio's queue and re-emits every event on the GUI thread."""

    event = Signal(object)  # JobEvent
    job_added = Signal(object)  # JobOp of every job submitted or tracked here (for the queue view)

    def __init__(self, studio: Studio, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self._ops: dict[int, JobOp] = {}
        self._relay.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        self._background_done.connect(self._on_background_done, Qt.ConnectionType.QueuedConnection)
        self._unsubscribe = studio.subscribe(self._relay.emit)
        # One thread, so store writes happen in the order the panels asked for them.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-background")
        self._detached = False

    _relay = Signal(object)  # from the dispatcher thread; queued onto the GUI thread
    _background_done = Signal(object)  # a BackgroundOp, from the worker thread

    def op(self, request: Any, *, parent: NoticeBoard | None = None, priority: int = 0) -> JobOp:
        """The op for ``request``, not yet submitted: chain its callbacks, then :meth:`JobOp.run`."""
        op = JobOp(None, parent)

        def submit(this: JobOp) -> Job:
            job = self.studio.submit(request, priority=priority)
            this.job = job
            self._ops[job.id] = this
            self.job_added.emit(this)
            return job

        op._submit = submit
        return op

    def submit(self, request: Any, *, priority: int = 0) -> JobOp:
        """Queue ``request`` now and return its JobOp for chaining callbacks (no shared defaults)."""
        return self.op(request, priority=priority).run()

    def background(self, work: Callable[[], Any], *, parent: NoticeBoard | None = None) -> BackgroundOp:
        """The op for ``work`` (run off the GUI thread, after earlier background work): chain, then ``run()``."""
        return BackgroundOp(self, work, parent)

    def track(self, job: Job) -> JobOp:
        """Return the JobOp of a job made elsewhere (``studio.download``), for chaining callbacks.

        Call it on the GUI thread as soon as the job exists: its events reach the GUI thread
        from the next turn of the event loop, so none is missed. A job tracked twice gets the
        same JobOp.
        """
        op = self._ops.get(job.id)
        if op is None:
            op = JobOp(job)
            self._ops[job.id] = op
            self.job_added.emit(op)
        return op

    def detach(self) -> None:
        """Stop receiving events and finish the background work asked for (before the Studio closes)."""
        self._unsubscribe()
        self._detached = True
        self._worker.shutdown(wait=True)

    def _background(self, op: BackgroundOp) -> None:
        def work() -> None:
            try:
                op.result = op._work()
            except Exception as exc:  # shown on the GUI thread, as the panel says
                op.error = exc
            op.done.set()
            self._background_done.emit(op)

        if self._detached:  # the window is closing: a callback asked for more work; none is done
            op.error = RuntimeError("Ember is closing")
            op.done.set()
            return
        self._worker.submit(work)

    def _on_background_done(self, op: BackgroundOp) -> None:
        op._finish()

    def _on_event(self, event: JobEvent) -> None:
        op = self._ops.get(event.job_id)
        if op is not None:
            op.events.append(event)
            op._deliver(event)
            if event.kind.terminal:
                del self._ops[event.job_id]
        self.event.emit(event)
