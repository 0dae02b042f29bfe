"""Starting the window: the application, the Studio, the bridge and the main window."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from desktop.bridge import EventBridge
from desktop.main_window import MainWindow
from engines.studio import Studio

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
STYLESHEET = RESOURCES / "styles" / "ember.qss"


def load_stylesheet(path: Path = STYLESHEET) -> str:
    """Return Ember's Qt stylesheet, or "" when the file is missing (the window then uses Qt's look)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def build_main_window(studio: Studio) -> MainWindow:
    """Return a main window (not yet shown) wired to ``studio`` through a new EventBridge.

    A QApplication must exist. Call ``window.shutdown()`` (or close it) before closing the Studio.
    """
    bridge = EventBridge(studio)
    window = MainWindow(bridge)
    bridge.setParent(window)
    return window


def _start_probe(app: QApplication, probe: str) -> None:
    """Print when the window was shown and this process's peak memory until then, then quit; with
    ``idle=SECONDS``, first wait that long and print the idle memory of this process and its engine
    processes too (``bench start`` reads all three)."""
    from engines.benchmarks.start import idle_memory_kb, peak_memory_kb

    def shown() -> None:
        print(f"ember-window-shown {time.time():.6f}\nember-window-memory-kb {peak_memory_kb()}", flush=True)

    def rested() -> None:
        print(f"ember-window-idle-kb {idle_memory_kb()}", flush=True)
        app.quit()

    if probe.startswith("idle="):
        QTimer.singleShot(0, shown)
        QTimer.singleShot(int(float(probe.removeprefix("idle=")) * 1000), rested)
    else:
        QTimer.singleShot(0, lambda: (shown(), app.quit()))


def run_app(argv: Sequence[str] | None = None) -> int:
    """Open Ember's window and run until it is closed; returns the exit code.

    The Studio uses the default data folder (``EMBER_HOME`` when set) and is closed on quit.
    """
    app = QApplication.instance() or QApplication(list(argv if argv is not None else sys.argv))
    app.setApplicationName("Ember")
    studio = Studio()
    try:
        window = build_main_window(studio)
        # The style sheet after the widgets exist: set first, Qt re-styles every widget as it is added to
        # its layout (0.3 s of 0.65 s building the window on 2 cores); set now, it styles them once.
        app.setStyleSheet(load_stylesheet())
        window.show()
        if probe := os.environ.get("EMBER_START_PROBE"):  # bench start, packaging/measure_start.py
            _start_probe(app, probe)
        code = app.exec()
        window.shutdown()
        return int(code)
    finally:
        studio.close()
