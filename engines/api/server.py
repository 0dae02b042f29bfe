"""The HTTP server of the local API: security, limits, streaming, and jobs on the Studio's queue.

One thread a connection (``ThreadingHTTPServer``). A request is checked in this order: its size
(413 over the limit), the client's rate (429), the key (401), then its fields (400, naming the
field). What it asks for becomes one Studio job, submitted like the window's and so run through
the same queue and OutputPipeline; the thread waits on the job's events and writes them back,
as server-sent events for ``"stream": true``. A client that goes away (the socket closes) cancels
its job, queued or running.

Fair sharing: a client's job is queued at priority minus the number of its jobs already queued
or running, so a client with four requests in flight waits behind another client's first one
(the window's jobs are priority 0, like every client's first).

``/v1/embeddings`` runs document search's embedding model as a job of its own lane: vectors are no
output (nothing is generated, kept or watermarked), and a text longer than the model reads is
refused, not cut.
"""

from __future__ import annotations

import base64
import collections
import hmac
import ipaddress
import json
import logging
import queue
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from engines.api import translate
from engines.api.errors import ApiError, invalid, unsupported
from engines.api.models import EMBEDDING, IMAGE, SPEECH, TRANSCRIPTION, ServedModels
from engines.api.tools import ToolStream
from engines.errors import ContextOverflowError, EmberError, Failure, InvalidRequestError, OutOfMemoryError
from engines.jobs import EventKind, JobEvent

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
MAX_BODY_BYTES = 1 * 2**20  # JSON bodies: a long conversation is well under it
MAX_UPLOAD_BYTES = 25 * 2**20  # /v1/audio/transcriptions, OpenAI's own limit
_DRAIN_BYTES = 16 * 2**20  # an oversized body is read (and dropped) this far so the client reads the 413
_POLL_S = 0.1  # how often a waiting request looks whether its client is still there
_JOB_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class ServerSettings:
    """How the API listens. ``rate_per_minute`` 0 means no rate limit; ``cors_origins`` empty means no CORS headers.

    ``context_tokens`` is the context text models load with (at most what each was trained for).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: str = ""
    max_body_bytes: int = MAX_BODY_BYTES
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    rate_per_minute: int = 120
    cors_origins: tuple[str, ...] = ()
    context_tokens: int = 4096


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


def check_settings(settings: ServerSettings) -> None:
    """Refuse settings that would expose the API: raises EmberError with what to do."""
    if not is_loopback(settings.host) and not settings.api_key:
        raise EmberError(
            f"Serving on {settings.host} lets other machines use Ember, so it needs an API key. "
            "Pass --api-key KEY (or set EMBER_API_KEY), or serve on 127.0.0.1."
        )
    if settings.api_key and len(settings.api_key) < 16:
        raise EmberError("The API key is too short to be safe; use at least 16 characters.")
    if settings.max_body_bytes < 1024 or settings.rate_per_minute < 0:
        raise EmberError("The body limit must be at least 1024 bytes and the rate limit 0 (off) or more.")


class RateLimit:
    """At most ``per_minute`` requests from one client address in any 60 seconds."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, client: str) -> float:
        """Count a request; return 0 when it may go on, else the seconds until the client may ask again."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            times = self._seen.setdefault(client, collections.deque())
            while times and now - times[0] >= 60.0:
                times.popleft()
            if len(times) >= self.per_minute:
                return 60.0 - (now - times[0])
            times.append(now)
            if len(self._seen) > 10_000:  # forget clients that have gone quiet
                for key in [k for k, v in self._seen.items() if not v]:
                    del self._seen[key]
            return 0.0


@dataclass
class _Fairness:
    """How many jobs each client has queued or running, for their priorities."""

    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, client: str) -> int:
        with self.lock:
            held = self.counts.get(client, 0)
            self.counts[client] = held + 1
            return -held

    def leave(self, client: str) -> None:
        with self.lock:
            left = self.counts.get(client, 1) - 1
            if left > 0:
                self.counts[client] = left
            else:
                self.counts.pop(client, None)


class ApiServer:
    """The API in front of ``studio``: :meth:`start` serves on a thread, :meth:`close` stops it.

    Raises EmberError for settings that would expose the API, and when the port is taken.
    """

    def __init__(self, studio: Any, settings: ServerSettings | None = None) -> None:
        self.studio = studio
        self.settings = settings or ServerSettings()
        check_settings(self.settings)
        self.models = ServedModels(studio.db)
        self.rate = RateLimit(self.settings.rate_per_minute)
        self.fairness = _Fairness()
        self.jobs_cancelled_by_clients = 0  # jobs whose client went away (tests and the bench read it)
        handler = type("Handler", (_Handler,), {"api": self})
        try:
            self._http = _HTTPServer((self.settings.host, self.settings.port), handler)
        except OSError as exc:
            raise EmberError(
                f"Ember cannot serve on {self.settings.host}:{self.settings.port} ({exc.strerror or exc}). "
                "Another program may use that port; pick another (--port)."
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        """The base URL clients use (``http://127.0.0.1:8765/v1``)."""
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/v1"

    def start(self) -> ApiServer:
        """Serve on a thread of its own; returns self."""
        self._thread = threading.Thread(target=self._http.serve_forever, name="ember-api", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until :meth:`close` (from another thread) or Ctrl+C."""
        self._http.serve_forever()

    def close(self) -> None:
        """Stop accepting requests and close the socket (jobs in flight end with the Studio)."""
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_Route = Callable[["_Handler", Any], None]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops its connection is ordinary here (a stream read to its end, a cancel)."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        log.exception("The API failed on a connection from %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    """One connection. ``api`` is set on the subclass the server makes."""

    api: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "Ember"
    sys_version = ""
    _started = False  # whether a streamed response's headers went out
    _unread = False  # whether a request body is still on the connection

    def setup(self) -> None:
        super().setup()
        # Streamed events are small writes: without this, Nagle's algorithm holds each one for the client's
        # delayed ACK (about 40 ms on Linux).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- HTTP methods --------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_OPTIONS(self) -> None:
        origin = self._allowed_origin()
        if origin is None:
            self._send_error(ApiError(405, "CORS is not enabled on this server.", code="method_not_allowed"))
            return
        self.send_response(204)
        self._cors_headers(origin)
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # -- the request path ----------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        self._started = False  # whether a streamed response's headers went out
        # An answer sent before the body was read leaves the body on the connection: it is closed then.
        self._unread = method == "POST"
        try:
            path = urlsplit(self.path).path.rstrip("/") or "/"
            route = _route(method, path)
            if path != "/health":
                wait_s = self.api.rate.admit(self.client_address[0])
                if wait_s:
                    raise ApiError(
                        429,
                        f"Too many requests: at most {self.api.rate.per_minute} a minute. Try again in {wait_s:.0f} s.",
                        type="rate_limit_error",
                        code="rate_limit_exceeded",
                        headers={"Retry-After": str(max(1, round(wait_s)))},
                    )
                self._authorize()
            if method == "POST":
                upload = path == "/v1/audio/transcriptions"
                raw = self._read_body(
                    self.api.settings.max_upload_bytes if upload else self.api.settings.max_body_bytes
                )
                data: Any = raw if upload else _json_body(raw)
            else:
                data = path
            route(self, data)
        except ApiError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            log.exception("The API failed on %s %s", method, self.path)
            self._send_error(
                ApiError(500, f"Ember failed on this request ({type(exc).__name__}).", type="server_error")
            )

    def _authorize(self) -> None:
        key = self.api.settings.api_key
        if not key:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            what = "Give the API key as 'Authorization: Bearer KEY'." if not given else "The API key is not right."
            raise ApiError(
                401, what, code="invalid_api_key", type="authentication_error", headers={"WWW-Authenticate": "Bearer"}
            )

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length (chunked bodies are not supported).")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ApiError(400, "The Content-Length header is not a number.")
        if length > limit:
            self.close_connection = True
            self._drain(length)
            raise ApiError(
                413,
                f"The request body is {length:,} bytes; this server takes at most {limit:,}.",
                code="request_too_large",
            )
        body = self.rfile.read(length) if length else b""
        self._unread = False
        return body

    def _drain(self, length: int) -> None:
        """Read (and drop) an oversized body, up to a bound, so the client gets to read the 413."""
        left = min(length, _DRAIN_BYTES)
        self.connection.settimeout(2.0)
        try:
            while left > 0:
                got = self.rfile.read(min(left, 65536))
                if not got:
                    return
                left -= len(got)
        except OSError:
            return

    def client_gone(self) -> bool:
        """Whether the client closed its side of the connection (it does not wait for the answer any more)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- writing ---------------------------------------------------------------------------------
    def _allowed_origin(self) -> str | None:
        origins = self.api.settings.cors_origins
        origin = self.headers.get("Origin")
        if not origins or not origin:
            return None
        if "*" in origins or origin in origins:
            return origin
        return None

    def _cors_headers(self, origin: str | None) -> None:
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json", headers)

    def send_bytes(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._cors_headers(self._allowed_origin())
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def _send_error(self, error: ApiError) -> None:
        if self._unread:
            self.close_connection = True
        if self._started:  # headers of a stream went out: the error is its last event
            self.send_event(error.body())
            self.end_stream()
            return
        try:
            self.send_json(error.status, error.body(), error.headers)
        except OSError:
            self.close_connection = True

    def start_stream(self) -> None:
        """Send the headers of a server-sent event stream (chunked, so the connection stays usable)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._cors_headers(self._allowed_origin())
        self.end_headers()
        self._started = True

    def send_event(self, data: Any) -> None:
        """One event of the stream; raises OSError when the client has gone."""
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        payload = f"data: {text}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    # -- jobs -------------------------------------------------------------------------------------
    def run_job(self, request: Any, client: str, on_token: Callable[[str], None] | None = None) -> tuple[JobEvent, Any]:
        """Submit ``request`` and wait for its end; ``on_token`` gets the text the pipeline releases.

        Returns the terminal event and the job. Cancels the job when the client goes away (then the
        event is the cancelled one, and nobody reads the answer).
        """
        studio = self.api.studio
        key = f"{self.client_address[0]}|{client}"
        priority = self.api.fairness.enter(key)
        events: queue.SimpleQueue[JobEvent] = queue.SimpleQueue()
        try:
            job = studio.submit(request, priority=priority, listener=events.put)
            deadline = time.monotonic() + _JOB_TIMEOUT_S
            gone = False
            while True:
                try:
                    event = events.get(timeout=_POLL_S)
                except queue.Empty:
                    if not gone and (self.client_gone() or time.monotonic() > deadline):
                        gone = True
                        self.api.jobs_cancelled_by_clients += 1
                        job.cancel()
                    continue
                if event.kind.terminal:
                    if gone:
                        self.close_connection = True
                        raise ConnectionResetError("the client went away")
                    return event, job
                if event.kind is EventKind.TOKEN and on_token is not None and not gone:
                    try:
                        on_token(event.data)
                    except OSError:
                        gone = True
                        self.api.jobs_cancelled_by_clients += 1
                        job.cancel()
        finally:
            self.api.fairness.leave(key)


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"The request body is not valid JSON ({exc}).", code="invalid_json") from None


# The API's name of a request field an engine's InvalidRequestError names by its own.
_FIELDS = {"json_schema": "response_format"}
_TOOL_FIELDS = {"json_schema": "tools"}  # with tools, a grammar the engine could not make is a forced call's


def _ended(event: JobEvent, what: str, param: str | None, fields: dict[str, str] = _FIELDS) -> ApiError:
    """The error for a job that did not end with a result."""
    if event.kind is EventKind.BLOCKED:
        reason = getattr(event.data, "reason", "") or "The output was withheld by Ember's safety filter."
        return ApiError(400, reason, param=None, code="content_policy_violation")
    if event.kind is EventKind.CANCELLED:
        return ApiError(503, f"The {what} was stopped before it finished (Ember is closing).", type="server_error")
    failure = event.data if isinstance(event.data, Failure) else Failure(str(event.data or "The job failed."))
    if failure.code == ContextOverflowError.code:
        return ApiError(400, failure, param=param, code=failure.code)
    if failure.code == InvalidRequestError.code:
        return ApiError(400, failure, param=fields.get(failure.param, failure.param or param), code="invalid_value")
    if failure.code == OutOfMemoryError.code:
        return ApiError(503, failure, type="server_error", code=failure.code)
    return ApiError(500, failure, type="server_error", code=failure.code)


def _check_history(handler: _Handler, texts: tuple[str, ...]) -> None:
    """Check earlier messages of a conversation as prompts, with the Studio's filter; 400 for one it refuses."""
    from engines.safety.filter import decision_for

    safety = handler.api.studio.safety
    for text in texts:
        verdict = safety.policy.decide(safety.text_findings(text, "prompt"))
        safety.log(verdict, "prompt")
        if not verdict.allowed:
            reason = decision_for(verdict, "A message of this conversation").reason
            raise ApiError(400, reason, param="messages", code="content_policy_violation")


# -- endpoints ----------------------------------------------------------------------------------------
def _health(handler: _Handler, _: Any) -> None:
    handler.send_json(200, {"status": "ok"})


def _models(handler: _Handler, path: str) -> None:
    models = handler.api.models.all()
    if path == "/v1/models":
        handler.send_json(200, {"object": "list", "data": [m.as_json() for m in models]})
        return
    wanted = path[len("/v1/models/") :]
    for model in models:
        if model.id == wanted:
            handler.send_json(200, model.as_json())
            return
    raise ApiError(404, f"There is no model '{wanted}' here.", param="model", code="model_not_found")


def _text(handler: _Handler, data: Any, *, chat: bool) -> None:
    settings = handler.api.settings
    make = translate.chat_call if chat else translate.completion_call
    call = make(data, handler.api.models, settings.context_tokens)
    _check_history(handler, call.history)
    response_id = translate.new_id("chatcmpl" if chat else "cmpl")
    created = translate.now_s()
    param = "messages" if chat else "prompt"

    if not call.stream:
        event, _ = handler.run_job(call.request, call.client)
        if event.kind is not EventKind.RESULT:
            raise _ended(event, "reply", param, fields=_TOOL_FIELDS if call.tools is not None else _FIELDS)
        respond = translate.chat_response if chat else translate.completion_response
        handler.send_json(200, respond(call, event.data, response_id, created))
        return

    held = ToolStream(call.tools) if call.tools is not None else None

    def send(text: str) -> None:
        if not handler._started:
            handler.start_stream()
            if chat:  # OpenAI's first chunk says who speaks
                handler.send_event(translate.chunk(call, response_id, created, first=True))
        if text:
            handler.send_event(translate.chunk(call, response_id, created, text=text))

    def on_token(text: str) -> None:
        ready = held.feed(text) if held is not None else text
        if ready or not handler._started:
            send(ready)

    event, _ = handler.run_job(call.request, call.client, on_token)
    if event.kind is not EventKind.RESULT:
        raise _ended(event, "reply", param, fields=_TOOL_FIELDS if call.tools is not None else _FIELDS)
    delivered = event.data
    finish, calls = delivered.output.finish_reason, None
    if held is not None:
        rest, calls = held.rest()
        send(rest)
        if calls:
            handler.send_event(translate.chunk(call, response_id, created, tool_calls=calls))
            finish = "tool_calls"
    send("")  # an empty reply: no token came
    logprobs = translate.logprobs_of(call, delivered.output)
    last = translate.chunk(call, response_id, created, finish=finish, logprobs=logprobs)
    last["ember"] = translate.ember_of(delivered)
    handler.send_event(last)
    if call.include_usage:
        usage = translate.chunk(call, response_id, created)
        usage["choices"], usage["usage"] = [], translate.usage_of(delivered)
        handler.send_event(usage)
    handler.send_event("[DONE]")
    handler.end_stream()


def _speech(handler: _Handler, data: Any) -> None:
    from engines.speech.requests import SPEED_RANGE, SpeechOptions, SpeechRequest

    body = translate.Body(data)
    model = handler.api.models.get(body.get("model"), SPEECH, "/v1/audio/speech")
    voice = body.string("voice")
    if voice is not None and voice != model.id:
        raise invalid("voice", f"In Ember a voice is a model: give '{model.id}' as the voice too, or leave it out.")
    text = body.string("input")
    if not text or not text.strip():
        raise invalid("input", "'input' must be the text to speak.")
    speed = body.number("speed", 1.0, SPEED_RANGE[0], SPEED_RANGE[1])
    fmt = body.string("response_format", "wav")
    if fmt != "wav":
        raise unsupported("response_format", f"only 'wav' (watermarked, with Content Credentials), not '{fmt}'")
    body.only("stream_format", ("audio",), "the clip comes whole")
    body.only("instructions", ("",), "Ember's voices take no speaking instructions")
    seed = body.integer("seed", None, 0, 2**32 - 1)
    client = translate._client(body)
    body.finish()
    try:
        request = SpeechRequest(SpeechOptions(model.path), text, speed=speed, seed=seed)
    except ValueError as exc:
        raise invalid("input", str(exc)) from None
    event, _ = handler.run_job(request, client)
    if event.kind is not EventKind.RESULT:
        raise _ended(event, "speech", "input")
    result = event.data
    headers = {"X-Ember-Output-Id": result.delivered.record.output_id}
    handler.send_bytes(200, Path(result.path).read_bytes(), "audio/wav", headers)


def _images(handler: _Handler, data: Any) -> None:
    from engines.diffusion.requests import DiffusionOptions, ImageRequest

    body = translate.Body(data)
    model = handler.api.models.get(body.get("model"), IMAGE, "/v1/images/generations")
    prompt = body.string("prompt")
    if not prompt or not prompt.strip():
        raise invalid("prompt", "'prompt' must be the text of the image to make.")
    n = body.integer("n", 1, 1, 16)
    size = body.string("size", "512x512")
    try:
        width, height = (int(x) for x in (size or "").lower().split("x"))
    except ValueError:
        raise invalid("size", f"'size' must be WIDTHxHEIGHT, like 512x512; it is '{size}'.") from None
    fmt = body.string("response_format", "b64_json")
    if fmt != "b64_json":
        raise unsupported("response_format", "images come inline as 'b64_json' (the files stay in Ember's library)")
    body.only("output_format", ("png",), "images are PNG files (with their watermark and Content Credentials)")
    body.only("quality", ("standard", "auto"), "there is one quality; 'steps' sets the denoising steps")
    body.only("style", (), "styles are not supported; describe the style in the prompt")
    for name in ("background", "moderation", "output_compression", "partial_images", "stream"):
        body.only(name, (), "not supported")
    seed = body.integer("seed", None, 0, 2**32 - 1)
    steps = body.integer("steps", None, 1, 500)
    guidance = body.number("guidance_scale", -1.0, 0.0, 50.0)
    negative = body.string("negative_prompt", "") or ""
    client = translate._client(body)
    body.finish()
    try:
        request = ImageRequest(
            DiffusionOptions(model.path),
            prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance_scale=guidance if guidance >= 0 else None,
            width=width,
            height=height,
            batch_size=n or 1,
            preview=False,
        )
    except ValueError as exc:
        raise invalid("size" if "width" in str(exc) else "n", str(exc)) from None
    event, _ = handler.run_job(request, client)
    if event.kind is not EventKind.RESULT:
        raise _ended(event, "image", "prompt")
    result = event.data
    images = [
        {"b64_json": base64.b64encode(Path(p).read_bytes()).decode(), "revised_prompt": None} for p in result.paths
    ]
    handler.send_json(
        200,
        {
            "created": translate.now_s(),
            "data": images,
            "ember": {
                "output_ids": [d.record.output_id for d in result.delivered],
                "seeds": [d.record.provenance.seed for d in result.delivered],
                "withheld": list(result.withheld),
            },
        },
    )


def _transcription(handler: _Handler, raw: bytes) -> None:
    from engines.dictation.requests import DictationOptions, DictationRequest

    fields, upload = _form(handler.headers.get("Content-Type", ""), raw)
    body = translate.Body(fields)
    model = handler.api.models.get(body.get("model"), TRANSCRIPTION, "/v1/audio/transcriptions")
    body.get("file")
    if upload is None:
        raise invalid("file", "Send the recording as the multipart field 'file'.")
    language = body.string("language")
    fmt = body.string("response_format", "json")
    if fmt not in ("json", "text", "verbose_json"):
        raise unsupported("response_format", f"only json, verbose_json and text, not '{fmt}'")
    body.only("prompt", ("",), "Whisper is not given a prompt here")
    body.only("temperature", ("0", "0.0"), "Ember transcribes with beam search (temperature 0)")
    body.only("timestamp_granularities[]", ("segment",), "segments only")
    body.only("chunking_strategy", ("auto",), "not supported")
    body.only("stream", ("false",), "the transcription comes whole")
    client = translate._client(body)
    body.finish()
    name, payload = upload
    with tempfile.TemporaryDirectory(prefix="ember-api-") as folder:
        path = Path(folder) / (Path(name).name or "recording")
        path.write_bytes(payload)
        try:
            request = DictationRequest(
                DictationOptions(model.path), audio_path=str(path), language=language or None, source=path.name
            )
        except EmberError as exc:
            raise invalid("language", str(exc)) from None
        event, _ = handler.run_job(request, client)
    if event.kind is not EventKind.RESULT:
        raise _ended(event, "transcription", "file")
    heard = event.data.output
    if fmt == "text":
        handler.send_bytes(200, heard.text.encode("utf-8"), "text/plain; charset=utf-8")
        return
    answer: dict[str, Any] = {"text": heard.text}
    if fmt == "verbose_json":
        answer.update(
            task="transcribe",
            language=heard.language,
            duration=heard.duration_s,
            segments=[
                {"id": i, "start": s.start_s, "end": s.end_s, "text": s.text} for i, s in enumerate(heard.segments)
            ],
        )
    answer["ember"] = {"output_id": event.data.record.output_id}
    handler.send_json(200, answer)


def _embeddings(handler: _Handler, data: Any) -> None:
    from engines.documents.service import EMBED_MAX_TEXTS, EmbedTextsRequest

    body = translate.Body(data)
    model = handler.api.models.get(body.get("model"), EMBEDDING, "/v1/embeddings")
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts:
        raise invalid("input", "'input' must be a text or a list of texts to embed.")
    if not all(isinstance(text, str) for text in texts):
        raise unsupported("input", "token arrays: give the texts themselves")
    if len(texts) > EMBED_MAX_TEXTS:
        raise invalid("input", f"'input' holds {len(texts)} texts; at most {EMBED_MAX_TEXTS} a request.")
    for index, text in enumerate(texts):
        if not text.strip():
            raise invalid("input", f"Text {index} of 'input' is empty; an empty text has no meaning to embed.")
    fmt = body.string("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise invalid("encoding_format", f"'encoding_format' must be 'float' or 'base64', not '{fmt}'.")
    dimensions = body.integer("dimensions", None, 1, 1 << 16)
    if dimensions not in (None, 384):
        raise unsupported("dimensions", f"{model.id} makes 384-dimensional vectors and cannot shorten them")
    client = translate._client(body)
    body.finish()
    event, _ = handler.run_job(EmbedTextsRequest(tuple(texts)), client)
    if event.kind is not EventKind.RESULT:
        raise _ended(event, "embedding", "input")
    result = event.data
    vectors = np.asarray(result.vectors, dtype=np.float32)
    rows = [
        base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii") if fmt == "base64" else vector.tolist()
        for vector in vectors
    ]
    tokens = sum(result.tokens)
    handler.send_json(
        200,
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": model.id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )


def _form(content_type: str, raw: bytes) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The fields of a multipart/form-data body (text ones as strings) and its 'file' (name, bytes) or None."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "Send a transcription as multipart/form-data with the recording in 'file'.")
    message = BytesParser(policy=HTTP_POLICY).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        raise ApiError(400, "The multipart body cannot be read.")
    fields: dict[str, str] = {}
    upload = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            upload = (part.get_filename() or "recording", payload)
            fields["file"] = ""
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, upload


_POST: dict[str, _Route] = {
    "/v1/chat/completions": lambda h, d: _text(h, d, chat=True),
    "/v1/completions": lambda h, d: _text(h, d, chat=False),
    "/v1/audio/speech": _speech,
    "/v1/images/generations": _images,
    "/v1/audio/transcriptions": _transcription,
    "/v1/embeddings": _embeddings,
}


def _route(method: str, path: str) -> _Route:
    """The endpoint for ``method`` and ``path``; raises ApiError 404 or 405."""
    if method == "GET":
        if path == "/health":
            return _health
        if path == "/v1/models" or path.startswith("/v1/models/"):
            return _models
    elif method == "POST" and path in _POST:
        return _POST[path]
    if path == "/v1/embeddings":
        raise ApiError(
            404,
            "Ember's API does not serve embeddings yet (document search's model runs outside the job queue).",
            code="unknown_endpoint",
        )
    if path in _POST or path in ("/health", "/v1/models"):
        raise ApiError(405, f"{path} does not take {method}.", code="method_not_allowed")
    raise ApiError(404, f"There is no endpoint {method} {path} here.", code="unknown_endpoint")
