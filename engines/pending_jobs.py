"""Jobs waiting or running, kept on disk so that a crash does not lose them: offered again at the next start.

A row is written when a job is queued and removed when it ends (any way: result, blocked,
failed, cancelled). Rows whose process is gone are what was pending when Ember died.

Requests are kept as JSON, never pickled (a pickle in the database could run code): a request
is a frozen dataclass of a known modality, made of plain values, tuples and other dataclasses of
Ember's own (``engines.*``). A request holding something else (pixels or samples in memory) is
not kept; it simply is not offered after a crash.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engines.database import Database
from engines.jobs import JobEvent, Listener
from engines.migrations import migrate
from engines.pipeline import utc_now

log = logging.getLogger(__name__)

COMPONENT = "pending_jobs"


def _version_1(conn: Any) -> None:
    conn.execute(
        """CREATE TABLE pending_jobs (
            key TEXT PRIMARY KEY,
            owner_pid INTEGER NOT NULL,
            queued_utc TEXT NOT NULL,
            modality TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            request_json TEXT NOT NULL
        )"""
    )


MIGRATIONS = [_version_1]


class NotKept(Exception):
    """The request holds a value that is not kept as JSON (an array, a callable, an open file)."""


@dataclass(frozen=True)
class PendingJob:
    """A job that was queued or running when its Ember process ended."""

    key: str
    queued_utc: str
    modality: str
    priority: int
    request: Any


class PendingJobs:
    """The ``pending_jobs`` table: what the queue holds, as far as it can be written down."""

    def __init__(self, db: Database) -> None:
        self._db = db
        migrate(db, COMPONENT, MIGRATIONS)

    def add(self, request: Any, priority: int = 0) -> str | None:
        """Keep a queued request; return its key, or None when it cannot be kept (not a modality's, or not JSON)."""
        from engines.modalities import modality_of

        modality = modality_of(request)
        if modality is None:
            return None
        try:
            encoded = json.dumps(encode(request))
        except NotKept as exc:
            log.debug("%s is not kept for after a crash: %s", type(request).__name__, exc)
            return None
        key = uuid.uuid4().hex
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO pending_jobs (key, owner_pid, queued_utc, modality, priority, request_json) "
                "VALUES (?,?,?,?,?,?)",
                (key, os.getpid(), utc_now(), modality.name, priority, encoded),
            )
        return key

    def claim(self, key: str) -> str:
        """Make a row left by an ended process this process's (its job is queued again); returns ``key``."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE pending_jobs SET owner_pid = ? WHERE key = ?", (os.getpid(), key))
        return key

    def remove(self, key: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM pending_jobs WHERE key = ?", (key,))

    def removed_when_done(self, key: str, listener: Listener | None) -> Listener:
        """A listener that removes the row at the job's terminal event, then passes every event on."""

        def listen(event: JobEvent) -> None:
            if event.kind.terminal:
                self.remove(key)
            if listener is not None:
                listener(event)

        return listen

    def orphaned(self, alive: Callable[[int], bool] | None = None) -> list[PendingJob]:
        """The jobs whose process is no longer running, oldest first; rows that cannot be read are dropped."""
        alive = alive or _pid_alive
        rows = self._db.query("SELECT * FROM pending_jobs ORDER BY queued_utc, rowid")
        found, unreadable = [], []
        for row in rows:
            if row["owner_pid"] == os.getpid() or alive(row["owner_pid"]):
                continue
            try:
                request = decode(json.loads(row["request_json"]))
            except (ValueError, TypeError, LookupError, ImportError, AttributeError) as exc:
                log.warning("A pending %s job cannot be restored (%s); it is dropped.", row["modality"], exc)
                unreadable.append(row["key"])
                continue
            found.append(PendingJob(row["key"], row["queued_utc"], row["modality"], row["priority"], request))
        for key in unreadable:
            self.remove(key)
        return found


def _pid_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


# -- requests as JSON -------------------------------------------------------------------------------
def encode(value: Any) -> Any:
    """Return ``value`` as JSON-ready data with its dataclasses, tuples and enums tagged; raises NotKept."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"__enum__": _name_of(type(value)), "value": encode(value.value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {"__dataclass__": _name_of(type(value)), "fields": fields}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        if any(k.startswith("__") for k in value):
            raise NotKept("a dict with a key that starts with '__'")
        return {k: encode(v) for k, v in value.items()}
    raise NotKept(f"a {type(value).__name__}")


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`; only Ember's own dataclasses and enums are made. Raises ValueError otherwise."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tuple__" in data:
        return tuple(decode(v) for v in data["__tuple__"])
    if "__enum__" in data:
        cls = _class_of(data["__enum__"])
        if not issubclass(cls, enum.Enum):
            raise ValueError(f"{data['__enum__']} is not an enum")
        return cls(decode(data["value"]))
    if "__dataclass__" in data:
        cls = _class_of(data["__dataclass__"])
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{data['__dataclass__']} is not a dataclass")
        return cls(**{k: decode(v) for k, v in data["fields"].items()})
    return {k: decode(v) for k, v in data.items()}


def _name_of(cls: type) -> str:
    if not cls.__module__.startswith("engines.") or "<" in cls.__qualname__:
        raise NotKept(f"{cls.__module__}.{cls.__qualname__} is not one of Ember's own types")
    return f"{cls.__module__}:{cls.__qualname__}"


def _class_of(name: str) -> type:
    module_name, _, qualname = str(name).partition(":")
    if not module_name.startswith("engines.") or not qualname:
        raise ValueError(f"{name!r} is not one of Ember's own types")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not isinstance(target, type):
        raise ValueError(f"{name!r} is not a type")
    return target
