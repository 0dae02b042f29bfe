"""Model downloads from the Hugging Face Hub into its own cache: progress, pause, resume, cancel, checks.

Files land in the standard Hugging Face cache (``HF_HUB_CACHE``, ``~/.cache/huggingface/hub`` by
default), laid out exactly as ``huggingface_hub.hf_hub_download`` lays them out, so a model that
Ember downloads is found by transformers, diffusers, optimum and the ``hf`` command,
and a model they downloaded is not fetched again::

    <cache>/models--org--name/blobs/<etag>                the file, named by its etag
    <cache>/models--org--name/blobs/<etag>.incomplete     a transfer under way or paused
    <cache>/models--org--name/snapshots/<commit>/<path>   -> ../../blobs/<etag> (relative link)
    <cache>/models--org--name/refs/<revision>             the commit that the revision named
    <cache>/.locks/models--org--name/<etag>.lock          held while the blob is written

Why Ember moves the bytes itself instead of calling ``hf_hub_download``: that function has no
cancel hook, retries a dead connection for about 23 s (``http_backoff``) before it gives up, and
does not check what it wrote. Here the metadata comes from the same HEAD request that
``get_hf_file_metadata`` makes (read the same way), the transfer streams into the same
``.incomplete`` file (so a transfer that ``hf_hub_download`` left half-done is resumed, and the
other way round), resumes with a ``Range`` request, hashes while it writes, and stops between
reads: a watcher shuts the socket when the job is cancelled or paused, so even a stalled
connection lets go within about 50 ms.

Xet: on huggingface.co many repositories are stored with Xet. ``hf_hub_download`` then uses
``hf_xet`` when it is installed; Ember does not. The hub's ``resolve`` URL still redirects to an
HTTP bridge that serves the same bytes with ``Range`` support, and Ember downloads from there, so
pause, resume, cancel and the checks work the same for Xet and LFS files (Xet's chunk
de-duplication is not used; a file is fetched whole).

Folders: a request with ``include`` glob patterns (a diffusers ONNX export, whose UNet keeps its
weights in external data files with names not known in advance) first lists the repository at the
revision (``GET /api/models/<repo>/revision/<revision>``, as ``HfApi.repo_info``) and adds every
listed file that matches, except pickle files. Every file is then asked for at the commit the
listing named, so the whole folder comes from one snapshot even if the branch moves meanwhile.

Tokens: a token given in the request is sent to the hub (never to a CDN on another host). With
none, the token huggingface_hub already knows (``HF_TOKEN``, or ``hf auth login``) is used, as
every Hugging Face tool does; ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` turns that off. Ember never writes
a token anywhere: :class:`DownloadStore` remembers only that a download needs one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import queue
import re
import shutil
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.errors import Cancelled, EmberError, describe_unexpected
from engines.models.formats import is_pickle
from engines.units import human_bytes

if TYPE_CHECKING:
    import requests

    from engines.database import Database
    from engines.jobs import CancelToken

CHUNK_BYTES = 1 << 20
"""The most one read takes from the socket; a read returns as soon as any bytes have arrived."""

SPACE_MARGIN_BYTES = 200_000_000
"""Room left free on the disk beyond the download itself (the system and other apps need some)."""

PROGRESS_INTERVAL_S = 0.1
"""Progress is reported at most this often (and always at the end of each file)."""

_RETRIES = 5  # attempts after a dropped transfer; the count starts again whenever bytes arrive
_CONNECT_TIMEOUT_S = 10.0
_HEAD_TIMEOUT_S = 10.0  # as huggingface_hub's etag_timeout; a cancel waits for it on a dead connection
_READ_TIMEOUT_S = 30.0
_WATCH_INTERVAL_S = 0.05
_SPEED_WINDOW_S = 5.0
_SEED_BLOCK_BYTES = 8 << 20
_HASH_QUEUE_CHUNKS = 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class TokenRequired(EmberError):
    """The hub wants a token for this repository (gated or private), or refused the one given."""


class DownloadDamaged(EmberError):
    """A downloaded file did not match its SHA-256 (or size); the bad bytes were deleted."""


class DownloadPaused(Cancelled):
    """Raised when a download was paused: the part already downloaded stays for a later resume.

    It is a :class:`Cancelled`, so the job queue ends the job as cancelled; ``partial`` is the
    last :class:`DownloadProgress`.
    """


@dataclass(frozen=True)
class DownloadRequest:
    """Files to fetch from one repository at one revision.

    ``expected_sha256`` and ``expected_size_bytes`` (repository path -> value) come from Ember's
    catalog when it knows them; without them the file is checked against what the hub reports.
    ``include`` holds glob patterns (``fnmatch``, case-sensitive; ``*`` also crosses ``/``): when
    given, every file of the repository at ``revision`` that matches one is fetched too, except
    pickle files (.bin, .ckpt, .pt, .pth, .pkl). ``token`` is never shown, compared or stored.
    """

    repo_id: str
    files: tuple[str, ...]
    revision: str = "main"
    repo_type: str = "model"
    expected_sha256: Mapping[str, str] = field(default_factory=dict, hash=False)
    expected_size_bytes: Mapping[str, int] = field(default_factory=dict, hash=False)
    token: str | None = field(default=None, compare=False, repr=False)
    label: str = ""
    include: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.files, str):
            raise TypeError("DownloadRequest.files is a tuple of paths, not one string.")
        if isinstance(self.include, str):
            raise TypeError("DownloadRequest.include is a tuple of patterns, not one string.")
        if not self.files:
            raise ValueError(f"A download from {self.repo_id} needs at least one file.")
        for path in self.files:
            if not _is_repo_path(path):
                raise ValueError(f"{path!r} is not a file path inside a repository.")
        if len(set(self.files)) != len(self.files):
            raise ValueError(f"The download from {self.repo_id} names a file twice.")
        if not all(isinstance(p, str) and p.strip() for p in self.include):
            raise ValueError(f"The download from {self.repo_id} has an empty include pattern.")

    @property
    def name(self) -> str:
        """What to call this download in messages: the label, or the repository."""
        return self.label or self.repo_id


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download stands. ``stage`` is ``checking``, ``downloading`` or ``done``.

    Byte counts include what was already on disk (cached files and resumed parts), so
    ``bytes_done`` ends at ``bytes_total``; it goes back only when a server ignores a Range
    request and a part has to start over. ``bytes_per_s`` counts only bytes that arrive now,
    over the last few seconds; ``eta_s`` is None until there is a speed to go by.
    """

    label: str
    stage: str
    file: str
    files_done: int
    files_total: int
    file_bytes_done: int
    file_bytes_total: int
    bytes_done: int
    bytes_total: int
    bytes_per_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        """Share of the bytes done, 0.0 to 1.0 (0.0 while the total is not known)."""
        return self.bytes_done / self.bytes_total if self.bytes_total > 0 else 0.0


@dataclass(frozen=True)
class DownloadResult:
    """A finished download.

    ``paths`` maps each repository path to its file in the cache's snapshot folder.
    ``verified`` says how each file was checked: ``sha256 ok`` (hashed while downloading, equal
    to the catalog's SHA-256), ``etag ok`` (equal to the hub's SHA-256 for LFS files, or its git
    hash for small files), ``size ok`` (the hub gave no hash to compare with), ``cached``
    (already in the cache; not read again, as huggingface_hub does not either) or
    ``cached (offline)`` (the hub could not be reached and the cache had every file).
    ``bytes_downloaded`` counts what arrived over the network in this run.
    """

    repo_id: str
    revision: str
    commit: str
    paths: dict[str, str]
    bytes_downloaded: int
    seconds: float
    verified: dict[str, str]


ProgressCallback = Callable[[DownloadProgress], None]


def _is_repo_path(path: str) -> bool:
    """True for a relative path that stays inside a repository (no '..', no empty or absolute parts)."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and not any(p in ("", ".", "..") for p in parts)


def free_bytes(path: Path | str) -> int:
    """Return the free bytes on the disk holding ``path`` (or its nearest existing parent).

    Raises EmberError when no parent of ``path`` can be examined.
    """
    probe = Path(path).absolute()
    for candidate in (probe, *probe.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    raise EmberError(f"Ember cannot tell how much space is free at {path}. Check that the folder can be reached.")


# -- the download ---------------------------------------------------------------------------


def run_download(
    request: DownloadRequest,
    progress: ProgressCallback,
    cancel: CancelToken,
    *,
    pause: threading.Event | None = None,
    cache_dir: Path | str | None = None,
    endpoint: str | None = None,
) -> DownloadResult:
    """Download ``request``'s files into the Hugging Face cache and return where they are.

    With ``include`` patterns the repository is listed first (one request) and the matching files
    join the download; all files then come from the commit that listing named.
    Files already in the cache are not fetched again; a part left by a paused or interrupted run
    (Ember's or huggingface_hub's) is continued with a Range request. ``progress`` is called on
    this thread at most every :data:`PROGRESS_INTERVAL_S`. ``cache_dir`` defaults to
    huggingface_hub's ``HF_HUB_CACHE`` (as read when huggingface_hub was imported) and
    ``endpoint`` to the ``HF_ENDPOINT`` environment variable now, else huggingface_hub's endpoint.

    Raises:
        Cancelled: ``cancel`` was set; partial files of this request are deleted (complete files
            stay in the cache, where they are valid for any tool). A cancel before the hub has
            answered about every file cannot name the parts yet; :func:`discard_partial_files`
            removes them.
        DownloadPaused: ``pause`` was set; partial files stay for a later call.
        TokenRequired: the repository is gated or private and no token (or a refused one) was sent.
        EmberError: not enough disk space (before anything is written), no such repository,
            revision or file, the hub cannot be reached, the connection kept dropping (the part
            downloaded is kept), or a file is damaged (it is deleted).
    """
    from huggingface_hub import constants

    started = time.monotonic()
    cache = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)
    hub = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    stop = _Stop(cancel, pause)
    meter = _Meter(request.name, len(request.files), progress)
    storage = cache / _repo_folder(request)
    meter.emit("checking", force=True)
    stop.check(meter)

    # With include patterns only a listing tells whether the snapshot holds the whole folder.
    if _GIT_SHA1.match(request.revision) and not request.include:
        cached = _cached_snapshot(request, storage)
        if cached is not None:
            return _cached_result(request, cached, request.revision, meter, started, "cached")

    headers = _headers(request.token)
    try:
        files, revision = _files_at(request, hub, headers, stop, meter)
        plans = _plan(request, files, revision, storage, hub, headers, stop, meter)
    except _Unreachable as exc:
        cached = _cached_snapshot(request, storage)
        if cached is None:
            raise exc.error from exc.__cause__
        commit = _read_ref(storage, request.revision) or request.revision
        return _cached_result(request, cached, commit, meter, started, "cached (offline)")

    _check_space(plans, cache)
    commit = plans[0].commit
    _write_ref(storage, request.revision, commit)

    meter.begin(sum(p.size for p in plans), sum(p.size if p.cached else p.partial_bytes for p in plans))
    verified: dict[str, str] = {}
    try:
        for plan in plans:
            verified[plan.path] = _fetch(plan, request, hub, headers, stop, meter)
            meter.file_done()
    except DownloadPaused:
        raise
    except Cancelled:
        for plan in plans:
            _discard_partial(plan)
        raise
    meter.emit("done", force=True)
    return DownloadResult(
        repo_id=request.repo_id,
        revision=request.revision,
        commit=commit,
        paths={p.path: str(p.pointer) for p in plans},
        bytes_downloaded=meter.transferred,
        seconds=time.monotonic() - started,
        verified=verified,
    )


def discard_partial_files(
    request: DownloadRequest, *, cache_dir: Path | str | None = None, endpoint: str | None = None
) -> int:
    """Delete the parts a paused or interrupted download of ``request`` left, and return the bytes freed.

    For cancelling a download that is not running (a running one deletes its parts when its
    cancel token is set). A part's name comes from the hub's etag, so this asks the hub (one HEAD
    a file, after a listing for a request with ``include`` patterns). Parts that another program
    is writing are left alone. Raises EmberError when the hub cannot be reached or refuses
    (nothing is deleted then).
    """
    from huggingface_hub import constants

    from engines.jobs import CancelToken

    cache = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)
    hub = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    storage = cache / _repo_folder(request)
    meter = _Meter(request.name, len(request.files), lambda p: None)
    stop, headers = _Stop(CancelToken(), None), _headers(request.token)
    try:
        files, revision = _files_at(request, hub, headers, stop, meter)
        plans = _plan(request, files, revision, storage, hub, headers, stop, meter)
    except _Unreachable as exc:
        raise exc.error from None
    freed = 0
    for plan in plans:
        if plan.partial_bytes and _discard_partial(plan):
            freed += plan.partial_bytes
    return freed


@dataclass
class _FilePlan:
    path: str
    commit: str
    etag: str
    size: int
    location: str
    storage: Path
    cached: bool = False
    partial_bytes: int = 0

    @property
    def blob(self) -> Path:
        return self.storage / "blobs" / self.etag

    @property
    def incomplete(self) -> Path:
        return self.storage / "blobs" / f"{self.etag}.incomplete"

    @property
    def pointer(self) -> Path:
        return self.storage / "snapshots" / self.commit / Path(*self.path.split("/"))

    @property
    def lock(self) -> Path:
        return self.storage.parent / ".locks" / self.storage.name / f"{self.etag}.lock"


class _Unreachable(Exception):
    """The hub could not be reached; ``error`` says so to a person (the cache may still serve)."""

    def __init__(self, error: EmberError) -> None:
        super().__init__(str(error))
        self.error = error


def _files_at(
    request: DownloadRequest, hub: str, headers: dict[str, str], stop: _Stop, meter: _Meter
) -> tuple[tuple[str, ...], str]:
    """Return the files to fetch and the revision to ask for them at.

    Without include patterns that is the request's own. With them, the repository's listing adds
    the matching files and the revision becomes the listing's commit. Raises what :func:`_metadata`
    raises (the listing fails the same ways), and Cancelled or DownloadPaused before and after it.
    """
    if not request.include:
        return request.files, request.revision
    stop.check(meter)
    commit, listed = _list_repo(request, hub, headers)
    stop.check(meter)
    files = files_with_included(request.files, request.include, listed)
    meter.files_total = len(files)
    return files, commit


def files_with_included(files: tuple[str, ...], include: tuple[str, ...], listed: Iterable[str]) -> tuple[str, ...]:
    """Return ``files`` followed by every ``listed`` path (in sorted order) that matches one of the
    ``include`` glob patterns, leaving out pickle files. Raises nothing."""
    chosen = list(files)
    taken = set(files)
    for path in sorted(listed):
        if path in taken or is_pickle(path):
            continue
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in include):
            chosen.append(path)
            taken.add(path)
    return tuple(chosen)


def _list_repo(request: DownloadRequest, hub: str, headers: dict[str, str]) -> tuple[str, list[str]]:
    """Return (commit, every file path) of the repository at the request's revision, from the hub's API."""
    from urllib.parse import quote

    from huggingface_hub.utils import get_session, hf_raise_for_status

    what = "the list of files"
    url = f"{hub}/api/{request.repo_type}s/{request.repo_id}/revision/{quote(request.revision, safe='')}"
    try:
        response = get_session().get(url, headers=headers, timeout=(_CONNECT_TIMEOUT_S, _HEAD_TIMEOUT_S))
        hf_raise_for_status(response)
    except Exception as exc:
        error = _explain(exc, request, what, request.revision, hub, headers)
        if _is_unreachable(exc):
            raise _Unreachable(error) from exc
        raise error from exc
    try:
        info = response.json()
        commit = info["sha"]
        listed = [item["rfilename"] for item in info["siblings"]]
    except (ValueError, KeyError, TypeError):
        commit, listed = None, []
    if (
        not isinstance(commit, str)
        or not _GIT_SHA1.match(commit)
        or not all(isinstance(path, str) and _is_repo_path(path) for path in listed)
    ):
        raise EmberError(
            f"The server at {hub} did not answer like Hugging Face for {what} of {request.repo_id}. "
            "Check the HF_ENDPOINT setting and any proxy between this computer and the hub."
        )
    return commit, listed


def _plan(
    request: DownloadRequest,
    files: tuple[str, ...],
    revision: str,
    storage: Path,
    hub: str,
    headers: dict[str, str],
    stop: _Stop,
    meter: _Meter,
) -> list[_FilePlan]:
    """Ask the hub about every file (one HEAD each, from ``revision``) and see what the cache already has."""
    plans: list[_FilePlan] = []
    for path in files:
        stop.check(meter)
        # After the first answer, ask by commit so that every file comes from the same snapshot
        # even if the branch moves while Ember asks.
        commit, etag, size, location = _metadata(request, path, revision, hub, headers)
        revision = commit
        _check_catalog(request, path, etag, size)
        plan = _FilePlan(path, commit, etag, size, location, storage)
        if plan.pointer.exists() or plan.blob.exists():
            plan.cached = True
        elif plan.incomplete.exists():
            partial = plan.incomplete.stat().st_size
            plan.partial_bytes = partial if partial <= size else 0
        plans.append(plan)
    return plans


def _metadata(
    request: DownloadRequest, path: str, revision: str, hub: str, headers: dict[str, str]
) -> tuple[str, str, int, str]:
    """Return (commit, etag, size, download URL) from a HEAD on the file's resolve URL.

    The headers are read as ``huggingface_hub.get_hf_file_metadata`` reads them; that function is
    not called because it retries a dead connection for ~23 s with no way to cancel.
    """
    import requests
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import get_session, hf_raise_for_status

    url = hf_hub_url(request.repo_id, path, repo_type=request.repo_type, revision=revision, endpoint=hub)
    session = get_session()
    try:
        for _hop in range(5):
            response = session.head(
                url, headers=headers, allow_redirects=False, timeout=(_CONNECT_TIMEOUT_S, _HEAD_TIMEOUT_S)
            )
            hf_raise_for_status(response)
            location = response.headers.get("Location")
            if 300 <= response.status_code < 400 and location:
                target = requests.utils.urlparse(location)
                if not target.netloc:  # a renamed repository: follow it on the hub, as huggingface_hub does
                    url = requests.utils.urlparse(url)._replace(path=target.path).geturl()
                    continue
            break
    except Exception as exc:
        error = _explain(exc, request, path, revision, hub, headers)
        if _is_unreachable(exc):
            raise _Unreachable(error) from exc
        raise error from exc

    commit = response.headers.get("X-Repo-Commit")
    etag = _normalize_etag(response.headers.get("X-Linked-Etag") or response.headers.get("ETag"))
    size_text = response.headers.get("X-Linked-Size") or response.headers.get("Content-Length")
    if not commit or not etag or not (size_text or "").isdigit():
        missing = "commit" if not commit else "etag" if not etag else "size"
        raise EmberError(
            f"The server at {hub} did not answer like Hugging Face for {path} (no {missing} in its reply). "
            "Check the HF_ENDPOINT setting and any proxy between this computer and the hub."
        )
    return commit, etag, int(size_text or 0), location or response.url


def _check_catalog(request: DownloadRequest, path: str, etag: str, size: int) -> None:
    """Refuse before downloading when the hub plainly serves another file than the catalog expects."""
    want_size = request.expected_size_bytes.get(path)
    if want_size is not None and want_size != size:
        raise EmberError(
            f"Hugging Face serves a different {path} for {request.name} than Ember expects "
            f"({human_bytes(size)} instead of {human_bytes(want_size)}); the repository has changed "
            f"at revision {request.revision}. Nothing was downloaded; update Ember's model catalog."
        )
    want_sha = (request.expected_sha256.get(path) or "").lower()
    if want_sha and _SHA256.match(etag) and etag != want_sha:
        raise EmberError(
            f"Hugging Face serves a different {path} for {request.name} than Ember expects "
            f"(SHA-256 {etag} instead of {want_sha}); the repository has changed at revision "
            f"{request.revision}. Nothing was downloaded; update Ember's model catalog."
        )


def _check_space(plans: list[_FilePlan], cache: Path) -> None:
    remaining = sum(p.size - p.partial_bytes for p in plans if not p.cached)
    if remaining <= 0:
        return
    needed = remaining + SPACE_MARGIN_BYTES
    free = free_bytes(cache)
    if free < needed:
        raise EmberError(
            f"Not enough disk space: this download needs {human_bytes(needed)} and the disk holding "
            f"{cache} has {human_bytes(free)} free. Free some space or choose a smaller quantisation."
        )


def _fetch(
    plan: _FilePlan,
    request: DownloadRequest,
    hub: str,
    headers: dict[str, str],
    stop: _Stop,
    meter: _Meter,
) -> str:
    """Make sure ``plan``'s file is in the cache and linked from its snapshot; return how it was checked."""
    meter.start_file(plan.path, plan.size, plan.size if plan.cached else plan.partial_bytes)
    try:
        if plan.cached:
            if not plan.pointer.exists():
                _link(plan.blob, plan.pointer, new_blob=False)
            return "cached"
        plan.lock.parent.mkdir(parents=True, exist_ok=True)
        plan.blob.parent.mkdir(parents=True, exist_ok=True)
        with _FileLock(plan.lock, stop, meter):
            if plan.blob.exists():  # another program finished it while Ember waited for the lock
                meter.add_existing(plan.size - meter.file_bytes_done)
                _link(plan.blob, plan.pointer, new_blob=False)
                return "cached"
            try:
                verdict = _transfer(plan, request, hub, headers, stop, meter)
            except DownloadDamaged:
                plan.incomplete.unlink(missing_ok=True)  # once closed: Windows cannot delete an open file
                raise
            os.replace(plan.incomplete, plan.blob)
            _link(plan.blob, plan.pointer, new_blob=True)
        return verdict
    except OSError as exc:
        raise EmberError(
            f"Ember could not write {plan.path} into the Hugging Face cache at {plan.storage.parent} "
            f"({exc.strerror or exc}). Check that the folder is writable and the disk is not full; "
            "what was downloaded so far is kept."
        ) from None


def _transfer(
    plan: _FilePlan,
    request: DownloadRequest,
    hub: str,
    headers: dict[str, str],
    stop: _Stop,
    meter: _Meter,
) -> str:
    """Stream the file into its ``.incomplete`` blob, resuming and retrying; return the check's verdict.

    Raises EmberError (the bad part deleted) when the finished bytes do not match.
    """
    with (
        _Digest(plan.etag, plan.size, request.expected_sha256.get(plan.path)) as digest,
        plan.incomplete.open("ab") as out,
    ):
        resume = out.tell()
        meter.set_file_done(resume)
        if resume > plan.size:  # not the file the hub now serves under this etag: start again
            digest.restart(out, meter)
            resume = 0
        digest.seed(plan.incomplete, resume, stop, meter)
        failures = 0
        location = plan.location
        while out.tell() < plan.size:
            before = out.tell()
            try:
                _get_range(plan, location, request, hub, headers, out, digest, stop, meter)
            except _Dropped as dropped:
                failures = 0 if out.tell() > before else failures + 1
                if failures > _RETRIES:
                    raise EmberError(
                        f"The connection to Hugging Face kept dropping while downloading {plan.path} "
                        f"({dropped.reason}). The {human_bytes(out.tell())} already downloaded are kept: "
                        "resume the download when the connection is steady."
                    ) from None
                stop.wait(min(0.5 * 2**failures, 8.0), meter)
                # A CDN link is signed for a limited time: ask the hub for a fresh one.
                try:
                    _commit, _etag, _size, location = _metadata(request, plan.path, plan.commit, hub, headers)
                except _Unreachable:
                    continue
        return digest.verdict(plan, request)


class _Dropped(Exception):
    """A transfer that stopped before its end for a reason that a retry may cure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _get_range(
    plan: _FilePlan,
    location: str,
    request: DownloadRequest,
    hub: str,
    headers: dict[str, str],
    out: Any,
    digest: _Digest,
    stop: _Stop,
    meter: _Meter,
) -> None:
    """One GET from ``out``'s current size to the end of the file, appended to ``out``."""
    import requests
    import urllib3
    from huggingface_hub.utils import OfflineModeIsEnabled, get_session, hf_raise_for_status

    resume = out.tell()
    send = dict(headers)
    if requests.utils.urlparse(location).netloc != requests.utils.urlparse(hub).netloc:
        send.pop("authorization", None)  # a CDN link is signed; the token stays with the hub
    if resume:
        send["Range"] = f"bytes={resume}-"
    try:
        response = get_session().get(location, headers=send, stream=True, timeout=(_CONNECT_TIMEOUT_S, _READ_TIMEOUT_S))
    except OfflineModeIsEnabled as exc:
        raise _explain(exc, request, plan.path, plan.commit, hub, headers) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Dropped(_reason(exc)) from None
    with response, _Watcher(response, stop):
        if response.status_code >= 500:
            raise _Dropped(f"the server answered {response.status_code}")
        if response.status_code == 416:  # the hub has less than Ember holds: not the same file, start again
            digest.restart(out, meter)
            return
        try:
            hf_raise_for_status(response)
        except Exception as exc:
            raise _explain(exc, request, plan.path, plan.commit, hub, headers) from exc
        if resume and not _range_starts_at(response, resume):
            digest.restart(out, meter)  # the server ignored the Range: take the whole file from here
        read = getattr(response.raw, "read1", None) or response.raw.read
        while True:
            stop.check(meter)
            try:
                chunk = read(CHUNK_BYTES, decode_content=True)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                stop.check(meter)  # a cancel or pause shut the socket: that is not a network fault
                raise _Dropped(_reason(exc)) from None
            if not chunk:
                break
            if out.tell() + len(chunk) > plan.size:
                raise _damaged(plan, f"longer than the {plan.size} bytes the hub announced")
            try:
                out.write(chunk)
            except OSError as exc:
                raise EmberError(
                    f"Ember could not write {plan.path} to {plan.incomplete.parent} ({exc.strerror or exc}). "
                    "The part already downloaded is kept: free some disk space and resume the download."
                ) from None
            digest.update(chunk)
            meter.add(len(chunk))
    if out.tell() < plan.size:
        stop.check(meter)
        raise _Dropped(f"the server sent {out.tell() - resume} bytes and closed the connection")


def _range_starts_at(response: requests.Response, start: int) -> bool:
    if response.status_code != 206:
        return False
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return match is not None and int(match.group(1)) == start


class _Digest:
    """SHA-256 (and git's blob SHA-1 for small non-LFS files) of what was written, fed while streaming.

    The hashing runs on a thread of its own (hashlib lets go of the GIL), so it overlaps the
    socket reads instead of adding to them; a bounded queue keeps at most a few chunks in memory.
    Use it as a context manager: leaving it stops the thread.
    """

    def __init__(self, etag: str, size: int, expected_sha256: str | None) -> None:
        self._etag = etag
        self._size = size
        self._expected = (expected_sha256 or "").lower() or None
        self._git = _GIT_SHA1.match(etag) is not None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_HASH_QUEUE_CHUNKS)
        self._thread: threading.Thread | None = None
        self._reset()

    def __enter__(self) -> _Digest:
        return self

    def __exit__(self, *exc: object) -> None:
        self._drain()

    def _reset(self) -> None:
        self._sha256 = hashlib.sha256()
        # The hub's etag for a file kept in git (not LFS) is git's blob id: SHA-1 of "blob <size>\0" + bytes.
        self._sha1 = hashlib.sha1(b"blob %d\x00" % self._size, usedforsecurity=False) if self._git else None

    def update(self, chunk: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="ember-download-hash", daemon=True)
            self._thread.start()
        self._queue.put(chunk)

    def _work(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._sha256.update(chunk)
            if self._sha1 is not None:
                self._sha1.update(chunk)

    def _drain(self) -> None:
        """Wait until every chunk handed over is hashed, and stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def seed(self, path: Path, length: int, stop: _Stop, meter: _Meter) -> None:
        """Hash the first ``length`` bytes already on disk (a resumed part), checking ``stop`` between blocks."""
        if length == 0:
            return
        with path.open("rb") as f:
            left = length
            while left > 0:
                stop.check(meter)
                block = f.read(min(_SEED_BLOCK_BYTES, left))
                if not block:
                    break
                self.update(block)
                left -= len(block)

    def restart(self, out: Any, meter: _Meter) -> None:
        out.truncate(0)
        out.seek(0)
        self._drain()
        self._reset()
        meter.set_file_done(0)

    def verdict(self, plan: _FilePlan, request: DownloadRequest) -> str:
        """Return how the file was checked; raise DownloadDamaged when it does not match."""
        self._drain()
        sha256 = self._sha256.hexdigest()
        if self._expected is not None:
            if sha256 != self._expected:
                raise _damaged_hash(plan, request, sha256, self._expected)
            return "sha256 ok"
        if _SHA256.match(self._etag):
            if sha256 != self._etag:
                raise _damaged_hash(plan, request, sha256, self._etag)
            return "etag ok"
        if self._sha1 is not None:
            sha1 = self._sha1.hexdigest()
            if sha1 != self._etag:
                raise DownloadDamaged(
                    f"{plan.path} from {request.name} is damaged: its git hash is {sha1} but should be "
                    f"{self._etag}. It was deleted; download it again."
                )
            return "etag ok"
        return "size ok"


def _damaged_hash(plan: _FilePlan, request: DownloadRequest, got: str, want: str) -> DownloadDamaged:
    return DownloadDamaged(
        f"{plan.path} from {request.name} is damaged: its SHA-256 is {got} but should be {want}. "
        "It was deleted; download it again."
    )


def _damaged(plan: _FilePlan, detail: str) -> DownloadDamaged:
    return DownloadDamaged(f"{plan.path} is damaged: the download was {detail}. It was deleted; download it again.")


def _explain(
    exc: BaseException, request: DownloadRequest, path: str, revision: str, hub: str, headers: dict[str, str]
) -> EmberError:
    """Turn a failed request into what a person needs to read."""
    import requests
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    name = request.name
    page = f"https://huggingface.co/{request.repo_id}"
    token_sent = "authorization" in {k.lower() for k in headers}
    if isinstance(exc, OfflineModeIsEnabled):
        return EmberError(
            f"Downloads are switched off on this computer (HF_HUB_OFFLINE is set), and {name} is not "
            "in the Hugging Face cache yet. Unset HF_HUB_OFFLINE and try again."
        )
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return EmberError(
            f"Ember cannot reach Hugging Face at {hub} to download {name} ({_reason(exc)}). "
            "Check the internet connection and any proxy, then try again."
        )
    if isinstance(exc, GatedRepoError):
        if token_sent:
            return TokenRequired(
                f"{name} is gated and the Hugging Face token Ember sent has no access to it yet: accept its "
                f"licence on {page} with the account the token belongs to, or give Ember another token with "
                "read access."
            )
        return TokenRequired(
            f"{name} is gated: accept its licence on {page} and give Ember a Hugging Face token with read access."
        )
    status = getattr(getattr(exc, "response", None), "status_code", None)
    server_message = getattr(getattr(exc, "response", None), "headers", {}).get("X-Error-Message", "")
    if status == 401 and "Invalid credentials" in server_message:
        return TokenRequired(
            f"Hugging Face did not accept the token Ember sent for {name}. Give Ember a valid token with read "
            "access (huggingface.co, Settings, Access Tokens)."
        )
    if isinstance(exc, RepositoryNotFoundError):
        if token_sent:
            return EmberError(
                f"Hugging Face has no repository {request.repo_id} that the token Ember sent can read. "
                "Check the name, or give Ember a token of an account that has access."
            )
        return TokenRequired(
            f"Hugging Face has no repository {request.repo_id}, or it is private or gated. Check the name; "
            "if it is private or gated, give Ember a Hugging Face token with read access."
        )
    if isinstance(exc, RevisionNotFoundError):
        return EmberError(
            f"{request.repo_id} has no revision {revision!r} on Hugging Face. The catalog may be out of date; "
            f"check the branches and tags on {page}."
        )
    if isinstance(exc, EntryNotFoundError):
        return EmberError(
            f"{request.repo_id} has no file {path} at revision {request.revision}. The catalog may be out of "
            f"date; check the files on {page}."
        )
    if status in (401, 403):
        return TokenRequired(
            f"Hugging Face refused access to {path} in {name} ({status}). If the model is gated or private, "
            f"accept its licence on {page} and give Ember a token with read access."
        )
    if isinstance(exc, HfHubHTTPError) and status is not None:
        if status >= 500:
            return EmberError(
                f"Hugging Face answered with an error ({status}) for {path} in {name}. This is usually "
                "temporary: try again in a few minutes."
            )
        return EmberError(f"Hugging Face refused the download of {path} from {name} ({status}). {server_message}")
    return EmberError(describe_unexpected(exc, "download"))


def _is_unreachable(exc: BaseException) -> bool:
    """True for a failure that says nothing about the repository (no network, offline mode)."""
    import requests
    from huggingface_hub.utils import OfflineModeIsEnabled

    return isinstance(exc, (OfflineModeIsEnabled, requests.ConnectionError, requests.Timeout))


def _reason(exc: BaseException) -> str:
    """A short reason from a network error (requests nests them deeply)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker.lower()
    if "IncompleteRead" in text or "Connection broken" in text:
        return "the connection broke"
    return type(exc).__name__


# -- cancel, pause and the socket --------------------------------------------------------------


class _Stop:
    """Cancel and pause, checked between reads; cancel wins when both are set."""

    def __init__(self, cancel: CancelToken, pause: threading.Event | None) -> None:
        self._cancel = cancel
        self._pause = pause

    @property
    def requested(self) -> bool:
        return self._cancel.cancelled or (self._pause is not None and self._pause.is_set())

    def check(self, meter: _Meter) -> None:
        if self._cancel.cancelled:
            raise Cancelled(meter.snapshot(meter.stage))
        if self._pause is not None and self._pause.is_set():
            raise DownloadPaused(meter.snapshot(meter.stage))

    def wait(self, seconds: float, meter: _Meter) -> None:
        """Sleep ``seconds``, waking at once for a cancel or a pause (which it raises)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check(meter)
            time.sleep(min(left, _WATCH_INTERVAL_S))
        self.check(meter)


class _Watcher:
    """Shuts a streaming response's socket when a stop is requested, so a read blocked on a
    stalled connection returns at once instead of at the read timeout."""

    def __init__(self, response: requests.Response, stop: _Stop) -> None:
        self._response = response
        self._stop = stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ember-download-watch", daemon=True)

    def __enter__(self) -> _Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(_WATCH_INTERVAL_S):
            if self._stop.requested:
                raw = self._response.raw
                connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
                sock = getattr(connection, "sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # already closed: the read has returned by itself
                return


class _FileLock:
    """huggingface_hub's per-blob lock file, taken in short tries so that a cancel is not kept waiting."""

    def __init__(self, path: Path, stop: _Stop, meter: _Meter) -> None:
        self._path = path
        self._stop = stop
        self._meter = meter
        self._lock: Any = None

    def __enter__(self) -> _FileLock:
        from filelock import FileLock, SoftFileLock, Timeout

        lock: Any = FileLock(str(self._path))
        while True:
            try:
                lock.acquire(timeout=_WATCH_INTERVAL_S)
                break
            except Timeout:
                self._stop.check(self._meter)
            except NotImplementedError:  # no flock on this file system; huggingface_hub falls back the same way
                lock = SoftFileLock(str(self._path))
        self._lock = lock
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._lock.release()
        except OSError:
            pass


def _discard_partial(plan: _FilePlan) -> bool:
    """Delete ``plan``'s partial file unless another program holds its lock (it is writing it).

    Returns True when a part was deleted.
    """
    from filelock import FileLock, Timeout

    if not plan.incomplete.exists():
        return False
    try:
        plan.lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(plan.lock), timeout=0):
            plan.incomplete.unlink(missing_ok=True)
            return True
    except (Timeout, NotImplementedError, OSError):
        return False


# -- progress -------------------------------------------------------------------------------


class _Meter:
    """Counts bytes, works out speed and time left, and reports at most every PROGRESS_INTERVAL_S."""

    def __init__(self, label: str, files_total: int, callback: ProgressCallback) -> None:
        self._label = label
        self._callback = callback
        self.files_total = files_total
        self.files_done = 0
        self.file = ""
        self.file_bytes_done = 0
        self.file_bytes_total = 0
        self.bytes_done = 0
        self.bytes_total = 0
        self.transferred = 0
        self.stage = "checking"
        self._samples: deque[tuple[float, int]] = deque()
        self._last_emit = float("-inf")

    def begin(self, bytes_total: int, bytes_done: int) -> None:
        self.bytes_total = bytes_total
        self.bytes_done = bytes_done
        self.stage = "downloading"

    def start_file(self, path: str, total: int, done: int) -> None:
        self.file = path
        self.file_bytes_total = total
        self.file_bytes_done = done
        self.emit("downloading", force=True)

    def set_file_done(self, done: int) -> None:
        """The file's bytes on disk changed outside a read (a part found, or a restart from zero)."""
        self.bytes_done += done - self.file_bytes_done
        self.file_bytes_done = done

    def add_existing(self, n: int) -> None:
        self.file_bytes_done += n
        self.bytes_done += n

    def add(self, n: int) -> None:
        self.file_bytes_done += n
        self.bytes_done += n
        self.transferred += n
        now = time.monotonic()
        self._samples.append((now, self.transferred))
        while self._samples and now - self._samples[0][0] > _SPEED_WINDOW_S:
            self._samples.popleft()
        self.emit("downloading")

    def file_done(self) -> None:
        self.files_done += 1
        self.emit("downloading", force=True)

    def speed(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 - t0 >= 0.2 else 0.0

    def snapshot(self, stage: str) -> DownloadProgress:
        speed = self.speed()
        left = self.bytes_total - self.bytes_done
        return DownloadProgress(
            label=self._label,
            stage=stage,
            file=self.file,
            files_done=self.files_done,
            files_total=self.files_total,
            file_bytes_done=self.file_bytes_done,
            file_bytes_total=self.file_bytes_total,
            bytes_done=self.bytes_done,
            bytes_total=self.bytes_total,
            bytes_per_s=speed,
            eta_s=left / speed if speed > 0 else None,
        )

    def emit(self, stage: str, *, force: bool = False) -> None:
        self.stage = stage
        now = time.monotonic()
        if not force and now - self._last_emit < PROGRESS_INTERVAL_S:
            return
        self._last_emit = now
        self._callback(self.snapshot(stage))


# -- the cache layout ------------------------------------------------------------------------


def _repo_folder(request: DownloadRequest) -> str:
    """``models--org--name``, as huggingface_hub names it; EmberError for a malformed repository id."""
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import HFValidationError

    if request.repo_type not in ("model", "dataset", "space"):
        raise EmberError(f"{request.repo_type!r} is not a Hugging Face repository type (model, dataset or space).")
    try:
        return repo_folder_name(repo_id=request.repo_id, repo_type=request.repo_type)
    except HFValidationError:
        raise EmberError(
            f"{request.repo_id!r} is not a Hugging Face repository name; it looks like 'organisation/model'."
        ) from None


def _headers(token: str | None) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from huggingface_hub.utils import build_hf_headers

    try:
        ember_version = version("ember-studio")
    except PackageNotFoundError:
        ember_version = "dev"
    headers = build_hf_headers(token=token, library_name="ember", library_version=ember_version)
    headers["Accept-Encoding"] = "identity"  # the real size, and bytes that hash as stored
    return headers


def _normalize_etag(etag: str | None) -> str | None:
    if etag is None:
        return None
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def _read_ref(storage: Path, revision: str) -> str | None:
    try:
        return (storage / "refs" / revision).read_text().strip() or None
    except OSError:
        return None


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    """Remember which commit ``revision`` named, as huggingface_hub does (only when it changed)."""
    if revision == commit:
        return
    ref = storage / "refs" / revision
    if _read_ref(storage, revision) == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


def _link(blob: Path, pointer: Path, *, new_blob: bool) -> None:
    """Point ``pointer`` at ``blob`` with a relative link, or copy (move a new blob) where links fail.

    The same fallback as huggingface_hub's: Windows without Developer Mode cannot make links.
    """
    pointer.parent.mkdir(parents=True, exist_ok=True)
    try:
        pointer.unlink()
    except FileNotFoundError:
        pass
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:
        if new_blob:
            shutil.move(str(blob), str(pointer))
        else:
            shutil.copyfile(blob, pointer)


def _cached_snapshot(request: DownloadRequest, storage: Path) -> dict[str, str] | None:
    """Return file -> cached path when the cache holds every file of the request's revision, else None.

    With include patterns, the snapshot's files that match join in (what huggingface_hub's
    ``snapshot_download`` also serves offline: the cache cannot tell what the listing would add).
    """
    commit = request.revision if _GIT_SHA1.match(request.revision) else _read_ref(storage, request.revision)
    if commit is None:
        return None
    snapshot = storage / "snapshots" / commit
    files = request.files
    if request.include and snapshot.is_dir():
        present = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
        files = files_with_included(files, request.include, present)
    paths = {}
    for path in files:
        pointer = snapshot / Path(*path.split("/"))
        if not pointer.exists():
            return None
        paths[path] = str(pointer)
    return paths


def _cached_result(
    request: DownloadRequest, paths: dict[str, str], commit: str, meter: _Meter, started: float, how: str
) -> DownloadResult:
    total = sum(os.path.getsize(p) for p in paths.values())
    meter.begin(total, total)
    meter.files_total = meter.files_done = len(paths)
    meter.emit("done", force=True)
    return DownloadResult(
        repo_id=request.repo_id,
        revision=request.revision,
        commit=commit,
        paths=paths,
        bytes_downloaded=0,
        seconds=time.monotonic() - started,
        verified=dict.fromkeys(paths, how),
    )


# -- downloads that survive a restart ---------------------------------------------------------


class DownloadState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"
    DONE = "done"
    CANCELLED = "cancelled"


_UNFINISHED = (DownloadState.QUEUED, DownloadState.RUNNING, DownloadState.PAUSED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS downloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id TEXT NOT NULL,
    repo_type TEXT NOT NULL,
    revision TEXT NOT NULL,
    files_json TEXT NOT NULL,
    include_json TEXT NOT NULL DEFAULT '[]',
    expected_json TEXT NOT NULL,
    label TEXT NOT NULL,
    needs_token INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_s REAL NOT NULL,
    updated_s REAL NOT NULL
)
"""


@dataclass(frozen=True)
class DownloadRecord:
    """One remembered download. ``request`` carries no token (tokens are never stored);
    ``needs_token`` says that one must be asked for before it is resumed."""

    id: int
    request: DownloadRequest
    state: DownloadState
    bytes_done: int
    bytes_total: int
    error: str | None
    needs_token: bool
    created_s: float
    updated_s: float


class DownloadStore:
    """The downloads Ember was asked for, in the app's database, so that they resume after a restart.

    The partial bytes themselves live in the Hugging Face cache (``.incomplete`` blobs); this table
    only remembers what to ask for again. Each write is one transaction.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as conn:
            conn.execute(_SCHEMA)
            # A database from before include patterns: the column is added, old rows read as none.
            columns = {row[1] for row in conn.execute("PRAGMA table_info(downloads)")}
            if "include_json" not in columns:
                conn.execute("ALTER TABLE downloads ADD COLUMN include_json TEXT NOT NULL DEFAULT '[]'")

    def add(self, request: DownloadRequest) -> int:
        """Remember ``request`` as queued and return its id (the token is not stored)."""
        now = time.time()
        expected = {"sha256": dict(request.expected_sha256), "size_bytes": dict(request.expected_size_bytes)}
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO downloads (repo_id, repo_type, revision, files_json, include_json, expected_json, label,"
                " needs_token, state, created_s, updated_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.repo_id,
                    request.repo_type,
                    request.revision,
                    json.dumps(list(request.files)),
                    json.dumps(list(request.include)),
                    json.dumps(expected),
                    request.label,
                    int(request.token is not None),
                    DownloadState.QUEUED.value,
                    now,
                    now,
                ),
            )
            return int(cursor.lastrowid or 0)

    def get(self, download_id: int) -> DownloadRecord | None:
        """Return the record, or None when there is no such download."""
        rows = self._db.query("SELECT * FROM downloads WHERE id = ?", (download_id,))
        return _record(rows[0]) if rows else None

    def pending(self) -> list[DownloadRecord]:
        """Return the downloads to resume at start-up (queued, paused, or running when Ember stopped), oldest first."""
        marks = ", ".join("?" for _ in _UNFINISHED)
        rows = self._db.query(
            f"SELECT * FROM downloads WHERE state IN ({marks}) ORDER BY id", tuple(s.value for s in _UNFINISHED)
        )
        return [_record(row) for row in rows]

    def recent(self, limit: int = 50) -> list[DownloadRecord]:
        """Return the latest downloads in any state, newest first."""
        return [_record(row) for row in self._db.query("SELECT * FROM downloads ORDER BY id DESC LIMIT ?", (limit,))]

    def mark(
        self,
        download_id: int,
        state: DownloadState,
        *,
        error: str | None = None,
        needs_token: bool | None = None,
    ) -> None:
        """Set the state (and the error, cleared unless given); raises EmberError if the disk refuses."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE downloads SET state = ?, error = ?, needs_token = COALESCE(?, needs_token), updated_s = ?"
                " WHERE id = ?",
                (
                    DownloadState(state).value,
                    error,
                    None if needs_token is None else int(needs_token),
                    time.time(),
                    download_id,
                ),
            )

    def record_progress(self, download_id: int, progress: DownloadProgress) -> None:
        """Remember how far the download got (shown after a restart)."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE downloads SET bytes_done = ?, bytes_total = ?, updated_s = ? WHERE id = ?",
                (progress.bytes_done, progress.bytes_total, time.time(), download_id),
            )

    def remove(self, download_id: int) -> None:
        """Forget a download (its files, if any, stay in the cache)."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM downloads WHERE id = ?", (download_id,))


def _record(row: Any) -> DownloadRecord:
    expected = json.loads(row["expected_json"])
    request = DownloadRequest(
        repo_id=row["repo_id"],
        files=tuple(json.loads(row["files_json"])),
        revision=row["revision"],
        repo_type=row["repo_type"],
        expected_sha256=expected.get("sha256", {}),
        expected_size_bytes=expected.get("size_bytes", {}),
        label=row["label"],
        include=tuple(json.loads(row["include_json"] or "[]")),
    )
    return DownloadRecord(
        id=row["id"],
        request=request,
        state=DownloadState(row["state"]),
        bytes_done=row["bytes_done"],
        bytes_total=row["bytes_total"],
        error=row["error"],
        needs_token=bool(row["needs_token"]),
        created_s=row["created_s"],
        updated_s=row["updated_s"],
    )


def run_recorded(
    store: DownloadStore,
    download_id: int,
    request: DownloadRequest,
    progress: ProgressCallback,
    cancel: CancelToken,
    *,
    pause: threading.Event | None = None,
    cache_dir: Path | str | None = None,
    endpoint: str | None = None,
    record_interval_s: float = 0.5,
) -> DownloadResult:
    """:func:`run_download`, with its state and progress kept in ``store`` under ``download_id``.

    The state ends as done, paused, cancelled or failed (with the message); a TokenRequired
    failure also sets ``needs_token``. Returns and raises what :func:`run_download` does.
    """
    store.mark(download_id, DownloadState.RUNNING)
    last = [float("-inf")]

    def on_progress(p: DownloadProgress) -> None:
        progress(p)
        now = time.monotonic()
        if now - last[0] >= record_interval_s or p.stage == "done":
            last[0] = now
            store.record_progress(download_id, p)

    try:
        result = run_download(request, on_progress, cancel, pause=pause, cache_dir=cache_dir, endpoint=endpoint)
    except DownloadPaused as exc:
        if isinstance(exc.partial, DownloadProgress):
            store.record_progress(download_id, exc.partial)
        store.mark(download_id, DownloadState.PAUSED)
        raise
    except Cancelled:
        store.mark(download_id, DownloadState.CANCELLED)
        raise
    except TokenRequired as exc:
        store.mark(download_id, DownloadState.FAILED, error=str(exc), needs_token=True)
        raise
    except EmberError as exc:
        store.mark(download_id, DownloadState.FAILED, error=str(exc))
        raise
    except Exception as exc:
        store.mark(download_id, DownloadState.FAILED, error=describe_unexpected(exc, "download"))
        raise
    store.mark(download_id, DownloadState.DONE)
    return result
