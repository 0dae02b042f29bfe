"""Engine processes: llama.cpp and onnxruntime run outside the window's process.

The Studio keeps one engine process per queue lane ("cpu", "gpu") and one for the safety
checkers that run models ("safety": the image classifier, the guard model, the tokenizers the
verifier needs). Each is started on its first call and again after it ends. A segfault,
an abort or an out-of-memory kill in native code ends only that process: the call raises
:class:`engines.errors.EngineCrashed`, a fresh process is started at once, and the window,
the queue and every store carry on. A call that does not stop within
:data:`CANCEL_GRACE_S` of its cancel has its process ended.

Tokens, steps and previews come back as small messages on a pipe (see engines/host/wire.py);
the Studio handles them on the thread that made the call, as it would an engine's own calls.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from engines.errors import (
    Cancelled,
    EmberError,
    EngineCrashed,
    OutOfMemoryError,
    UnexpectedError,
    describe_failure,
)
from engines.host.wire import LOADING, RUNNING, TOKEN, Call, EngineContext, EngineFactory, EngineFault, EngineInfo, Ran
from engines.jobs import CancelToken

log = logging.getLogger(__name__)

# A cancelled call that has not ended this long after its cancel has its engine process ended.
CANCEL_GRACE_S = 2.0
# How long a process that was asked to quit (or was killed) may take to be gone.
_JOIN_S = 5.0

EventSink = Callable[[str, Any], None]


class EngineHost:
    """One engine process: started on first use, restarted after it ends; one call at a time."""

    def __init__(self, name: str, context: EngineContext) -> None:
        self.name = name
        self._context = context
        self._mp = multiprocessing.get_context("spawn")  # no fork: the Studio's threads and locks stay behind
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._process: Any = None
        self._conn: Any = None
        self._ids = itertools.count(1)
        self.starts = 0
        self._closed = False

    # -- the process ------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The running engine process's id, or None when none runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    @property
    def busy(self) -> bool:
        """Whether a call is running now (another thread holds the host)."""
        if self._lock.acquire(blocking=False):
            self._lock.release()
            return False
        return True

    def start(self) -> None:
        """Start the engine process unless it runs; no model is loaded until the first call."""
        with self._lock:
            if self._closed:
                raise EmberError("Ember is closing; no new work is accepted.")
            if self._process is not None and self._process.is_alive():
                return
            self._reap()
            from engines.host import child

            parent_end, child_end = self._mp.Pipe(duplex=True)
            process = self._mp.Process(
                target=child.main, args=(child_end, self._context), name=f"ember-engine-{self.name}", daemon=True
            )
            process.start()
            child_end.close()
            self._process, self._conn = process, parent_end
            self.starts += 1

    def _reap(self) -> None:
        """Wait for an ended process (no zombie is left) and drop its pipe."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(_JOIN_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(_JOIN_S)
            self._process.close()
            self._process = None

    def kill(self) -> None:
        """End the engine process now (its models go with it); the next call starts a fresh one."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
        with self._lock:
            self._reap()

    def close(self) -> None:
        """Ask the process to quit, end it if it does not, and accept no more calls."""
        self._closed = True
        conn, process = self._conn, self._process
        if process is not None and process.is_alive() and conn is not None:
            try:
                self._send(("quit",))
            except OSError:
                pass
            process.join(1.0)
        if process is not None and process.is_alive():
            process.kill()
        acquired = self._lock.acquire(timeout=_JOIN_S)
        try:
            self._reap()
        finally:
            if acquired:
                self._lock.release()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            conn = self._conn
            if conn is None:
                raise OSError("no engine process")
            conn.send(message)

    # -- calls ------------------------------------------------------------------------------
    def call(
        self,
        call: Call,
        *,
        on_event: EventSink | None = None,
        cancel: CancelToken | None = None,
        what: str = "engine",
        model: str = "",
    ) -> Any:
        """Run ``call`` in the engine process and return its value.

        ``on_event(kind, data)`` gets the events of a run on this thread; if it raises (the
        safety filter stopping a stream), the run is cancelled and, once it has ended, that
        exception is raised. Raises what the engine raised (EmberError, Cancelled with the
        partial :class:`Ran`), Cancelled(None) when the process had to be ended for a cancel,
        and EngineCrashed when the process ended on its own.
        """
        with self._lock:
            self.start()
            call_id = next(self._ids)
            conn, process = self._conn, self._process
            try:
                self._send(("call", call_id, call))
            except OSError:
                return self._crashed(process, "loading", model, what)
            stop_asked: list[float] = []

            def ask_stop() -> None:
                if not stop_asked:
                    stop_asked.append(time.monotonic())
                    try:
                        self._send(("cancel", call_id))
                    except OSError:
                        pass

            remove = cancel.on_cancel(ask_stop) if cancel is not None else (lambda: None)
            phase, held = "loading", None
            try:
                while True:
                    wait = 0.5
                    if stop_asked:
                        left = stop_asked[0] + CANCEL_GRACE_S - time.monotonic()
                        if left <= 0:
                            log.warning("The %s did not stop within %.0f s; ending its process.", what, CANCEL_GRACE_S)
                            self.kill()
                            self.start()
                            if held is not None:
                                raise held
                            raise Cancelled(None)
                        wait = min(wait, left)
                    try:
                        ready = conn.poll(wait)
                        message = conn.recv() if ready else None
                    except (EOFError, OSError):
                        return self._crashed(process, phase, model, what)
                    if message is None:
                        if not process.is_alive():
                            return self._crashed(process, phase, model, what)
                        continue
                    if message[1] != call_id:
                        continue  # left over from a call that was given up
                    if message[0] == "event":
                        kind, data = message[2], message[3]
                        if kind in (LOADING, RUNNING):
                            phase = "loading" if kind == LOADING else "running"
                            model = data.name or model
                        if on_event is not None and held is None:
                            try:
                                on_event(kind, data)
                            except BaseException as exc:  # raised again once the run has ended
                                held = exc
                                ask_stop()
                        continue
                    if held is not None:
                        raise held
                    if message[0] == "done":
                        return message[2]
                    raise _local(message[2], what)
            finally:
                remove()

    def _crashed(self, process: Any, phase: str, model: str, what: str) -> Any:
        """The process ended on its own during a call: reap it, start a fresh one, raise EngineCrashed."""
        if process is not None:
            process.join(_JOIN_S)
        code = process.exitcode if process is not None else None
        log.error("The %s process (%s) ended during a call: exit code %s", what, self.name, code)
        self._reap()
        if not self._closed:
            self.start()  # "Ember restarted it": the next job finds a fresh process
        raise EngineCrashed(what, code, phase, model)


def _local(exc: BaseException, what: str) -> BaseException:
    """An exception from the engine process as the Studio raises it."""
    if isinstance(exc, EngineFault):
        log.error("Unexpected error in the %s:\n%s", what, exc.traceback)
        return UnexpectedError(describe_failure(exc.type_name, exc.message, what))
    return exc


LANES = ("cpu", "gpu", "safety")
FactoryLookup = Callable[[Any], EngineFactory]


class EnginePool:
    """The Studio's engine processes by name, and what is loaded in them."""

    def __init__(self, context: EngineContext, factory_for: FactoryLookup) -> None:
        self.context = context
        self._factory_for = factory_for
        self._hosts: dict[str, EngineHost] = {}
        self._lock = threading.Lock()

    def host(self, name: str) -> EngineHost:
        with self._lock:
            host = self._hosts.get(name)
            if host is None:
                host = self._hosts[name] = EngineHost(name, self.context)
            return host

    def hosts(self) -> list[EngineHost]:
        with self._lock:
            return list(self._hosts.values())

    def run(
        self,
        lane: str,
        options: Any,
        request: Any,
        *,
        on_event: EventSink | None = None,
        cancel: CancelToken | None = None,
        what: str = "engine",
    ) -> Ran:
        """Run ``request`` with the engine for ``options`` in the ``lane`` process; see :meth:`EngineHost.call`.

        When the model does not fit, idle models in the other engine processes are unloaded
        and the run is tried once more, unless text has streamed already (a second run would
        stream it again after it).
        """
        call = Call(self._factory_for(options), options, "run", (request,))
        streamed: list[bool] = []

        def watch(kind: str, data: Any) -> None:
            if kind == TOKEN and not streamed:
                streamed.append(True)
            if on_event is not None:
                on_event(kind, data)

        try:
            return self.host(lane).call(call, on_event=watch, cancel=cancel, what=what)
        except OutOfMemoryError:
            if streamed or not self._free_others(lane):
                raise
            return self.host(lane).call(call, on_event=on_event, cancel=cancel, what=what)

    def call(self, lane: str, options: Any, method: str, *args: Any, what: str = "engine", **kwargs: Any) -> Any:
        """Call ``method`` of the engine for ``options`` in the ``lane`` process and return its value."""
        call = Call(self._factory_for(options), options, method, args, kwargs)
        return self.host(lane).call(call, what=what)

    @contextmanager
    def use(self, options: Any, lane: str = "safety") -> Iterator[RemoteEngine]:
        """Yield a stand-in for the engine of ``options`` in the ``lane`` process, loaded (as ModelRegistry.use)."""
        info = self.call(lane, options, "info")
        yield RemoteEngine(self, lane, options, info)

    def _free_others(self, lane: str) -> bool:
        freed = False
        for host in self.hosts():
            if host.name == lane or host.pid is None or host.busy:
                continue
            host.call(Call(_no_factory, None, "unload_all"))
            freed = True
        return freed

    def loaded(self) -> list[tuple[Any, EngineInfo]]:
        """(load options, EngineInfo) of every model loaded in a running engine process."""
        found: list[tuple[Any, EngineInfo]] = []
        for host in self.hosts():
            if host.pid is not None:
                found += host.call(Call(_no_factory, None, "loaded"))
        return found

    def unload(self, options: Any) -> bool:
        """Unload the model for ``options`` wherever it is loaded and idle; returns whether one was."""
        done = False
        for host in self.hosts():
            if host.pid is not None:
                done = bool(host.call(Call(_no_factory, options, "unload"))) or done
        return done

    def settle(self, lane: str) -> None:
        """Wait until the ``lane`` process has done its idle work (what it does while a person reads)."""
        host = self.host(lane)
        if host.pid is not None:
            host.call(Call(_no_factory, None, "settle"))

    def unload_all(self) -> None:
        for host in self.hosts():
            if host.pid is not None:
                host.call(Call(_no_factory, None, "unload_all"))

    def close(self) -> None:
        """End every engine process (their models go with them)."""
        for host in self.hosts():
            host.close()


def _no_factory(options: Any, context: EngineContext) -> Any:
    raise EmberError("Internal error: a control call needs no engine.")


class RemoteEngine:
    """An engine in an engine process, as code written for a local engine uses it.

    Attributes come from the engine's ``details()`` (and its name, kind and backend); any
    other attribute is a method, called in the engine process.
    """

    def __init__(self, pool: EnginePool, lane: str, options: Any, info: EngineInfo) -> None:
        self._pool = pool
        self._lane = lane
        self.options = options
        self.info = info
        self.name, self.kind, self.backend = info.name, info.kind, info.backend

    def memory_estimate(self) -> int:
        return self.info.memory_bytes

    def __getattr__(self, name: str) -> Any:
        details = self.__dict__.get("info").details if "info" in self.__dict__ else {}
        if name in details:
            return details[name]
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._pool.call(self._lane, self.options, name, *args, **kwargs)

        return method
