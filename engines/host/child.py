"""The engine process: where llama.cpp and onnxruntime run, so a crash in them ends only this process.

The Studio starts it (engines/host/__init__.py) with one end of a pipe. A reader thread
takes messages off the pipe, so a cancel reaches the running call at once; the main
thread runs one call at a time. Models stay loaded between calls in a
:class:`engines.registry.ModelRegistry` and are loaded lazily, on their first call.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import traceback
from typing import Any

from engines.errors import Cancelled, EmberError, OutputBlocked
from engines.host.wire import (
    LOADING,
    NOTICE,
    PREVIEW,
    RUNNING,
    STEP,
    TOKEN,
    Call,
    EngineContext,
    EngineFactory,
    EngineFault,
    EngineInfo,
    Ran,
)
from engines.jobs import CancelToken

log = logging.getLogger("engines.host")


class _Progress:
    """The Progress an engine gets in this process: each call becomes one message to the Studio."""

    def __init__(self, send: Any, call_id: int, request: Any) -> None:
        self._send = send
        self._id = call_id
        self._previews = bool(getattr(request, "preview", False))

    def token(self, text: str) -> None:
        self._send(("event", self._id, TOKEN, text))

    def step(self, done: int, total: int) -> None:
        self._send(("event", self._id, STEP, (done, total)))

    def notice(self, message: str) -> None:
        self._send(("event", self._id, NOTICE, message))

    def preview(self, image: Any, index: int = 0) -> None:
        self._send(("event", self._id, PREVIEW, (index, image)))

    def wants_preview(self) -> bool:
        return self._previews


class EngineProcess:
    """The state of one engine process: its connection, its models and the call that runs."""

    def __init__(self, conn: Any, context: EngineContext) -> None:
        from engines.registry import ModelRegistry

        self.conn = conn
        self.context = context
        self.inbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.tokens: dict[int, CancelToken] = {}
        self.tokens_lock = threading.Lock()
        self.factories: dict[type, EngineFactory] = {}
        self.registry = ModelRegistry(lambda options: self.factories[type(options)](options, context))
        # Engines with work to do while nothing waits (a text engine making its last reply reusable).
        self.idle_work: list[Any] = []

    def idle_step(self) -> None:
        """One short piece of an engine's idle work; between pieces, a new call goes first."""
        options = self.idle_work[0]
        loaded = dict(self.registry.loaded())
        engine = loaded.get(options)
        try:
            more = engine is not None and bool(engine.idle())
        except Exception:  # idle work is an optimisation: its failure must not end the process
            log.exception("Idle work of %s failed", getattr(engine, "name", options))
            more = False
        if not more:
            self.idle_work.pop(0)

    def send(self, message: tuple[Any, ...]) -> None:
        self.conn.send(message)

    def read(self) -> None:
        """The reader thread: cancels act at once, everything else waits its turn on the main thread."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self.inbox.put(None)  # the Studio is gone: stop
                return
            if message[0] == "cancel":
                with self.tokens_lock:
                    token = self.tokens.get(message[1])
                if token is not None:
                    token.cancel()
                continue
            if message[0] == "quit":
                self.inbox.put(None)
                return
            if message[0] == "call":
                with self.tokens_lock:
                    self.tokens[message[1]] = CancelToken()
            self.inbox.put(message)

    def serve(self) -> None:
        while True:
            if self.idle_work and self.inbox.empty():
                self.idle_step()
                continue
            message = self.inbox.get()
            if message is None:
                return
            _, call_id, call = message
            with self.tokens_lock:
                cancel = self.tokens[call_id]
            try:
                value = self.handle(call_id, call, cancel)
            except BaseException as exc:  # every failure goes back to the Studio, none ends the process
                self.send(("error", call_id, _portable(exc)))
            else:
                self.send(("done", call_id, value))
            finally:
                with self.tokens_lock:
                    self.tokens.pop(call_id, None)

    def handle(self, call_id: int, call: Call, cancel: CancelToken) -> Any:
        if call.method == "loaded":
            return [(options, EngineInfo.of(engine)) for options, engine in self.registry.loaded()]
        if call.method == "unload":
            return self.registry.unload(call.options)
        if call.method == "unload_all":
            self.registry.unload_all()
            return None
        if call.method == "settle":  # finish all idle work now (benchmarks: the pause a person makes)
            while self.idle_work:
                self.idle_step()
            return None
        self.factories[type(call.options)] = call.factory

        def loading(engine: Any) -> None:
            self.send(("event", call_id, LOADING, EngineInfo.of(engine)))

        with self.registry.use(call.options, on_loading=loading) as engine:
            if call.method == "info":
                return EngineInfo.of(engine)
            if call.method != "run":
                return getattr(engine, call.method)(*call.args, **call.kwargs)
            request = call.args[0]
            info = EngineInfo.of(engine)
            self.send(("event", call_id, RUNNING, info))
            if hasattr(engine, "idle") and call.options not in self.idle_work:
                self.idle_work.append(call.options)
            try:
                output = engine.run(request, _Progress(self.send, call_id, request), cancel)
            except Cancelled as stop:
                partial = stop.partial
                provenance = engine.provenance(request, partial) if partial is not None else None
                raise Cancelled(Ran(partial, provenance, info)) from None
            return Ran(output, engine.provenance(request, output), info)


def _portable(exc: BaseException) -> BaseException:
    """Return ``exc`` if it survives pickling as itself, else an EngineFault holding its story."""
    if isinstance(exc, (EmberError, Cancelled, OutputBlocked)):
        return exc
    log.error("Unexpected error in the engine process", exc_info=exc)
    return EngineFault(type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)))


def _prepare_native_libraries() -> None:
    # A CUDA build of llama.cpp segfaults at model load when numpy or onnxruntime brought their own
    # libstdc++ first; making the system's global before anything else loads avoids it.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass


def main(conn: Any, context: EngineContext) -> None:
    """The engine process's entry point (multiprocessing's spawn target)."""
    # Ctrl+C in a terminal reaches the whole process group: the Studio decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # On an abort ggml would attach gdb to print a backtrace (about a second); the exit code says enough.
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    logging.basicConfig(level=context.log_level, format="ember engine: %(name)s: %(message)s")
    logging.getLogger("engines.llama_cpp").setLevel(max(context.log_level, logging.ERROR))
    _prepare_native_libraries()
    # The Studio starts engine processes as daemons (they go when it goes); an engine process may
    # still start a short-lived process of its own (the llama.cpp CPU check) and waits for it.
    multiprocessing.current_process().daemon = False
    process = EngineProcess(conn, context)
    reader = threading.Thread(target=process.read, name="ember-engine-reader", daemon=True)
    reader.start()
    try:
        process.serve()
    finally:
        # No interpreter shutdown: a native library's destructors could crash or hang on the way out.
        os._exit(0)
