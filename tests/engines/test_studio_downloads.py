"""Downloads as Studio jobs: their own lane, pause and resume, and a restart that picks them up again."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from engines.jobs import EventKind, JobEvent
from engines.models.downloads import DownloadProgress, DownloadRequest, DownloadState
from engines.studio import Studio

REPO = "ember-test/studio-model"


def payload(n: int) -> bytes:
    return b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(n // 32 + 1))[:n]


def wait_for(condition: Any, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_a_download_runs_on_its_own_lane_and_reports_progress(studio: Studio, hub: Any, hf_cache: Path) -> None:
    data = payload(300_000)
    hub.add_file(REPO, "model.gguf", data)
    events: list[JobEvent] = []
    job = studio.download(DownloadRequest(REPO, ("model.gguf",), label="Studio model"), listener=events.append)
    final = job.wait(30)
    assert final is not None and final.kind is EventKind.RESULT, final
    assert job.lane == "download"
    progress = [e.data for e in events if e.kind is EventKind.PROGRESS]
    assert progress and isinstance(progress[-1], DownloadProgress) and progress[-1].bytes_done == len(data)
    assert Path(final.data.paths["model.gguf"]).read_bytes() == data
    (record,) = studio.downloads.recent()
    assert record.state is DownloadState.DONE


def test_pause_keeps_the_part_and_resume_finishes_with_a_range(studio: Studio, hub: Any, hf_cache: Path) -> None:
    data = payload(2_000_000)
    hub.add_file(REPO, "model.gguf", data)
    hub.throttle_bytes_per_s = 2_000_000
    job = studio.download(DownloadRequest(REPO, ("model.gguf",)))
    wait_for(lambda: hub.body_bytes_sent(REPO, "model.gguf") > 300_000)
    download_id = studio.downloads.recent()[0].id
    assert studio.pause_download(download_id)
    final = job.wait(10)
    assert final is not None and final.kind is EventKind.CANCELLED
    assert studio.downloads.get(download_id).state is DownloadState.PAUSED
    assert list(hf_cache.rglob("*.incomplete")), "the partial file was kept"

    hub.throttle_bytes_per_s = None
    resumed = studio.resume_download(download_id).wait(30)
    assert resumed is not None and resumed.kind is EventKind.RESULT, resumed
    assert Path(resumed.data.paths["model.gguf"]).read_bytes() == data
    assert any("range" in {k.lower() for k in r.headers} for r in hub.body_requests(REPO, "model.gguf"))
    assert hub.body_bytes_sent(REPO, "model.gguf") < 1.1 * len(data)


def test_closing_the_app_mid_download_resumes_it_at_the_next_start(ember_home: Path, hub: Any, hf_cache: Path) -> None:
    data = payload(2_000_000)
    hub.add_file(REPO, "model.gguf", data)
    hub.throttle_bytes_per_s = 2_000_000
    first = Studio()
    try:
        first.download(DownloadRequest(REPO, ("model.gguf",)))
        wait_for(lambda: hub.body_bytes_sent(REPO, "model.gguf") > 300_000)
    finally:
        assert first.close(timeout_s=10)
    assert list(hf_cache.rglob("*.incomplete")), "closing kept the partial file"

    hub.throttle_bytes_per_s = None
    second = Studio()
    try:
        (record,) = second.downloads.pending()
        assert record.state is DownloadState.QUEUED
        (job,) = second.resume_unfinished_downloads()
        final = job.wait(30)
        assert final is not None and final.kind is EventKind.RESULT, final
        assert Path(final.data.paths["model.gguf"]).read_bytes() == data
        assert hub.body_bytes_sent(REPO, "model.gguf") < 1.1 * len(data)
    finally:
        second.close()


def test_cancel_deletes_the_part(studio: Studio, hub: Any, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(2_000_000))
    hub.throttle_bytes_per_s = 1_000_000
    job = studio.download(DownloadRequest(REPO, ("model.gguf",)))
    wait_for(lambda: hub.body_bytes_sent(REPO, "model.gguf") > 200_000)
    studio.cancel_download(studio.downloads.recent()[0].id)
    final = job.wait(10)
    assert final is not None and final.kind is EventKind.CANCELLED
    assert not list(hf_cache.rglob("*.incomplete"))
    assert studio.downloads.recent()[0].state is DownloadState.CANCELLED


def test_a_pause_given_before_the_worker_starts_the_download_is_kept(studio: Studio, hub: Any, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(2_000_000))
    hub.throttle_bytes_per_s = 1_000_000
    job = studio.download(DownloadRequest(REPO, ("model.gguf",)))
    assert studio.pause_download(job.request.download_id)  # at once: the worker may not have started it yet
    final = job.wait(10)
    assert final is not None and final.kind is EventKind.CANCELLED
    assert studio.downloads.get(job.request.download_id).state is DownloadState.PAUSED
    assert hub.body_bytes_sent(REPO, "model.gguf") < 2_000_000
