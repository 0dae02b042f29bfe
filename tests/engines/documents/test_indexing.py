"""Indexing a folder: progress, incremental runs, unreadable files, no progress lost when it is stopped or killed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.database import Database
from engines.documents.indexing import IndexProgress, IndexReport
from engines.documents.service import Documents, IndexFolderRequest
from engines.documents.store import SCHEMA_VERSION, DocumentIndex
from engines.errors import Cancelled, EmberError
from engines.jobs import EventKind, JobQueue
from tests.engines.documents.conftest import ROOT, CountingEmbed, encrypt_pdf, write_pdf

CHILD = Path(__file__).with_name("index_child.py")


def snapshot(index: DocumentIndex) -> dict[str, Any]:
    """The index as it would answer: every file's state and its passages with their vectors (ids and times left out)."""
    out: dict[str, Any] = {}
    for f in index.files():
        rows = index.db.query(
            "SELECT ordinal, text, heading, start, end, page, line, tokens, vector, vector_scale FROM doc_chunks"
            " WHERE file_id = ? ORDER BY ordinal",
            (f.id,),
        )
        chunks = []
        for r in rows:
            vector = None
            if r["vector"] is not None:
                vector = np.frombuffer(r["vector"], dtype=np.int8).astype(np.float32) * r["vector_scale"]
            chunks.append((tuple(r)[:8], vector))
        out[f.path] = ((f.status, f.sha256, f.chunks_total, f.chunks_done, f.error), chunks)
    return out


def assert_same_index(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for path in a:
        (state_a, chunks_a), (state_b, chunks_b) = a[path], b[path]
        assert state_a == state_b, path
        assert [c[0] for c in chunks_a] == [c[0] for c in chunks_b], path
        for (_, va), (_, vb) in zip(chunks_a, chunks_b, strict=True):
            assert (va is None) == (vb is None)
            if va is not None:
                # The same model on the same inputs, in another process: the same vector, to one int8 step.
                assert np.max(np.abs(va - vb)) <= 1.01 * np.max(np.abs(va)) / 127, path


def fresh_index(folder: Path, tmp_path: Path, embed: Any, tokens: Any) -> dict[str, Any]:
    db = Database(tmp_path / "fresh.sqlite3")
    try:
        documents = Documents(db, embed, tokens=tokens)
        documents.index_folder(folder)
        return snapshot(documents.store)
    finally:
        db.close()


def test_indexing_reports_files_and_passages_and_makes_every_passage_searchable(
    documents: Documents, folder: Path, counting_embed: CountingEmbed
) -> None:
    updates: list[IndexProgress] = []
    report = documents.index_folder(folder, updates.append)
    assert (report.files, report.indexed, report.unchanged, report.failed) == (5, 5, 0, ())
    assert report.chunks == report.chunks_embedded == len(counting_embed.texts) > 80
    assert updates[0].done == 0 and updates[0].total == 5
    assert updates[-1].done == updates[-1].total == 5 and updates[-1].chunks_done == report.chunks
    assert [u.chunks_done for u in updates] == sorted(u.chunks_done for u in updates)  # never goes back
    readme = [u for u in updates if u.file.endswith("project.md") and u.file_chunks_total]
    assert len(readme) >= 8 and readme[-1].file_chunks_done == readme[-1].file_chunks_total  # batch by batch
    assert isinstance(updates[-1], IndexProgress) and updates[-1].fraction == 1.0  # a Step for any progress bar
    counts = documents.store.counts()
    assert counts == {"files": 5, "done": 5, "failed": 0, "chunks": report.chunks, "embedded": report.chunks}
    [folder_info] = documents.folders()
    assert folder_info.indexed_utc is not None and folder_info.files_done == 5


def test_a_second_run_over_an_unchanged_folder_reads_and_embeds_nothing(
    documents: Documents, folder: Path, counting_embed: CountingEmbed
) -> None:
    documents.index_folder(folder)
    before = snapshot(documents.store)
    counting_embed.texts.clear()
    report = documents.index_folder(folder)
    assert (report.indexed, report.resumed, report.unchanged, report.removed) == (0, 0, 5, 0)
    assert counting_embed.texts == []
    assert_same_index(snapshot(documents.store), before)


def test_changed_files_are_indexed_again_deleted_ones_dropped_and_touched_ones_kept(
    documents: Documents, folder: Path, counting_embed: CountingEmbed, tmp_path: Path, embed: Any, tokens: Any
) -> None:
    documents.index_folder(folder)
    cats = folder / "notes" / "cats.md"
    cats.write_text("# Cats\n\nThe lighthouse keeper's cat is called Juniper now.\n")
    (folder / "notes" / "garden.txt").unlink()
    readme = folder / "project.md"
    os.utime(readme, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # touched: a new mtime, the same bytes
    counting_embed.texts.clear()
    report = documents.index_folder(folder)
    assert (report.indexed, report.unchanged, report.removed) == (1, 3, 1)
    assert counting_embed.texts == ["Cats\nThe lighthouse keeper's cat is called Juniper now."]
    assert documents.store.file(str(folder / "notes" / "garden.txt")) is None
    found = documents.search("What is the lighthouse keeper's cat called?", k=1, mode="keywords")
    assert "Juniper" in found[0].text
    assert documents.store.file(str(readme.resolve())).mtime_ns == readme.stat().st_mtime_ns
    assert_same_index(snapshot(documents.store), fresh_index(folder, tmp_path, embed, tokens))
    # The keyword index holds exactly the passages that are there (FTS5's own consistency check).
    documents.store.db.query("INSERT INTO doc_chunks_fts(doc_chunks_fts, rank) VALUES ('integrity-check', 1)")
    assert not documents.search("Bramble", mode="keywords")


def test_unreadable_files_get_a_reason_each_and_the_rest_is_indexed(documents: Documents, folder: Path) -> None:
    encrypt_pdf(folder / "manual.pdf", folder / "locked.pdf", user_password="secret")
    encrypt_pdf(folder / "manual.pdf", folder / "print-protected.pdf", user_password="")
    (folder / "data.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    write_pdf(folder / "scan.pdf", [[], []])
    (folder / "empty.md").write_text("\n\n")
    report = documents.index_folder(folder)
    reasons = {Path(p).name: r for p, r in report.failed}
    assert set(reasons) == {"locked.pdf", "data.txt", "broken.pdf", "scan.pdf", "empty.md"}
    assert "password" in reasons["locked.pdf"]
    assert "binary" in reasons["data.txt"]
    assert "damaged" in reasons["broken.pdf"]
    assert "no text" in reasons["scan.pdf"]
    assert "empty" in reasons["empty.md"]
    assert report.indexed == 6  # the five documents and the PDF that opens with an empty password
    assert documents.search("When should the filter cartridge be replaced?", k=1)[0].path.endswith(".pdf")
    errors = {Path(f.path).name: f.error for f in documents.files(folder) if f.status == "error"}
    assert errors == reasons
    # A failed file is not read again until it changes, and it is still reported.
    again = documents.index_folder(folder)
    assert again.indexed == 0 and {Path(p).name for p, _ in again.failed} == set(reasons)


def test_stopping_from_the_progress_callback_loses_nothing_and_the_next_run_finishes_the_same_index(
    documents: Documents, folder: Path, counting_embed: CountingEmbed, tmp_path: Path, embed: Any, tokens: Any
) -> None:
    class Stop(Exception):
        pass

    def stop_in_the_readme(p: IndexProgress) -> None:
        if p.file.endswith("project.md") and p.file_chunks_done >= 24:
            raise Stop

    with pytest.raises(Stop):
        documents.index_folder(folder, stop_in_the_readme)
    stopped = {Path(f.path).name: f for f in documents.store.files()}
    readme = stopped["project.md"]
    assert readme.status == "embedding" and readme.chunks_done == 24 < readme.chunks_total
    done_before = {name: f for name, f in stopped.items() if f.status == "done"}
    assert set(done_before) == {"licenses.md", "manual.pdf"}
    first_run = len(counting_embed.texts)
    counting_embed.texts.clear()
    report = documents.index_folder(folder)
    assert (report.resumed, report.unchanged, report.indexed) == (1, 2, 2)
    total = documents.store.counts()["chunks"]
    assert len(counting_embed.texts) == total - first_run  # no passage was embedded twice
    for before in done_before.values():
        assert documents.store.file(before.path).indexed_utc == before.indexed_utc
    assert_same_index(snapshot(documents.store), fresh_index(folder, tmp_path, embed, tokens))


def _child(db_path: Path, folder: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(db_path), str(folder), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ},
    )


def test_an_indexer_killed_with_sigkill_mid_file_resumes_where_it_stopped(
    ember_home: Path, folder: Path, counting_embed: CountingEmbed, tokens: Any, tmp_path: Path, embed: Any
) -> None:
    db_path = ember_home / "data" / "killed.sqlite3"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    child = _child(db_path, folder, "--stall", "project.md:16")
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("STALLED"):
            break
    else:
        pytest.fail(f"the indexer ended before it was killed (exit {child.wait()})")
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    db = Database(db_path)
    try:
        documents = Documents(db, counting_embed, tokens=tokens)
        killed = {Path(f.path).name: f for f in documents.store.files()}
        assert killed["licenses.md"].status == killed["manual.pdf"].status == "done"
        assert killed["project.md"].status == "embedding" and killed["project.md"].chunks_done == 16
        assert set(killed) == {"licenses.md", "manual.pdf", "project.md"}
        missing = documents.store.counts()
        report = documents.index_folder(folder)
        assert (report.resumed, report.unchanged, report.indexed) == (1, 2, 2)
        readme_left = killed["project.md"].chunks_total - 16
        others = documents.store.counts()["chunks"] - missing["chunks"]  # the two files not begun
        assert len(counting_embed.texts) == readme_left + others
        assert_same_index(snapshot(documents.store), fresh_index(folder, tmp_path, embed, tokens))
    finally:
        db.close()


def test_an_indexer_killed_at_random_moments_ends_with_the_same_index(
    ember_home: Path, folder: Path, embed: Any, tokens: Any, tmp_path: Path
) -> None:
    db_path = ember_home / "data" / "killed.sqlite3"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(17)
    kills = 0
    for _ in range(3):
        child = _child(db_path, folder, "--slow", "0.05")
        assert child.stdout is not None
        child.stdout.readline()  # its first report: the model is loaded and it is running
        time.sleep(rng.uniform(0.2, 1.5))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait(10)
    assert kills >= 2
    db = Database(db_path)
    try:
        documents = Documents(db, embed, tokens=tokens)
        documents.index_folder(folder)
        assert_same_index(snapshot(documents.store), fresh_index(folder, tmp_path, embed, tokens))
    finally:
        db.close()


def test_an_index_job_on_a_queue_reports_progress_and_a_cancel_keeps_what_was_done(
    documents: Documents, folder: Path, counting_embed: CountingEmbed
) -> None:
    queue = JobQueue(documents.run_job, lanes=("documents",))
    try:
        request = documents.add_folder(folder)
        assert request == IndexFolderRequest(str(folder.resolve()))
        events = []
        cancelled = []

        def listen(event: Any) -> None:
            events.append(event)
            data = event.data
            if isinstance(data, IndexProgress) and data.chunks_done >= 16 and not cancelled:
                cancelled.append(event)
                job.cancel()

        job = queue.submit(request, listener=listen)
        final = job.wait(120)
        assert final is not None and final.kind is EventKind.CANCELLED
        kept = documents.store.counts()["embedded"]
        assert kept >= 16
        progress = [e.data for e in events if e.kind is EventKind.PROGRESS]
        assert all(isinstance(p, IndexProgress) for p in progress)

        counting_embed.texts.clear()
        events.clear()
        final = queue.submit(request, listener=events.append).wait(120)
        assert final is not None and final.kind is EventKind.RESULT
        report = final.data
        assert isinstance(report, IndexReport)
        assert len(counting_embed.texts) == report.chunks - kept  # only what the cancelled run had not done
        last = [e.data for e in events if e.kind is EventKind.PROGRESS][-1]
        assert last.done == last.total == 5
    finally:
        queue.shutdown(10)


def test_a_cancelled_run_raises_cancelled(documents: Documents, folder: Path) -> None:
    from engines.jobs import CancelToken

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        documents.index_folder(folder, cancel=token)


def test_an_index_from_a_newer_ember_is_refused_with_what_to_do(db: Database) -> None:
    DocumentIndex(db)
    with db.transaction() as conn:
        conn.execute("UPDATE doc_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(EmberError, match="newer version of Ember"):
        DocumentIndex(db)


def test_vectors_of_another_embedding_model_are_made_again(
    documents: Documents, folder: Path, counting_embed: CountingEmbed
) -> None:
    report = documents.index_folder(folder)
    documents.store.set_meta("embedding_model", "some-older-model")
    counting_embed.texts.clear()
    again = documents.index_folder(folder)
    assert again.notes and "embedding model changed" in again.notes[0]
    assert again.resumed == 5 and len(counting_embed.texts) == report.chunks


def test_adding_a_path_that_is_no_folder_says_so(documents: Documents, tmp_path: Path) -> None:
    with pytest.raises(EmberError, match="is not a folder"):
        documents.add_folder(tmp_path / "nowhere")
