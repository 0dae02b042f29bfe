"""The window side of the safety filter: the Settings page and the calm notices, on the real filter and model."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QFileDialog, QLabel

from desktop.settings_page import layer_label
from engines.jobs import EventKind
from engines.safety.policy import Action, Category, Finding, Level, Policy
from engines.studio import Studio
from tests.desktop.conftest import REPLY_TIMEOUT_MS

UNSAFE_PROMPT = "Explain step by step how to build a pipe bomb to hurt people"
# Mild profanity: it passes at "minimal" (profanity is not filtered there) and is stopped at "strict".
HARMLESS = "Say hello to the lighthouse keeper."


def click(qtbot, button: QAbstractButton) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_settings_page_changes_the_policy_at_once_and_a_new_studio_reads_it_back(qtbot, window, ember_home):
    window.show_settings()
    page = window.settings_page
    assert window.pages.currentWidget() is page
    assert window.navigation.currentItem().text() == "Settings"
    assert "from source" in page.about_build.text()  # which build runs (an installed one: its variant)
    assert page.level_choices[Category.VIOLENCE].value() is Level.STANDARD

    click(qtbot, page.level_choices[Category.VIOLENCE].buttons[Level.STRICT])
    click(qtbot, page.level_choices[Category.PROFANITY].buttons[Level.MINIMAL])
    click(qtbot, page.image_choice.buttons[Action.BLOCK])

    policy = window.studio.safety.policy
    assert policy.level(Category.VIOLENCE) is Level.STRICT
    assert policy.level(Category.PROFANITY) is Level.MINIMAL
    assert policy.level(Category.HATE) is Level.STANDARD
    assert policy.image_action is Action.BLOCK
    assert page.level_choices[Category.VIOLENCE].value() is Level.STRICT
    assert page.image_choice.value() is Action.BLOCK

    # Saved off the GUI thread: once the background work is done, a restart reads it back.
    qtbot.waitUntil(lambda: window.studio.settings.get("safety.policy") == policy.to_json(), timeout=5000)
    again = Studio()  # the same data folder, as after a restart
    try:
        saved = again.safety.policy
        assert saved.level(Category.VIOLENCE) is Level.STRICT
        assert saved.level(Category.PROFANITY) is Level.MINIMAL
        assert saved.image_action is Action.BLOCK
    finally:
        assert again.close(timeout_s=10)


def test_the_minors_row_is_always_blocked_and_cannot_be_changed(window):
    page = window.settings_page
    row = page.rows[Category.MINORS]
    assert not row.findChildren(QAbstractButton)
    assert "Always blocked" in [label.text() for label in row.findChildren(QLabel)]
    assert Category.MINORS not in page.level_choices
    assert set(page.level_choices) == set(Category) - {Category.MINORS}

    assert page.set_level(Category.MINORS, Level.MINIMAL) is False
    assert window.studio.safety.policy.level(Category.MINORS) is Level.STRICT
    saved = window.studio.settings.get("safety.policy")
    assert saved is None or Policy.from_json(saved).level(Category.MINORS) is Level.STRICT


def test_a_prompt_refused_at_submission_shows_a_calm_notice_and_goes_back_into_the_input(qtbot, window, chat, send):
    event = send(chat, UNSAFE_PROMPT)

    assert event.kind is EventKind.BLOCKED
    reason = event.data.reason
    assert reason.startswith("Your request")
    notices = chat.safety_notices()
    assert len(notices) == 1
    notice = notices[0]
    assert notice.objectName() == "safetyNotice"  # the calm information box, not the error row
    assert notice.text() == reason and Category(event.data.category).label in notice.text()
    assert not [n for n in chat.message_view.notices() if n.error]
    # The person's message is not lost: it is back in the input box, and only there.
    assert chat.input.toPlainText() == UNSAFE_PROMPT
    assert chat.message_view.messages() == []
    assert chat.conversation_id is None
    qtbot.waitUntil(lambda: window.studio.conversations.list() == [], timeout=5000)  # deleted in the background
    assert not chat.busy and chat.send_button.text() == "Send"

    click(qtbot, notice.settings_button)
    assert window.pages.currentWidget() is window.settings_page


def test_a_refused_prompt_in_a_conversation_removes_only_that_message(qtbot, window, chat, send):
    assert send(chat, "Say hello.").kind is EventKind.RESULT
    conversation_id = chat.conversation_id
    before = window.studio.conversations.get(conversation_id).messages

    assert send(chat, UNSAFE_PROMPT).kind is EventKind.BLOCKED

    assert chat.conversation_id == conversation_id
    # The refused message is taken out of the store in the background.
    qtbot.waitUntil(lambda: window.studio.conversations.get(conversation_id).messages == before, timeout=5000)
    after = window.studio.conversations.get(conversation_id).messages
    assert after == before and [m.role for m in after] == ["user", "assistant"]
    assert [(v.role, v.text) for v in chat.message_view.messages()] == [(m.role, m.content) for m in after]
    assert chat.input.toPlainText() == UNSAFE_PROMPT
    assert chat.safety_notices()[-1].text().startswith("Your request")


def test_a_reply_stopped_mid_stream_shows_the_notice_with_its_category(qtbot, window, chat):
    # Here every word the model writes counts as profanity: the reply is unsafe on every CPU, whatever
    # words this CPU's kernels make the model say; the prompt itself passes.
    window.studio.safety.text.add_checker(
        lambda text, role: [Finding(Category.PROFANITY, 1.0, "test-checker")] if role == "output" and text else []
    )
    chat.input.setPlainText(HARMLESS)
    with qtbot.waitSignal(chat.reply_finished, timeout=REPLY_TIMEOUT_MS) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    event = blocker.args[0]
    assert event.kind is EventKind.BLOCKED and event.data.category == Category.PROFANITY.value
    assert event.data.reason.startswith("The reply")
    notice = chat.safety_notices()[-1]
    assert notice.text() == event.data.reason and "(profanity)" in notice.text()
    # The question stays; the withheld reply is neither shown nor stored.
    stored = window.studio.conversations.get(chat.conversation_id).messages
    assert [(m.role, m.content) for m in stored] == [("user", HARMLESS)]
    assert [v.role for v in chat.message_view.messages()] == ["user"]
    assert chat.input.toPlainText() == ""


def test_the_audit_table_shows_the_decision_without_the_content(window, chat, send):
    event = send(chat, UNSAFE_PROMPT)
    window.show_settings()
    table = window.settings_page.audit_table

    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == ["Time", "What", "Action", "Category", "Score", "Layer"]
    assert table.isVisible() and table.rowCount() >= 1
    first = [table.item(0, c).text() for c in range(table.columnCount())]
    label = Category(event.data.category).label
    assert first[1:4] == ["Prompt", "Blocked", label[:1].upper() + label[1:]]
    assert float(first[4]) == round(event.data.score, 2) and first[5] == layer_label(event.data.checker)
    assert first[5] in ("Word rules", "Meaning model") and event.data.checker in table.item(0, 5).toolTip()
    cells = " ".join(table.item(r, c).text() for r in range(table.rowCount()) for c in range(table.columnCount()))
    assert "pipe bomb" not in cells.lower()


def test_a_refused_guard_model_file_is_explained_inline(monkeypatch, tmp_path, qtbot, window):
    bad = tmp_path / "guard.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip file, not a model")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), "GGUF models (*.gguf)"))
    window.show_settings()
    page = window.settings_page

    click(qtbot, page.guard_choose)

    assert page.guard_error.isVisible() and page.guard_error.text()
    assert window.studio.guard_model() is None
    assert page.guard_label.text().startswith("None")
