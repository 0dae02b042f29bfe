"""Fixtures for the window tests: a real main window on a real Studio and the embedded model."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop.app import build_main_window
from desktop.chat_panel import ChatPanel
from desktop.main_window import MainWindow
from engines.jobs import JobEvent
from engines.studio import Studio

REPLY_TIMEOUT_MS = 120_000


def fast_settings(panel: ChatPanel, max_tokens: int = 24, seed: int = 7) -> None:
    """Small, deterministic replies: greedy sampling, a fixed seed and a small context."""
    s = panel.settings
    s.temperature.setValue(0.0)
    s.seed.setText(str(seed))
    s.max_tokens.setValue(max_tokens)
    s.context_tokens.setValue(2048)


@pytest.fixture
def window(qtbot, studio: Studio, smollm2_path: str) -> Iterator[MainWindow]:
    """The main window on a fresh Studio, shown offscreen, with fast chat settings."""
    w = build_main_window(studio)
    qtbot.addWidget(w)
    w.show()
    fast_settings(w.chat)
    yield w
    w.shutdown()


@pytest.fixture
def onnxstack_sd(tiny_sd: Path, tmp_path: Path) -> Path:
    """The tiny SD pipeline's ONNX folder as OnnxStack lays it out: the same components, no model_index.json."""
    folder = tmp_path / "models" / "tiny-sd-onnxstack"
    shutil.copytree(tiny_sd, folder, ignore=shutil.ignore_patterns("model_index.json"))
    return folder


@pytest.fixture
def chat(window: MainWindow) -> ChatPanel:
    """The window's Chat panel."""
    return window.chat


@pytest.fixture
def send(qtbot) -> Callable[..., JobEvent]:
    """Type a message, press Ctrl+Enter, and return the reply's terminal event."""

    def _send(panel: ChatPanel, text: str) -> JobEvent:
        panel.input.setPlainText(text)
        with qtbot.waitSignal(panel.reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
            qtbot.keyClick(panel.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        return blocker.args[0]

    return _send


@pytest.fixture
def finish(qtbot) -> Callable[..., JobEvent]:
    """Run an action that starts a reply and return the reply's terminal event."""

    def _finish(panel: ChatPanel, action: Callable[[], object]) -> JobEvent:
        with qtbot.waitSignal(panel.reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
            assert action() is not False, "the reply did not start"
        return blocker.args[0]

    return _finish
