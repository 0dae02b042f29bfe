"""Remote engines when the server is slow or goes away: a cancel is honoured at once, a cut reply fails."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engines.errors import Cancelled, EmberError
from engines.jobs import CancelToken
from engines.remote import remote_path
from engines.remote.engine import RemoteImageEngine, RemoteTextEngine
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling


class Collect:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def token(self, text: str) -> None:
        self.tokens.append(text)

    def step(self, done: int, total: int) -> None:
        pass

    def notice(self, text: str) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    """Lists one model; a chat reply is cut after two pieces; an image takes 30 s to make."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/images/generations"):
            time.sleep(30)  # the client has gone long before
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("Once", " upon"):
            self.wfile.write(
                f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': piece}}]})}\n\n".encode()
            )
        # ...and the connection closes: no finish_reason, no [DONE] (the server crashed or was stopped)


@pytest.fixture
def broken_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_a_reply_cut_off_by_the_server_fails_and_says_so(broken_url: str) -> None:
    request = ChatRequest(ModelOptions(remote_path(broken_url, "m")), (Message("user", "Tell a story."),),
                          sampling=Sampling(max_tokens=64, seed=1))  # fmt: skip
    progress = Collect()
    with pytest.raises(EmberError, match="stopped sending in the middle of the reply"):
        RemoteTextEngine(request.model).run(request, progress, CancelToken())
    assert progress.tokens == ["Once", " upon"]  # what arrived was streamed (and so safety-checked) as usual


def test_a_cancel_ends_a_slow_remote_image_at_once(broken_url: str) -> None:
    from engines.diffusion.requests import DiffusionOptions, ImageRequest

    path = remote_path(broken_url, "m")
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        RemoteImageEngine(DiffusionOptions(path)).run(ImageRequest(DiffusionOptions(path), "a boat"), Collect(), token)
    assert time.monotonic() - started < 1.5
