"""Chat with your documents, in the window: the toggle, the Documents dialog, grounded replies and their sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QDesktopServices

from desktop.chat_panel import USE_DOCUMENTS_KEY
from engines.errors import EmberError
from engines.jobs import EventKind
from engines.text.requests import ChatRequest

INDEX_TIMEOUT_MS = 120_000
FACT = "The Quillmere lighthouse keeper's cat is named Saffron Biscuit."
QUESTION = "What is the name of the Quillmere lighthouse keeper's cat?"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """A folder with one small Markdown file holding a made-up fact."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "lighthouse.md").write_text(
        f"# Quillmere\n\nThe lighthouse on the cliff was built in 1871.\n\n## Keeper\n\n{FACT}\n", encoding="utf-8"
    )
    return folder


@pytest.fixture
def notes_with_a_broken_pdf(notes: Path) -> Path:
    """The notes folder, with a file that ends in .pdf but is no PDF."""
    (notes / "broken.pdf").write_bytes(b"this is not a PDF at all")
    return notes


@pytest.fixture
def submitted(monkeypatch, window) -> list[ChatRequest]:
    """The chat requests the window submits to the Studio, in order."""
    studio = window.studio
    seen: list[ChatRequest] = []
    real = studio.submit

    def spy(request, *args, **kwargs):
        if isinstance(request, ChatRequest):
            seen.append(request)
        return real(request, *args, **kwargs)

    monkeypatch.setattr(studio, "submit", spy)
    return seen


def _index_through_the_dialog(qtbot, chat, folder: Path):
    dialog = chat.manage_documents()
    with qtbot.waitSignal(dialog.index_finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        dialog.add_folder(str(folder))
    assert blocker.args[0].kind is EventKind.RESULT, blocker.args[0].data
    table = dialog.folder_table
    qtbot.waitUntil(lambda: table.rowCount() == 1 and table.item(0, 3).text() == "Indexed", timeout=10_000)
    qtbot.waitUntil(lambda: chat._has_folders, timeout=10_000)
    return dialog


def test_the_dialog_indexes_a_folder_and_shows_the_files_it_could_not_read(qtbot, chat, notes_with_a_broken_pdf):
    dialog = _index_through_the_dialog(qtbot, chat, notes_with_a_broken_pdf)

    assert dialog.folder_table.item(0, 0).text() == str(notes_with_a_broken_pdf.resolve())
    assert dialog.folder_table.item(0, 4).text() == "1"  # one file with errors
    assert "1 file(s) could not be read" in dialog.status.text() and "broken.pdf" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.file_table.rowCount() == 2, timeout=10_000)
    rows = {dialog.file_table.item(r, 0).text(): dialog.file_table.item(r, 3).text() for r in range(2)}
    assert rows["lighthouse.md"] == "" and rows["broken.pdf"]

    with qtbot.waitSignal(dialog.folders_changed, timeout=10_000):
        dialog.remove_selected()
    qtbot.waitUntil(lambda: dialog.folder_table.rowCount() == 0, timeout=10_000)
    assert chat.bridge.studio.documents.folders() == []
    assert (notes_with_a_broken_pdf / "broken.pdf").exists()


def test_the_dialog_shows_and_stops_a_run_it_did_not_start_and_updates_a_folder_on_request(
    qtbot, window, chat, tmp_path: Path
):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(40):  # enough passages that the run is still going when Stop is pressed
        (many / f"note-{i:02}.md").write_text(
            "\n\n".join(f"## Part {j}\n\nNote {i} part {j}: the tide tables for harbour {i}." for j in range(12)),
            encoding="utf-8",
        )
    dialog = chat.manage_documents()
    documents = window.studio.documents
    request = documents.add_folder(many)
    with qtbot.waitSignal(dialog.index_finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        window.studio.submit(request)  # as the start-up refresh or the folder watch would: not from the dialog
        qtbot.waitUntil(lambda: dialog.folder_table.rowCount() == 1, timeout=10_000)
        qtbot.waitUntil(lambda: dialog.folder_table.item(0, 3).text() == "Indexing…", timeout=INDEX_TIMEOUT_MS)
        assert dialog.progress.isVisible() and "many" in dialog.status.text()
        assert dialog.stop_button.isEnabled() and not dialog.remove_button.isEnabled()
        # Stop once something is read (on a slow machine the first batch can still be embedding here).
        qtbot.waitUntil(lambda: documents.store.counts()["embedded"] > 0, timeout=INDEX_TIMEOUT_MS)
        assert dialog.stop_selected()
    assert blocker.args[0].kind is EventKind.CANCELLED
    assert "stopped" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.folder_table.item(0, 3).text().startswith("Partly"), timeout=10_000)
    assert not dialog.stop_button.isEnabled() and dialog.remove_button.isEnabled()
    assert documents.store.counts()["embedded"] > 0  # what was read is kept

    with qtbot.waitSignal(dialog.index_finished, timeout=INDEX_TIMEOUT_MS) as blocker:
        dialog.update_selected()
    assert blocker.args[0].kind is EventKind.RESULT
    qtbot.waitUntil(lambda: dialog.folder_table.item(0, 3).text() == "Indexed", timeout=10_000)
    assert blocker.args[0].data.files == 40 and "40 file(s)" in dialog.status.text()


def test_a_question_with_documents_on_sends_the_passage_keeps_the_question_and_shows_its_sources(
    qtbot, monkeypatch, window, chat, send, finish, submitted, notes
):
    _index_through_the_dialog(qtbot, chat, notes)
    assert "1 folder(s)" in chat.documents_button.toolTip()
    assert "1 folder(s)" in chat.documents_button.toolTip()

    chat.documents_button.setChecked(True)
    final = send(chat, QUESTION)

    assert final.kind is EventKind.RESULT
    sent = submitted[-1].messages[-1].content
    assert FACT in sent and sent.endswith(QUESTION)
    convo = window.studio.conversations.get(chat.conversation_id)
    assert [m.role for m in convo.messages] == ["user", "assistant"]
    assert convo.messages[0].content == QUESTION  # as typed, without the passages
    assert chat.message_view.messages()[0].text == QUESTION
    (sources,) = chat.message_view.sources()
    assert sources.plain_text().startswith("Sources: [1] lighthouse.md line ")
    target = (notes / "lighthouse.md").resolve().as_uri()
    assert sources.link_targets and set(sources.link_targets) == {target}  # a passage or two, all of the file
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()) or True)
    sources.linkActivated.emit(target)
    assert opened == [target]
    store = window.studio.documents.store
    qtbot.waitUntil(lambda: bool(store.citations(convo.messages[0].id)), timeout=10_000)  # kept in the background
    kept = store.citations(convo.messages[0].id)
    assert {Path(c["path"]).name for c in kept} == {"lighthouse.md"}
    assert window.studio.settings.get(USE_DOCUMENTS_KEY) is True

    # Regenerate grounds the question again.
    again = finish(chat, chat.regenerate)
    assert again.kind is EventKind.RESULT
    assert FACT in submitted[-1].messages[-1].content
    assert window.studio.conversations.get(chat.conversation_id).messages[0].content == QUESTION
    assert len(chat.message_view.sources()) == 1

    # Reopened, the conversation shows its sources again.
    chat.new_conversation()
    assert chat.message_view.sources() == []
    chat.select_conversation(convo.id)
    qtbot.waitUntil(lambda: len(chat.message_view.sources()) == 1, timeout=10_000)
    assert set(chat.message_view.sources()[0].link_targets) == {target}


def test_with_documents_off_no_passage_is_sent(qtbot, window, chat, send, submitted, notes):
    window.studio.documents.index_folder(window.studio.documents.add_folder(notes).folder)
    chat.refresh_documents()
    qtbot.waitUntil(lambda: chat._has_folders, timeout=10_000)
    assert not chat.documents_button.isChecked()  # off by default

    final = send(chat, QUESTION)

    assert final.kind is EventKind.RESULT
    assert submitted[-1].messages[-1].content == QUESTION
    assert chat.message_view.sources() == []


def test_without_an_indexed_folder_the_toggle_says_so_and_sending_works(qtbot, chat, send, submitted):
    qtbot.waitUntil(lambda: "No folder is indexed" in chat.documents_button.toolTip(), timeout=10_000)
    chat.documents_button.setChecked(True)

    final = send(chat, "Say hello.")

    assert final.kind is EventKind.RESULT
    assert submitted[-1].messages[-1].content == "Say hello."
    assert chat.message_view.sources() == []


def test_a_search_by_keywords_only_is_said_in_one_line_under_the_reply(qtbot, window, chat, send, submitted, notes):
    documents = window.studio.documents
    documents.index_folder(documents.add_folder(notes).folder)

    def no_meaning(texts):
        raise EmberError("The embedding model could not start.")

    documents._embed = no_meaning  # the embedding model fails after indexing: search falls back to keywords
    chat.documents_button.setChecked(True)

    final = send(chat, QUESTION)

    assert final.kind is EventKind.RESULT
    assert FACT in submitted[-1].messages[-1].content  # keywords still found it
    lines = [n.text() for n in chat.message_view.notices()]
    assert any("searched by keywords only" in line and "could not start" in line for line in lines), lines
