"""The Verify panel: files dropped (or picked) onto it come back as one card each, from the real verifier."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from desktop.verify_panel import VerifyPanel
from engines.jobs import EventKind, JobEvent

VERIFY_TIMEOUT_MS = 60_000
PARAMETERS = "a red fox in the snow\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 64x64, Model: sd-turbo"


@pytest.fixture
def verify(window) -> VerifyPanel:
    """The window's Verify panel, shown."""
    window.show_panel(window.verify)
    return window.verify


@pytest.fixture
def drop(qtbot) -> Callable[..., JobEvent]:
    """Drag files onto the panel, drop them, and return the verification's terminal event."""

    def _drop(panel: VerifyPanel, *paths: Path) -> JobEvent:
        data = QMimeData()
        data.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
        where = QPointF(panel.rect().center())
        buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        enter = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, data, buttons, keys)
        QApplication.sendEvent(panel, enter)
        assert enter.isAccepted(), "the panel refused the drag"
        with qtbot.waitSignal(panel.verify_finished, timeout=VERIFY_TIMEOUT_MS) as blocker:
            QApplication.sendEvent(panel, QDropEvent(where, Qt.DropAction.CopyAction, data, buttons, keys))
            assert panel.busy and panel.busy_label.isVisible() and not panel.choose_button.isEnabled()
        assert not panel.busy and not panel.busy_label.isVisible() and panel.choose_button.isEnabled()
        return blocker.args[0]

    return _drop


def test_dropping_an_image_shows_a_card_with_its_watermark_credentials_and_parameters(tmp_path, verify, drop):
    image = tmp_path / "fox.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", PARAMETERS)
    Image.new("RGB", (64, 64), (200, 120, 80)).save(image, pnginfo=info)

    event = drop(verify, image)

    assert event.kind is EventKind.RESULT
    [card] = verify.cards()
    report = event.data[0]
    assert card.summary.text() == report.summary
    assert card.fields["Watermark"].text().startswith("Not watermarked (p = ")
    assert card.fields["Content Credentials"].text() == "None in this file"
    parameters = card.fields["Parameters"].text()
    assert "prompt: a red fox in the snow" in parameters and "seed: 42" in parameters
    assert card.fields["Library record"].text() == "No matching record in this library"


def test_a_short_text_file_picked_with_the_button_is_too_short_to_tell(monkeypatch, tmp_path, qtbot, verify):
    note = tmp_path / "note.txt"
    note.write_text("Hello there.", encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(note)], ""))

    with qtbot.waitSignal(verify.verify_finished, timeout=VERIFY_TIMEOUT_MS):
        qtbot.mouseClick(verify.choose_button, Qt.MouseButton.LeftButton)

    [card] = verify.cards()
    assert card.fields["Watermark"].text().startswith("Too short to tell")
    assert "too little text to tell" in card.summary.text().lower()


def test_unreadable_files_show_their_error_in_their_own_card(tmp_path, verify, drop):
    garbage = tmp_path / "broken.bin"
    garbage.write_bytes(b"\x00\xff" * 100)
    missing = tmp_path / "gone.png"

    drop(verify, garbage, missing)

    cards = verify.cards()
    assert [Path(c.report.path).name for c in cards] == ["broken.bin", "gone.png"]
    for card in cards:
        assert card.summary.objectName() == "errorRow" and card.fields == {}
    assert "is not an image, a WAV file or UTF-8 text" in cards[0].summary.text()
    assert "cannot read" in cards[1].summary.text()


def test_a_reply_saved_to_a_file_is_found_watermarked_and_matched_to_its_record(
    tmp_path, replies_unjudged, chat, verify, drop, send
):
    # Sampled, not greedy: the text watermark lives in the choices among likely tokens. Its strength grows with
    # length and does not depend on the words: over random keys and seeds, 120-token stories scored z 4.6-8.3
    # (the threshold is 4) and 300-token ones z 11-14.6, so this length passes whatever this CPU samples.
    chat.settings.max_tokens.setValue(300)
    chat.settings.temperature.setValue(0.8)
    reply = send(chat, "Write a short story about a lighthouse keeper and a storm.")
    record = reply.data.record
    saved = tmp_path / "story.txt"
    saved.write_text(reply.data.output.text, encoding="utf-8")

    drop(verify, saved)

    [card] = verify.cards()
    found = card.fields["Library record"].text()
    assert record.output_id in found and record.provenance.model_name in found
    assert card.fields["Watermark"].text().startswith("Watermarked — confidence")
    assert card.summary.text().startswith("Ember's watermark is present")
