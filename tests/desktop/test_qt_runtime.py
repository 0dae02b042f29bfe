"""The Qt binding Ember runs on must survive a long chat: thousands of signal emits."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    event = Signal(object)


def test_signal_emits_do_not_leak_or_steal_references(qapp: object) -> None:
    # PySide6 6.12.0 dropped one reference to True per emit; on Python 3.11 that aborts the
    # interpreter after ~1000 tokens. A streamed reply emits one signal a token.
    emitter = _Emitter()
    received: list[int] = []
    emitter.event.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(500):
        emitter.event.emit(i)
    assert abs(sys.getrefcount(True) - before) <= 2
    assert received == list(range(500))
