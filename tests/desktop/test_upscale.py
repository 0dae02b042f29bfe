"""Upscaling in the Images panel: a dropped file or a result, the dialog, tile progress, cancel, the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop.images_panel import ImagesPanel
from desktop.main_window import MainWindow
from desktop.upscale_dialog import UpscaleDialog

UPSCALE_TIMEOUT_MS = 120_000


@pytest.fixture
def images(window: MainWindow) -> ImagesPanel:
    window.show_panel(window.images)
    return window.images


@pytest.fixture
def photo_file(tmp_path: Path) -> Path:
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[40:232:2, 120:344:2])).save(path)
    return path


def accept_dialog_with(scale: int) -> None:
    """When the Upscale dialog opens, pick ``scale`` and press its Upscale button (as a person would)."""

    def press() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, UpscaleDialog):
            QTimer.singleShot(20, press)
            return
        dialog.scale_combo.setCurrentIndex(dialog.scale_combo.findData(scale))
        dialog.upscale_button.click()

    QTimer.singleShot(20, press)


def drop_on(panel: ImagesPanel, path: Path) -> None:
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    where = QPointF(panel.rect().center())
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, data, buttons, keys)
    QApplication.sendEvent(panel, enter)
    assert enter.isAccepted(), "the panel refused the dragged image"
    QApplication.sendEvent(panel, QDropEvent(where, Qt.DropAction.CopyAction, data, buttons, keys))


def test_the_dialog_shows_the_size_the_result_will_have(qtbot) -> None:
    dialog = UpscaleDialog("astronaut.png", (112, 96))
    qtbot.addWidget(dialog)
    assert dialog.result_size.text() == "112×96 → 448×384 pixels"
    dialog.scale_combo.setCurrentIndex(dialog.scale_combo.findData(2))
    assert dialog.result_size.text() == "112×96 → 224×192 pixels"
    assert dialog.choice() == (2, "")
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData("x4plus"))
    assert dialog.choice() == (2, "x4plus")


def test_a_dropped_image_is_upscaled_into_the_grid_and_its_result_upscales_again_linked_to_it(
    qtbot, images: ImagesPanel, photo_file: Path
) -> None:
    accept_dialog_with(2)
    drop_on(images, photo_file)
    qtbot.waitUntil(lambda: images.busy, timeout=10_000)
    qtbot.waitUntil(lambda: not images.busy, timeout=UPSCALE_TIMEOUT_MS)
    (first,) = images.results()
    assert first.parameters["mode"] == "upscale" and first.parameters["source"] == "astronaut.png"
    with Image.open(first.path) as saved:
        assert saved.size == (224, 192)
    assert images.status.text().startswith("Upscaled 112×96 → 224×192")
    assert images.upscaler.button.isEnabled()
    assert "Upscaled from: astronaut.png · 112 × 96" in images.details.text()
    assert "Size: 224 × 192" in images.details.text()
    assert not images.details.rerun_button.isEnabled()  # no prompt or seed to re-run
    assert not images.details.use_settings_button.isEnabled()
    assert "Upscale…" in images.details.use_settings_button.toolTip()
    assert images.details.open_folder_button.isEnabled()
    # "Upscale…" on the selected result: the new record links to the first one's.
    accept_dialog_with(2)
    qtbot.mouseClick(images.upscaler.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(images.results()) == 2 and not images.busy, timeout=UPSCALE_TIMEOUT_MS)
    second = images.results()[0]
    assert second.parameters["source_output_id"] == first.output_id
    assert images.results_grid.current_result().output_id == second.output_id


def test_cancel_stops_the_upscale_and_nothing_joins_the_grid(qtbot, images: ImagesPanel, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (480, 480, 3), dtype=np.uint8)).save(big)
    assert images.upscaler.start(str(big), 4)
    qtbot.waitUntil(lambda: images.progress.maximum() > 0 and images.progress.value() >= 1, timeout=UPSCALE_TIMEOUT_MS)
    assert images.status.text().startswith("Tile ")
    qtbot.mouseClick(images.generate_button, Qt.MouseButton.LeftButton)  # it reads "Cancel" while busy
    qtbot.waitUntil(lambda: not images.busy, timeout=10_000)
    assert images.status.text() == "Upscale cancelled. Nothing was saved."
    assert images.results() == []


def test_a_file_that_is_not_an_image_fails_with_its_reason_in_the_panel(
    qtbot, images: ImagesPanel, tmp_path: Path
) -> None:
    fake = tmp_path / "photo.png"
    fake.write_text("not a picture")
    assert images.upscaler.start(str(fake), 2)
    qtbot.waitUntil(lambda: not images.busy, timeout=UPSCALE_TIMEOUT_MS)
    assert "'photo.png' is not an image Ember can read" in images.message_text()
    assert images.results() == []
