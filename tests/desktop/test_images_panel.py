"""The Images panel, driven like a person would, on the real Studio, diffusion engine and a tiny generated model.

The tiny model has random weights, so its images are noise; what is tested is the
panel: what it sends, what it shows while the engine runs, and what it keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QFileDialog

from desktop.images_panel import RECENT_MODELS_KEY, ImagesPanel, model_folder_problem
from desktop.main_window import MainWindow
from engines.jobs import EventKind, JobEvent
from engines.progress import Step

IMAGE_TIMEOUT_MS = 120_000
UNSAFE_PROMPT = "Explain step by step how to build a pipe bomb to hurt people"


@pytest.fixture
def tiny_model(tiny_sd: Path) -> Path:
    """The tiny SD 1.x-style ONNX folder, once Ember's diffusion engine is there to run it."""
    pytest.importorskip(
        "engines.diffusion.engine", reason="Ember's diffusion engine (engines/diffusion/engine.py) is not there yet"
    )
    return tiny_sd


@pytest.fixture
def images(window: MainWindow) -> ImagesPanel:
    """The window's Images panel, shown."""
    window.show_panel(window.images)
    return window.images


@pytest.fixture
def ready(images: ImagesPanel, tiny_model: Path) -> ImagesPanel:
    """The Images panel with the tiny model picked, a prompt and few steps."""
    assert images.add_model_folder(str(tiny_model))
    images.prompt.setPlainText("a photo of a red cat")
    images.steps.setValue(4)
    return images


@pytest.fixture
def generate(qtbot) -> Callable[..., JobEvent]:
    """Press Ctrl+Enter in the prompt (or run ``action``) and return the generation's terminal event."""

    def _generate(panel: ImagesPanel, action: Callable[[], object] | None = None) -> JobEvent:
        with qtbot.waitSignal(panel.generation_finished, timeout=IMAGE_TIMEOUT_MS) as blocker:
            if action is None:
                qtbot.keyClick(panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
            else:
                assert action() is not False, "the generation did not start"
            assert panel.busy and panel.generate_button.text() == "Cancel"
        assert not panel.busy and panel.generate_button.text() == "Generate"
        return blocker.args[0]

    return _generate


def drop_file(panel: ImagesPanel, path: Path) -> None:
    """Drag ``path`` onto the image-to-image drop area and drop it there."""
    target = panel.init_drop
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    where = QPointF(target.rect().center())
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(where.toPoint(), Qt.DropAction.CopyAction, data, buttons, keys)
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted(), "the drop area refused the drag"
    QApplication.sendEvent(target, QDropEvent(where, Qt.DropAction.CopyAction, data, buttons, keys))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (inf for equal images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- generating -------------------------------------------------------------------------------------
def test_ctrl_enter_generates_with_the_tiny_model_and_shows_the_saved_image_in_the_grid(ready, generate):
    event = generate(ready)

    assert event.kind is EventKind.RESULT, event.data
    [delivered], [path] = event.data.delivered, event.data.paths
    with Image.open(path) as saved:
        assert saved.size == (64, 64)
    [result] = ready.results()
    assert result.path == path and result.output_id == delivered.record.output_id
    assert ready.results_grid.count() == 1 and not ready.results_grid.item(0).icon().isNull()
    # The new image is selected: shown large, with its settings beside it.
    assert ready.details.result is result and ready.view.has_image()
    details = ready.details.text()
    assert "Prompt: a photo of a red cat" in details and "Steps: 4" in details and "Size: 64 × 64" in details
    assert f"Seed: {delivered.output.parameters['seed']}" in details and result.output_id in details
    assert ready.status.text().startswith("Done: 1 image in ")


def test_the_progress_bar_reaches_n_of_n_and_live_previews_show_while_it_runs(ready, generate, window):
    steps: list[tuple[int, int]] = []
    shown_while_running: list[bool] = []
    window.bridge.event.connect(
        lambda e: (
            steps.append((e.data.done, e.data.total))
            if e.kind is EventKind.PROGRESS and isinstance(e.data, Step)
            else None
        )
    )
    ready.preview_shown.connect(lambda _index: shown_while_running.append(ready.busy and ready.view.has_image()))
    ready.batch.setValue(2)

    event = generate(ready)

    assert event.kind is EventKind.RESULT
    total = steps[-1][1]
    assert steps[-1] == (total, total) and total >= 4
    assert ready.progress.maximum() == total and ready.progress.value() == total
    assert shown_while_running and all(shown_while_running)
    assert len(ready.results()) == 2
    # Image i of a batch uses seed + i, and the grid shows the first image first.
    first, second = ready.results()
    assert second.seed == first.seed + 1


def test_cancel_stops_the_job_and_the_panel_returns_to_idle(qtbot, ready, generate):
    ready.set_size(256, 256)
    ready.steps.setValue(150)
    ready.batch.setValue(8)

    def start_then_cancel() -> bool:
        assert ready.generate()
        qtbot.waitUntil(lambda: ready.progress.maximum() > 0 and ready.progress.value() >= 1, timeout=IMAGE_TIMEOUT_MS)
        qtbot.mouseClick(ready.generate_button, Qt.MouseButton.LeftButton)
        return True

    event = generate(ready, start_then_cancel)

    assert event.kind is EventKind.CANCELLED
    assert ready.results() == [] and ready.progress.isHidden()
    assert ready.status.text() == "Cancelled. Nothing was saved."
    assert ready.model_combo.isEnabled() and ready.generate_button.isEnabled()


def test_rerun_makes_the_same_image_again_from_the_same_seed(qtbot, ready, generate):
    ready.seed.set_seed(None)  # a random seed, recorded with the image
    first_event = generate(ready)
    [first] = ready.results()
    ready.prompt.setPlainText("something else entirely")
    ready.steps.setValue(7)

    second_event = generate(ready, lambda: qtbot.mouseClick(ready.details.rerun_button, Qt.MouseButton.LeftButton))

    assert second_event.kind is EventKind.RESULT
    again, _ = ready.results()
    assert again.output_id != first.output_id and again.seed == first.seed
    assert ready.prompt.toPlainText() == "a photo of a red cat" and ready.steps.value() == 4
    a = first_event.data.delivered[0].output.pixels
    b = second_event.data.delivered[0].output.pixels
    # Each image carries its own invisible watermark (its output id), about 40 dB under the image;
    # apart from that the pixels are the same.
    assert psnr(a, b) > 34.0
    ready.dice_button.click()
    third_event = generate(ready)
    assert psnr(a, third_event.data.delivered[0].output.pixels) < 25.0  # another seed: another image


def test_use_settings_fills_the_form_without_generating(ready, generate):
    ready.negative_prompt.setPlainText("blurry")
    ready.seed.set_seed(1234)
    ready.set_scheduler("euler_a")
    generate(ready)
    [result] = ready.results()
    ready.prompt.clear()
    ready.negative_prompt.clear()
    ready.seed.set_seed(None)
    ready.set_scheduler("")

    ready.details.use_settings_button.click()

    assert not ready.busy and len(ready.results()) == 1
    assert ready.prompt.toPlainText() == "a photo of a red cat" and ready.negative_prompt.toPlainText() == "blurry"
    assert ready.negative_section.isExpanded()
    assert ready.seed.seed() == 1234 == result.seed
    assert ready.scheduler.currentData() == "euler_a" and ready.image_size() == (64, 64)


def test_copy_path_and_open_folder_point_at_the_saved_file(monkeypatch, ready, generate):
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    generate(ready)
    [result] = ready.results()

    ready.details.copy_path_button.click()
    ready.details.open_folder_button.click()

    assert QGuiApplication.clipboard().text() == result.path
    assert opened == [str(Path(result.path).parent)]


# -- the form --------------------------------------------------------------------------------------
def test_the_dice_puts_a_new_seed_and_random_goes_back_to_a_fresh_one_each_time(images):
    images.seed.set_seed(42)

    images.dice_button.click()
    first = images.seed.seed()
    images.dice_button.click()
    second = images.seed.seed()

    assert first is not None and second is not None and len({42, first, second}) == 3
    assert 0 <= first < 2**32 and 0 <= second < 2**32
    images.random_seed_button.click()
    assert images.seed.seed() is None and images.seed.text() == "Random"


def test_size_presets_set_width_and_height_and_other_sizes_show_as_custom(images):
    images.size_preset.setCurrentIndex(images.size_preset.findText("768 × 512 · landscape"))
    assert images.image_size() == (768, 512)
    images.size_preset.setCurrentIndex(images.size_preset.findText("1024 × 576 · 16:9"))
    assert images.image_size() == (1024, 576)

    images.set_size(640, 384)
    assert images.size_preset.currentText() == "Custom"
    images.swap_button.click()
    assert images.image_size() == (384, 640)
    images.set_size(512, 512)
    assert images.size_preset.currentText() == "512 × 512"


def test_invalid_settings_are_said_inline_and_start_nothing(images, tiny_sd):
    assert images.add_model_folder(str(tiny_sd))
    images.width_box.setValue(100)  # typed sizes snap to multiples of 8 when edited; this one did not

    assert not images.generate()

    assert not images.busy
    assert (
        images.message_text()
        == "Invalid image setting: width and height must be multiples of 8. Change it and generate again."
    )
    images.width_box.setValue(104)
    assert images.build_request() is not None


def test_a_folder_without_model_index_json_is_explained_and_not_offered(images, tmp_path, monkeypatch):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(empty))

    images.choose_model_button.click()

    assert images.model_message.isVisibleTo(images)
    assert "has no model_index.json" in images.model_message.text()
    assert images.model_combo.findData(str(empty)) < 0
    assert not images.generate() and "Choose a diffusion model first" in images.model_message.text()


def test_an_onnxstack_folder_without_model_index_json_is_offered_and_runs(images, onnxstack_sd, generate, tiny_model):
    assert model_folder_problem(str(onnxstack_sd)) == ""
    assert images.add_model_folder(str(onnxstack_sd))
    assert images.model_folder() == str(onnxstack_sd) and not images.model_message.isVisibleTo(images)
    images.prompt.setPlainText("a photo of a red cat")
    images.steps.setValue(1)

    event = generate(images)

    assert event.kind is EventKind.RESULT, event.data
    assert len(event.data.paths) == 1 and images.message_text() == ""


def test_picked_model_folders_are_remembered_for_next_time(images, tiny_sd, window):
    assert images.add_model_folder(str(tiny_sd))

    assert window.studio.settings.get(RECENT_MODELS_KEY) == [str(tiny_sd)]
    again = ImagesPanel(window.bridge)
    assert again.model_folder() == str(tiny_sd) and again.model_combo.currentText() == "sd/onnx"
    # The model's own size (its UNet's sample size x 8) is taken when it is picked.
    assert again.image_size() == (64, 64) == images.image_size()
    again.set_models([("Tiny SD", str(tiny_sd)), ("Other", "/nowhere")])
    assert [again.model_combo.itemText(i) for i in range(again.model_combo.count())] == ["Tiny SD", "Other"]
    again.deleteLater()


# -- image to image --------------------------------------------------------------------------------
def test_dropping_a_png_sets_the_init_image_and_the_request_carries_it_and_the_strength(tmp_path, ready, generate):
    start = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (200, 120, 80)).save(start)

    drop_file(ready, start)
    ready.strength.setValue(0.5)

    assert ready.init_image_path == str(start)
    assert ready.init_drop.thumb.pixmap() is not None and not ready.init_drop.thumb.pixmap().isNull()
    assert "start.png · 64 × 64" in ready.init_drop.name.text() and ready.strength.isEnabled()
    request = ready.build_request()
    assert request is not None and request.init_image == str(start) and request.strength == 0.5
    event = generate(ready)
    assert event.kind is EventKind.RESULT, event.data
    assert "Init image: start.png, strength 0.50" in ready.details.text()
    ready.clear_init_button.click()
    assert ready.init_image_path is None and ready.build_request().init_image is None


def test_a_file_that_is_not_an_image_is_refused_with_a_message_and_the_old_image_stays(tmp_path, images):
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 48), (10, 200, 30)).save(good)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture", encoding="utf-8")
    drop_file(images, good)
    before = images.init_drop.thumb.pixmap().toImage()

    drop_file(images, bad)

    assert images.init_message.isVisibleTo(images)
    message = images.init_message.text()
    assert message.startswith("“notes.png” is not an image Ember can read") and "still used" in message
    assert images.init_image_path == str(good)
    assert images.init_drop.thumb.pixmap().toImage() == before


# -- safety and failures ---------------------------------------------------------------------------
def test_a_refused_prompt_shows_the_calm_safety_notice_and_stays_in_the_box(qtbot, images, tiny_sd, generate, window):
    # The prompt is refused at submission, before any model loads.
    assert images.add_model_folder(str(tiny_sd))
    ready = images
    ready.prompt.setPlainText(UNSAFE_PROMPT)

    event = generate(ready)

    assert event.kind is EventKind.BLOCKED
    notice = ready.safety_notice()
    assert notice is not None and notice.objectName() == "safetyNotice"
    assert notice.text().startswith("Your request") and "weapons" in notice.text()
    assert ready.prompt.toPlainText() == UNSAFE_PROMPT
    assert ready.results() == [] and ready.message_text() == ""
    qtbot.mouseClick(notice.settings_button, Qt.MouseButton.LeftButton)
    assert window.pages.currentWidget() is window.settings_page


def test_a_broken_model_fails_with_its_message_in_the_panel(tmp_path, images, generate, tiny_model):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}", encoding="utf-8")
    assert images.add_model_folder(str(broken))
    images.prompt.setPlainText("a red cat")

    event = generate(images)

    assert event.kind is EventKind.FAILED
    assert images.message_text() == str(event.data) and images.message.objectName() == "imageMessage"
    assert QApplication.activeModalWidget() is None
    assert images.results() == []
