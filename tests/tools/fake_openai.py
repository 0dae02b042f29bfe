"""A fake OpenAI-compatible server on loopback (models, streamed replies, scripted failures) for tests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    """What the fake server does: its models, the pieces it streams, and how it fails."""

    models: list[str] = field(default_factory=lambda: ["big-model"])
    pieces: list[str] = field(default_factory=lambda: ["Hello", " from", " far", " away."])
    delay_s: float = 0.0
    status: int = 200  # of the completion endpoints
    error: str = ""  # the OpenAI error message at that status
    key: str = ""  # when set, requests without "Bearer <key>" get 401
    raw: bytes = b""  # answer this instead (not JSON)
    bodies: list[dict[str, Any]] = field(default_factory=list)


class FakeServer:
    def __init__(self) -> None:
        self.script = Script()
        script_of = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _refuse(self, status: int, message: str) -> None:
                body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def _authorized(self) -> bool:
                key = script_of.script.key
                if key and self.headers.get("Authorization") != f"Bearer {key}":
                    self._refuse(401, "Invalid API key")
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                body = json.dumps({"object": "list", "data": [{"id": m} for m in script_of.script.models]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def _images(self, body: dict[str, Any]) -> None:
                import base64
                import io

                import numpy as np
                from PIL import Image

                width, height = (int(v) for v in body.get("size", "64x64").split("x"))
                made = []
                for i in range(int(body.get("n", 1))):
                    # a picture-like image: smooth colour fields with some grain (uniform noise carries a
                    # watermark poorly, as it would in a real photograph of static)
                    seed = int(body.get("seed", 0)) + i
                    rng = np.random.default_rng(seed)
                    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
                    fields = [
                        120 + 80 * np.sin(6 * xx + seed),
                        110 + 70 * np.cos(5 * yy),
                        100 + 60 * np.sin(4 * (xx + yy)),
                    ]
                    pixels = np.clip(np.stack(fields, -1) + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(
                        np.uint8
                    )
                    buffer = io.BytesIO()
                    Image.fromarray(pixels).save(buffer, "PNG")
                    made.append({"b64_json": base64.b64encode(buffer.getvalue()).decode()})
                answer = json.dumps({"created": 0, "data": made}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                script = script_of.script
                script.bodies.append(body)
                if not self._authorized():
                    return
                if script.status != 200:
                    self._refuse(script.status, script.error)
                    return
                if self.path.endswith("/images/generations"):
                    self._images(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if script.raw:
                    self.wfile.write(script.raw)
                    return
                chat = self.path.endswith("/chat/completions")
                try:
                    for piece in script.pieces:
                        choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
                        self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(script.delay_s)
                    end = {"index": 0, "delta": {}, "finish_reason": "stop"} if chat else {
                        "index": 0, "text": "", "finish_reason": "stop"}  # fmt: skip
                    usage = {"prompt_tokens": 7, "completion_tokens": len(script.pieces)}
                    self.wfile.write(f"data: {json.dumps({'choices': [end], 'usage': usage})}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                except OSError:
                    pass  # the client went away

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
