"""The microphone button in the Chat panel: record, stop, and the words appear in the message box, unsent.

A fake recorder stands in for the microphone (this machine has none): it "hears" a sentence the
embedded voice speaks. The real recorder is tried too, and must say plainly that there is no device.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from desktop.chat_panel import ChatPanel
from desktop.microphone import MicrophoneError, MiniaudioRecorder
from engines.dictation.clips import SENTENCES, speak
from engines.dictation.wer import word_error_rate

TRANSCRIBE_TIMEOUT_MS = 120_000


class FakeRecorder:
    """A microphone that hears ``samples`` (at ``rate``) between start and stop."""

    def __init__(self, samples: np.ndarray, rate: int) -> None:
        self.samples, self.rate = samples, rate
        self.recording = False
        self.starts = 0

    def start(self) -> None:
        self.recording = True
        self.starts += 1

    def stop(self) -> tuple[np.ndarray, int]:
        self.recording = False
        return self.samples.copy(), self.rate


@pytest.fixture
def spoken() -> tuple[str, np.ndarray, int]:
    samples, rate = speak(SENTENCES[3])
    return SENTENCES[3], samples, rate


def _use(chat: ChatPanel, recorder: object) -> None:
    chat.mic_button._make_recorder = lambda: recorder
    chat.mic_button._recorder = None


def test_click_record_click_stop_puts_the_words_in_the_message_box_unsent(qtbot, chat: ChatPanel, spoken) -> None:
    said, samples, rate = spoken
    recorder = FakeRecorder(samples, rate)
    _use(chat, recorder)
    chat.input.setPlainText("Directions:")
    chat.input.moveCursor(chat.input.textCursor().MoveOperation.End)
    button = chat.mic_button
    assert button.isVisible() and button.state == "idle"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert button.state == "recording" and recorder.recording
    with qtbot.waitSignal(button.transcribed, timeout=TRANSCRIBE_TIMEOUT_MS) as inserted:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert button.state == "transcribing"
    text = chat.input.toPlainText()
    assert text.startswith("Directions: ")
    assert word_error_rate(said, text[len("Directions: ") :]) <= 0.1
    assert inserted.args[0] == text[len("Directions: ") :]
    qtbot.waitUntil(lambda: button.state == "idle")
    # Not sent: no message in the conversation, no reply running.
    assert chat.message_view.messages() == [] and not chat.busy


def test_a_machine_without_a_microphone_gets_a_plain_notice(qtbot, chat: ChatPanel) -> None:
    with pytest.raises(MicrophoneError, match="Ember found no microphone"):
        MiniaudioRecorder().start()
    _use(chat, MiniaudioRecorder())
    qtbot.mouseClick(chat.mic_button, Qt.MouseButton.LeftButton)
    assert chat.mic_button.state == "idle"
    (notice,) = chat.message_view.notices()
    assert "Ember found no microphone" in notice.text() and "main.py listen" in notice.text()


def test_silence_from_the_microphone_is_answered_and_the_box_is_left_alone(qtbot, chat: ChatPanel) -> None:
    _use(chat, FakeRecorder(np.zeros(32000, np.float32), 16000))
    chat.input.setPlainText("keep me")
    qtbot.mouseClick(chat.mic_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(chat.mic_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: chat.mic_button.state == "idle", timeout=TRANSCRIBE_TIMEOUT_MS)
    qtbot.waitUntil(lambda: bool(chat.message_view.notices()), timeout=5000)
    assert "No speech was found in your recording (it is silent)." in chat.message_view.notices()[-1].text()
    assert chat.input.toPlainText() == "keep me"


def test_a_click_while_transcribing_stops_it_and_inserts_nothing(qtbot, chat: ChatPanel, spoken) -> None:
    _, samples, rate = spoken
    long = np.concatenate([samples] * 8)
    _use(chat, FakeRecorder(long, rate))
    button = chat.mic_button
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert button.state == "transcribing"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: button.state == "idle", timeout=TRANSCRIBE_TIMEOUT_MS)
    assert chat.input.toPlainText() == ""
