"""The job queue: one worker thread per lane, priorities, cancel tokens, ordered events.

A caller submits a request and gets a :class:`Job` handle back at once. Each lane
(``cpu`` and ``gpu``) has its own worker thread, so a long job on one lane never
holds the other. Within a lane the highest priority runs first, and jobs of equal
priority run in the order they came.

Every job produces events in this order: ``queued``, ``started``, then any number of
``progress``/``token``/``preview``/``notice``, and exactly one terminal event:
``result``, ``blocked``, ``failed`` or ``cancelled``. Events are delivered by one
dispatcher thread, so listeners never run on a worker thread and a slow listener
never slows inference.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from engines.errors import Cancelled, EmberError, Failure, OutputBlocked, UnexpectedError, describe_unexpected

log = logging.getLogger(__name__)


class EventKind(str, Enum):
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    TOKEN = "token"
    PREVIEW = "preview"
    NOTICE = "notice"
    RESULT = "result"
    BLOCKED = "blocked"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({EventKind.RESULT, EventKind.BLOCKED, EventKind.FAILED, EventKind.CANCELLED})

LANES: tuple[str, ...] = ("cpu", "gpu")
_IDLE = object()  # posted to the dispatcher when the last running job ends


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job. ``seq`` counts from 0 within the job."""

    job_id: int
    seq: int
    kind: EventKind
    data: Any = None
    time_s: float = 0.0


Listener = Callable[[JobEvent], None]


class CancelToken:
    """Set once by whoever cancels; checked by engines between their smallest steps.

    Code that cannot poll it (the Studio waiting on an engine process) registers a callback
    with :meth:`on_cancel`, called once, on the cancelling thread.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a failing callback must not stop the cancel itself
                log.exception("A cancel callback failed")

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the token is cancelled (at once if it already is); returns a remover."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return remove
        callback()
        return lambda: None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the job was cancelled; return otherwise."""
        if self._event.is_set():
            raise Cancelled()


class _State(Enum):
    QUEUED = 1
    RUNNING = 2
    DONE = 3


class Job:
    """The handle a caller holds for a submitted request."""

    def __init__(
        self,
        job_id: int,
        request: Any,
        lane: str,
        priority: int,
        listener: Listener | None,
        post: Callable[[Job, JobEvent], None],
    ) -> None:
        self.id = job_id
        self.request = request
        self.lane = lane
        self.priority = priority
        self.cancel_token = CancelToken()
        self.created_s = time.monotonic()
        self._listener = listener
        self._post = post
        self._lock = threading.Lock()
        self._state = _State.QUEUED
        self._seq = 0
        self._terminal_sent = False
        self._done = threading.Event()
        self._final: JobEvent | None = None

    # -- for callers ---------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop. A queued job ends at once; a running one at the engine's next step."""
        self.cancel_token.cancel()
        with self._lock:
            if self._state is not _State.QUEUED:
                return
            self._state = _State.DONE
            self._emit_locked(EventKind.CANCELLED, None)

    def wait(self, timeout_s: float | None = None) -> JobEvent | None:
        """Block until the terminal event has been delivered to every listener.

        Returns that event, or None on time-out. Never call it from a listener: the
        dispatcher thread would wait for itself.
        """
        self._done.wait(timeout_s)
        return self._final

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ended(self) -> bool:
        """Whether the job has sent its terminal event (listeners may still be receiving it; see ``done``)."""
        return self._terminal_sent

    @property
    def started(self) -> bool:
        """Whether a worker has taken the job (or it ended before one did)."""
        return self._state is not _State.QUEUED

    @property
    def final_event(self) -> JobEvent | None:
        return self._final

    # -- for the worker and engines --------------------------------------------------
    def emit(self, kind: EventKind, data: Any = None) -> None:
        """Publish an event for this job; events after the terminal one are dropped."""
        with self._lock:
            self._emit_locked(kind, data)

    def _emit_locked(self, kind: EventKind, data: Any) -> None:
        if self._terminal_sent:
            return
        event = JobEvent(self.id, self._seq, kind, data, time.monotonic())
        self._seq += 1
        if kind.terminal:
            self._terminal_sent = True
        self._post(self, event)

    def _start(self) -> bool:
        with self._lock:
            if self._state is not _State.QUEUED:
                return False
            self._state = _State.RUNNING
            self._emit_locked(EventKind.STARTED, None)
            return True

    def _finish(self, kind: EventKind, data: Any) -> None:
        with self._lock:
            self._state = _State.DONE
            self._emit_locked(kind, data)

    def _delivered(self, event: JobEvent) -> None:
        if event.kind.terminal:
            self._final = event
            self._done.set()


@dataclass(order=True)
class _Entry:
    sort_key: tuple[int, int]
    job: Job = field(compare=False)


class _Lane:
    def __init__(self, name: str) -> None:
        self.name = name
        self.heap: list[_Entry] = []
        self.running: Job | None = None
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None


JobRunner = Callable[[Job], Any]
"""Runs one job on a worker thread and returns the result event's data.

It may raise :class:`Cancelled`, :class:`OutputBlocked`, :class:`EmberError` or
anything else; the queue turns each into the right terminal event.
"""


class JobQueue:
    """Priorities and cancellation over one worker thread per lane."""

    def __init__(
        self,
        runner: JobRunner,
        *,
        lanes: Iterable[str] = LANES,
        route: Callable[[Any], str] | None = None,
        what: str = "engine",
        on_idle: Callable[[], object] | None = None,
    ) -> None:
        """``on_idle`` is called on the dispatcher thread once the last running job's events are
        delivered and no job waits or runs on any lane (the Studio gives freed memory back then)."""
        self._runner = runner
        self._on_idle = on_idle
        self._route = route
        self._what = what
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self._lanes = {name: _Lane(name) for name in lanes}
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._events: queue.SimpleQueue[tuple[Job, JobEvent] | object | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._dispatcher = threading.Thread(target=self._dispatch, name="ember-events", daemon=True)
        self._dispatcher.start()
        for lane in self._lanes.values():
            lane.thread = threading.Thread(target=self._work, args=(lane,), name=f"ember-{lane.name}", daemon=True)
            lane.thread.start()

    # -- public ----------------------------------------------------------------------
    @property
    def lanes(self) -> tuple[str, ...]:
        return tuple(self._lanes)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event of every job; returns a function that unsubscribes."""
        with self._listeners_lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._listeners_lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return unsubscribe

    def submit(
        self,
        request: Any,
        *,
        priority: int = 0,
        lane: str | None = None,
        listener: Listener | None = None,
    ) -> Job:
        """Queue a request and return its handle at once.

        ``listener`` receives this job's events (before the global listeners).
        Raises RuntimeError after :meth:`shutdown`, ValueError for an unknown lane.
        """
        lane_name = lane or (self._route(request) if self._route else next(iter(self._lanes)))
        if lane_name not in self._lanes:
            raise ValueError(f"Unknown lane {lane_name!r}; this queue has {', '.join(self._lanes)}.")
        target = self._lanes[lane_name]
        job = Job(next(self._ids), request, lane_name, priority, listener, self._post)
        with self._close_lock:
            if self._closed:
                raise RuntimeError("The job queue has shut down; no new work is accepted.")
            with target.cond:
                job.emit(EventKind.QUEUED, {"lane": lane_name, "priority": priority})
                heapq.heappush(target.heap, _Entry((-priority, next(self._order)), job))
                target.cond.notify()
        return job

    def reject(self, request: Any, decision: Any, *, listener: Listener | None = None) -> Job:
        """Return a job that ends at once as ``blocked`` with ``decision``, without running.

        For requests refused at submission (a prompt the safety filter stops): the caller
        gets the same events as for any other job, so one code path shows the reason.
        """
        job = Job(next(self._ids), request, "none", 0, listener, self._post)
        with self._close_lock:
            if self._closed:
                raise RuntimeError("The job queue has shut down; no new work is accepted.")
            job.emit(EventKind.QUEUED, {"lane": "none", "priority": 0})
            job._finish(EventKind.BLOCKED, decision)
        return job

    def idle(self) -> bool:
        """Whether no job waits or runs on any lane."""
        for lane in self._lanes.values():
            with lane.cond:
                if lane.heap or lane.running is not None:
                    return False
        return True

    def pending(self, lane: str) -> int:
        """How many jobs wait on ``lane`` (cancelled ones may still be counted until skipped)."""
        with self._lanes[lane].cond:
            return len(self._lanes[lane].heap)

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Cancel everything, stop the threads and wait for them.

        Returns True when every thread has ended within ``timeout_s``.
        """
        with self._close_lock:
            if self._closed:
                return not self._dispatcher.is_alive()
            self._closed = True
        for lane in self._lanes.values():
            with lane.cond:
                waiting = [entry.job for entry in lane.heap]
                lane.heap.clear()
                running = lane.running
                lane.cond.notify_all()
            for job in waiting:
                job.cancel()
            if running is not None:
                running.cancel()
        deadline = time.monotonic() + timeout_s
        for lane in self._lanes.values():
            assert lane.thread is not None
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        self._events.put(None)
        self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        alive = [lane.thread for lane in self._lanes.values() if lane.thread and lane.thread.is_alive()]
        return not alive and not self._dispatcher.is_alive()

    # -- threads ---------------------------------------------------------------------
    def _post(self, job: Job, event: JobEvent) -> None:
        self._events.put((job, event))

    def _dispatch(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            if item is _IDLE:
                if self._on_idle is not None and self.idle():  # nothing came meanwhile
                    try:
                        self._on_idle()
                    except Exception:
                        log.exception("The queue's idle callback failed")
                continue
            job, event = item
            targets = [job._listener] if job._listener else []
            with self._listeners_lock:
                targets.extend(self._listeners)
            for listener in targets:
                try:
                    listener(event)
                except Exception:  # a broken listener must not silence the others
                    log.exception("An event listener failed on %s", event)
            job._delivered(event)

    def _work(self, lane: _Lane) -> None:
        while True:
            with lane.cond:
                while not lane.heap and not self._closed:
                    lane.cond.wait()
                if not lane.heap:
                    return
                job = heapq.heappop(lane.heap).job
                if not job._start():
                    continue  # cancelled while it waited
                lane.running = job
            try:
                self._run_one(job)
            finally:
                with lane.cond:
                    lane.running = None
            if self._on_idle is not None and self.idle():
                self._events.put(_IDLE)  # after the job's last event, so it runs once that is delivered

    def _run_one(self, job: Job) -> None:
        try:
            job.cancel_token.raise_if_cancelled()
            data = self._runner(job)
        except Cancelled as exc:
            job._finish(EventKind.CANCELLED, exc.partial)
        except OutputBlocked as exc:
            job._finish(EventKind.BLOCKED, exc.decision)
        except EmberError as exc:
            job._finish(EventKind.FAILED, Failure.of(exc))
        except Exception as exc:
            log.exception("Job %s failed", job.id)
            job._finish(EventKind.FAILED, Failure(describe_unexpected(exc, self._what), UnexpectedError.code))
        else:
            if job.cancel_token.cancelled and data is None:
                job._finish(EventKind.CANCELLED, None)
            else:
                job._finish(EventKind.RESULT, data)
