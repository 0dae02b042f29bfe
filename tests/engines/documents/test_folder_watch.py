"""The folder watch and the index jobs: a folder that changes while Ember runs is indexed again by
itself; every index run is known, whoever started it, and can be stopped; one waiting run a folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from engines.documents.service import Documents, IndexFolderRequest
from engines.documents.watch import FolderWatch
from engines.jobs import EventKind, JobQueue


def test_changed_says_what_a_run_would_find(documents: Documents, folder: Path) -> None:
    documents.index_folder(folder)
    [info] = documents.folders()
    assert not documents.changed(info)
    (folder / "new.md").write_text("# New\n\nA note written after the first run.\n")
    assert documents.changed(info)
    documents.index_folder(folder)
    assert not documents.changed(info)
    readme = folder / "project.md"
    os.utime(readme, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    assert documents.changed(info)  # a stat differs: the run hashes it and keeps its passages
    documents.index_folder(folder)
    (folder / "new.md").unlink()
    assert documents.changed(info)
    documents.index_folder(folder)
    (folder / "notes" / "ignored.png").write_bytes(b"\x89PNG")  # not a document: no run for it
    assert not documents.changed(info)


def test_a_folder_that_is_not_there_now_keeps_its_index_and_is_not_changed(
    documents: Documents, folder: Path, tmp_path: Path
) -> None:
    documents.index_folder(folder)
    chunks = documents.store.counts()["chunks"]
    folder.rename(tmp_path / "unplugged")
    [info] = documents.folders()
    assert not documents.changed(info)
    assert documents.changed_folders() == []
    assert documents.store.counts()["chunks"] == chunks


def test_the_watch_queues_a_run_for_each_changed_folder_and_the_run_reads_only_the_change(
    documents: Documents, folder: Path, tmp_path: Path, counting_embed: Any
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("Plain words about apples.\n")
    documents.index_folder(folder)
    documents.index_folder(other)
    queue = JobQueue(documents.run_job, lanes=("documents",))
    submitted: list[Any] = []

    def submit(request: IndexFolderRequest) -> Any:
        job = queue.submit(request)
        documents.track(job)
        submitted.append(job)
        return job

    watch = FolderWatch(documents, submit, every_s=0.05)
    try:
        assert watch.look() == []
        (folder / "notes" / "cats.md").write_text("# Cats\n\nThe keeper's cat is called Juniper now.\n")
        counting_embed.texts.clear()
        watch.start()
        deadline = time.monotonic() + 60
        while not (submitted and submitted[0].done) and time.monotonic() < deadline:
            time.sleep(0.02)
        final = submitted[0].final_event
        assert final is not None and final.kind is EventKind.RESULT, final
        assert final.data.folder == str(folder.resolve()) and final.data.indexed == 1
        assert counting_embed.texts == ["Cats\nThe keeper's cat is called Juniper now."]
        time.sleep(0.3)  # the watch keeps looking: nothing changed since, so nothing more is queued
        assert len(submitted) == 1
        assert "Juniper" in documents.search("What is the keeper's cat called?", k=1, mode="keywords")[0].text
    finally:
        watch.stop()
        queue.shutdown(10)


def test_index_jobs_are_known_and_stopped_whoever_started_them(documents: Documents, folder: Path) -> None:
    queue = JobQueue(documents.run_job, lanes=("documents",))
    try:
        request = documents.add_folder(folder)
        started: list[Any] = []
        job = queue.submit(request, listener=lambda e: started.append(e) if e.kind is EventKind.PROGRESS else None)
        documents.track(job)
        assert documents.index_jobs() == {request.folder: [job]}
        deadline = time.monotonic() + 60
        while not started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert job.started and documents.queued_job(folder) is None
        assert documents.stop(folder)
        final = job.wait(60)
        assert final is not None and final.kind is EventKind.CANCELLED
        assert documents.index_jobs() == {} and not documents.stop(folder)
    finally:
        queue.shutdown(10)


def test_the_studio_knows_every_index_run_and_queues_one_waiting_run_a_folder(studio: Any, folder: Path) -> None:
    request = studio.documents.add_folder(folder)
    first = studio.submit(request)
    second = studio.submit(request)  # while the first waits or runs, a second waits behind it
    third = studio.submit(request)
    # Never two waiting runs of one folder. (A job only goes from waiting to started, so two seen waiting now
    # were both waiting when the third was asked for. On a fast machine the small folder's first run can end,
    # and the second start, before the third is asked for: then the third is a new run, rightly.)
    assert len({job for job in (first, second, third) if not job.started}) <= 1
    jobs = studio.documents.index_jobs().get(request.folder, [])
    assert all(job in jobs or job.done for job in (first, second, third))
    assert studio.documents.stop(folder) or all(job.done for job in (first, second, third))
    for job in (first, second, third):
        final = job.wait(120)
        assert final is not None and final.kind in (EventKind.CANCELLED, EventKind.RESULT)
    assert studio.documents.index_jobs() == {}
    assert studio.folder_watch.every_s > 0
