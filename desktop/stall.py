"""How long the GUI event loop stalls: the gap between ticks of a fast timer."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class StallMeter(QObject):
    """Measures the longest time the event loop did not run while it is started.

    A precise timer ticks every ``interval_ms``; any tick that comes later than that
    means the loop was busy (or blocked) for the extra time. Used by the window
    benchmark and by the tests that stream a reply.
    """

    def __init__(self, interval_ms: int = 5, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last_s = 0.0
        self._longest_ms = 0.0

    @property
    def longest_ms(self) -> float:
        """The longest stall seen so far, in milliseconds beyond the timer's interval."""
        return self._longest_ms

    @property
    def running(self) -> bool:
        """Whether the meter is measuring now."""
        return self._timer.isActive()

    def start(self) -> None:
        """Start (or restart) measuring from zero."""
        self._longest_ms = 0.0
        self._last_s = time.perf_counter()
        self._timer.start()

    def stop(self) -> float:
        """Stop measuring and return the longest stall in milliseconds."""
        if self._timer.isActive():
            self._tick()  # a stall that is still going on when we stop counts too
            self._timer.stop()
        return self._longest_ms

    def _tick(self) -> None:
        now = time.perf_counter()
        stall_ms = (now - self._last_s) * 1000.0 - self._interval_ms
        self._last_s = now
        if stall_ms > self._longest_ms:
            self._longest_ms = stall_ms
