"""Versioned schemas: each store's tables move forward one migration at a time, each in one transaction.

A store names itself (``"library"``) and lists its migrations in order; the database remembers
how many of them it has run in the ``schema_versions`` table. Opening a database made by an
older Ember runs the missing ones; a database from a newer Ember (more versions than this code
knows) is refused with a message rather than written to.

One table of versions per store rather than ``PRAGMA user_version``: the stores share one SQLite
file, and each moves at its own pace.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

from engines.database import Database
from engines.errors import EmberError

log = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]
"""One step of a schema: runs inside the transaction that also records the new version."""

_VERSIONS = "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"


def schema_version(db: Database, component: str) -> int:
    """Return how many of ``component``'s migrations this database has run (0 for none)."""
    with db.transaction() as conn:
        conn.execute(_VERSIONS)
    rows = db.query("SELECT version FROM schema_versions WHERE component = ?", (component,))
    return int(rows[0]["version"]) if rows else 0


def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> int:
    """Run the migrations of ``component`` the database has not run yet; return the version it is at now.

    Each migration runs in its own transaction together with the version it brings the database
    to, so a crash or an error leaves the database at the version before it (and the error
    propagates). Raises EmberError when the database is newer than ``migrations`` know.
    """
    current = schema_version(db, component)
    if current > len(migrations):
        raise EmberError(
            f"This Ember data folder ({db.path.parent}) was written by a newer version of Ember "
            f"({component} schema {current}; this version knows {len(migrations)}). Update Ember to open it."
        )
    for version in range(current + 1, len(migrations) + 1):
        with db.transaction() as conn:
            # Re-read inside the write lock: another process may have run this step meanwhile.
            row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
            if row is not None and int(row[0]) >= version:
                continue
            migrations[version - 1](conn)
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, version),
            )
        log.info("Database %s: %s schema is now version %d", db.path.name, component, version)
    return max(current, len(migrations))
