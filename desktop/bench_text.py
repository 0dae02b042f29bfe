"""The window's side of `bench text`: tokens timed where the window receives them, in a Qt slot.

engines/benchmarks/text.py measures the path; main.py hands it this receiver so that the
figure includes the bridge (queued signals onto the GUI thread) as the window sees it.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QCoreApplication, QEventLoop

from desktop.bridge import EventBridge
from engines.jobs import JobEvent
from engines.studio import Studio
from engines.text.requests import ChatRequest


class QtReceiver:
    """Submits through an EventBridge and runs a Qt event loop until the job ends."""

    where = " + EventBridge (Qt queued signal), timed in the slot"

    def __init__(self) -> None:
        self._app = QCoreApplication.instance() or QCoreApplication([])  # the bridge needs an event loop
        self._bridges: dict[int, EventBridge] = {}

    def __call__(self, studio: Studio, request: ChatRequest) -> tuple[float, list[float], JobEvent | None]:
        bridge = self._bridges.get(id(studio))
        if bridge is None:
            bridge = self._bridges[id(studio)] = EventBridge(studio)
        loop = QEventLoop()
        arrivals: list[float] = []
        finished: list[JobEvent] = []
        start = time.perf_counter()
        op = bridge.submit(request)
        op.on_token(lambda _text: arrivals.append(time.perf_counter()))
        op.on_finished(lambda event: (finished.append(event), loop.quit()))
        loop.exec()
        return start, arrivals, finished[0] if finished else None
