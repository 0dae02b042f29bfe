"""One SQLite file for Ember's stores; every write is one transaction."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engines.errors import EmberError


class Database:
    """A thread-safe SQLite connection. Each store creates its own tables in it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=5000")
        except (OSError, sqlite3.Error) as exc:
            raise EmberError(
                f"Ember cannot open its database at {self.path} ({exc}). "
                "Check that the folder is writable and the disk is not full."
            ) from exc
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield the connection inside BEGIN IMMEDIATE ... COMMIT; roll back on any error.

        A full disk or a locked file becomes an EmberError that says so.
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise EmberError(
                    f"Ember could not save to {self.path.name} ({exc}). "
                    "Nothing was half-written; free some disk space and try again."
                ) from exc

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Run a read-only query and return all rows."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
