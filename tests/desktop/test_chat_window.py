"""The Chat window, driven like a person would, on the real embedded models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from desktop.app import build_main_window, run_app
from desktop.main_window import MainWindow
from desktop.stall import StallMeter
from engines.jobs import EventKind, JobEvent
from engines.models.embedded import GEMMA3_270M, SMOLLM2
from engines.studio import Studio
from tests.desktop.conftest import REPLY_TIMEOUT_MS, fast_settings


def test_ctrl_enter_streams_a_reply_stores_it_and_fills_the_status_bar(window, chat, send):
    shown_while_streaming: list[str] = []

    def on_event(event: JobEvent) -> None:
        if event.kind is EventKind.TOKEN:
            shown_while_streaming.append(chat.message_view.messages()[-1].text)

    window.bridge.event.connect(on_event)
    final = send(chat, "What is the capital of France?")

    assert final.kind is EventKind.RESULT
    convo = window.studio.conversations.get(chat.conversation_id)
    assert [m.role for m in convo.messages] == ["user", "assistant"]
    reply = convo.messages[-1]
    assert reply.content.strip() and reply.output_id == final.data.record.output_id
    assert convo.title == "What is the capital of France?"
    # The reply appeared while it streamed: each render showed a beginning of the final text.
    assert shown_while_streaming and shown_while_streaming[0]
    assert all(reply.content.startswith(text) for text in shown_while_streaming)
    views = chat.message_view.messages()
    assert [v.role for v in views] == ["user", "assistant"] and views[-1].text == reply.content
    assert chat.input.toPlainText() == "" and chat.send_button.text() == "Send"
    assert window.backend_label.text() == "Backend: CPU"
    assert "SmolLM2" in window.model_label.text()
    speed = re.fullmatch(r"(\d+\.\d) tok/s", window.speed_label.text())
    assert speed and float(speed.group(1)) > 0
    assert float(speed.group(1)) == round(final.data.record.timings["tokens_per_s"], 1)


def test_escape_stops_a_long_reply_and_keeps_it_marked_stopped(qtbot, window, chat):
    chat.settings.max_tokens.setValue(1000)
    chat.settings.temperature.setValue(0.8)
    chat.input.setPlainText("Write a long story about a dragon who learns to bake bread.")
    qtbot.keyClick(chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert chat.busy and chat.send_button.text() == "Stop"
    qtbot.waitUntil(lambda: len(chat.message_view.messages()[-1].text) > 20, timeout=REPLY_TIMEOUT_MS)

    with qtbot.waitSignal(chat.reply_finished, timeout=10_000) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Escape)

    event = blocker.args[0]
    assert event.kind is EventKind.CANCELLED and event.data.record.partial
    stored = window.studio.conversations.get(chat.conversation_id).messages[-1]
    assert stored.role == "assistant" and stored.partial and stored.content == event.data.output.text
    view = chat.message_view.messages()[-1]
    assert view.partial and "(stopped)" in view.role_label.text() and view.text == stored.content
    assert not chat.busy and chat.send_button.text() == "Send"


def test_conversations_and_messages_come_back_after_a_restart(qtbot, ember_home, smollm2_path, send):
    before = set(threading.enumerate())
    first = Studio()
    window = build_main_window(first)
    qtbot.addWidget(window)
    fast_settings(window.chat)
    send(window.chat, "Name three colours.")
    kept = [(m.role, m.content) for m in first.conversations.get(window.chat.conversation_id).messages]
    window.shutdown()
    window.close()
    assert first.close(timeout_s=10)

    second = Studio()
    try:
        again = build_main_window(second)
        qtbot.addWidget(again)
        panel = again.chat
        assert panel.conversation_list.count() == 1
        assert panel.conversation_list.item(0).text() == "Name three colours."
        panel.conversation_list.setCurrentRow(0)
        assert [(v.role, v.text) for v in panel.message_view.messages()] == kept
        again.shutdown()
    finally:
        assert second.close(timeout_s=10)
    assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("ember")]


def test_export_writes_the_messages_as_markdown_and_json(monkeypatch, tmp_path, chat, send):
    send(chat, "Say hello.")
    convo = chat.store.get(chat.conversation_id)
    targets = iter([(str(tmp_path / "chat.md"), "Markdown (*.md)"), (str(tmp_path / "chat"), "JSON (*.json)")])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: next(targets))

    chat.export_button.click()
    chat.export_button.click()

    markdown = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert "## You" in markdown and "Say hello." in markdown and convo.messages[-1].content in markdown
    data = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert [m["content"] for m in data["messages"]] == [m.content for m in convo.messages]


def test_regenerate_replaces_the_last_reply(replies_unjudged, chat, send, finish):
    send(chat, "Tell me a fun fact about owls.")
    old = chat.store.get(chat.conversation_id).messages[-1]
    chat.settings.temperature.setValue(1.0)
    chat.settings.seed.setText("12345")

    event = finish(chat, chat.regenerate_button.click)

    assert event.kind is EventKind.RESULT
    messages = chat.store.get(chat.conversation_id).messages
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[-1].output_id == event.data.record.output_id != old.output_id
    assert [v.text for v in chat.message_view.messages()] == [m.content for m in messages]


def test_continue_extends_the_last_reply(replies_unjudged, chat, send, finish):
    chat.settings.max_tokens.setValue(10)
    send(chat, "Write a poem about the sea.")
    first = chat.store.get(chat.conversation_id).messages[-1]

    event = finish(chat, chat.continue_button.click)

    assert event.kind is EventKind.RESULT and event.data.output.text
    messages = chat.store.get(chat.conversation_id).messages
    assert len(messages) == 2 and messages[-1].id == first.id
    assert messages[-1].content == first.content + event.data.output.text
    assert chat.message_view.messages()[-1].text == messages[-1].content


def test_base_model_continues_the_text(chat, gemma_path, send):
    assert chat.model_picker.select_embedded(GEMMA3_270M)
    assert chat.completion_mode and not chat.base_hint.isHidden()

    event = send(chat, "The three primary colours are")

    assert event.kind is EventKind.RESULT and event.data.output.text.strip()
    assert Path(event.data.record.provenance.model_path).resolve() == Path(gemma_path).resolve()
    messages = chat.store.get(chat.conversation_id).messages
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[-1].content == event.data.output.text


def test_event_loop_stays_responsive_while_a_reply_streams(window, chat, send):
    send(chat, "Hi")  # the model loads once; the stall is measured on a reply after that
    chat.settings.max_tokens.setValue(64)
    meter = StallMeter()
    meter.start()
    event = send(chat, "Explain why the sky is blue in a few sentences.")
    longest_ms = meter.stop()

    print(f"\nlongest event-loop stall while streaming: {longest_ms:.1f} ms")
    assert event.kind is EventKind.RESULT
    assert longest_ms < 250


def test_a_file_that_is_not_gguf_is_refused_with_a_readable_message(monkeypatch, tmp_path, chat):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file, not a model")
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text, *a, **k: shown.append(text))
    picker = chat.model_picker
    count, choice, path = picker.count(), picker.current_choice(), chat._model_path

    assert picker.add_model_file(str(fake)) is False

    assert len(shown) == 1 and "not a GGUF" in shown[0] and "model.gguf" in shown[0]
    assert picker.count() == count and picker.current_choice() == choice and chat._model_path == path
    assert not chat.completion_mode


def test_invalid_settings_are_explained_inline_and_nothing_is_sent(chat):
    chat.settings.top_p.setValue(0.0)
    chat.input.setPlainText("Hello?")

    assert chat.send() is False

    assert "top-p" in chat.message_view.notices()[-1].text()
    assert chat.store.list() == [] and not chat.busy and chat.input.toPlainText() == "Hello?"


def test_streaming_renders_at_most_about_thirty_times_a_second(window, chat, send):
    send(chat, "Hi")
    chat.settings.max_tokens.setValue(64)
    renders: list[float] = []
    tokens: list[float] = []
    window.bridge.event.connect(lambda e: tokens.append(time.monotonic()) if e.kind is EventKind.TOKEN else None)
    chat.stream_rendered.connect(lambda: renders.append(time.monotonic()))
    send(chat, "Explain why the sky is blue in a few sentences.")

    span_s = tokens[-1] - tokens[0]
    print(f"\n{len(tokens)} token events, {len(renders)} renders in {span_s * 1000:.0f} ms")
    assert len(tokens) > 10 and 1 <= len(renders) <= len(tokens)
    assert len(renders) <= span_s * 1000 / 33 + 2


def test_the_window_starts_without_importing_inference_libraries(ember_home):
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from desktop.app import build_main_window\n"
        "from engines.studio import Studio\n"
        "app = QApplication([])\n"
        "studio = Studio()\n"
        "window = build_main_window(studio)\n"
        "window.show(); app.processEvents()\n"
        "print(window.windowTitle(), 'llama_cpp' in sys.modules, 'onnxruntime' in sys.modules)\n"
        "window.shutdown(); studio.close()\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["Ember", "False", "False"]


def test_run_app_shows_the_styled_window_and_closes_the_studio_on_quit(qtbot, ember_home, smollm2_path):
    seen: dict[str, object] = {}

    def close_the_window() -> None:
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
        seen["title"] = window.windowTitle()
        seen["styled"] = "#d9622b" in QApplication.instance().styleSheet()
        seen["studio"] = window.studio
        window.close()

    QTimer.singleShot(0, close_the_window)
    before = set(threading.enumerate())
    assert run_app([]) == 0

    assert seen["title"] == "Ember" and seen["styled"]
    assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("ember")]
    QApplication.instance().setStyleSheet("")


def test_a_failed_reply_shows_the_engine_message_inline_and_stores_no_reply(chat, send):
    chat.settings.max_tokens.setValue(4000)  # more than the 2048-token context can hold

    event = send(chat, "Hello there")

    assert event.kind is EventKind.FAILED
    assert chat.message_view.notices()[-1].error and chat.message_view.notices()[-1].text() == event.data
    assert "Max tokens" in event.data
    assert [m.role for m in chat.store.get(chat.conversation_id).messages] == ["user"]
    assert [v.role for v in chat.message_view.messages()] == ["user"]


def test_rename_and_delete_change_the_stored_conversation_list(qtbot, monkeypatch, chat):
    first = chat.store.create("First", "model.gguf")
    chat.store.create("Second", "model.gguf")
    chat.refresh_conversations()
    chat.select_conversation(first)
    monkeypatch.setattr("desktop.chat_panel.QInputDialog.getText", lambda *a, **k: ("Renamed", True))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)

    chat.rename_button.click()  # written in the background, never on the GUI thread
    qtbot.waitUntil(lambda: chat.conversation_list.currentItem().text() == "Renamed", timeout=5000)
    assert sorted(s.title for s in chat.store.list()) == ["Renamed", "Second"]

    chat.delete_button.click()
    qtbot.waitUntil(lambda: chat.conversation_list.count() == 1, timeout=5000)
    assert [s.title for s in chat.store.list()] == ["Second"]
    assert chat.conversation_id is None


def test_single_line_breaks_are_kept_but_code_blocks_are_left_alone() -> None:
    from desktop.message_view import keep_line_breaks

    assert keep_line_breaks("a line\nanother") == "a line  \nanother"
    assert keep_line_breaks("para\n\nnext") == "para\n\nnext"
    code = "```\nx = 1\ny = 2\n```"
    assert keep_line_breaks(code) == code


def test_an_empty_chat_says_what_to_do_and_the_hint_goes_once_messages_arrive(chat, send):
    assert chat.message_view.welcome.isVisible()
    assert "Ctrl+Enter" in chat.message_view.welcome.text()
    send(chat, "Hello")
    assert not chat.message_view.welcome.isVisible()
    chat.new_conversation()
    assert chat.message_view.welcome.isVisible()


def test_selecting_a_conversation_brings_back_the_model_it_used(chat, gemma_path, send):
    send(chat, "First, with SmolLM2.")
    smol_convo = chat.conversation_id
    chat.new_conversation()
    assert chat.model_picker.select_embedded(GEMMA3_270M)
    send(chat, "The sky is")
    assert chat.completion_mode
    chat.select_conversation(smol_convo)
    assert chat.model_picker.current_choice().embedded is SMOLLM2
    assert not chat.completion_mode


def test_unload_frees_the_loaded_model_and_the_next_message_loads_it_again(qtbot, window, chat, send):
    send(chat, "Hi")
    assert window.bridge.studio.registry.loaded()
    op = chat.unload_models()  # the engine processes are asked off the GUI thread
    qtbot.waitUntil(lambda: any("Unloaded" in notice.text() for notice in chat.message_view.notices()))
    assert op.result == 1
    # The safety filter's checkers stay loaded: they are part of every check.
    assert [info.kind for _, info in window.bridge.studio.registry.loaded()] in ([], ["safety"])
    assert "Unloaded" in chat.message_view.notices()[-1].text()
    assert send(chat, "Hi again").kind is EventKind.RESULT
    assert window.bridge.studio.registry.loaded()


def test_a_crash_of_the_engine_mid_reply_leaves_the_window_and_the_conversation_standing(qtbot, window, chat, send):
    import signal

    chat.settings.max_tokens.setValue(1000)
    chat.settings.temperature.setValue(0.8)
    chat.input.setPlainText("Write a long story about a dragon who learns to bake bread.")
    qtbot.keyClick(chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: len(chat.message_view.messages()[-1].text) > 20, timeout=REPLY_TIMEOUT_MS)
    with qtbot.waitSignal(chat.reply_finished, timeout=30_000) as blocker:
        os.kill(window.studio.engines.host("cpu").pid, signal.SIGSEGV)  # what a fault inside llama.cpp raises

    event = blocker.args[0]
    assert event.kind is EventKind.FAILED
    assert event.data.endswith("(signal 11). Ember restarted it; your conversation is kept.")
    assert chat.message_view.notices()[-1].error and chat.message_view.notices()[-1].text() == event.data
    stored = window.studio.conversations.get(chat.conversation_id).messages
    assert [m.role for m in stored] == ["user", "assistant"] and stored[-1].partial and stored[-1].content
    view = chat.message_view.messages()[-1]
    assert view.role == "assistant" and view.partial and view.text == stored[-1].content
    assert not chat.busy
    assert send(chat, "Say hello.").kind is EventKind.RESULT  # a fresh engine process answers
