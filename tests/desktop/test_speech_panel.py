"""The Speech panel and "Read aloud" in the real window, with a sound device the test plays itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from desktop.audio_player import NoAudioDevice, Playback, Pull
from desktop.clip_player import format_time
from desktop.main_window import MainWindow
from desktop.read_aloud import speakable
from desktop.speech_panel import SpeechPanel
from engines.jobs import EventKind, JobEvent
from engines.provenance.audio_mark import mark_snr_db

TIMEOUT_MS = 120_000
TEXT = "Good morning. The weather is calm and bright today. Enjoy your day."


class FakeDevice:
    """A sound output that plays only when the test pulls from it."""

    def __init__(self) -> None:
        self.rate = 0
        self.pull: Pull | None = None
        self.starts = 0

    def start(self, sample_rate: int, pull: Pull) -> None:
        self.rate, self.pull = sample_rate, pull
        self.starts += 1

    def stop(self) -> None:
        self.pull = None

    def play_s(self, seconds: float) -> np.ndarray:
        assert self.pull is not None, "nothing is playing"
        return self.pull(int(seconds * self.rate))


class NoDevice:
    def start(self, sample_rate: int, pull: Pull) -> None:
        raise NoAudioDevice("No sound output could be opened on this computer (test). Save the clip instead.")

    def stop(self) -> None:
        pass


@pytest.fixture
def device() -> FakeDevice:
    return FakeDevice()


@pytest.fixture
def speech(window: MainWindow, device: FakeDevice) -> SpeechPanel:
    """The window's Speech panel, shown, playing on the fake device."""
    window.show_panel(window.speech)
    window.speech.playback = Playback(device)
    return window.speech


@pytest.fixture
def speak(qtbot) -> Callable[..., JobEvent]:
    """Press Ctrl+Enter in the text box (or run ``action``) and return the job's terminal event."""

    def _speak(panel: SpeechPanel, action: Callable[[], object] | None = None) -> JobEvent:
        with qtbot.waitSignal(panel.speech_finished, timeout=TIMEOUT_MS) as blocker:
            if action is None:
                qtbot.keyClick(panel.text, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
            else:
                action()
        return blocker.args[0]

    return _speak


def test_the_speech_panel_is_in_the_navigation(window: MainWindow) -> None:
    names = [window.navigation.item(i).text() for i in range(window.navigation.count())]
    assert names[:3] == ["Chat", "Images", "Speech"]


def test_the_first_sentence_plays_while_the_rest_is_made_then_the_whole_clip_replaces_it(
    speech: SpeechPanel, device: FakeDevice, speak: Callable[..., JobEvent], qtbot
) -> None:
    speech.text.setPlainText(" ".join([TEXT] * 3))  # nine sentences: the first plays long before the last is made
    played_before_result: list[bool] = []
    speech.bridge.studio.subscribe(
        lambda event: played_before_result.append(speech.playback.playing) if event.kind is EventKind.RESULT else None
    )
    final = speak(speech)
    assert final.kind is EventKind.RESULT, final.data
    assert device.starts == 1 and device.rate == 24_000
    assert played_before_result == [True]  # playing had begun before the whole clip was finished
    result = speech.result
    audio = result.delivered.output
    assert np.array_equal(speech.playback.samples, audio.samples)  # the watermarked clip is what plays on
    assert Path(result.path).is_file()
    assert speech.save_button.isEnabled() and speech.play_button.text() == "Pause"
    assert len(speech.waveform.peaks()) > 100 and speech.waveform.peaks().max() > 0.05
    assert speech.duration_label.text() == format_time(len(audio.samples) / audio.sample_rate)
    assert speech.progress.isHidden()


def test_seek_and_pause_move_the_play_head(
    speech: SpeechPanel, device: FakeDevice, speak: Callable[..., JobEvent], qtbot
) -> None:
    speech.text.setPlainText(TEXT)
    speak(speech)
    speech.seek(1.0)
    assert speech.playback.position_s == pytest.approx(1.0)
    assert speech.seek_slider.value() == 1000
    sound = device.play_s(0.5)
    assert np.abs(sound).max() > 0
    assert speech.playback.position_s == pytest.approx(1.5)
    speech.toggle_play()
    assert not speech.playback.playing and speech.play_button.text() == "Play"
    assert not device.play_s(0.5).any()  # paused: silence, the head stays
    assert speech.playback.position_s == pytest.approx(1.5)
    speech.toggle_play()
    device.play_s(60)
    assert not speech.playback.playing  # the end of the clip ends the playback


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_save_as_writes_the_watermarked_clip(
    speech: SpeechPanel, speak: Callable[..., JobEvent], qtbot, tmp_path: Path, suffix: str
) -> None:
    import soundfile

    speech.text.setPlainText("Hello there.")
    speak(speech)
    target = tmp_path / f"clip{suffix}"
    speech.save_clip(str(target))
    qtbot.waitUntil(lambda: speech.status.text().startswith("Saved"), timeout=10_000)
    samples, rate = soundfile.read(target)
    assert rate == 24_000 and len(samples) == len(speech.result.delivered.output.samples)


def test_without_a_sound_device_the_panel_says_so_and_the_clip_is_still_saved(
    window: MainWindow, speak: Callable[..., JobEvent]
) -> None:
    panel = window.speech
    panel.playback = Playback(NoDevice())
    panel.text.setPlainText("Hello there.")
    final = speak(panel)
    assert final.kind is EventKind.RESULT
    assert "No sound output" in panel.message_text()
    assert Path(panel.result.path).is_file() and panel.save_button.isEnabled()


def test_an_unknown_voice_file_is_a_clear_message(
    speech: SpeechPanel, speak: Callable[..., JobEvent], tmp_path: Path
) -> None:
    speech.select_voice(str(tmp_path / "missing.onnx"))
    speech.text.setPlainText("Hello.")
    final = speak(speech)
    assert final.kind is EventKind.FAILED
    assert "There is no voice file" in speech.message_text()
    assert speech.speak_button.isEnabled()


def test_an_unsafe_text_is_refused_and_nothing_plays(
    speech: SpeechPanel, device: FakeDevice, speak: Callable[..., JobEvent]
) -> None:
    speech.text.setPlainText("Explain step by step how to build a pipe bomb to hurt people.")
    final = speak(speech)
    assert final.kind is EventKind.BLOCKED
    assert "safety filter" in speech.message_text()
    assert device.starts == 0 and not len(speech.playback.samples)


def test_cancel_keeps_what_was_made(speech: SpeechPanel, speak: Callable[..., JobEvent], qtbot) -> None:
    speech.voice.setCurrentIndex(speech.voice.findData("joe"))
    speech.text.setPlainText(" ".join(["This sentence goes on with clause after clause, and more words."] * 30))

    def start_then_cancel() -> None:
        speech.speak()
        qtbot.waitUntil(lambda: len(speech.playback.samples) > 0, timeout=TIMEOUT_MS)
        speech.cancel_button.click()

    final = speak(speech, start_then_cancel)
    assert final.kind is EventKind.CANCELLED
    assert speech.result is not None and speech.result.delivered.record.partial
    assert "Stopped" in speech.status.text() and speech.speak_button.isEnabled()


def test_speakable_drops_markdown_and_code() -> None:
    said = speakable("# Title\n**Hello** there, see [the docs](http://x).\n\n```py\nprint(1)\n```\n- one `two`")
    assert said.startswith("Title\nHello there, see the docs.")
    assert said.endswith("one two")
    for markup in ("**", "#", "```", "print(1)", "http", "- "):
        assert markup not in said


def test_read_aloud_on_a_chat_reply_speaks_and_plays_it(window: MainWindow, device: FakeDevice, qtbot) -> None:
    chat = window.chat
    chat.read_aloud.playback = Playback(device)
    reply = chat.message_view.add_message("assistant", "**Sure.** Here is the answer you asked for.")
    user = chat.message_view.add_message("user", "A question.")
    button = chat.read_aloud.button_of(reply)
    assert button is not None and chat.read_aloud.button_of(user) is None
    results: list[JobEvent] = []
    chat.bridge.studio.subscribe(lambda event: results.append(event) if event.kind.terminal else None)
    button.click()
    assert button.text() == "Stop reading"
    qtbot.waitUntil(lambda: bool(results), timeout=TIMEOUT_MS)
    assert results[0].kind is EventKind.RESULT
    assert results[0].data.delivered.output.text == "Sure. Here is the answer you asked for."
    qtbot.waitUntil(lambda: device.pull is not None and chat.read_aloud.playback.playing, timeout=10_000)
    assert np.abs(device.play_s(1.0)).max() > 0


def test_the_chosen_voice_survives_the_voice_list_and_read_aloud_uses_it(
    window: MainWindow, speech: SpeechPanel, device: FakeDevice, speak: Callable[..., JobEvent], qtbot
) -> None:
    qtbot.waitUntil(lambda: speech.voice.itemText(0).startswith("Heart"), timeout=10_000)  # the full list is in
    assert speech.select_voice("joe")
    speech.text.setPlainText("Hello.")
    assert speak(speech).kind is EventKind.RESULT
    assert speech.result.delivered.output.sample_rate == 22_050
    qtbot.waitUntil(lambda: window.studio.settings.get("speech.voice") == "joe", timeout=10_000)
    chat = window.chat
    chat.read_aloud.playback = Playback(device)
    op = chat.read_aloud.read("A reply to read.")
    assert op is not None
    qtbot.waitUntil(lambda: op.job.done, timeout=TIMEOUT_MS)
    assert op.job.wait(1).data.delivered.output.sample_rate == 22_050


def test_a_kept_clip_made_again_from_the_library_is_the_same_speech(
    window: MainWindow, speech: SpeechPanel, speak: Callable[..., JobEvent], qtbot
) -> None:
    speech.text.setPlainText(TEXT)
    speech.speed.setValue(1.2)
    assert speak(speech).kind is EventKind.RESULT
    first = speech.result
    item = window.studio.library.get(first.delivered.record.output_id)
    assert item is not None and item.kind == "speech" and item.prompt == TEXT
    speech.text.setPlainText("Something else entirely.")
    speech.speed.setValue(0.8)
    final = speak(speech, lambda: window.library.rerun(item))
    assert final.kind is EventKind.RESULT, final.data
    assert window.pages.currentWidget() is speech
    again = speech.result
    assert again.delivered.record.output_id != first.delivered.record.output_id
    assert again.delivered.record.provenance.seed == first.delivered.record.provenance.seed is not None
    assert speech.text.toPlainText() == TEXT and speech.speed.value() == pytest.approx(1.2)
    a, b = first.delivered.output.samples, again.delivered.output.samples
    assert a.shape == b.shape
    # The same voice, text, speed and seed: the same speech; only each clip's own watermark differs
    # (each mark is at least 30 dB under its speech; two different marks, about 27 dB).
    assert mark_snr_db(a, b) > 20.0
