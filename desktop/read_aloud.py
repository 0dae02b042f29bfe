""" "Read aloud" on every chat reply: a small button under each assistant message.

The button sends a :class:`SpeechRequest` for the reply's text (with the voice, speed and pause
last used in the Speech panel) and plays it: each sentence as soon as it has passed the pipeline
(its text checked, the audio watermark in it), then the whole clip as the pipeline finished it.
It watches the message column for new assistant messages, so the chat panel needs one line.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QPushButton

from desktop.audio_player import NoAudioDevice, OutputDevice, Playback
from desktop.bridge import EventBridge, JobOp
from desktop.message_view import MessageView, MessageWidget
from engines.errors import EmberError
from engines.media import AudioOutput
from engines.progress import Preview

_MARKDOWN = [
    (re.compile(r"```.*?```", re.S), " "),  # code blocks are not read out
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), " "),
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"^\s{0,3}(#{1,6}|[-*+]|\d+\.|>)\s+", re.M), ""),
    (re.compile(r"(\*\*|__|\*|_|~~)"), ""),
]


def speakable(markdown: str) -> str:
    """Return the words of a Markdown reply as they should be read (no markup, no code blocks)."""
    text = markdown
    for pattern, replacement in _MARKDOWN:
        text = pattern.sub(replacement, text)
    return re.sub(r"[ \t]+", " ", text).strip()


class ReadAloud(QObject):
    """Adds a "Read aloud" button to each assistant message of ``view`` and plays what it makes.

    ``parent_panel`` shows the notices (a safety block, a failure, no sound device) with its
    ``show_notice``.
    """

    def __init__(
        self, bridge: EventBridge, view: MessageView, parent_panel: Any, *, device: OutputDevice | None = None
    ) -> None:
        super().__init__(parent_panel)
        self.bridge = bridge
        self.view = view
        self.panel = parent_panel
        self.playback = Playback(device)
        self._op: JobOp | None = None
        self._button: QPushButton | None = None
        # The button says "Stop reading" while a reply is read; this puts it back when the clip has ended.
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(lambda: self._op is None and not self.playback.playing and self._reset_button())
        self._timer.start()
        view.widget().installEventFilter(self)
        for widget in view.messages():
            self._attach(widget)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ChildAdded:
            child = event.child()  # type: ignore[attr-defined]
            if isinstance(child, MessageWidget):
                self._attach(child)
        return False

    def _attach(self, widget: MessageWidget) -> None:
        if widget.role != "assistant" or widget.findChild(QPushButton, "readAloudButton") is not None:
            return
        button = QPushButton("Read aloud", widget)
        button.setObjectName("readAloudButton")
        button.setFlat(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.setToolTip("Read this reply aloud with the voice chosen in the Speech panel")
        button.clicked.connect(lambda: self.toggle(widget, button))
        layout = widget.layout()
        assert layout is not None
        layout.addWidget(button, 0, Qt.AlignmentFlag.AlignRight)

    def button_of(self, widget: MessageWidget) -> QPushButton | None:
        return widget.findChild(QPushButton, "readAloudButton")

    def toggle(self, widget: MessageWidget, button: QPushButton) -> JobOp | None:
        """Read ``widget``'s reply aloud; a second click stops it."""
        if self._button is button and (self._op is not None or self.playback.playing):
            self.stop()
            return None
        self.stop()
        return self.read(widget.text, button)

    def read(self, markdown: str, button: QPushButton | None = None) -> JobOp | None:
        """Speak ``markdown`` (a reply); returns the job op, or None when there is nothing to say."""
        from engines.speech.requests import SpeechOptions, SpeechRequest

        text = speakable(markdown)
        if not text:
            return None
        store = self.bridge.studio.settings
        try:
            request = SpeechRequest(
                SpeechOptions(str(store.get("speech.voice", "heart") or "heart")),
                text,
                speed=float(store.get("speech.speed", 1.0) or 1.0),
                pause_ms=int(store.get("speech.pause_ms", 250) or 0),
                preview=True,
            )
        except (ValueError, TypeError) as exc:
            self.panel.show_notice(str(exc), error=True)
            return None
        self.playback.close()
        self.playback.load(np.zeros(0, np.float32), 0, complete=False)
        self._button = button
        if button is not None:
            button.setText("Stop reading")
        op = (
            self.bridge.op(request, parent=self.panel)
            .on_preview(self._on_sentence)
            .success(self._on_clip)
            .on_finished(lambda event: self._finished())
        )
        try:
            op.run()
        except EmberError as exc:
            self.panel.show_notice(str(exc), error=True)
            self._finished()
            return None
        self._op = op
        return op

    def stop(self) -> None:
        """Stop making and playing the reply being read."""
        if self._op is not None:
            self._op.cancel()
        self.playback.pause()
        self._reset_button()

    def _on_sentence(self, preview: Preview) -> None:
        chunk = preview.image
        if not isinstance(chunk, AudioOutput):
            return
        first = len(self.playback.samples) == 0
        self.playback.append(chunk.samples, chunk.sample_rate)
        if first:
            self._play()

    def _on_clip(self, result: Any) -> None:
        audio = result.delivered.output
        self.playback.replace_samples(audio.samples, audio.sample_rate)
        if not self.playback.playing and self.playback.position_s == 0:
            self._play()

    def _play(self) -> None:
        try:
            self.playback.play()
        except NoAudioDevice as exc:
            self.panel.show_notice(str(exc), error=True)
            self.stop()

    def _finished(self) -> None:
        self._op = None
        if not self.playback.playing:
            self._reset_button()

    def _reset_button(self) -> None:
        if self._button is not None:
            self._button.setText("Read aloud")

    def shutdown(self) -> None:
        self.stop()
        self._timer.stop()
        self.playback.close()
