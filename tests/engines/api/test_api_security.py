"""Who may use the API, and how much: the loopback default, the key, body size, rate and CORS; raw HTTP and curl."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import API_KEY, CHAT_MODEL

from engines.api.server import ApiServer, ServerSettings, check_settings
from engines.errors import EmberError
from engines.studio import Studio

ROOT = Path(__file__).resolve().parents[3]


def request(
    server: ApiServer, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request; returns the status, the headers and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def test_the_default_is_loopback_and_any_other_address_needs_a_key() -> None:
    assert ServerSettings().host == "127.0.0.1"
    check_settings(ServerSettings())
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        with pytest.raises(EmberError, match="needs an API key"):
            check_settings(ServerSettings(host=host))
    check_settings(ServerSettings(host="0.0.0.0", api_key=API_KEY))
    with pytest.raises(EmberError, match="too short"):
        check_settings(ServerSettings(api_key="short"))


def test_serve_refuses_to_start_on_another_address_without_a_key(ember_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EMBER_API_KEY"}
    done = subprocess.run(
        [sys.executable, "main.py", "serve", "--host", "0.0.0.0"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "needs an API key" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_requests_without_the_right_key_get_401(api: ApiServer) -> None:
    for headers in ({}, bearer("wrong-key-0123456789"), {"Authorization": API_KEY}):
        status, _, body = request(api, "GET", "/v1/models", headers=headers)
        assert status == 401
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
    status, _, _ = request(api, "GET", "/health")  # health tells nothing, and monitors have no key
    assert status == 200
    client = openai.OpenAI(base_url=api.url, api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_a_body_over_the_limit_gets_413(api_studio: Studio) -> None:
    settings = ServerSettings(port=0, max_body_bytes=4096, rate_per_minute=0)
    with ApiServer(api_studio, settings) as server:
        big = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x" * 10_000}]}
        status, _, body = request(server, "POST", "/v1/chat/completions", big, bearer())
        assert status == 413
        assert json.loads(body)["error"]["code"] == "request_too_large"
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(**big)
        assert caught.value.status_code == 413


def test_a_client_over_the_rate_limit_gets_429_with_retry_after(api_studio: Studio) -> None:
    with ApiServer(api_studio, ServerSettings(port=0, rate_per_minute=3)) as server:
        statuses = [request(server, "GET", "/v1/models")[0] for _ in range(3)]
        status, headers, body = request(server, "GET", "/v1/models")
        assert statuses == [200, 200, 200] and status == 429
        assert int(headers["Retry-After"]) >= 1
        assert json.loads(body)["error"]["type"] == "rate_limit_error"


def test_cors_headers_only_for_configured_origins(api: ApiServer, api_studio: Studio) -> None:
    origin = {"Origin": "http://localhost:3000"}
    _, headers, _ = request(api, "GET", "/v1/models", headers={**bearer(), **origin})
    assert not any(h.lower().startswith("access-control") for h in headers)
    assert request(api, "OPTIONS", "/v1/chat/completions", headers=origin)[0] == 405
    with ApiServer(api_studio, ServerSettings(port=0, cors_origins=("http://localhost:3000",))) as server:
        status, headers, _ = request(server, "OPTIONS", "/v1/chat/completions", headers=origin)
        assert status == 204 and headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        _, headers, _ = request(server, "GET", "/v1/models", headers=origin)
        assert headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        _, headers, _ = request(server, "GET", "/v1/models", headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in headers


def test_raw_http_errors_are_in_openai_shape(api: ApiServer) -> None:
    cases = [
        ("POST", "/v1/chat/completions", b"{not json", 400, "invalid_json"),
        ("GET", "/v1/nothing", None, 404, "unknown_endpoint"),
        ("POST", "/v1/moderations", {"model": "x", "input": "hi"}, 404, "unknown_endpoint"),
        ("POST", "/v1/embeddings", {"model": "x", "input": "hi"}, 404, "model_not_found"),
        ("POST", "/v1/embeddings", {"model": "all-minilm-l6-v2", "input": 7}, 400, "invalid_value"),
        ("GET", "/v1/chat/completions", None, 405, "method_not_allowed"),
        ("POST", "/v1/chat/completions", {"model": CHAT_MODEL, "messages": []}, 400, "invalid_value"),
    ]
    for method, path, body, status, code in cases:
        got, headers, raw = request(api, method, path, body, bearer())
        error = json.loads(raw)["error"]
        assert (got, error["code"]) == (status, code), raw
        assert set(error) == {"message", "type", "param", "code"}
        assert headers["Content-Type"] == "application/json"


def test_curl_streams_a_chat_reply_as_server_sent_events(api: ApiServer) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed here")
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 12, "stream": True}
    done = subprocess.run(
        ["curl", "-sS", "-N", f"{api.url}/chat/completions", "-H", f"Authorization: Bearer {API_KEY}",
         "-H", "Content-Type: application/json", "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [line[len("data: ") :] for line in done.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip()


def test_main_py_serve_answers_curl_and_stops_on_ctrl_c(ember_home: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed here")
    server = subprocess.Popen(
        [sys.executable, "main.py", "serve", "--port", "0"], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        assert "serving the OpenAI-compatible API on http://127.0.0.1:" in line, line
        url = line.split(" on ", 1)[1].split()[0]
        done = subprocess.run(["curl", "-sS", f"{url}/models"], capture_output=True, text=True, timeout=60)
        assert CHAT_MODEL in [m["id"] for m in json.loads(done.stdout)["data"]]
    finally:
        server.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = server.wait(30)
    assert code == 0 and time.monotonic() - started < 30
