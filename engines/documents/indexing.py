"""Indexing a folder: resumable, incremental, with progress, one file's problem never stopping the rest.

``index_folder`` walks the folder and, file by file:

- drops the files that are gone from disk (with their passages);
- skips a file whose size and mtime are what the index has, and one whose bytes hash to what it
  has (its new mtime is kept); re-reads every other file;
- saves a file's passages in one transaction, searchable by keywords at once, then gives them
  vectors in batches of :data:`BATCH`, each batch committed, so a run that is killed (a crash, the
  power, Cancel) loses at most one batch: the next run finds the file half embedded, with the same
  size and mtime, and embeds only the passages that have no vector yet;
- records a file that cannot be read (an encrypted PDF, a binary file named .txt) with the reason,
  and goes on.

It reports :class:`IndexProgress` after every file and every batch and checks ``cancel`` as often.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.documents.chunking import chunk_document
from engines.documents.embedding import Tokens
from engines.documents.extract import UnreadableDocument, extract, is_document
from engines.documents.store import DocumentIndex, FileInfo
from engines.errors import Cancelled
from engines.progress import Step
from engines.safety.semantic import Embed

BATCH = 8  # passages a vector batch: about 0.5 s of the embedder, the most a kill can lose


@dataclass(frozen=True)
class IndexProgress(Step):
    """``done`` of ``total`` files (a :class:`Step`, so any progress bar shows it), and what happens now."""

    folder: str = ""
    file: str = ""  # the file being read or embedded ("" between files)
    chunks_done: int = 0  # passages given vectors in this run
    file_chunks_done: int = 0
    file_chunks_total: int = 0
    skipped: int = 0  # unchanged files
    failed: int = 0  # files that could not be read


@dataclass(frozen=True)
class IndexReport:
    """What one run did; ``failed`` lists (path, reason) of the files that could not be read."""

    folder: str
    files: int
    indexed: int  # new or changed files read and embedded
    resumed: int  # files a stopped run had left half embedded
    unchanged: int
    removed: int  # files gone from disk, dropped from the index
    failed: tuple[tuple[str, str], ...]
    chunks_embedded: int
    seconds: float
    chunks: int = 0  # passages of the folder after the run
    notes: tuple[str, ...] = field(default=())

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_embedded / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[IndexProgress], None]


def document_paths(root: Path) -> list[Path]:
    """The .txt, .md and .pdf files under ``root``, sorted; hidden files and folders left out, links not followed."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if is_document(path) and path.is_file():
                found.append(path)
    return found


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes. Raises OSError."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def index_folder(
    index: DocumentIndex,
    folder: Path | str,
    embed: Embed,
    tokens: Tokens,
    progress: ProgressCallback | None = None,
    cancel: Any = None,
    *,
    model_id: str | None = None,
    batch: int = BATCH,
) -> IndexReport:
    """Bring the index of ``folder`` up to date (adding the folder if it is new) and return what was done.

    ``cancel`` is a CancelToken (or None); a cancelled run raises Cancelled, keeping what it had
    saved. Raises EmberError when the folder is not one, or when the embedder fails (the run
    stops; the next one resumes). What the progress callback raises stops the run too.
    """
    started = time.monotonic()
    info = index.add_folder(folder)
    notes = []
    if model_id is not None and index.use_embedding_model(model_id):
        notes.append("The embedding model changed, so every passage gets a new vector.")
    paths = document_paths(Path(info.path))
    known = {f.path: f for f in index.files(info.id)}
    on_disk = {str(p) for p in paths}
    removed = index.forget_files(f.id for p, f in known.items() if p not in on_disk)
    state = _Run(info.path, len(paths), started, progress)
    counts = {"indexed": 0, "resumed": 0, "unchanged": 0}
    failed: list[tuple[str, str]] = []

    def stop_if_cancelled() -> None:
        if cancel is not None and cancel.cancelled:
            raise Cancelled()

    def embed_file(file_id: int, path: str) -> None:
        pending = index.unembedded(file_id)
        row = index.file(path)
        total = row.chunks_total if row else len(pending)
        done = total - len(pending)
        for i in range(0, len(pending), batch):
            stop_if_cancelled()
            part = pending[i : i + batch]
            vectors = embed([text for _, text in part])
            index.store_vectors(file_id, [chunk_id for chunk_id, _ in part], vectors)
            done += len(part)
            state.chunks_done += len(part)
            state.report(file=path, file_chunks_done=done, file_chunks_total=total)
        index.finish_file(file_id)

    def keep(row: FileInfo) -> None:
        """A file the index already has as it is: finish it if a stopped run left it half embedded."""
        if row.status == "embedding":
            embed_file(row.id, row.path)
            counts["resumed"] += 1
            return
        counts["unchanged"] += 1
        state.skipped += 1
        if row.status == "error":
            fail(row.path, row.error)

    def fail(name: str, reason: str) -> None:
        failed.append((name, reason))
        state.failed += 1

    state.report()
    for path in paths:
        stop_if_cancelled()
        name = str(path)
        row: FileInfo | None = known.get(name)
        try:
            stat = path.stat()
            state.report(file=name)
            if row is not None and (row.size, row.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                keep(row)
                continue
            sha256 = file_sha256(path)
            if row is not None and row.sha256 == sha256:
                index.touch_file(row.id, stat.st_size, stat.st_mtime_ns)  # touched, not changed
                keep(row)
                continue
            try:
                doc = extract(path)
                chunks = chunk_document(doc, tokens.count, tokens.split)
            except UnreadableDocument as exc:
                index.fail_file(
                    info.id, name, size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha256, error=str(exc)
                )
                fail(name, str(exc))
                continue
            file_id = index.begin_file(
                info.id, name, size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha256, kind=doc.kind,
                title=doc.title, chunks=chunks,
            )  # fmt: skip
            embed_file(file_id, name)
            counts["indexed"] += 1
        except OSError as exc:  # gone since the walk, or no permission: the next run looks again
            fail(name, f"Ember cannot read this file ({exc.strerror or exc}).")
        finally:
            state.done += 1
    index.folder_indexed(info.id)
    state.report()
    folder_info = index.folder(info.path)
    return IndexReport(
        folder=info.path,
        files=len(paths),
        indexed=counts["indexed"],
        resumed=counts["resumed"],
        unchanged=counts["unchanged"],
        removed=removed,
        failed=tuple(failed),
        chunks_embedded=state.chunks_done,
        seconds=time.monotonic() - started,
        chunks=folder_info.chunks if folder_info else 0,
        notes=tuple(notes),
    )


class _Run:
    """The counters of one run, and the progress callback they feed."""

    def __init__(self, folder: str, total: int, started: float, callback: ProgressCallback | None) -> None:
        self.folder, self.total, self.started, self.callback = folder, total, started, callback
        self.done = self.chunks_done = self.skipped = self.failed = 0

    def report(self, file: str = "", file_chunks_done: int = 0, file_chunks_total: int = 0) -> None:
        if self.callback is None:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        self.callback(
            IndexProgress(
                done=self.done,
                total=self.total,
                elapsed_s=elapsed,
                eta_s=eta,
                folder=self.folder,
                file=file,
                chunks_done=self.chunks_done,
                file_chunks_done=file_chunks_done,
                file_chunks_total=file_chunks_total,
                skipped=self.skipped,
                failed=self.failed,
            )
        )
