"""The Speech panel: a text, a voice and its settings; the clip's waveform, play/pause, seek and Save as.

It sends one :class:`SpeechRequest` (with previews) through the bridge. Each sentence comes back
as a PREVIEW as soon as it is made (its text checked, the audio watermark in it) and is played
while the rest is made; the RESULT is the whole clip as the pipeline finished it (saved as a WAV
in the library folder), which replaces the sentences at the same play position. The panel never
touches a thread and never calls an engine.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QMouseEvent, QPainter, QPaintEvent, QPen, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.audio_player import NoAudioDevice, OutputDevice, Playback
from desktop.bridge import EventBridge, JobOp, blocked_reason
from desktop.chat_panel import PromptEdit
from engines.errors import EmberError
from engines.media import AudioOutput
from engines.progress import Loading, Preview, Step

VOICE_KEY = "speech.voice"
SPEED_KEY = "speech.speed"
PAUSE_KEY = "speech.pause_ms"


def format_time(seconds: float) -> str:
    """Return ``seconds`` as m:ss.t (e.g. 1:05.3)."""
    seconds = max(0.0, seconds)
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


class Waveform(QWidget):
    """The clip drawn as its peak envelope, the part played darker, and the play head; a click seeks."""

    seek_requested = Signal(float)  # seconds

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("waveform")
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
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "The waveform of the clip shows here.")
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


class SpeechPanel(QWidget):
    """Text to speech: pick a voice, Speak (Ctrl+Enter), listen while it is made, save the clip.

    ``clip_ready`` carries the SpeechResult of each finished clip (a cancelled one too: what was
    made is kept); ``speech_finished`` the terminal JobEvent of every job.
    """

    clip_ready = Signal(object)
    speech_finished = Signal(object)

    def __init__(
        self, bridge: EventBridge, parent: QWidget | None = None, *, device: OutputDevice | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("speechPanel")
        self.bridge = bridge
        self.settings_store = bridge.studio.settings
        self.playback = Playback(device)
        self.result: Any = None  # the SpeechResult of the clip shown
        self._op: JobOp | None = None
        self._sentences = 0
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._fill_voices()

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.text = PromptEdit()
        self.text.setObjectName("speechText")
        self.text.setPlaceholderText("Write what to say. Long texts are spoken sentence by sentence. (Ctrl+Enter)")
        self.text.submit_requested.connect(self.speak)
        self.text.stop_requested.connect(self.cancel)

        self.voice = QComboBox()
        self.voice.setObjectName("voiceCombo")
        self.voice.setMinimumWidth(260)
        self.open_voice_button = QPushButton("Open voice file…")
        self.open_voice_button.setObjectName("openVoiceButton")
        self.open_voice_button.setToolTip("A piper voice: a .onnx file with its .onnx.json beside it")
        self.open_voice_button.clicked.connect(self._choose_voice_file)
        voice_row = QHBoxLayout()
        voice_row.addWidget(self.voice, 1)
        voice_row.addWidget(self.open_voice_button)

        self.speed = QDoubleSpinBox()
        self.speed.setObjectName("speedBox")
        self.speed.setRange(0.5, 2.0)
        self.speed.setSingleStep(0.1)
        self.speed.setSuffix(" ×")
        self.speed.setValue(float(self.settings_store.get(SPEED_KEY, 1.0) or 1.0))
        self.pause_ms = QSpinBox()
        self.pause_ms.setObjectName("pauseBox")
        self.pause_ms.setRange(0, 3000)
        self.pause_ms.setSingleStep(50)
        self.pause_ms.setSuffix(" ms")
        self.pause_ms.setValue(int(self.settings_store.get(PAUSE_KEY, 250) or 0))
        self.speed.setFixedWidth(96)
        self.pause_ms.setFixedWidth(110)
        pace_row = QHBoxLayout()
        pace_row.addWidget(self.speed)
        pace_row.addSpacing(18)
        pace_row.addWidget(QLabel("Pause between sentences"))
        pace_row.addWidget(self.pause_ms)
        pace_row.addStretch(1)
        form = QFormLayout()
        form.addRow("Voice", voice_row)
        form.addRow("Speed", pace_row)

        self.speak_button = QPushButton("Speak")
        self.speak_button.setObjectName("speakButton")
        self.speak_button.setToolTip("Speak the text (Ctrl+Enter)")
        self.speak_button.clicked.connect(self.speak)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelSpeechButton")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setObjectName("speechProgress")
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.speak_button.setMinimumWidth(150)
        self.cancel_button.setMinimumWidth(110)
        for button in (self.speak_button, self.cancel_button):
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        actions = QHBoxLayout()
        actions.addWidget(self.speak_button)
        actions.addWidget(self.cancel_button)
        actions.addWidget(self.progress, 4)
        actions.addStretch(1)  # keeps the buttons at the left while no progress shows

        self.waveform = Waveform()
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
        self.save_button = QPushButton("Save as…")
        self.save_button.setObjectName("saveClipButton")
        self.save_button.clicked.connect(self._choose_save_path)
        transport = QHBoxLayout()
        transport.addWidget(self.play_button)
        transport.addWidget(self.time_label)
        transport.addWidget(self.seek_slider, 1)
        transport.addWidget(self.duration_label)
        transport.addWidget(self.save_button)

        self.status = QLabel()
        self.status.setObjectName("speechStatus")
        self.status.setWordWrap(True)
        self.message = QLabel()
        self.message.setObjectName("speechMessage")
        self.message.setWordWrap(True)
        self.message.setVisible(False)

        title = QLabel("Speech")
        title.setObjectName("panelTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        layout.addWidget(title)
        layout.addWidget(self.text, 2)
        layout.addLayout(form)
        layout.addLayout(actions)
        layout.addWidget(self.waveform, 3)
        layout.addLayout(transport)
        layout.addWidget(self.status)
        layout.addWidget(self.message)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.speak)
        # The panel's own accents (the shared stylesheet styles the rest): the primary action, the message line.
        self.setStyleSheet(
            "QPushButton#speakButton { background: #d9622b; color: #ffffff; border: none; font-weight: 600;"
            " padding: 7px 14px; border-radius: 8px; }"
            "QPushButton#speakButton:hover { background: #c4551f; }"
            "QPushButton#speakButton:disabled { background: #e7b9a1; }"
            "QLabel#speechMessage { color: #8c3b1a; background: #fbeee6; border-radius: 8px; padding: 6px 10px; }"
            "QLabel#speechStatus { color: #6d655e; }"
        )
        self._set_busy(None)

    def _fill_voices(self) -> None:
        """Offer the embedded voices at once, then every available voice (listed off the GUI thread).

        The voice shown (the one saved last time, or the person's pick meanwhile) stays chosen.
        """
        from engines.speech.voices import EMBEDDED_VOICE_IDS, available_voices

        for voice_id in EMBEDDED_VOICE_IDS:
            self.voice.addItem(voice_id, voice_id)
        saved = self.settings_store.get(VOICE_KEY, "")
        if isinstance(saved, str) and saved and not self.select_voice(saved):
            self.voice.addItem(saved, saved)
            self.voice.setCurrentIndex(self.voice.count() - 1)

        def fill(voices: list[Any]) -> None:
            keep = self.voice_value()
            self.voice.clear()
            for voice in voices:
                value = voice.path if voice.source == "file" else voice.id
                self.voice.addItem(f"{voice.name} · {voice.sample_rate_hz / 1000:g} kHz", value)
            if not self.select_voice(keep):
                self.voice.addItem(keep, keep)  # a voice that is not there now: speaking says why
                self.voice.setCurrentIndex(self.voice.count() - 1)

        self.bridge.background(available_voices, parent=self).success(fill).run()

    # -- the voice -------------------------------------------------------------------------------
    def voice_value(self) -> str:
        """The voice to speak with: an id or a .onnx path."""
        return str(self.voice.currentData() or self.voice.currentText() or "heart")

    def select_voice(self, value: str) -> bool:
        """Pick the voice ``value`` (an id or a path; a path not yet listed is added). Returns whether it is shown."""
        index = self.voice.findData(value)
        if index < 0 and value.endswith(".onnx"):
            self.voice.addItem(Path(value).name, value)
            index = self.voice.count() - 1
        if index >= 0:
            self.voice.setCurrentIndex(index)
        return index >= 0

    def _choose_voice_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a piper voice", "", "Piper voices (*.onnx)")
        if path:
            self.select_voice(path)

    # -- speaking ----------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self._op is not None

    def speak(self) -> JobOp | None:
        """Send the text to the speech engine; returns the job op, or None (nothing to say, or busy)."""
        from engines.speech.requests import SpeechOptions, SpeechRequest

        if self.busy():
            return None
        text = self.text.toPlainText()
        if not text.strip():
            self._show_message("Write something to speak first.")
            return None
        try:
            request = SpeechRequest(
                SpeechOptions(self.voice_value()),
                text,
                speed=round(self.speed.value(), 2),
                pause_ms=self.pause_ms.value(),
                preview=True,
            )
        except ValueError as exc:
            self._show_message(str(exc))
            return None
        self._clear_message()
        self._save_settings()
        self.playback.close()
        self.playback.load(np.zeros(0, np.float32), 0, complete=False)
        self.result = None
        self._sentences = 0
        self.waveform.set_clip(np.zeros(0, np.float32), 1)
        self.status.setText("Starting…")
        op = (
            self.bridge.op(request, parent=self)
            .on_progress(self._on_progress)
            .on_preview(self._on_sentence)
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
        """Stop making the clip (what was made is kept); the playback stops too."""
        if self._op is not None:
            self._op.cancel()
        self.playback.pause()

    def _set_busy(self, op: JobOp | None) -> None:
        self._op = op
        self.speak_button.setEnabled(op is None)
        self.cancel_button.setEnabled(op is not None)
        self.progress.setVisible(op is not None)
        has_clip = len(self.playback.samples) > 0
        self.play_button.setEnabled(has_clip)
        self.save_button.setEnabled(self.result is not None)
        if op is None and self.result is None and not has_clip:
            self.status.setText("")

    def _on_progress(self, data: Any) -> None:
        if isinstance(data, Loading):
            self.status.setText(f"Loading {data.model}…")
        elif isinstance(data, Step):
            self.progress.setRange(0, data.total)
            self.progress.setValue(data.done)
            self.progress.setFormat(f"sentence {data.done} of {data.total}")
            self._sentences = data.total

    def _on_sentence(self, preview: Preview) -> None:
        """A sentence is made (checked and watermarked): play it while the rest is made."""
        chunk = preview.image
        if not isinstance(chunk, AudioOutput):
            return
        first = len(self.playback.samples) == 0
        self.playback.append(chunk.samples, chunk.sample_rate)
        self.status.setText(f"Speaking: “{chunk.text[:80]}”")
        done = max(1, int(chunk.parameters.get("sentence", 0)) + 1)
        expected = self.playback.duration_s * max(self._sentences, done) / done
        self.waveform.set_clip(self.playback.samples, chunk.sample_rate, expected)
        self._update_times()
        if first:
            self._play()

    def _on_result(self, result: Any) -> None:
        """The finished clip (saved in the library): it replaces the sentences, at the same place."""
        self.result = result
        audio = result.delivered.output
        self.playback.replace_samples(audio.samples, audio.sample_rate)
        self.waveform.set_clip(audio.samples, audio.sample_rate)
        seconds = len(audio.samples) / audio.sample_rate
        self.status.setText(
            f"{seconds:.1f} s of speech, made {result.realtime_factor:.0f}× faster than real time · "
            f"saved to {result.path}"
        )
        self._update_times()
        self.clip_ready.emit(result)

    def _on_cancelled(self, kept: Any) -> None:
        if kept is None:
            self.status.setText("Stopped before anything was made.")
            return
        self._on_result(kept)
        self.status.setText(f"Stopped; the part made so far is kept · saved to {kept.path}")

    def _on_finished(self, event: Any) -> None:
        self.playback.complete = True  # nothing more is coming: the end of what was made ends the playback
        self._set_busy(None)
        self.speech_finished.emit(event)

    # -- playing -----------------------------------------------------------------------------------
    def show_clip(self, samples: np.ndarray, sample_rate: int) -> None:
        """Show (and make playable) a clip that came out of the pipeline, e.g. a reply read aloud."""
        self.playback.load(samples, sample_rate)
        self.waveform.set_clip(samples, sample_rate)
        self._update_times()
        self._set_busy(self._op)

    def toggle_play(self) -> None:
        if self.playback.playing:
            self.playback.pause()
        else:
            self._play()
        self._update_times()

    def _play(self) -> None:
        try:
            self.playback.play()
        except NoAudioDevice as exc:
            self._show_message(str(exc))

    def seek(self, seconds: float) -> None:
        self.playback.seek(seconds)
        self._update_times()

    def _tick(self) -> None:
        if self.playback.playing or self.busy():
            self._update_times()

    def _update_times(self) -> None:
        position, duration = self.playback.position_s, self.playback.duration_s
        self.play_button.setText("Pause" if self.playback.playing else "Play")
        self.play_button.setEnabled(duration > 0)
        self.time_label.setText(format_time(position))
        self.duration_label.setText(format_time(duration))
        if not self.seek_slider.isSliderDown():
            self.seek_slider.setRange(0, int(duration * 1000))
            self.seek_slider.setValue(int(position * 1000))
        self.waveform.set_position(position)

    # -- saving ------------------------------------------------------------------------------------
    def _choose_save_path(self) -> None:
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save the clip",
            str(Path(self.result.path).with_suffix(".wav").name),
            "WAV with Content Credentials (*.wav);;FLAC (*.flac);;Ogg Vorbis (*.ogg)",
        )
        if path:
            self.save_clip(path)

    def save_clip(self, path: str) -> None:
        """Write the clip (watermarked, from the pipeline) to ``path`` as .wav, .flac or .ogg, off the GUI thread."""
        from engines.speech.audio_files import save_clip

        if self.result is None:
            return
        item = self.result.delivered
        self.bridge.background(lambda: save_clip(item, path), parent=self).success(
            lambda written: self.status.setText(f"Saved {written}")
        ).run()

    # -- messages ----------------------------------------------------------------------------------
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

    def _save_settings(self) -> None:
        values = {VOICE_KEY: self.voice_value(), SPEED_KEY: self.speed.value(), PAUSE_KEY: self.pause_ms.value()}
        store = self.settings_store
        self.bridge.background(lambda: [store.set(k, v) for k, v in values.items()], parent=self).run()

    def shutdown(self) -> None:
        """Stop the clip being made and the playback (the window is closing)."""
        self.cancel()
        self.playback.close()
        self._timer.stop()
