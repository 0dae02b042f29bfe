"""App-wide settings (the safety policy, the guard model, ...) kept as JSON values in the database."""

from __future__ import annotations

import json
from typing import Any

from engines.database import Database

_SCHEMA = "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value_json TEXT NOT NULL)"


class SettingsStore:
    """Key-value settings; each write is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as conn:
            conn.execute(_SCHEMA)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the stored value, or ``default`` when missing or unreadable."""
        rows = self._db.query("SELECT value_json FROM settings WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value_json"])
        except ValueError:
            return default

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable); raises EmberError if the disk refuses."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json",
                (key, json.dumps(value)),
            )
