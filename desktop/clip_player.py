"""A clip on screen: its waveform (the part played darker, a click seeks), play/pause, a seek bar and the times.

:class:`ClipPlayer` holds a :class:`desktop.audio_player.Playback` and polls its position with a
timer. :class:`ClipPanel` is what the Speech and Music panels share around it: the message line,
the job that makes a clip (previews played as they come), Save as. Neither touches a thread.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QVBoxLayout, QWidget

from desktop.audio_player import NoAudioDevice, OutputDevice, Playback
from desktop.bridge import EventBridge, JobOp, blocked_reason
from engines.errors import EmberError


def format_time(seconds: float) -> str:
    """Return ``seconds`` as m:ss.t (e.g. 1:05.3)."""
    seconds = max(0.0, seconds)
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


class Waveform(QWidget):
    """The clip drawn as its peak envelope, the part played darker, and the play head; a click seeks."""

    seek_requested = Signal(float)  # seconds

    def __init__(self, parent: QWidget | None = None, *, placeholder: str = "The waveform shows here.") -> None:
        super().__init__(parent)
        self.setObjectName("waveform")
        self.placeholder = placeholder
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._peaks = np.zeros(0, np.float32)
        self._samples = np.zeros(0, np.float32)
        self._rate = 0
        self._duration_s = 0.0
        self.position_s = 0.0

    def sizeHint(self) -> QSize:
        return QSize(640, 160)

    def set_clip(self, samples: np.ndarray, sample_rate: int, expected_s: float = 0.0) -> None:
        """Show ``samples``; ``expected_s`` leaves room for sentences still being made."""
        self._samples = np.asarray(samples, np.float32).reshape(-1)
        self._rate = sample_rate
        self._duration_s = max(len(self._samples) / sample_rate if sample_rate else 0.0, expected_s)
        self._peaks = self._envelope(max(1, self.width()))
        self.update()

    def set_position(self, seconds: float) -> None:
        self.position_s = seconds
        self.update()

    def peaks(self) -> np.ndarray:
        """The drawn envelope: the peak of each pixel column (for tests)."""
        return self._peaks

    def _envelope(self, columns: int) -> np.ndarray:
        if not len(self._samples) or not self._rate or self._duration_s <= 0:
            return np.zeros(0, np.float32)
        shown = int(columns * (len(self._samples) / self._rate) / self._duration_s)
        shown = max(1, min(columns, shown))
        edges = np.linspace(0, len(self._samples), shown + 1).astype(int)
        magnitude = np.abs(self._samples)
        return np.array([magnitude[a:b].max() if b > a else 0.0 for a, b in itertools.pairwise(edges)], np.float32)

    def resizeEvent(self, event: Any) -> None:
        self._peaks = self._envelope(max(1, self.width()))
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(1, 1, -1, -1)
        painter.setPen(QPen(QColor("#d9dde3")))
        painter.setBrush(QColor("#f7f8fa"))
        painter.drawRoundedRect(rect, 8, 8)
        middle = rect.center().y()
        if not len(self._peaks):
            painter.setPen(QColor("#8a919c"))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        scale = (rect.height() / 2 - 8) / max(float(self._peaks.max()), 1e-3)
        played_x = rect.left() + rect.width() * (self.position_s / self._duration_s if self._duration_s else 0.0)
        for x, peak in enumerate(self._peaks):
            px = rect.left() + x
            height = max(1.0, float(peak) * scale)
            painter.setPen(QPen(QColor("#d9480f" if px <= played_x else "#f4a27a"), 1))
            painter.drawLine(QPointF(px, middle - height), QPointF(px, middle + height))
        painter.setPen(QPen(QColor("#1f2933"), 2))
        painter.drawLine(QPointF(played_x, rect.top() + 4), QPointF(played_x, rect.bottom() - 4))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self._duration_s > 0 and self.width() > 0:
            self.seek_requested.emit(self._duration_s * min(1.0, max(0.0, event.position().x() / self.width())))


class ClipPlayer(QWidget):
    """The waveform and the transport of one clip. ``message`` is emitted with a sentence for the person
    (no sound device); ``extra`` is the transport row, where a panel adds its own buttons (Save as…)."""

    message = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, device: OutputDevice | None = None,
                 placeholder: str = "The waveform of the clip shows here.") -> None:  # fmt: skip
        super().__init__(parent)
        self.playback = Playback(device)
        self.busy = lambda: False  # the panel says whether a clip is being made (the times then move)
        self.waveform = Waveform(placeholder=placeholder)
        self.waveform.seek_requested.connect(self.seek)
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("playButton")
        self.play_button.clicked.connect(self.toggle_play)
        self.seek_slider = QSlider(Qt.Orientation.Horizontal)
        self.seek_slider.setObjectName("seekSlider")
        self.seek_slider.setRange(0, 0)
        self.seek_slider.sliderMoved.connect(lambda value: self.seek(value / 1000))
        self.time_label = QLabel(format_time(0))
        self.time_label.setObjectName("timeLabel")
        self.duration_label = QLabel(format_time(0))
        self.duration_label.setObjectName("durationLabel")
        self.extra = QHBoxLayout()
        self.extra.addWidget(self.play_button)
        self.extra.addWidget(self.time_label)
        self.extra.addWidget(self.seek_slider, 1)
        self.extra.addWidget(self.duration_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.waveform, 1)
        layout.addLayout(self.extra)
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def show_clip(self, samples: np.ndarray, sample_rate: int) -> None:
        """Show (and make playable) a whole clip."""
        self.playback.load(samples, sample_rate)
        self.waveform.set_clip(samples, sample_rate)
        self.update_times()

    def toggle_play(self) -> None:
        if self.playback.playing:
            self.playback.pause()
        else:
            self.play()
        self.update_times()

    def play(self) -> None:
        try:
            self.playback.play()
        except NoAudioDevice as exc:
            self.message.emit(str(exc))

    def seek(self, seconds: float) -> None:
        self.playback.seek(seconds)
        self.update_times()

    def _tick(self) -> None:
        if self.playback.playing or self.busy():
            self.update_times()

    def update_times(self) -> None:
        position, duration = self.playback.position_s, self.playback.duration_s
        self.play_button.setText("Pause" if self.playback.playing else "Play")
        self.play_button.setEnabled(duration > 0)
        self.time_label.setText(format_time(position))
        self.duration_label.setText(format_time(duration))
        if not self.seek_slider.isSliderDown():
            self.seek_slider.setRange(0, int(duration * 1000))
            self.seek_slider.setValue(int(position * 1000))
        self.waveform.set_position(position)

    def shutdown(self) -> None:
        self.playback.close()
        self._timer.stop()


class ClipPanel(QWidget):
    """A panel that makes audio clips: a :class:`ClipPlayer`, the message line, the clip's job, saving.

    A subclass builds its form, puts ``self.player`` and ``self.message`` in its layout, sets
    ``self.status`` (a QLabel), and gives ``_on_progress``, ``_on_preview``, ``_on_result``,
    ``_on_cancelled``, ``_on_finished`` and ``_set_busy``.
    """

    def __init__(
        self,
        bridge: EventBridge,
        parent: QWidget | None = None,
        *,
        device: OutputDevice | None = None,
        placeholder: str = "The waveform of the clip shows here.",
        message_name: str = "clipMessage",
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.settings_store = bridge.studio.settings
        self.player = ClipPlayer(device=device, placeholder=placeholder)
        self.player.busy = self.busy
        self.player.message.connect(self._show_message)
        self.result: Any = None  # the result of the clip shown
        self._op: JobOp | None = None
        self.message = QLabel()
        self.message.setObjectName(message_name)
        self.message.setWordWrap(True)
        self.message.setVisible(False)

    @property
    def playback(self) -> Playback:
        """The clip being played (the player's)."""
        return self.player.playback

    @playback.setter
    def playback(self, playback: Playback) -> None:
        self.player.playback = playback

    def busy(self) -> bool:
        return self._op is not None

    def start_job(self, request: Any) -> JobOp | None:
        """Empty the player and send ``request`` through the bridge; returns its op, or None (the queue refused)."""
        self._clear_message()
        self.playback.close()
        self.playback.load(np.zeros(0, np.float32), 0, complete=False)
        self.player.waveform.set_clip(np.zeros(0, np.float32), 1)
        self.result = None
        self.status.setText("Starting…")
        op = (
            self.bridge.op(request, parent=self)
            .on_progress(self._on_progress)
            .on_preview(self._on_preview)
            .success(self._on_result)
            .on_cancelled(self._on_cancelled)
            .on_finished(self._on_finished)
        )
        try:
            op.run()
        except EmberError as exc:
            self._show_message(str(exc))
            return None
        self._set_busy(op)
        return op

    def cancel(self) -> None:
        """Stop making the clip; the playback stops too."""
        if self._op is not None:
            self._op.cancel()
        self.playback.pause()

    def save_clip(self, path: str) -> None:
        """Write the clip (watermarked, from the pipeline) to ``path`` as .wav, .flac or .ogg, off the GUI thread."""
        from engines.speech.audio_files import save_clip

        if self.result is None:
            return
        item = self.result.delivered
        self.bridge.background(lambda: save_clip(item, path), parent=self).success(
            lambda written: self.status.setText(f"Saved {written}")
        ).run()

    # -- messages --------------------------------------------------------------------------------
    def show_notice(self, text: str, *, error: bool = False, decision: Any = None) -> None:
        """The shared default for a job that ended without a clip."""
        self._show_message(blocked_reason(decision) if decision is not None else text)

    def message_text(self) -> str:
        return self.message.text() if self.message.isVisibleTo(self) else ""

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(True)

    def _clear_message(self) -> None:
        self.message.clear()
        self.message.setVisible(False)

    def shutdown(self) -> None:
        """Stop the clip being made and the playback (the window is closing)."""
        self.cancel()
        self.player.shutdown()
