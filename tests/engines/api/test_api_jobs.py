"""API requests are Studio jobs: a client that goes away cancels its job, and clients share the queue fairly."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from conftest import API_KEY, CHAT_MODEL, Terminals

from engines.api.server import ApiServer
from engines.jobs import EventKind


def raw_stream(server: ApiServer, body: dict[str, Any]) -> socket.socket:
    """Send a streamed chat request on a raw socket; returns the socket, the answer unread."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def test_a_client_that_disconnects_mid_stream_cancels_its_job(api: ApiServer, terminals: Terminals) -> None:
    before = len(terminals.events)
    cancelled = api.jobs_cancelled_by_clients
    long_story = [{"role": "user", "content": "Write a very long story about a lighthouse."}]
    sock = raw_stream(api, {"model": CHAT_MODEL, "messages": long_story, "max_tokens": 400, "stream": True})
    received = b""
    while b"data: " not in received.split(b"\r\n\r\n", 1)[-1]:  # the first event after the headers
        received += sock.recv(4096)
    sock.close()
    closed = time.monotonic()
    (final,) = terminals.wait_for(before + 1, 30)[before:]
    assert final.kind is EventKind.CANCELLED
    assert time.monotonic() - closed < 5  # polled every 0.1 s, then the engine stops between tokens
    assert final.data is not None and final.data.output.finish_reason == "cancelled"  # the partial reply is kept
    assert api.jobs_cancelled_by_clients == cancelled + 1


def test_a_client_that_disconnects_while_queued_cancels_its_job(api: ApiServer, terminals: Terminals) -> None:
    before = len(terminals.events)
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    busy = raw_stream(api, {"model": CHAT_MODEL, "messages": story, "max_tokens": 200, "stream": True})
    waiting = raw_stream(api, {"model": CHAT_MODEL, "messages": story, "max_tokens": 200, "user": "other"})
    time.sleep(0.5)
    waiting.close()  # still queued behind the first
    busy.close()
    ends = terminals.wait_for(before + 2, 30)[before:]
    assert [e.kind for e in ends] == [EventKind.CANCELLED, EventKind.CANCELLED]


def test_concurrent_clients_share_the_queue_fairly(api: ApiServer, client: Any) -> None:
    """Client a sends three requests at once, then b one: b's runs second, before a's other two."""
    finished: list[str] = []
    lock = threading.Lock()

    def ask(who: str, n: int) -> None:
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": f"Say the number {n}."}],
            max_tokens=24,
            temperature=0,
            user=who,
        )
        with lock:
            finished.append(f"{who}{n}")

    threads = [threading.Thread(target=ask, args=("a", n)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    queue = api.studio.queue
    deadline = time.monotonic() + 30
    while sum(queue.pending(lane) for lane in queue.lanes) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # a1 runs, a2 and a3 wait
    late = threading.Thread(target=ask, args=("b", 1))
    late.start()
    for thread in [*threads, late]:
        thread.join(120)
    assert len(finished) == 4
    assert finished.index("b1") <= 1, finished  # behind a's first at most, never behind all of a's
