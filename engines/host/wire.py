"""What crosses the pipe between the Studio and an engine process.

Messages are tuples pickled by ``multiprocessing.connection`` (numpy arrays travel as
their raw bytes): one small message a token or a step, never the whole state.

Studio to engine: ``("call", id, Call)``, ``("cancel", id)``, ``("quit",)``.
Engine to Studio: ``("event", id, kind, data)`` while a call runs, then exactly one of
``("done", id, value)`` or ``("error", id, exception)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engines.pipeline import Provenance

# Event kinds an engine process sends while a call runs.
LOADING = "loading"  # data: EngineInfo of the engine that starts to load
RUNNING = "running"  # data: EngineInfo, once the model is loaded and the request starts
TOKEN = "token"  # data: str
STEP = "step"  # data: (done, total)
NOTICE = "notice"  # data: str
PREVIEW = "preview"  # data: (index, HxWx3 uint8 array)


@dataclass(frozen=True)
class EngineContext:
    """What every engine of one engine process is made with.

    ``text_watermark_key``: text engines sample with the watermark keyed by it (None: unmarked).
    """

    text_watermark_key: bytes | None = None
    log_level: int = 30


EngineFactory = Callable[[Any, EngineContext], Any]
"""Makes a (not yet loaded) engine for load options; a module-level function, so it pickles by name."""


@dataclass(frozen=True)
class Call:
    """One call into an engine process.

    ``method`` "run" runs ``args[0]`` as a request with progress events and returns a
    :class:`Ran`; any other name calls that method of the engine for ``options`` with
    ``args`` and ``kwargs`` and returns its value. ``factory`` makes the engine if the
    process has none for ``options`` yet.
    """

    factory: EngineFactory
    options: Any
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineInfo:
    """What the Studio knows of an engine that lives in another process."""

    name: str
    kind: str
    backend: str
    memory_bytes: int
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, engine: Any) -> EngineInfo:
        details = getattr(engine, "details", None)
        return cls(
            name=str(getattr(engine, "name", type(engine).__name__)),
            kind=str(getattr(engine, "kind", "")),
            backend=str(getattr(engine, "backend", "")),
            memory_bytes=int(engine.memory_estimate()),
            details=dict(details()) if callable(details) else {},
        )


@dataclass(frozen=True, eq=False)
class Ran:
    """What a run returns: the engine's raw output, what made it, and the engine."""

    output: Any
    provenance: Provenance | None
    info: EngineInfo


class EngineFault(Exception):
    """An exception nobody foresaw inside the engine process: its type, message and traceback (for the log)."""

    def __init__(self, type_name: str, message: str, traceback: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (EngineFault, (self.type_name, self.message, self.traceback))
