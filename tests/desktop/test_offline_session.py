"""Offline guarantee: a whole session in the window opens no network connection but loopback.

Every Python process of the session (the window's and each engine process it starts) gets an
audit hook through ``sitecustomize``: each socket connection, send, name lookup and URL opened
is checked, and any that is not loopback or a local (Unix) socket is written down and refused.
The session (tests/tools/offline_session.py) starts the window, shows every panel, chats, makes
an image, speaks, verifies a file and opens Settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SITECUSTOMIZE = r"""
import os, sys

_LOG = os.environ["EMBER_NETWORK_LOG"]
_LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "", None}
_EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
           "socket.gethostbyaddr", "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect"}


def _host(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1] if event == "socket.connect" else args[-1]
        if not isinstance(address, tuple):  # a Unix socket (a path) or a file descriptor: local
            return None
        return str(address[0])
    if event == "urllib.Request":
        from urllib.parse import urlsplit
        return urlsplit(args[0]).hostname or ""
    return str(args[0]) if args else ""


def _hook(event, args):
    if event not in _EVENTS:
        return
    host = _host(event, args)
    if host is None or host in _LOOPBACK or host.startswith("127."):
        return
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {event} {host} {sys.argv[:2]}\n")
    raise OSError(f"the offline test refused {event} to {host}")


sys.addaudithook(_hook)
with open(_LOG + ".processes", "a", encoding="utf-8") as processes:
    processes.write(f"{os.getpid()} {sys.argv[:2]}\n")
"""


def test_a_whole_session_opens_no_connection_but_loopback(tmp_path: Path, tiny_sd: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "network.log"
    log.write_text("", encoding="utf-8")
    probe = tmp_path / "probe.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT), str(ROOT / "tests" / "tools")]),
        "EMBER_NETWORK_LOG": str(log),
        "EMBER_HOME": str(tmp_path / "home"),
        "QT_QPA_PLATFORM": "offscreen",
    }
    # The hook works: a connection out is refused and written down, a loopback one is not.
    check = subprocess.run(
        [sys.executable, "-c", "import socket\n"
         "for host in ('127.0.0.1', '192.0.2.1'):\n"
         "    try: socket.create_connection((host, 9), timeout=0.2)\n"
         "    except OSError as exc: print(host, exc)\n"],
        env={**env, "EMBER_NETWORK_LOG": str(probe)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "192.0.2.1 the offline test refused" in check.stdout, check
    assert probe.read_text(encoding="utf-8").count("192.0.2.1") >= 1 and "127.0.0.1" not in probe.read_text()

    session = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "tools" / "offline_session.py"), str(tiny_sd)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip

    assert "offline-session ok: chat, image, speech, verify (1 card), settings" in session.stdout, (
        session.stdout[-2000:] + session.stderr[-3000:]
    )
    assert log.read_text(encoding="utf-8") == "", "connections that were not loopback:\n" + log.read_text()
    # The hook was in the window's process and in the engine processes it started (the text, image and
    # speech engines run in their own).
    watched = Path(f"{log}.processes").read_text(encoding="utf-8").splitlines()
    assert len(watched) >= 3 and any("offline_session.py" in line for line in watched), watched
