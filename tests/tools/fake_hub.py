"""A fake Hugging Face Hub on loopback: what huggingface_hub (0.30-0.36) and Ember ask of it for downloads.

It answers ``HEAD``/``GET /{repo}/resolve/{revision}/{path}`` as huggingface.co does: small files
(kept in git) directly, with their git blob id as ``ETag``; LFS files with a 302 to a "CDN" URL
on the same server and ``X-Linked-Etag`` (the SHA-256) and ``X-Linked-Size``; errors with the
``X-Error-Code`` header that ``hf_raise_for_status`` reads (RepoNotFound, GatedRepo,
RevisionNotFound, EntryNotFound). File bodies honour ``Range: bytes=N-``. It also answers
``GET /api/models/{repo}/revision/{revision}`` (what ``HfApi.repo_info`` asks) with the repository's
commit as ``sha`` and its files as ``siblings``, gated like the files.

Switches for tests: :meth:`FakeHub.gate` (a token is required), :meth:`FakeHub.fail_once_after`
(the connection drops after N bytes, once), :meth:`FakeHub.stall_after` (the server goes silent
after N bytes), :meth:`FakeHub.corrupt` (wrong bytes under the right hash),
``throttle_bytes_per_s``. It records every request (:attr:`FakeHub.seen`) and the body bytes it
sent for each file.

Use it as a context manager; point huggingface_hub at :attr:`FakeHub.url` (``endpoint=``).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_PIECE_BYTES = 64 * 1024
_THROTTLED_PIECE_BYTES = 16 * 1024


@dataclass
class FakeFile:
    repo_id: str
    path: str
    data: bytes
    lfs: bool

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def git_sha1(self) -> str:
        """Git's blob id, which the hub sends as the ETag of a file kept in git."""
        return hashlib.sha1(b"blob %d\x00" % len(self.data) + self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


@dataclass
class _Repo:
    files: dict[str, FakeFile] = field(default_factory=dict)
    token: str | None = None  # gated when set


class FakeHub:
    """A threaded HTTP server on 127.0.0.1 that plays the Hugging Face Hub."""

    def __init__(self) -> None:
        self.throttle_bytes_per_s: float | None = None
        self.seen: list[SeenRequest] = []
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._sent: dict[tuple[str, str], int] = {}
        self._fail_once: dict[tuple[str, str], int] = {}
        self._stall: dict[tuple[str, str], int] = {}
        self._corrupt: set[tuple[str, str]] = set()
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
        )
        self._thread.start()

    # -- set-up ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_file(self, repo_id: str, path: str, data: bytes, *, lfs: bool | None = None) -> FakeFile:
        """Add a file to ``repo_id`` on ``main`` (LFS unless it is small text, as on the hub)."""
        if lfs is None:
            lfs = len(data) > 10_000 or not path.endswith((".json", ".txt", ".md"))
        item = FakeFile(repo_id, path, data, lfs)
        with self._lock:
            self._repos.setdefault(repo_id, _Repo()).files[path] = item
        return item

    def commit(self, repo_id: str) -> str:
        """The fake commit that ``main`` points at (it changes when files are added)."""
        with self._lock:
            files = sorted(self._repos[repo_id].files.values(), key=lambda f: f.path)
        digest = hashlib.sha1(repo_id.encode())
        for item in files:
            digest.update(f"{item.path}\x00{item.sha256}\x00".encode())
        return digest.hexdigest()

    def gate(self, repo_id: str, token: str) -> None:
        """Make ``repo_id`` gated: only ``Authorization: Bearer <token>`` gets in."""
        with self._lock:
            self._repos.setdefault(repo_id, _Repo()).token = token

    def fail_once_after(self, repo_id: str, path: str, n_bytes: int) -> None:
        """The next body of this file breaks off (the socket is shut) after ``n_bytes``."""
        with self._lock:
            self._fail_once[(repo_id, path)] = n_bytes

    def stall_after(self, repo_id: str, path: str, n_bytes: int) -> None:
        """Bodies of this file go silent after ``n_bytes`` until :meth:`close` (the socket stays open)."""
        with self._lock:
            self._stall[(repo_id, path)] = n_bytes

    def corrupt(self, repo_id: str, path: str) -> None:
        """Serve this file with one byte flipped, under the headers (hash, size) of the real one."""
        with self._lock:
            self._corrupt.add((repo_id, path))

    # -- what happened -------------------------------------------------------------------------
    def body_bytes_sent(self, repo_id: str, path: str) -> int:
        """How many bytes of this file's body went into the socket, over all requests."""
        with self._lock:
            return self._sent.get((repo_id, path), 0)

    def body_requests(self, repo_id: str, path: str) -> list[SeenRequest]:
        """The GETs that asked for this file's bytes (the CDN URL for LFS files)."""
        with self._lock:
            item = self._repos[repo_id].files[path]
            seen = list(self.seen)
        if item.lfs:
            return [r for r in seen if r.method == "GET" and r.path.startswith(f"/cdn-lfs/{repo_id}/{item.sha256}")]
        return [r for r in seen if r.method == "GET" and "/resolve/" in r.path and r.path.endswith(f"/{path}")]

    # -- life ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving, and drop the connections that clients keep alive (as a hub that went away)."""
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for the handler -----------------------------------------------------------------------
    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self.seen.append(request)

    def _lookup(self, repo_id: str) -> _Repo | None:
        with self._lock:
            return self._repos.get(repo_id)

    def _opened(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            (self._connections.add if is_open else self._connections.discard)(connection)

    def _take_fail(self, key: tuple[str, str]) -> int | None:
        with self._lock:
            return self._fail_once.pop(key, None)

    def _stall_at(self, key: tuple[str, str]) -> int | None:
        with self._lock:
            return self._stall.get(key)

    def _body(self, item: FakeFile) -> bytes:
        with self._lock:
            bad = (item.repo_id, item.path) in self._corrupt
        if not bad:
            return item.data
        middle = len(item.data) // 2
        return item.data[:middle] + bytes([item.data[middle] ^ 0xFF]) + item.data[middle + 1 :]

    def _count(self, key: tuple[str, str], n: int) -> None:
        with self._lock:
            self._sent[key] = self._sent.get(key, 0) + n


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1"

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.hub._opened(self.connection, True)

    def finish(self) -> None:
        self.hub._opened(self.connection, False)
        super().finish()

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    # -- routes --------------------------------------------------------------------------------
    def _handle(self, *, head: bool) -> None:
        raw_path = urlsplit(self.path).path
        self.hub._record(SeenRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if raw_path.startswith("/cdn-lfs/"):
            self._cdn(raw_path[len("/cdn-lfs/") :], head)
        elif raw_path.startswith("/api/models/") and "/revision/" in raw_path:
            self._repo_info(raw_path[len("/api/models/") :], head)
        elif "/resolve/" in raw_path:
            self._resolve(raw_path, head)
        else:
            self._error(404, None, "Not found")

    def _open_repo(self, repo_id: str, revision: str) -> tuple[_Repo, str] | None:
        """The repository and its commit when the request may see them at ``revision``; else answer the error."""
        repo = self.hub._lookup(repo_id)
        if repo is None or not repo.files:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.token is not None:
            sent = self.headers.get("Authorization")
            if sent is None:
                self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must be authenticated.")
                return None
            if sent != f"Bearer {repo.token}":
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the list.")
                return None
        commit = self.hub.commit(repo_id)
        if revision not in ("main", commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, commit

    def _repo_info(self, rest: str, head: bool) -> None:
        repo_part, _, revision_quoted = rest.partition("/revision/")
        opened = self._open_repo(unquote(repo_part.strip("/")), unquote(revision_quoted.strip("/")))
        if opened is None:
            return
        repo, commit = opened
        siblings = [{"rfilename": path} for path in sorted(repo.files)]
        body = json.dumps({"id": unquote(repo_part.strip("/")), "sha": commit, "siblings": siblings}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _resolve(self, raw_path: str, head: bool) -> None:
        repo_part, rest = raw_path.split("/resolve/", 1)
        repo_id = unquote(repo_part.strip("/"))
        revision_quoted, _, file_quoted = rest.partition("/")
        revision, path = unquote(revision_quoted), unquote(file_quoted)
        opened = self._open_repo(repo_id, revision)
        if opened is None:
            return
        repo, commit = opened
        item = repo.files.get(path)
        if item is None:
            self._error(404, "EntryNotFound", f"{path} does not exist on main", commit=commit)
            return
        if item.lfs:
            host, port = self.server.server_address[:2]
            self.send_response(302)
            self.send_header("Location", f"http://{host}:{port}/cdn-lfs/{repo_id}/{item.sha256}?sig=fake")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", f'"{item.sha256}"')
            self.send_header("X-Linked-Size", str(len(item.data)))
            self.send_header("ETag", f'"{item.git_sha1}"')  # the pointer file's id on the real hub
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_body(item, head, {"X-Repo-Commit": commit, "ETag": f'"{item.git_sha1}"'})

    def _cdn(self, rest: str, head: bool) -> None:
        repo_id, _, sha256 = unquote(rest).rpartition("/")
        repo = self.hub._lookup(repo_id)
        item = next((f for f in (repo.files.values() if repo else ()) if f.lfs and f.sha256 == sha256), None)
        if item is None:
            self._error(404, None, "No such object")
            return
        self._send_body(item, head, {"ETag": f'"{item.sha256}"'})

    # -- answers -------------------------------------------------------------------------------
    def _error(self, status: int, code: str | None, message: str, *, commit: str | None = None) -> None:
        body = f'{{"error": "{message}"}}'.encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_body(self, item: FakeFile, head: bool, extra: dict[str, str]) -> None:
        data = self.hub._body(item)
        size = len(data)
        start = 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and not head:
            first, _, last = wanted[len("bytes=") :].partition("-")
            start = int(first or 0)
            end = int(last) + 1 if last else size
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = data[start:end]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{size}")
        else:
            self.send_response(200)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head:
            return
        self._stream(item, data)

    def _stream(self, item: FakeFile, data: bytes) -> None:
        key = (item.repo_id, item.path)
        fail_after = self.hub._take_fail(key)
        stall_after = self.hub._stall_at(key)
        rate = self.hub.throttle_bytes_per_s
        piece = _THROTTLED_PIECE_BYTES if rate else _PIECE_BYTES
        began = time.monotonic()
        sent = 0
        try:
            while sent < len(data):
                limit = len(data)
                if fail_after is not None:
                    limit = min(limit, fail_after)
                if stall_after is not None:
                    limit = min(limit, stall_after)
                if sent >= limit:
                    if stall_after is not None and sent >= stall_after:
                        self.hub._release.wait()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                chunk = data[sent : min(sent + piece, limit)]
                self.wfile.write(chunk)
                self.wfile.flush()
                sent += len(chunk)
                self.hub._count(key, len(chunk))
                if rate:
                    delay = began + sent / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except OSError:  # the client went away (a cancel, a pause): nothing more to send
            self.close_connection = True
