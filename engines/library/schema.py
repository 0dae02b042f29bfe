"""The library's tables and their migrations (engines/migrations.py runs them, each in one transaction).

Version 1 adds ``library_items`` beside ``output_records`` (a row per output a person can see:
its file, what it shows, whether it is in the trash), the full-text index over its words, and
adopts what an Ember without a library had already made: every delivered record whose file is
still in the outputs folder, and every conversation reply.

What made an output (settings, seed, backend, timings, the safety and watermark decisions) stays
in ``output_records``; the library joins it rather than keeping a copy.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engines.library.adopt import base_row, item_from_record
from engines.library.layout import list_outputs
from engines.migrations import Migration

log = logging.getLogger(__name__)

COMPONENT = "library"

ITEM_COLUMNS = (
    "output_id",
    "kind",
    "path",
    "file_sha256",
    "prompt",
    "negative_prompt",
    "model_name",
    "created_utc",
    "width",
    "height",
    "duration_s",
    "text",
    "source_output_id",
    "extra_json",
)

_V1 = [
    # ``seq`` is the full-text index's rowid: the implicit rowid of a table with a TEXT primary
    # key may be renumbered by VACUUM, which would point the index at the wrong rows.
    """CREATE TABLE library_items (
        output_id TEXT PRIMARY KEY REFERENCES output_records(output_id),
        seq INTEGER NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        file_sha256 TEXT NOT NULL,
        prompt TEXT NOT NULL DEFAULT '',
        negative_prompt TEXT NOT NULL DEFAULT '',
        model_name TEXT NOT NULL DEFAULT '',
        created_utc TEXT NOT NULL,
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        duration_s REAL NOT NULL DEFAULT 0,
        text TEXT NOT NULL DEFAULT '',
        source_output_id TEXT NOT NULL DEFAULT '',
        trashed_utc TEXT,
        extra_json TEXT NOT NULL DEFAULT '{}'
    )""",
    # Newest first, outside the trash and in it: the gallery's every screen walks one of these and stops at a page.
    "CREATE INDEX library_shown ON library_items(created_utc, seq) WHERE trashed_utc IS NULL",
    "CREATE INDEX library_trashed ON library_items(created_utc, seq) WHERE trashed_utc IS NOT NULL",
    "CREATE INDEX library_by_kind ON library_items(kind, created_utc, seq)",
    "CREATE INDEX library_by_model ON library_items(model_name, created_utc, seq)",
    """CREATE VIRTUAL TABLE library_search USING fts5(
        prompt, negative_prompt, model_name, text,
        content='library_items', content_rowid='seq', tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER library_items_added AFTER INSERT ON library_items BEGIN
        INSERT INTO library_search(rowid, prompt, negative_prompt, model_name, text)
        VALUES (new.seq, new.prompt, new.negative_prompt, new.model_name, new.text);
    END""",
    """CREATE TRIGGER library_items_deleted AFTER DELETE ON library_items BEGIN
        INSERT INTO library_search(library_search, rowid, prompt, negative_prompt, model_name, text)
        VALUES ('delete', old.seq, old.prompt, old.negative_prompt, old.model_name, old.text);
    END""",
    """CREATE TRIGGER library_items_changed AFTER UPDATE OF prompt, negative_prompt, model_name, text
    ON library_items BEGIN
        INSERT INTO library_search(library_search, rowid, prompt, negative_prompt, model_name, text)
        VALUES ('delete', old.seq, old.prompt, old.negative_prompt, old.model_name, old.text);
        INSERT INTO library_search(rowid, prompt, negative_prompt, model_name, text)
        VALUES (new.seq, new.prompt, new.negative_prompt, new.model_name, new.text);
    END""",
]

_UPSERT = (
    f"INSERT INTO library_items ({', '.join(ITEM_COLUMNS)}, seq, trashed_utc) "
    f"VALUES ({', '.join('?' for _ in ITEM_COLUMNS)}, (SELECT COALESCE(MAX(seq), 0) + 1 FROM library_items), ?) "
    "ON CONFLICT(output_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in ITEM_COLUMNS if c != "output_id")
)


def upsert_item(conn: sqlite3.Connection, row: dict[str, Any], trashed_utc: str | None = None) -> None:
    """Insert the library row, or replace what an earlier one (adopted by repair) said; the trash state stays."""
    conn.execute(_UPSERT, (*(row[c] for c in ITEM_COLUMNS), trashed_utc))


def migrations(root: Path) -> list[Migration]:
    """The library's migrations, in order; ``root`` is the outputs folder where earlier outputs are adopted from."""
    return [_version_1(root)]


def _version_1(root: Path) -> Callable[[sqlite3.Connection], None]:
    def create_and_adopt(conn: sqlite3.Connection) -> None:
        for statement in _V1:
            conn.execute(statement)
        files = adopt_files(conn, root)
        replies = _adopt_replies(conn)
        if files or replies:
            log.info("The library adopted %d files and %d replies made before it existed.", files, replies)

    return create_and_adopt


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def adopt_files(conn: sqlite3.Connection, root: Path, only: set[str] | None = None) -> int:
    """Add a row for every delivered record whose file is in ``root`` and has none yet; returns how many.

    ``only`` limits it to those output ids. A file that cannot be read is left for the next repair.
    """
    listing = list_outputs(root)
    known = {r[0] for r in conn.execute("SELECT output_id FROM library_items")}
    candidates = [f for f in listing.files if not f.companion and f.output_id not in known]
    if only is not None:
        candidates = [f for f in candidates if f.output_id in only]
    adopted = 0
    for found in candidates:
        record = conn.execute(
            "SELECT * FROM output_records WHERE output_id = ? AND delivered = 1", (found.output_id,)
        ).fetchone()
        if record is None:
            continue
        base = root / ".trash" if found.trashed else root
        try:
            row = item_from_record(record, base, found.relative)
        except OSError as exc:
            log.warning("%s could not be read for the library (%s); it is left where it is.", found.relative, exc)
            continue
        if row is None:
            continue
        trashed_utc = record["created_utc"] if found.trashed else None
        upsert_item(conn, row, trashed_utc)
        known.add(found.output_id)
        adopted += 1
    return adopted


def _adopt_replies(conn: sqlite3.Connection) -> int:
    """A library row for every conversation reply with a delivered record (the prompt: the message before it)."""
    if not _has_table(conn, "messages"):
        return 0
    rows = conn.execute(
        "SELECT m.id, m.conversation_id, m.content, r.* FROM messages m "
        "JOIN output_records r ON r.output_id = m.output_id "
        "WHERE m.role = 'assistant' AND r.delivered = 1 "
        "AND NOT EXISTS (SELECT 1 FROM library_items li WHERE li.output_id = m.output_id)"
    ).fetchall()
    for reply in rows:
        asked = conn.execute(
            "SELECT content FROM messages WHERE conversation_id = ? AND id < ? AND role = 'user' "
            "ORDER BY id DESC LIMIT 1",
            (reply["conversation_id"], reply["id"]),
        ).fetchone()
        row = base_row(reply, "text")
        row.update(
            text=reply["content"],
            prompt=asked[0] if asked else "",
            extra_json=json.dumps({"conversation_id": reply["conversation_id"]}),
        )
        upsert_item(conn, row)
    return len(rows)
