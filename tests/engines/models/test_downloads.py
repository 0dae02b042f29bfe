"""Downloads into the Hugging Face cache, against a fake hub on loopback (tests/tools/fake_hub.py)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_hub import FakeHub  # tests/tools, on the path from tests/conftest.py

from engines import database
from engines.errors import Cancelled, EmberError
from engines.jobs import CancelToken
from engines.models import downloads
from engines.models.downloads import (
    DownloadDamaged,
    DownloadPaused,
    DownloadProgress,
    DownloadRequest,
    DownloadResult,
    DownloadState,
    DownloadStore,
    TokenRequired,
    run_download,
    run_recorded,
)

REPO = "ember-test/tiny-model"
MB = 1_000_000


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that do not repeat in blocks (so a misplaced range would change the hash)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def fetch(
    hub: FakeHub,
    cache: Path,
    request: DownloadRequest,
    *,
    seen: list[DownloadProgress] | None = None,
    cancel: CancelToken | None = None,
    pause: threading.Event | None = None,
) -> DownloadResult:
    return run_download(
        request,
        (seen if seen is not None else []).append,
        cancel or CancelToken(),
        pause=pause,
        cache_dir=cache,
        endpoint=hub.url,
    )


class Background:
    """Runs a download on a thread and notes when it ended and how."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended_s = 0.0
        self._work = work
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._work()
        except BaseException as exc:
            self.error = exc
        self.ended_s = time.monotonic()

    def join(self, timeout_s: float = 20) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the download did not stop"


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def storage(cache: Path) -> Path:
    return cache / "models--ember-test--tiny-model"


def partials(cache: Path) -> list[Path]:
    return list(storage(cache).glob("blobs/*.incomplete"))


def download_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ember-download")]


# -- the cache is huggingface_hub's ------------------------------------------------------------


def test_downloads_into_the_hf_cache_and_huggingface_hub_finds_the_files(hub: FakeHub, hf_cache: Path) -> None:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    weights = hub.add_file(REPO, "unet/model.onnx", payload(3 * MB))
    config = hub.add_file(REPO, "config.json", b'{"model_type": "tiny"}')
    commit = hub.commit(REPO)

    result = fetch(hub, hf_cache, DownloadRequest(REPO, ("unet/model.onnx", "config.json")))

    assert result.commit == commit
    assert result.bytes_downloaded == len(weights.data) + len(config.data)
    assert result.verified == {"unet/model.onnx": "etag ok", "config.json": "etag ok"}
    repo = storage(hf_cache)
    assert (repo / "refs" / "main").read_text() == commit
    assert (repo / "blobs" / weights.sha256).read_bytes() == weights.data
    assert (repo / "blobs" / config.git_sha1).read_bytes() == config.data
    pointer = repo / "snapshots" / commit / "unet" / "model.onnx"
    assert os.readlink(pointer) == os.path.join("..", "..", "..", "blobs", weights.sha256)
    assert result.paths["unet/model.onnx"] == str(pointer)
    assert not partials(hf_cache)

    for path in ("unet/model.onnx", "config.json"):
        assert try_to_load_from_cache(REPO, path, cache_dir=hf_cache) == result.paths[path]
        assert hf_hub_download(REPO, path, cache_dir=hf_cache, local_files_only=True) == result.paths[path]
    # Online, huggingface_hub asks the hub for metadata and finds nothing left to fetch.
    sent = hub.body_bytes_sent(REPO, "unet/model.onnx")
    assert hf_hub_download(REPO, "unet/model.onnx", cache_dir=hf_cache, endpoint=hub.url) == str(pointer)
    assert hub.body_bytes_sent(REPO, "unet/model.onnx") == sent


def test_a_file_already_in_the_cache_is_not_downloaded_again(hub: FakeHub, hf_cache: Path) -> None:
    from huggingface_hub import hf_hub_download

    hub.add_file(REPO, "model.gguf", payload(1 * MB))
    hub.add_file(REPO, "tokenizer.json", b'{"version": "1.0"}')
    hf_hub_download(REPO, "model.gguf", cache_dir=hf_cache, endpoint=hub.url)  # another tool got this one
    first = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf", "tokenizer.json")))
    assert first.verified == {"model.gguf": "cached", "tokenizer.json": "etag ok"}
    assert first.bytes_downloaded == len(b'{"version": "1.0"}')

    requests_before = len(hub.body_requests(REPO, "model.gguf")) + len(hub.body_requests(REPO, "tokenizer.json"))
    again = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf", "tokenizer.json")))
    assert again.bytes_downloaded == 0
    assert again.verified == {"model.gguf": "cached", "tokenizer.json": "cached"}
    assert again.paths == first.paths
    assert len(hub.body_requests(REPO, "model.gguf")) + len(hub.body_requests(REPO, "tokenizer.json")) == (
        requests_before
    )


def test_a_pinned_commit_in_the_cache_needs_no_network(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(200_000))
    first = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))
    asked = len(hub.seen)
    pinned = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",), revision=first.commit))
    assert pinned.paths == first.paths and pinned.bytes_downloaded == 0
    assert len(hub.seen) == asked


# -- progress, interruption, pause, cancel -----------------------------------------------------


def test_progress_is_monotonic_and_ends_at_the_total(
    hub: FakeHub, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "PROGRESS_INTERVAL_S", 0.0)
    hub.add_file(REPO, "a.bin", payload(1 * MB, seed=1))
    hub.add_file(REPO, "b.bin", payload(1 * MB, seed=2))
    hub.throttle_bytes_per_s = 4 * MB
    seen: list[DownloadProgress] = []

    fetch(hub, hf_cache, DownloadRequest(REPO, ("a.bin", "b.bin")), seen=seen)

    assert seen[0].stage == "checking"
    done = [p.bytes_done for p in seen]
    assert done == sorted(done)
    assert all(0 <= p.file_bytes_done <= p.file_bytes_total for p in seen if p.stage == "downloading")
    last = seen[-1]
    assert last.stage == "done"
    assert last.bytes_done == last.bytes_total == 2 * MB
    assert last.files_done == last.files_total == 2
    assert last.fraction == 1.0
    moving = [p for p in seen if p.bytes_per_s > 0]
    assert moving, "no speed was reported"
    assert all(1 * MB < p.bytes_per_s < 10 * MB for p in moving)
    assert any(p.eta_s is not None and p.eta_s > 0 for p in moving)


def test_a_transfer_interrupted_half_way_resumes_with_a_range_and_the_right_hash(hub: FakeHub, hf_cache: Path) -> None:
    weights = hub.add_file(REPO, "model.gguf", payload(2 * MB))
    hub.fail_once_after(REPO, "model.gguf", 1 * MB)

    result = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))

    gets = hub.body_requests(REPO, "model.gguf")
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    assert gets[1].headers["range"] == f"bytes={1 * MB}-"
    assert hub.body_bytes_sent(REPO, "model.gguf") == len(weights.data)
    assert result.verified == {"model.gguf": "etag ok"}
    assert hashlib.sha256(Path(result.paths["model.gguf"]).read_bytes()).hexdigest() == weights.sha256


def test_pause_keeps_the_part_and_resume_continues_it_with_a_range(hub: FakeHub, hf_cache: Path) -> None:
    weights = hub.add_file(REPO, "model.gguf", payload(4 * MB))
    hub.throttle_bytes_per_s = 4 * MB
    seen: list[DownloadProgress] = []
    pause = threading.Event()
    run = Background(lambda: fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)), seen=seen, pause=pause))
    wait_for(lambda: bool(seen) and seen[-1].bytes_done >= 1 * MB)
    pause.set()
    paused_at = time.monotonic()
    run.join()

    assert isinstance(run.error, DownloadPaused)
    assert run.ended_s - paused_at < 0.2
    (part,) = partials(hf_cache)
    kept = part.stat().st_size
    assert 1 * MB <= kept < len(weights.data)
    assert isinstance(run.error.partial, DownloadProgress) and run.error.partial.bytes_done == kept

    hub.throttle_bytes_per_s = None
    resumed: list[DownloadProgress] = []
    result = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)), seen=resumed)

    assert hub.body_requests(REPO, "model.gguf")[-1].headers["range"] == f"bytes={kept}-"
    assert resumed[1].bytes_done == kept  # progress starts where the part ends
    assert result.bytes_downloaded == len(weights.data) - kept
    assert hub.body_bytes_sent(REPO, "model.gguf") < 1.1 * len(weights.data)
    assert result.verified == {"model.gguf": "etag ok"}
    assert not partials(hf_cache)


def test_cancel_stops_within_200_ms_and_deletes_the_part(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(4 * MB))
    hub.throttle_bytes_per_s = 4 * MB
    seen: list[DownloadProgress] = []
    cancel = CancelToken()
    run = Background(lambda: fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)), seen=seen, cancel=cancel))
    wait_for(lambda: bool(seen) and seen[-1].bytes_done >= 1 * MB)
    cancel.cancel()
    cancelled_at = time.monotonic()
    run.join()

    assert isinstance(run.error, Cancelled) and not isinstance(run.error, DownloadPaused)
    assert run.ended_s - cancelled_at < 0.2
    assert not partials(hf_cache)
    assert not download_threads()
    assert not list(storage(hf_cache).glob("snapshots/*/*"))


def test_cancel_stops_within_200_ms_while_the_server_sends_nothing(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(4 * MB))
    hub.stall_after(REPO, "model.gguf", 1 * MB)
    seen: list[DownloadProgress] = []
    cancel = CancelToken()
    run = Background(lambda: fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)), seen=seen, cancel=cancel))
    wait_for(lambda: hub.body_bytes_sent(REPO, "model.gguf") >= 1 * MB)
    time.sleep(0.3)  # the client now waits on a silent socket
    cancel.cancel()
    cancelled_at = time.monotonic()
    run.join()

    assert isinstance(run.error, Cancelled)
    assert run.ended_s - cancelled_at < 0.2
    assert not partials(hf_cache)
    assert not download_threads()


def test_a_part_left_by_another_tool_is_resumed(hub: FakeHub, hf_cache: Path) -> None:
    weights = hub.add_file(REPO, "model.gguf", payload(1 * MB))
    part = storage(hf_cache) / "blobs" / f"{weights.sha256}.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(weights.data[:300_000])  # as hf_hub_download leaves it when stopped

    result = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))

    assert hub.body_requests(REPO, "model.gguf")[0].headers["range"] == "bytes=300000-"
    assert result.bytes_downloaded == len(weights.data) - 300_000
    assert result.verified == {"model.gguf": "etag ok"}


def test_discarding_a_paused_download_deletes_its_part(hub: FakeHub, hf_cache: Path) -> None:
    weights = hub.add_file(REPO, "model.gguf", payload(1 * MB))
    part = storage(hf_cache) / "blobs" / f"{weights.sha256}.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(weights.data[:300_000])  # what a paused run (Ember's or huggingface_hub's) leaves

    freed = downloads.discard_partial_files(
        DownloadRequest(REPO, ("model.gguf",)), cache_dir=hf_cache, endpoint=hub.url
    )

    assert freed == 300_000
    assert not part.exists()
    assert hub.body_bytes_sent(REPO, "model.gguf") == 0


# -- checks --------------------------------------------------------------------------------------


def test_a_wrong_catalog_sha256_deletes_the_file_and_says_so(hub: FakeHub, hf_cache: Path) -> None:
    config = hub.add_file(REPO, "config.json", b'{"hidden_size": 64}')  # kept in git: the hub gives no SHA-256
    wrong = "0" * 64
    request = DownloadRequest(REPO, ("config.json",), expected_sha256={"config.json": wrong})

    with pytest.raises(DownloadDamaged) as caught:
        fetch(hub, hf_cache, request)

    actual = hashlib.sha256(config.data).hexdigest()
    assert str(caught.value) == (
        f"config.json from {REPO} is damaged: its SHA-256 is {actual} but should be {wrong}. "
        "It was deleted; download it again."
    )
    assert not list(storage(hf_cache).glob("blobs/*"))
    assert not list(storage(hf_cache).glob("snapshots/*/*"))


def test_corrupt_bytes_under_the_hubs_sha256_are_deleted_and_reported(hub: FakeHub, hf_cache: Path) -> None:
    weights = hub.add_file(REPO, "model.gguf", payload(1 * MB))
    hub.corrupt(REPO, "model.gguf")

    with pytest.raises(
        DownloadDamaged, match=re.escape(f"but should be {weights.sha256}. It was deleted; download it again")
    ):
        fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))

    assert not list(storage(hf_cache).glob("blobs/*"))
    assert not list(storage(hf_cache).glob("snapshots/*/*"))


def test_a_catalog_sha256_that_the_hub_contradicts_is_refused_before_downloading(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(1 * MB))
    request = DownloadRequest(REPO, ("model.gguf",), expected_sha256={"model.gguf": "ab" * 32})

    with pytest.raises(EmberError, match=re.escape("Hugging Face serves a different model.gguf")):
        fetch(hub, hf_cache, request)
    assert hub.body_bytes_sent(REPO, "model.gguf") == 0


def test_a_matching_catalog_sha256_is_reported(hub: FakeHub, hf_cache: Path) -> None:
    weights = hub.add_file(REPO, "model.gguf", payload(300_000))
    request = DownloadRequest(REPO, ("model.gguf",), expected_sha256={"model.gguf": weights.sha256.upper()})
    assert fetch(hub, hf_cache, request).verified == {"model.gguf": "sha256 ok"}


def test_not_enough_space_refuses_before_any_byte_is_written(
    hub: FakeHub, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_file(REPO, "model.gguf", payload(1 * MB))
    monkeypatch.setattr(downloads, "free_bytes", lambda path: 150 * MB)

    with pytest.raises(EmberError) as caught:
        fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))

    assert str(caught.value) == (
        f"Not enough disk space: this download needs 201.0 MB and the disk holding {hf_cache} has 150.0 MB free. "
        "Free some space or choose a smaller quantisation."
    )
    assert not hf_cache.exists()
    assert hub.body_bytes_sent(REPO, "model.gguf") == 0


# -- the hub says no -----------------------------------------------------------------------------


def test_a_gated_repo_asks_for_a_token_then_downloads_with_it(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(100_000))
    hub.gate(REPO, "hf_reader")

    with pytest.raises(TokenRequired) as caught:
        fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))
    assert str(caught.value) == (
        f"{REPO} is gated: accept its licence on https://huggingface.co/{REPO} and give Ember a Hugging Face "
        "token with read access."
    )
    with pytest.raises(TokenRequired, match="the Hugging Face token Ember sent has no access to it yet"):
        fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",), token="hf_someone_else"))

    result = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",), token="hf_reader"))

    assert result.verified == {"model.gguf": "etag ok"}
    assert hub.seen[-2].method == "HEAD" and hub.seen[-2].headers["authorization"] == "Bearer hf_reader"
    assert "hf_reader" not in repr(DownloadRequest(REPO, ("model.gguf",), token="hf_reader"))


def test_a_missing_file_says_the_repo_has_no_such_file(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(1000))
    with pytest.raises(EmberError) as caught:
        fetch(hub, hf_cache, DownloadRequest(REPO, ("model-q8.gguf",)))
    assert not isinstance(caught.value, TokenRequired)
    assert str(caught.value).startswith(f"{REPO} has no file model-q8.gguf at revision main.")


def test_a_missing_revision_says_so(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(1000))
    with pytest.raises(EmberError, match=re.escape(f"{REPO} has no revision 'v9' on Hugging Face")):
        fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",), revision="v9"))


def test_an_unreachable_hub_says_so_at_once(hf_cache: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    began = time.monotonic()
    with pytest.raises(EmberError) as caught:
        run_download(
            DownloadRequest(REPO, ("model.gguf",)), lambda p: None, CancelToken(), cache_dir=hf_cache, endpoint=closed
        )
    assert time.monotonic() - began < 2
    assert str(caught.value) == (
        f"Ember cannot reach Hugging Face at {closed} to download {REPO} (connection refused). "
        "Check the internet connection and any proxy, then try again."
    )


def test_an_unreachable_hub_still_serves_a_download_that_is_complete_in_the_cache(hub: FakeHub, hf_cache: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(1000))
    first = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))
    hub.close()
    again = fetch(hub, hf_cache, DownloadRequest(REPO, ("model.gguf",)))
    assert again.paths == first.paths and again.commit == first.commit
    assert again.verified == {"model.gguf": "cached (offline)"}


def test_the_job_queue_runs_a_download_and_reports_its_progress(hub: FakeHub, hf_cache: Path) -> None:
    from engines.jobs import EventKind, Job, JobQueue

    hub.add_file(REPO, "model.gguf", payload(1 * MB))

    def runner(job: Job) -> DownloadResult:
        return run_download(
            job.request,
            lambda p: job.emit(EventKind.PROGRESS, p),
            job.cancel_token,
            cache_dir=hf_cache,
            endpoint=hub.url,
        )

    jobs = JobQueue(runner, lanes=("downloads",), what="download")
    try:
        events = []
        job = jobs.submit(DownloadRequest(REPO, ("model.gguf",)), listener=events.append)
        final = job.wait(10)
    finally:
        assert jobs.shutdown()
    assert final is not None and final.kind is EventKind.RESULT
    assert isinstance(final.data, DownloadResult) and final.data.verified == {"model.gguf": "etag ok"}
    progress = [e.data for e in events if e.kind is EventKind.PROGRESS]
    assert progress[-1].stage == "done" and progress[-1].bytes_done == 1 * MB


# -- downloads that survive a restart --------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying: nothing in Ember gets to record it."""


def test_a_restart_resumes_the_download_from_the_part_on_disk(hub: FakeHub, hf_cache: Path, tmp_path: Path) -> None:
    weights = hub.add_file(REPO, "model.gguf", payload(3 * MB))
    hub.throttle_bytes_per_s = 6 * MB
    request = DownloadRequest(REPO, ("model.gguf",), label="Tiny model", token="hf_secret_token")
    db = database.Database(tmp_path / "ember.sqlite3")
    store = DownloadStore(db)
    download_id = store.add(request)

    def crash_half_way(p: DownloadProgress) -> None:
        if p.bytes_done >= 1 * MB:
            raise Crash()

    with pytest.raises(Crash):
        run_recorded(
            store,
            download_id,
            request,
            crash_half_way,
            CancelToken(),
            cache_dir=hf_cache,
            endpoint=hub.url,
            record_interval_s=0.0,
        )
    db.close()
    (part,) = partials(hf_cache)
    kept = part.stat().st_size

    db = database.Database(tmp_path / "ember.sqlite3")  # Ember starts again
    store = DownloadStore(db)
    (record,) = store.pending()
    assert record.id == download_id
    assert record.state is DownloadState.RUNNING
    assert record.request == request and record.request.token is None
    assert record.needs_token
    assert 0 < record.bytes_done <= kept
    assert b"hf_secret_token" not in (tmp_path / "ember.sqlite3").read_bytes()

    hub.throttle_bytes_per_s = None
    result = run_recorded(
        store, record.id, record.request, lambda p: None, CancelToken(), cache_dir=hf_cache, endpoint=hub.url
    )

    assert hub.body_requests(REPO, "model.gguf")[-1].headers["range"] == f"bytes={kept}-"
    assert result.verified == {"model.gguf": "etag ok"}
    assert store.pending() == []
    done = store.get(download_id)
    assert done is not None and done.state is DownloadState.DONE
    assert done.bytes_done == done.bytes_total == len(weights.data)
    db.close()


def test_the_store_records_pause_cancel_and_failure(hub: FakeHub, hf_cache: Path, tmp_path: Path) -> None:
    hub.add_file(REPO, "model.gguf", payload(1000))
    hub.gate(REPO, "hf_reader")
    db = database.Database(tmp_path / "ember.sqlite3")
    store = DownloadStore(db)
    request = DownloadRequest(REPO, ("model.gguf",))

    def run(download_id: int, cancel: CancelToken, pause: threading.Event | None = None) -> None:
        run_recorded(
            store, download_id, request, lambda p: None, cancel, pause=pause, cache_dir=hf_cache, endpoint=hub.url
        )

    paused, cancelled, failed = store.add(request), store.add(request), store.add(request)
    pause = threading.Event()
    pause.set()
    with pytest.raises(DownloadPaused):
        run(paused, CancelToken(), pause)
    stop = CancelToken()
    stop.cancel()
    with pytest.raises(Cancelled):
        run(cancelled, stop)
    with pytest.raises(TokenRequired):
        run(failed, CancelToken())

    states = {r.id: r for r in store.recent()}
    assert states[paused].state is DownloadState.PAUSED
    assert states[cancelled].state is DownloadState.CANCELLED
    assert states[failed].state is DownloadState.FAILED and states[failed].needs_token
    assert "is gated" in (states[failed].error or "")
    assert [r.id for r in store.pending()] == [paused]
    db.close()


# -- folders named by include patterns ------------------------------------------------------------


def add_onnx_folder(hub: FakeHub) -> dict[str, Any]:
    """A diffusers ONNX folder whose UNet keeps its weights in an external data file (and a stray pickle)."""
    return {
        "model_index.json": hub.add_file(REPO, "model_index.json", b'{"_class_name": "StableDiffusionPipeline"}'),
        "unet/model.onnx": hub.add_file(REPO, "unet/model.onnx", payload(200_000, seed=1)),
        "unet/model.onnx_data": hub.add_file(REPO, "unet/model.onnx_data", payload(1 * MB, seed=2)),
        "unet/weights.bin": hub.add_file(REPO, "unet/weights.bin", payload(300_000, seed=3)),
        "vae_decoder/model.onnx": hub.add_file(REPO, "vae_decoder/model.onnx", payload(50_000, seed=4)),
    }


def test_include_patterns_fetch_the_matching_files_from_one_snapshot_and_skip_pickles(
    hub: FakeHub, hf_cache: Path
) -> None:
    files = add_onnx_folder(hub)
    commit = hub.commit(REPO)
    wanted = ("model_index.json", "unet/model.onnx", "unet/model.onnx_data")
    seen: list[DownloadProgress] = []

    result = fetch(hub, hf_cache, DownloadRequest(REPO, ("model_index.json",), include=("unet/*",)), seen=seen)

    assert sorted(result.paths) == sorted(wanted)
    assert result.commit == commit
    snapshot = storage(hf_cache) / "snapshots" / commit
    for path in wanted:
        assert result.paths[path] == str(snapshot / path)
        assert Path(result.paths[path]).read_bytes() == files[path].data
    assert hub.body_bytes_sent(REPO, "unet/weights.bin") == 0
    assert not (snapshot / "unet" / "weights.bin").exists()
    assert [p.name for p in (storage(hf_cache) / "snapshots").iterdir()] == [commit]
    # One listing at the branch, then every file asked for at the commit it named.
    assert [r.path for r in hub.seen if "/api/" in r.path] == [f"/api/models/{REPO}/revision/main"]
    heads = [r.path for r in hub.seen if r.method == "HEAD"]
    assert len(heads) == 3 and all(f"/resolve/{commit}/" in path for path in heads)
    last = seen[-1]
    assert last.stage == "done"
    assert last.bytes_done == last.bytes_total == sum(len(files[path].data) for path in wanted)
    assert last.files_done == last.files_total == 3


def test_a_folder_complete_in_the_cache_is_served_when_the_hub_is_unreachable(hub: FakeHub, hf_cache: Path) -> None:
    add_onnx_folder(hub)
    request = DownloadRequest(REPO, ("model_index.json",), include=("unet/*",))
    first = fetch(hub, hf_cache, request)
    hub.close()
    again = fetch(hub, hf_cache, request)
    assert again.paths == first.paths
    assert set(again.verified.values()) == {"cached (offline)"}


def test_a_gated_repos_listing_without_a_token_asks_for_one(hub: FakeHub, hf_cache: Path) -> None:
    add_onnx_folder(hub)
    hub.gate(REPO, "hf_reader")

    with pytest.raises(TokenRequired, match=re.escape(f"{REPO} is gated: accept its licence")):
        fetch(hub, hf_cache, DownloadRequest(REPO, ("model_index.json",), include=("unet/*",)))
    assert [r.method for r in hub.seen] == ["GET"]  # the listing refused: no file was asked for

    result = fetch(hub, hf_cache, DownloadRequest(REPO, ("model_index.json",), include=("unet/*",), token="hf_reader"))
    assert len(result.paths) == 3
    assert hub.seen[1].headers["authorization"] == "Bearer hf_reader"


def test_a_cancel_before_the_listing_sends_no_request(hub: FakeHub, hf_cache: Path) -> None:
    add_onnx_folder(hub)
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        run_download(
            DownloadRequest(REPO, ("model_index.json",), include=("unet/*",)),
            lambda p: cancel.cancel(),
            cancel,
            cache_dir=hf_cache,
            endpoint=hub.url,
        )
    assert hub.seen == []


def test_the_store_keeps_include_patterns(tmp_path: Path) -> None:
    db = database.Database(tmp_path / "ember.sqlite3")
    store = DownloadStore(db)
    request = DownloadRequest(REPO, ("model_index.json",), include=("unet/*", "*.json"), label="Folder")
    download_id = store.add(request)
    db.close()

    db = database.Database(tmp_path / "ember.sqlite3")
    record = DownloadStore(db).get(download_id)
    assert record is not None and record.request == request
    assert record.request.include == ("unet/*", "*.json")
    db.close()


def test_the_store_opens_a_database_made_before_include_patterns(tmp_path: Path) -> None:
    db = database.Database(tmp_path / "ember.sqlite3")
    with db.transaction() as conn:  # the table as Ember created it before include patterns
        conn.execute(
            "CREATE TABLE downloads (id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL,"
            " repo_type TEXT NOT NULL, revision TEXT NOT NULL, files_json TEXT NOT NULL,"
            " expected_json TEXT NOT NULL, label TEXT NOT NULL, needs_token INTEGER NOT NULL DEFAULT 0,"
            " state TEXT NOT NULL, bytes_done INTEGER NOT NULL DEFAULT 0, bytes_total INTEGER NOT NULL DEFAULT 0,"
            " error TEXT, created_s REAL NOT NULL, updated_s REAL NOT NULL)"
        )
        conn.execute(
            "INSERT INTO downloads (repo_id, repo_type, revision, files_json, expected_json, label, state,"
            " created_s, updated_s) VALUES (?, 'model', 'main', '[\"model.gguf\"]', '{}', 'Old', 'paused', 1, 1)",
            (REPO,),
        )

    store = DownloadStore(db)

    (old,) = store.pending()
    assert old.request == DownloadRequest(REPO, ("model.gguf",), label="Old")
    new_id = store.add(DownloadRequest(REPO, ("model_index.json",), include=("unet/*",)))
    new = store.get(new_id)
    assert new is not None and new.request.include == ("unet/*",)
    db.close()


def test_a_catalog_entry_becomes_a_request_with_its_include_patterns_and_hashes() -> None:
    from engines.models.catalog import download_request, load_catalog

    entries = load_catalog()
    folder = next(e for e in entries if e.kind == "diffusion" and e.include)
    request = download_request(folder, token="hf_reader")
    assert request.repo_id == folder.repo and request.revision == folder.revision
    assert request.files == tuple(f.path for f in folder.files)
    assert request.include == folder.include and "*/*.onnx_data" in request.include
    assert request.expected_sha256 == folder.expected_sha256()
    assert request.expected_size_bytes == folder.expected_sizes()
    assert request.label == folder.name and request.token == "hf_reader"

    hashed = next(e for e in entries if e.expected_sha256())
    assert download_request(hashed).expected_sha256 == hashed.expected_sha256() != {}
    assert download_request(hashed, token="").token is None


def test_a_request_refuses_paths_outside_the_repository() -> None:
    for bad in ("../secrets", "/etc/passwd", "a//b", "dir\\file"):
        with pytest.raises(ValueError):
            DownloadRequest(REPO, (bad,))
    with pytest.raises(TypeError):
        DownloadRequest(REPO, "model.gguf")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DownloadRequest(REPO, ("model_index.json",), include="unet/*")  # type: ignore[arg-type]
