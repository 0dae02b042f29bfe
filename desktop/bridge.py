"""The bridge: queue events become Qt signals on the GUI thread, and nothing else.

A panel sends work off like this and never touches a thread::

    self.bridge.submit(request).on_token(self._append).on_result(self._done).on_failed(self._error)

Every callback runs on the GUI thread, in the order the job's events happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from engines.jobs import EventKind, Job, JobEvent
from engines.studio import Studio

Callback = Callable[[Any], None]


class JobOp:
    """Callbacks for one job, chained; each receives the event's data."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._callbacks: dict[EventKind, list[Callback]] = {}
        self.events: list[JobEvent] = []

    def on(self, kind: EventKind, callback: Callback) -> JobOp:
        self._callbacks.setdefault(kind, []).append(callback)
        return self

    def on_started(self, callback: Callback) -> JobOp:
        return self.on(EventKind.STARTED, callback)

    def on_progress(self, callback: Callback) -> JobOp:
        return self.on(EventKind.PROGRESS, callback)

    def on_token(self, callback: Callback) -> JobOp:
        return self.on(EventKind.TOKEN, callback)

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

    def on_finished(self, callback: Callable[[JobEvent], None]) -> JobOp:
        """Called with the terminal event, whatever it is, after its own callbacks."""
        self._callbacks.setdefault(_FINISHED, []).append(callback)  # type: ignore[arg-type]
        return self

    def cancel(self) -> None:
        self.job.cancel()

    def _deliver(self, event: JobEvent) -> None:
        for callback in self._callbacks.get(event.kind, ()):
            callback(event.data)
        if event.kind.terminal:
            for callback in self._callbacks.get(_FINISHED, ()):  # type: ignore[call-overload]
                callback(event)


_FINISHED = object()


class EventBridge(QObject):
    """Subscribes to the Studio's queue and re-emits every event on the GUI thread."""

    event = Signal(object)  # JobEvent
    job_added = Signal(object)  # JobOp of every job submitted or tracked here (for the queue view)

    def __init__(self, studio: Studio, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self._ops: dict[int, JobOp] = {}
        self._relay.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        self._unsubscribe = studio.subscribe(self._relay.emit)

    _relay = Signal(object)  # from the dispatcher thread; queued onto the GUI thread

    def submit(self, request: Any, *, priority: int = 0) -> JobOp:
        """Queue ``request`` and return its JobOp for chaining callbacks."""
        return self.track(self.studio.submit(request, priority=priority))

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
        """Stop receiving events (before the Studio closes)."""
        self._unsubscribe()

    def _on_event(self, event: JobEvent) -> None:
        op = self._ops.get(event.job_id)
        if op is not None:
            op.events.append(event)
            op._deliver(event)
            if event.kind.terminal:
                del self._ops[event.job_id]
        self.event.emit(event)
