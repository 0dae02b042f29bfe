"""The document index: folders, files, passages, their FTS5 index and vectors, in the Studio's SQLite file.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``doc_meta``):

- ``doc_folders``: the folders a person added.
- ``doc_files``: every file seen, with size, mtime and SHA-256 (what makes indexing incremental),
  ``status`` ("embedding" while its passages get vectors, then "done", or "error" with the
  reason) and how many of its passages have vectors (what makes it resumable).
- ``doc_chunks``: the passages, with character offsets, line, PDF page, heading, token count and
  the vector as int8 with one scale a row (384 bytes instead of 1,536; on the project's docs the
  five nearest passages were those of float32 vectors for 53 of 56 questions, recall@5 0.661
  against 0.643).
- ``doc_chunks_fts``: FTS5 (porter stemming) over passage text and its title/heading, kept in
  step by triggers; ``bm25()`` ranks it.
- ``doc_citations``: the citations shown under a reply, by the id of the person's message.

Every change is one transaction: a passage is never there without its file, nor its index
entry without the passage.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engines.database import Database
from engines.documents.chunking import Chunk
from engines.errors import EmberError

SCHEMA_VERSION = 1

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS doc_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS doc_folders (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        added_utc TEXT NOT NULL,
        indexed_utc TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS doc_files (
        id INTEGER PRIMARY KEY,
        folder_id INTEGER NOT NULL REFERENCES doc_folders(id) ON DELETE CASCADE,
        path TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        chunks_total INTEGER NOT NULL DEFAULT 0,
        chunks_done INTEGER NOT NULL DEFAULT 0,
        indexed_utc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS doc_files_by_folder ON doc_files(folder_id)",
    """CREATE TABLE IF NOT EXISTS doc_chunks (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES doc_files(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL,
        text TEXT NOT NULL,
        heading TEXT NOT NULL DEFAULT '',
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        page INTEGER,
        line INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        vector BLOB,
        vector_scale REAL,
        UNIQUE (file_id, ordinal)
    )""",
    # What BM25 reads: the passage, and the file's title with the heading (weighted lower at query time).
    """CREATE VIRTUAL TABLE IF NOT EXISTS doc_chunks_fts USING fts5(
        text, heading, content='doc_chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER IF NOT EXISTS doc_chunks_ai AFTER INSERT ON doc_chunks BEGIN
        INSERT INTO doc_chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
    END""",
    """CREATE TRIGGER IF NOT EXISTS doc_chunks_ad AFTER DELETE ON doc_chunks BEGIN
        INSERT INTO doc_chunks_fts(doc_chunks_fts, rowid, text, heading)
        VALUES ('delete', old.id, old.text, old.heading);
    END""",
    """CREATE TABLE IF NOT EXISTS doc_citations (
        message_id INTEGER PRIMARY KEY,
        citations_json TEXT NOT NULL
    )""",
]
# Schema migrations: MIGRATIONS[n] takes a version-n database to n + 1 (none yet).
MIGRATIONS: dict[int, Sequence[str]] = {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def normalise(path: Path | str) -> str:
    """The form a folder or file path is stored in: absolute, symlinks resolved."""
    return str(Path(path).expanduser().resolve())


@dataclass(frozen=True)
class FolderInfo:
    id: int
    path: str
    added_utc: str
    indexed_utc: str | None  # when an index run last finished; None until one has
    files: int
    files_done: int
    files_failed: int
    chunks: int


@dataclass(frozen=True)
class FileInfo:
    id: int
    folder_id: int
    path: str
    kind: str
    title: str
    size: int
    mtime_ns: int
    sha256: str
    status: str  # "embedding", "done" or "error"
    error: str
    chunks_total: int
    chunks_done: int
    indexed_utc: str


@dataclass(frozen=True)
class StoredChunk:
    """A passage as search returns it, with its file."""

    id: int
    file_id: int
    path: str
    title: str
    kind: str
    ordinal: int
    text: str
    heading: str
    start: int
    end: int
    page: int | None
    line: int
    tokens: int


def embedding_input(title: str, heading: str, text: str) -> str:
    """What the embedding model reads for a passage: the file's title and the heading, then the text."""
    where = " > ".join(part for part in (title, heading) if part)
    return f"{where}\n{text}" if where else text


def quantize(vectors: np.ndarray) -> tuple[list[bytes], list[float]]:
    """Rows of unit vectors as int8 bytes and one scale each (row = int8 * scale)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.abs(vectors).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return [row.tobytes() for row in q], [float(s) for s in scales]


class DocumentIndex:
    """The tables of document search over a :class:`Database`; safe to share between threads.

    Raises EmberError when the database was made by a newer Ember (a schema it does not know).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writes = 0  # this connection's own changes (PRAGMA data_version counts only the others')
        self._matrix_lock = threading.Lock()
        self._matrix: tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray] | None = None
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM doc_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise EmberError(
                    f"The document index in {db.path.name} was made by a newer version of Ember (schema {version}; "
                    f"this one knows {SCHEMA_VERSION}). Update Ember, or remove the folders and add them again."
                )
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
            conn.execute(
                "INSERT OR REPLACE INTO doc_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    # -- meta -----------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        rows = self.db.query("SELECT value FROM doc_meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO doc_meta (key, value) VALUES (?, ?)", (key, value))

    def use_embedding_model(self, model_id: str) -> int:
        """Record the vectors' model; if they were made by another, drop them to be made again. Returns how many."""
        if self.meta("embedding_model") == model_id:
            return 0
        with self.db.transaction() as conn:
            dropped = conn.execute("UPDATE doc_chunks SET vector = NULL WHERE vector IS NOT NULL").rowcount
            conn.execute("UPDATE doc_files SET chunks_done = 0, status = 'embedding' WHERE status = 'done'")
            conn.execute("INSERT OR REPLACE INTO doc_meta (key, value) VALUES ('embedding_model', ?)", (model_id,))
            self._writes += 1
        return dropped

    # -- folders --------------------------------------------------------------------------------
    def add_folder(self, path: Path | str) -> FolderInfo:
        """Remember a folder (indexing is a separate run) and return it. Raises EmberError if it is no folder."""
        folder = normalise(path)
        if not Path(folder).is_dir():
            raise EmberError(f"'{path}' is not a folder. Pick a folder that holds .txt, .md or .pdf files.")
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO doc_folders (path, added_utc) VALUES (?, ?)", (folder, _now()))
        found = self.folder(folder)
        assert found is not None
        return found

    def remove_folder(self, path: Path | str) -> bool:
        """Forget a folder and everything indexed from it (the files stay); returns whether it was there."""
        with self.db.transaction() as conn:
            gone = conn.execute("DELETE FROM doc_folders WHERE path = ?", (normalise(path),)).rowcount > 0
            self._writes += 1
        return gone

    def folders(self) -> list[FolderInfo]:
        """Every folder with its counts, in the order they were added."""
        rows = self.db.query(
            "SELECT d.*, COUNT(f.id) AS files, SUM(f.status = 'done') AS done, SUM(f.status = 'error') AS failed, "
            "COALESCE(SUM(f.chunks_total), 0) AS chunks FROM doc_folders d LEFT JOIN doc_files f ON f.folder_id = d.id "
            "GROUP BY d.id ORDER BY d.id"
        )
        return [
            FolderInfo(
                r["id"],
                r["path"],
                r["added_utc"],
                r["indexed_utc"],
                r["files"],
                r["done"] or 0,
                r["failed"] or 0,
                r["chunks"],
            )
            for r in rows
        ]

    def folder(self, path: Path | str) -> FolderInfo | None:
        folder = normalise(path)
        return next((f for f in self.folders() if f.path == folder), None)

    def folder_indexed(self, folder_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE doc_folders SET indexed_utc = ? WHERE id = ?", (_now(), folder_id))

    # -- files ----------------------------------------------------------------------------------
    def files(self, folder_id: int | None = None) -> list[FileInfo]:
        """The files of one folder (or all), by path."""
        if folder_id is None:
            rows = self.db.query("SELECT * FROM doc_files ORDER BY path")
        else:
            rows = self.db.query("SELECT * FROM doc_files WHERE folder_id = ? ORDER BY path", (folder_id,))
        return [_file(r) for r in rows]

    def file(self, path: Path | str) -> FileInfo | None:
        rows = self.db.query("SELECT * FROM doc_files WHERE path = ?", (str(path),))
        return _file(rows[0]) if rows else None

    def forget_files(self, file_ids: Iterable[int]) -> int:
        """Drop files (deleted from disk) with their passages; returns how many."""
        ids = list(file_ids)
        if not ids:
            return 0
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM doc_files WHERE id = ?", [(i,) for i in ids])
            self._writes += 1
        return len(ids)

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        """A file whose mtime changed but whose content did not: remember the new stat, keep the passages."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE doc_files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def begin_file(
        self,
        folder_id: int,
        path: str,
        *,
        size: int,
        mtime_ns: int,
        sha256: str,
        kind: str,
        title: str,
        chunks: Sequence[Chunk],
    ) -> int:
        """Replace a file's passages with ``chunks`` (no vectors yet, but searchable by keywords); returns its id."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM doc_files WHERE path = ?", (path,))
            cur = conn.execute(
                "INSERT INTO doc_files (folder_id, path, kind, title, size, mtime_ns, sha256, status, chunks_total,"
                " chunks_done, indexed_utc) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
                (folder_id, path, kind, title, size, mtime_ns, sha256, "embedding", len(chunks), _now()),
            )
            file_id = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO doc_chunks (file_id, ordinal, text, heading, start, end, page, line, tokens)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        file_id,
                        c.ordinal,
                        c.text,
                        " > ".join(p for p in (title, c.heading) if p),
                        c.start,
                        c.end,
                        c.page,
                        c.line,
                        c.tokens,
                    )
                    for c in chunks
                ],
            )
            self._writes += 1
        return file_id

    def fail_file(self, folder_id: int, path: str, *, size: int, mtime_ns: int, sha256: str, error: str) -> None:
        """Record that a file cannot be indexed, and why (its old passages, if any, go)."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM doc_files WHERE path = ?", (path,))
            conn.execute(
                "INSERT INTO doc_files (folder_id, path, size, mtime_ns, sha256, status, error, indexed_utc)"
                " VALUES (?,?,?,?,?,'error',?,?)",
                (folder_id, path, size, mtime_ns, sha256, error, _now()),
            )
            self._writes += 1

    def unembedded(self, file_id: int) -> list[tuple[int, str]]:
        """(chunk id, embedding input) of a file's passages that have no vector yet, in order."""
        rows = self.db.query(
            "SELECT c.id, c.heading, c.text FROM doc_chunks c WHERE c.file_id = ? AND c.vector IS NULL"
            " ORDER BY c.ordinal",
            (file_id,),
        )
        return [(r["id"], embedding_input("", r["heading"], r["text"])) for r in rows]

    def store_vectors(self, file_id: int, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        """Keep the vectors of some passages of a file (one transaction: a batch is saved whole or not at all)."""
        blobs, scales = quantize(vectors)
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE doc_chunks SET vector = ?, vector_scale = ? WHERE id = ?",
                list(zip(blobs, scales, chunk_ids, strict=True)),
            )
            conn.execute(
                "UPDATE doc_files SET chunks_done = (SELECT COUNT(*) FROM doc_chunks"
                " WHERE file_id = ? AND vector IS NOT NULL) WHERE id = ?",
                (file_id, file_id),
            )
            self._writes += 1

    def finish_file(self, file_id: int) -> None:
        """Mark a file whose passages all have vectors as done (a file with no passages too)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE doc_files SET status = 'done', indexed_utc = ? WHERE id = ?", (_now(), file_id))

    # -- search ---------------------------------------------------------------------------------
    def keyword_search(
        self, match: str, limit: int, folder_ids: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) for an FTS5 MATCH expression, best first."""
        if not match:
            return []
        where, params = "", [match]
        if folder_ids is not None:
            if not folder_ids:
                return []
            where = (
                f" AND c.file_id IN (SELECT id FROM doc_files WHERE folder_id IN ({','.join('?' * len(folder_ids))}))"
            )
            params += list(folder_ids)
        rows = self.db.query(
            # bm25() is lower for better matches; the heading column counts half as much as the text.
            "SELECT c.id, -bm25(doc_chunks_fts, 1.0, 0.5) AS score FROM doc_chunks_fts "
            "JOIN doc_chunks c ON c.id = doc_chunks_fts.rowid "
            f"WHERE doc_chunks_fts MATCH ?{where} ORDER BY bm25(doc_chunks_fts, 1.0, 0.5) LIMIT ?",
            (*params, limit),
        )
        return [(r["id"], float(r["score"])) for r in rows]

    def vectors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk ids, folder ids, float32 unit rows) of every passage with a vector; cached until a change."""
        version = self.db.query("PRAGMA data_version")[0][0]
        key = (int(version), self._writes)
        with self._matrix_lock:
            if self._matrix is not None and self._matrix[0] == key:
                return self._matrix[1], self._matrix[2], self._matrix[3]
            rows = self.db.query(
                "SELECT c.id, f.folder_id, c.vector, c.vector_scale FROM doc_chunks c JOIN doc_files f"
                " ON f.id = c.file_id WHERE c.vector IS NOT NULL ORDER BY c.id"
            )
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            folders = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
            if rows:
                q = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.int8).reshape(len(rows), -1)
                scales = np.fromiter((r[3] for r in rows), dtype=np.float32, count=len(rows))
                matrix = q.astype(np.float32) * scales[:, None]
            else:
                matrix = np.zeros((0, 384), dtype=np.float32)
            self._matrix = (key, ids, folders, matrix)
            return ids, folders, matrix

    def chunks(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]:
        """The passages with these ids, with their files."""
        if not chunk_ids:
            return {}
        found: dict[int, StoredChunk] = {}
        ids = list(chunk_ids)
        for i in range(0, len(ids), 500):  # SQLite's limit on parameters
            part = ids[i : i + 500]
            rows = self.db.query(
                "SELECT c.*, f.path, f.title, f.kind FROM doc_chunks c JOIN doc_files f ON f.id = c.file_id"
                f" WHERE c.id IN ({','.join('?' * len(part))})",
                tuple(part),
            )
            for r in rows:
                found[r["id"]] = StoredChunk(
                    r["id"], r["file_id"], r["path"], r["title"], r["kind"], r["ordinal"], r["text"],
                    _own_heading(r["heading"], r["title"]), r["start"], r["end"], r["page"], r["line"], r["tokens"],
                )  # fmt: skip
        return found

    def file_chunks(self, path: str) -> list[StoredChunk]:
        """Every passage of one file, in order."""
        rows = self.db.query(
            "SELECT c.id FROM doc_chunks c JOIN doc_files f ON f.id = c.file_id WHERE f.path = ? ORDER BY c.ordinal",
            (path,),
        )
        found = self.chunks([r["id"] for r in rows])
        return [found[r["id"]] for r in rows]

    def counts(self) -> dict[str, int]:
        """Files, files done, files failed, passages and passages with vectors, over every folder."""
        r = self.db.query(
            "SELECT (SELECT COUNT(*) FROM doc_files) AS files, (SELECT COUNT(*) FROM doc_files WHERE status = 'done')"
            " AS done, (SELECT COUNT(*) FROM doc_files WHERE status = 'error') AS failed, (SELECT COUNT(*) FROM"
            " doc_chunks) AS chunks, (SELECT COUNT(*) FROM doc_chunks WHERE vector IS NOT NULL) AS embedded"
        )[0]
        return {k: int(r[k]) for k in ("files", "done", "failed", "chunks", "embedded")}

    # -- citations ------------------------------------------------------------------------------
    def save_citations(self, message_id: int, citations: Sequence[Any]) -> None:
        """Keep the citations of the reply to the person's message ``message_id`` (Citation dataclasses)."""
        data = json.dumps([asdict(c) for c in citations])
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO doc_citations (message_id, citations_json) VALUES (?, ?)", (message_id, data)
            )

    def citations(self, message_id: int) -> list[dict[str, Any]]:
        """The citations kept for ``message_id`` as dicts (Citation fields); [] when none were."""
        rows = self.db.query("SELECT citations_json FROM doc_citations WHERE message_id = ?", (message_id,))
        return json.loads(rows[0]["citations_json"]) if rows else []


def _own_heading(stored: str, title: str) -> str:
    """The heading column holds "title > heading" (for BM25); the passage's own heading is the rest."""
    if title and stored.startswith(title):
        return stored[len(title) :].removeprefix(" > ")
    return stored


def _file(r: Any) -> FileInfo:
    return FileInfo(
        r["id"], r["folder_id"], r["path"], r["kind"], r["title"], r["size"], r["mtime_ns"], r["sha256"], r["status"],
        r["error"], r["chunks_total"], r["chunks_done"], r["indexed_utc"],
    )  # fmt: skip
