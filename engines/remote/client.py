"""A small OpenAI API client over the standard library: JSON requests, and server-sent events streamed.

Every failure is an EmberError a person can act on: the server not running, not answering, refusing
the key, not knowing the model, or answering something that is not OpenAI's API.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from engines.errors import ContextOverflowError, EmberError


def _connection(url: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout_s, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
    return connection, parts.path.rstrip("/")


def _headers(api_key: str, body: bool) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream"}
    if body:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _failure(url: str, exc: BaseException, timeout_s: float) -> EmberError:
    if isinstance(exc, ConnectionRefusedError):
        return EmberError(f"Ember could not reach the remote server at {url}: nothing answers there. Is it running?")
    if isinstance(exc, socket.timeout | TimeoutError):
        return EmberError(f"The remote server at {url} did not answer within {timeout_s:g} s. Try again later.")
    if isinstance(exc, socket.gaierror):
        return EmberError(f"Ember could not find the remote server {urlsplit(url).hostname} (no such name).")
    if isinstance(exc, ssl.SSLError):
        return EmberError(f"The remote server at {url} has a certificate Ember cannot trust ({exc.reason}).")
    return EmberError(f"The connection to the remote server at {url} failed ({type(exc).__name__}: {exc}).")


def _refusal(url: str, status: int, payload: bytes) -> EmberError:
    """The error for an HTTP status other than 200, with the server's own words when it gave OpenAI's shape."""
    said = ""
    code = ""
    try:
        error = json.loads(payload.decode("utf-8")).get("error")
        if isinstance(error, dict):
            said, code = str(error.get("message") or ""), str(error.get("code") or "")
        elif isinstance(error, str):
            said = error
    except (ValueError, AttributeError):
        said = payload.decode("utf-8", "replace").strip()[:300]
    if status in (401, 403):
        return EmberError(f"The remote server at {url} refused Ember's API key ({status}). Check the key in Settings.")
    if code == "context_length_exceeded" or ("context" in said.lower() and "exceed" in said.lower()):
        return ContextOverflowError(f"The remote server at {url} says the text is too long for its model: {said}")
    if status == 404:
        return EmberError(
            f"The remote server at {url} does not know this model or path (404{': ' + said if said else ''})."
        )
    return EmberError(f"The remote server at {url} refused the request ({status}{': ' + said if said else ''}).")


class _Closer:
    """Closes a connection from another thread (a cancel): a read waiting on the server then ends at once."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self.connection = connection
        self.closed = False

    def __call__(self) -> None:
        self.closed = True
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def request_json(
    method: str,
    url: str,
    path: str,
    body: Any,
    api_key: str,
    timeout_s: float,
    on_open: Callable[[Callable[[], None]], None] | None = None,
) -> Any:
    """One JSON request to the API at ``url`` (its base, ".../v1"); the decoded answer.

    ``on_open``, when given, is handed a function that closes the connection (the caller's cancel
    hook); once it was called the answer is None, whatever arrived. Raises EmberError for a failure.
    """
    connection, base = _connection(url, timeout_s)
    close = _Closer(connection)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, base + path, payload, _headers(api_key, payload is not None))
        if on_open is not None:
            on_open(close)
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        if close.closed:
            return None  # cancelled: the caller sees its token
        raise _failure(url, exc, timeout_s) from None
    finally:
        connection.close()
    if close.closed:
        return None
    if response.status != 200:
        raise _refusal(url, response.status, data)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:
        raise EmberError(
            f"The server at {url} answered {path} with something that is not JSON; it may not be an "
            "OpenAI-compatible API."
        ) from None


def stream_events(
    url: str, path: str, body: Any, api_key: str, timeout_s: float, on_open: Callable[[Callable[[], None]], None]
) -> Iterator[dict[str, Any]]:
    """POST ``body`` with ``stream: true`` and yield each server-sent event's JSON until ``[DONE]``.

    ``on_open`` is given a function that closes the connection (the caller's cancel hook: a read
    waiting on the server then ends at once).
    """
    connection, base = _connection(url, timeout_s)
    close = _Closer(connection)
    try:
        connection.request("POST", base + path, json.dumps(body).encode(), _headers(api_key, True))
        on_open(close)
        response = connection.getresponse()
        if response.status != 200:
            raise _refusal(url, response.status, response.read())
        for raw in response:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise EmberError(f"The remote server at {url} streamed something that is not JSON.") from None
            if isinstance(event, dict) and "error" in event:
                raise _refusal(url, 500, data.encode())
            if isinstance(event, dict):
                yield event
    except (OSError, http.client.HTTPException) as exc:
        if close.closed:
            return  # cancelled: the caller sees its token
        raise _failure(url, exc, timeout_s) from None
    finally:
        connection.close()
