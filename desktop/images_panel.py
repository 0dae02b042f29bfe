"""The Images panel: a prompt and its settings on the left, the live preview in the middle, results on the right.

It sends one :class:`ImageRequest` through the bridge and shows what comes back: the
loading stage, each denoising step with its ETA, the live previews (only the latest,
at most about 30 a second), the saved images, a safety notice for anything the
filter kept back, a failure as an inline message. It never touches a thread and
never calls an engine.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QMouseEvent,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge, JobOp, blocked_reason
from desktop.chat_panel import PromptEdit
from desktop.empty_state import ModelNeeded
from desktop.image_results import (
    ResultDetails,
    ResultItem,
    ResultsGrid,
)
from desktop.image_view import IMAGE_SUFFIXES, ImageView, dice_icon, qimage_from_array, read_image
from desktop.message_view import SafetyNotice
from desktop.queue_view import eta_text  # one wording for the time left, in the queue and here
from desktop.upscale_dialog import PanelUpscaler
from desktop.widgets import Collapsible, FractionSlider, Throttled
from engines.diffusion.folder import layout_problem
from engines.diffusion.requests import DiffusionOptions, ImageBatchResult, ImageRequest
from engines.diffusion.schedulers import SCHEDULERS, sampler_label
from engines.errors import EmberError
from engines.jobs import JobEvent
from engines.progress import Checking, Loading, Preview, Running, Step

# About 30 preview renders a second: an engine may send a preview every step of a fast
# model, and each render scales an image; the eye cannot follow faster anyway.
_PREVIEW_INTERVAL_MS = 33
RECENT_MODELS_KEY = "images.recent_models"
_RECENT_MODELS_KEPT = 10
_SEED_MAX = 2**32 - 1
_SIZE_STEP = 8
_INIT_THUMB_PX = 64
_IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp);;All files (*)"

# (label, width, height): the sizes SD 1.x / 2.x / SDXL front ends offer.
SIZE_PRESETS: tuple[tuple[str, int, int], ...] = (
    ("512 × 512", 512, 512),
    ("768 × 768", 768, 768),
    ("1024 × 1024", 1024, 1024),
    ("512 × 768 · portrait", 512, 768),
    ("768 × 512 · landscape", 768, 512),
    ("576 × 1024 · 9:16", 576, 1024),
    ("1024 × 576 · 16:9", 1024, 576),
    ("832 × 1216 · portrait", 832, 1216),
    ("1216 × 832 · landscape", 1216, 832),
)
CUSTOM_SIZE = "Custom"


def model_folder_problem(folder: str) -> str:
    """Return why ``folder`` cannot be used as a diffusion model, or "" when it looks right.

    Only the layout is checked here, by the engine's own rule (engines/diffusion/folder.py); the
    engine reads the files, and says what is missing, when it loads the model.
    """
    from engines.remote import is_remote

    if is_remote(folder):
        return ""  # a model on a remote server (Settings > Remote engines): the server answers for it
    if not Path(folder).is_dir():
        return f"The folder {folder} does not exist (any more). Choose the model folder again."
    return layout_problem(folder)


def model_display_name(folder: str) -> str:
    """Return a short name for a model folder ("sd-turbo", or "sd-turbo/onnx" for a generic last part)."""
    path = Path(folder)
    if path.name.lower() in ("onnx", "model", "models", "diffusers") and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or folder


def native_size(folder: str) -> int | None:
    """Return the image size (pixels a side) a model was trained for, from its UNet config, or None.

    diffusers stores the latent size (``sample_size``) and the VAE scales it by 8.
    """
    try:
        config = json.loads((Path(folder) / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sample = config.get("sample_size") if isinstance(config, dict) else None
    if isinstance(sample, list) and sample:
        sample = sample[0]
    if isinstance(sample, int) and 8 <= sample * 8 <= 4096:
        return sample * 8
    return None


class SeedBox(QDoubleSpinBox):
    """The seed: 0 … 4294967295, or "Random" (a fresh seed each time, recorded with the image).

    A QSpinBox stops at 2**31 - 1; a double with no decimals holds every 32-bit seed exactly.
    """

    RANDOM = -1

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(0)
        self.setRange(self.RANDOM, _SEED_MAX)
        self.setSingleStep(1)
        self.setSpecialValueText("Random")
        self.setValue(self.RANDOM)
        self.setToolTip("The same seed with the same settings makes the same image. “Random” draws a new one.")

    def minimumSizeHint(self) -> QSize:
        # Qt sizes a spin box for its longest value; ten digits fit in less, and the form is narrow.
        hint = super().minimumSizeHint()
        return QSize(min(hint.width(), 96), hint.height())

    def seed(self) -> int | None:
        """The seed, or None for "Random"."""
        value = int(self.value())
        return None if value < 0 else value

    def set_seed(self, seed: int | None) -> None:
        """Show ``seed`` (None: "Random")."""
        self.setValue(self.RANDOM if seed is None else int(seed))


class InitImageDrop(QFrame):
    """The image-to-image input: drop an image file here or click to choose one."""

    file_dropped = Signal(str)
    browse_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("initDrop")
        self.setAcceptDrops(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Drop an image file here, or click to choose one")
        self.thumb = QLabel()
        self.thumb.setObjectName("initThumb")
        self.thumb.setFixedSize(_INIT_THUMB_PX, _INIT_THUMB_PX)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint = QLabel("Drop an image here\nor click to choose")
        self.hint.setObjectName("dropHint")
        self.name = QLabel()
        self.name.setObjectName("initName")
        self.name.setWordWrap(True)
        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(self.hint)
        text.addWidget(self.name)
        text.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(10)
        layout.addWidget(self.thumb)
        layout.addLayout(text, 1)
        self.show_image(None, "")

    def show_image(self, image: QImage | None, name: str) -> None:
        """Show the chosen image's thumbnail and name (None: the empty invitation)."""
        if image is None:
            self.thumb.clear()
            self.thumb.setText("+")
            self.name.clear()
            self.name.hide()
            self.hint.setText("Drop an image here\nor click to choose")
            return
        scaled = image.scaled(
            _INIT_THUMB_PX,
            _INIT_THUMB_PX,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self.thumb.setPixmap(QPixmap.fromImage(scaled))
        self.hint.setText("Starts from this image")
        self.name.setText(f"{name} · {image.width()} × {image.height()}")
        self.name.show()

    def set_hovered(self, hovered: bool) -> None:
        self.setProperty("hover", hovered)
        self.style().unpolish(self)
        self.style().polish(self)

    @staticmethod
    def local_paths(data: QMimeData) -> list[str]:
        """The local files a drag carries."""
        if not data.hasUrls():
            return []
        return [url.toLocalFile() for url in data.urls() if url.isLocalFile() and url.toLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.isEnabled() and self.local_paths(event.mimeData()):
            event.acceptProposedAction()
            self.set_hovered(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self.isEnabled() and self.local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self.set_hovered(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.set_hovered(False)
        paths = self.local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.file_dropped.emit(paths[0])

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            self.browse_requested.emit()
        super().mouseReleaseEvent(event)


def _section(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("formSection")
    return label


def _message_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setProperty("error", True)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


class ImagesPanel(QWidget):
    """Make images with a local diffusion model.

    ``generation_finished`` carries the terminal JobEvent of every generation;
    ``preview_shown`` fires after each (throttled) render of a live preview, with the
    image's index in its batch; ``safety_settings_requested`` fires when the person asks
    for the safety settings from a notice.
    """

    generation_finished = Signal(object)
    preview_shown = Signal(int)
    busy_changed = Signal(bool)
    safety_settings_requested = Signal()

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imagesPanel")
        self.bridge = bridge
        self.settings_store = bridge.studio.settings
        self._op: JobOp | None = None
        self._request: ImageRequest | None = None
        self._started_s = 0.0
        self._init_path: str | None = None
        self._managed_models: list[tuple[str, str]] = []
        self._pending_preview: dict[str, Any] | None = None
        self._last_step = (0, 0)
        self.previews_shown = 0
        self._render_preview_throttled = Throttled(self._render_preview, _PREVIEW_INTERVAL_MS, parent=self)

        self._build()
        self.upscaler = PanelUpscaler(self)  # "Upscale…" on a result, and image files dropped on the panel
        self._status_row.addWidget(self.upscaler.button)
        self._refill_models()
        self._on_model_changed(self.model_combo.currentIndex())
        self._set_busy(None)

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        form_column = self._build_form()
        center = self._build_center()
        side = self._build_results()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("imagesSplitter")
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(form_column)
        splitter.addWidget(center)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 0)
        splitter.setSizes([340, 540, 272])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        generate = QShortcut(QKeySequence("Ctrl+Return"), self)
        generate.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        generate.activated.connect(self.generate)
        stop = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        stop.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        stop.activated.connect(self.cancel)

    def _build_form(self) -> QWidget:
        column = QWidget()
        column.setObjectName("imageForm")
        form = QVBoxLayout(column)
        form.setContentsMargins(14, 10, 14, 10)
        form.setSpacing(6)
        form.addWidget(_section("Model"))
        form.addLayout(self._build_model_row())
        form.addWidget(self.model_message)
        form.addWidget(_section("Prompt"))
        self._build_prompts()
        form.addWidget(self.prompt)
        form.addWidget(self.negative_section)
        form.addWidget(_section("Settings"))
        form.addLayout(self._build_settings())
        form.addWidget(_section("Image to image"))
        form.addWidget(self._build_init_drop())
        form.addLayout(self._build_strength_row())
        form.addWidget(self.init_message)
        form.addStretch(1)
        scroll = QScrollArea()
        scroll.setObjectName("imageFormScroll")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(column)

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setToolTip("Ctrl+Enter")
        self.generate_button.clicked.connect(self._generate_or_cancel)
        side = QWidget()
        side.setObjectName("imageFormSide")
        side.setMinimumWidth(300)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 12)
        side_layout.setSpacing(8)
        side_layout.addWidget(scroll, 1)
        button_row = QHBoxLayout()
        button_row.setContentsMargins(14, 0, 14, 0)
        button_row.addWidget(self.generate_button)
        side_layout.addLayout(button_row)
        self._update_init_widgets()
        return side

    def _build_model_row(self) -> QHBoxLayout:
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("imageModelCombo")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(8)
        self.model_combo.setPlaceholderText("No model yet")
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.choose_model_button = QPushButton("Choose folder…")
        self.choose_model_button.setObjectName("chooseModelButton")
        self.choose_model_button.setToolTip("Pick a diffusers ONNX model folder (the one that holds unet/)")
        self.choose_model_button.clicked.connect(self.choose_model_folder)
        model_row = QHBoxLayout()
        model_row.setSpacing(6)
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.choose_model_button)
        self.model_message = _message_label("modelMessage")
        return model_row

    def _build_prompts(self) -> None:
        self.prompt = PromptEdit()
        self.prompt.setObjectName("imagePrompt")
        self.prompt.setPlaceholderText("Describe the image — Ctrl+Enter generates, Esc cancels")
        self.prompt.setFixedHeight(84)
        self.prompt.submit_requested.connect(self.generate)
        self.prompt.stop_requested.connect(self.cancel)
        self.negative_prompt = PromptEdit()
        self.negative_prompt.setObjectName("negativePrompt")
        self.negative_prompt.setPlaceholderText("What to steer away from (blurry, text, extra fingers…)")
        self.negative_prompt.setFixedHeight(56)
        self.negative_prompt.submit_requested.connect(self.generate)
        self.negative_prompt.stop_requested.connect(self.cancel)
        self.negative_section = Collapsible("Negative prompt")
        self.negative_section.setObjectName("negativeSection")
        self.negative_section.addWidget(self.negative_prompt)
        self.negative_section.layout().setContentsMargins(0, 0, 0, 0)

    def _build_settings(self) -> QFormLayout:
        self.seed = SeedBox()
        self.seed.setObjectName("seedBox")
        self.seed.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.dice_button = QToolButton()
        self.dice_button.setObjectName("diceButton")
        self.dice_button.setIcon(dice_icon())
        self.dice_button.setToolTip("A new random seed (kept for the next images)")
        self.dice_button.clicked.connect(self.roll_seed)
        self.random_seed_button = QToolButton()
        self.random_seed_button.setObjectName("randomSeedButton")
        self.random_seed_button.setText("Random")
        self.random_seed_button.setToolTip("A fresh seed for every generation")
        self.random_seed_button.clicked.connect(lambda: self.seed.set_seed(None))
        seed_row = QHBoxLayout()
        seed_row.setSpacing(4)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice_button)
        seed_row.addWidget(self.random_seed_button)

        self.steps = QSpinBox()
        self.steps.setObjectName("stepsBox")
        self.steps.setRange(0, 150)
        self.steps.setSpecialValueText("Auto")
        self.steps.setToolTip("Denoising steps. Auto: the model's own (1 for Turbo, 4 for LCM, 25 otherwise)")
        self.guidance = QDoubleSpinBox()
        self.guidance.setObjectName("guidanceBox")
        self.guidance.setDecimals(1)
        self.guidance.setRange(-0.5, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setSpecialValueText("Auto")
        self.guidance.setValue(-0.5)
        self.guidance.setToolTip("How closely to follow the prompt (CFG). Auto: 0 for Turbo models, 7.5 otherwise")

        self.size_preset = QComboBox()
        self.size_preset.setObjectName("sizePreset")
        self.size_preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.size_preset.setMinimumContentsLength(12)
        for label, width, height in SIZE_PRESETS:
            self.size_preset.addItem(label, f"{width}x{height}")
        self.size_preset.addItem(CUSTOM_SIZE, None)
        self.size_preset.currentIndexChanged.connect(self._on_preset_picked)
        self.width_box = self._size_box("widthBox", "Width in pixels (a multiple of 8)")
        self.height_box = self._size_box("heightBox", "Height in pixels (a multiple of 8)")
        self.swap_button = QToolButton()
        self.swap_button.setObjectName("swapSizeButton")
        self.swap_button.setText("⇄")
        self.swap_button.setToolTip("Swap width and height")
        self.swap_button.clicked.connect(self.swap_size)
        times = QLabel("×")
        times.setObjectName("sizeTimes")
        size_row = QHBoxLayout()
        size_row.setSpacing(4)
        size_row.addWidget(self.width_box, 1)
        size_row.addWidget(times)
        size_row.addWidget(self.height_box, 1)
        size_row.addWidget(self.swap_button)
        self.set_size(512, 512)

        self.scheduler = QComboBox()
        self.scheduler.setObjectName("schedulerCombo")
        for name in ("", *SCHEDULERS):
            self.scheduler.addItem(sampler_label(name), name)
        self.batch = QSpinBox()
        self.batch.setObjectName("batchBox")
        self.batch.setRange(1, 16)
        self.batch.setToolTip("Images per generation; image i uses seed + i")

        settings = QFormLayout()
        settings.setHorizontalSpacing(10)
        settings.setVerticalSpacing(6)
        settings.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        settings.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        settings.addRow("Seed", seed_row)
        settings.addRow("Steps", self.steps)
        settings.addRow("Guidance", self.guidance)
        settings.addRow("Size", self.size_preset)
        settings.addRow("", size_row)
        settings.addRow("Sampler", self.scheduler)
        settings.addRow("Batch", self.batch)
        return settings

    def _build_init_drop(self) -> InitImageDrop:
        self.init_drop = InitImageDrop()
        self.init_drop.file_dropped.connect(self.set_init_image)
        self.init_drop.browse_requested.connect(self.choose_init_image)
        return self.init_drop

    def _build_strength_row(self) -> QHBoxLayout:
        self.strength = FractionSlider(0.05, 1.0, 0.05, decimals=2)
        self.strength.setObjectName("strengthSlider")
        self.strength.setValue(0.75)
        self.strength.setToolTip("How much to change the image: low keeps it close, 1 ignores it")
        self.clear_init_button = QPushButton("Clear")
        self.clear_init_button.setObjectName("clearInitButton")
        self.clear_init_button.clicked.connect(self.clear_init_image)
        strength_label = QLabel("Strength")
        strength_row = QHBoxLayout()
        strength_row.setSpacing(8)
        strength_row.addWidget(strength_label)
        strength_row.addWidget(self.strength, 1)
        strength_row.addWidget(self.clear_init_button)
        self._strength_widgets = (strength_label, self.strength, self.clear_init_button)
        self.init_message = _message_label("initMessage")
        return strength_row

    def _size_box(self, name: str, tip: str) -> QSpinBox:
        box = QSpinBox()
        box.setObjectName(name)
        box.setRange(64, 4096)
        box.setSingleStep(_SIZE_STEP)
        box.setSuffix(" px")
        box.setToolTip(tip)
        box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        box.valueChanged.connect(self._sync_preset)
        box.editingFinished.connect(lambda: box.setValue(max(64, round(box.value() / _SIZE_STEP) * _SIZE_STEP)))
        return box

    def _build_center(self) -> QWidget:
        self.view = ImageView("Your images appear here.\n\nWrite a prompt and press Generate (Ctrl+Enter).")
        self.view.setObjectName("imageView")
        self.progress = QProgressBar()
        self.progress.setObjectName("imageProgress")
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(6)
        self.status = QLabel()
        self.status.setObjectName("imageStatus")
        status_row = self._status_row = QHBoxLayout()
        status_row.setSpacing(10)
        status_row.addWidget(self.status)
        status_row.addWidget(self.progress, 1)
        self.message = _message_label("imageMessage")
        self._notice_holder = QVBoxLayout()
        self._notice_holder.setContentsMargins(0, 0, 0, 0)
        self._safety_notice: SafetyNotice | None = None
        self.details = ResultDetails()
        self.details.rerun_requested.connect(self.rerun)
        self.details.use_settings_requested.connect(self.use_settings)
        self.details.open_folder_requested.connect(self.open_folder)
        self.details.copy_path_requested.connect(self.copy_path)

        # With no model yet, the card saying what to do takes the image's place (desktop/empty_state.py).
        self.model_needed = ModelNeeded(
            self.bridge,
            "diffusion",
            "No image model yet",
            "Making images needs a diffusion model (ONNX, in the diffusers folder layout). Download one "
            "of these, which suit this computer, or choose a model folder you already have. Everything "
            "stays on this computer.",
        )
        self.model_needed.choose_requested.connect(self.choose_model_folder)
        self.view_stack = QStackedWidget()
        self.view_stack.addWidget(self.model_needed)
        self.view_stack.addWidget(self.view)
        center = QWidget()
        center.setObjectName("imageCenter")
        layout = QVBoxLayout(center)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(8)
        layout.addWidget(self.view_stack, 1)
        layout.addLayout(status_row)
        layout.addWidget(self.message)
        layout.addLayout(self._notice_holder)
        layout.addWidget(self.details)
        self.details.hide()  # until there is a result to show
        return center

    def _build_results(self) -> QWidget:
        title = QLabel("Results")
        title.setObjectName("formSection")
        self.results_hint = QLabel("The images you make appear here, newest first.")
        self.results_hint.setObjectName("emptyHint")
        self.results_hint.setWordWrap(True)
        self.results_grid = ResultsGrid()
        self.results_grid.result_selected.connect(self._on_result_selected)
        side = QWidget()
        side.setObjectName("resultsSide")
        side.setMinimumWidth(140)
        layout = QVBoxLayout(side)
        layout.setContentsMargins(10, 12, 12, 12)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(self.results_hint)
        layout.addWidget(self.results_grid, 1)
        return side

    # -- state -------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether images are being made."""
        return self._op is not None

    @property
    def init_image_path(self) -> str | None:
        """The image-to-image input's file, or None for text to image."""
        return self._init_path

    def _set_busy(self, op: JobOp | None) -> None:
        self._op = op
        busy = op is not None
        self.generate_button.setText("Cancel" if busy else "Generate")
        self.generate_button.setToolTip("Esc" if busy else "Ctrl+Enter")
        self.generate_button.setProperty("stop", busy)
        self.generate_button.style().unpolish(self.generate_button)
        self.generate_button.style().polish(self.generate_button)
        self.model_combo.setEnabled(not busy)
        self.choose_model_button.setEnabled(not busy)
        self.generate_button.setEnabled(busy or self.has_model())
        self.details.set_actions_enabled(self.details.result is not None, rerun=not busy)
        self.busy_changed.emit(busy)

    def _show_message(self, text: str, *, error: bool = True) -> None:
        self.message.setText(text)
        self.message.setProperty("error", error)
        self.message.style().unpolish(self.message)
        self.message.style().polish(self.message)
        self.message.show()

    def _clear_messages(self) -> None:
        self.message.hide()
        self.message.clear()
        if self._safety_notice is not None:
            self._notice_holder.removeWidget(self._safety_notice)
            self._safety_notice.deleteLater()
            self._safety_notice = None

    def _show_safety_notice(self, reason: str, category: str = "") -> SafetyNotice:
        if self._safety_notice is not None:
            self._notice_holder.removeWidget(self._safety_notice)
            self._safety_notice.deleteLater()
        notice = SafetyNotice(reason, category)
        notice.settings_requested.connect(self.safety_settings_requested)
        self._notice_holder.addWidget(notice)
        self._safety_notice = notice
        return notice

    def show_notice(self, text: str, *, error: bool = False, decision: Any = None) -> None:
        """The shared default for a job that ended without images: the safety notice, or the message line."""
        if decision is not None:
            self._show_safety_notice(text, str(getattr(decision, "category", "") or ""))
        else:
            self._show_message(text)

    def safety_notice(self) -> SafetyNotice | None:
        """The safety notice shown under the image, or None."""
        return self._safety_notice

    def message_text(self) -> str:
        """The inline message shown under the image ("" when none)."""
        return self.message.text() if self.message.isVisibleTo(self) else ""

    # -- the model -----------------------------------------------------------------------------
    def recent_models(self) -> list[str]:
        """The model folders picked before, newest first (kept in the Studio's settings)."""
        saved = self.settings_store.get(RECENT_MODELS_KEY, [])
        return [str(f) for f in saved if isinstance(f, str) and f] if isinstance(saved, list) else []

    def set_models(self, models: Sequence[tuple[str, str]]) -> None:
        """Offer these (name, folder) models first (from the model manager); recent folders follow."""
        self._managed_models = [(str(name), str(folder)) for name, folder in models]
        self._refill_models(self.model_folder())

    def _refill_models(self, keep: str | None = None) -> None:
        self.model_combo.blockSignals(True)
        try:
            self.model_combo.clear()
            seen: set[str] = set()
            for name, folder in self._managed_models:
                if folder not in seen:
                    seen.add(folder)
                    self.model_combo.addItem(name, folder)
                    self.model_combo.setItemData(self.model_combo.count() - 1, folder, Qt.ItemDataRole.ToolTipRole)
            for folder in self.recent_models():
                if folder not in seen:
                    seen.add(folder)
                    self.model_combo.addItem(model_display_name(folder), folder)
                    self.model_combo.setItemData(self.model_combo.count() - 1, folder, Qt.ItemDataRole.ToolTipRole)
            index = self.model_combo.findData(keep) if keep else -1
            self.model_combo.setCurrentIndex(index if index >= 0 else (0 if self.model_combo.count() else -1))
        finally:
            self.model_combo.blockSignals(False)
        self.model_combo.setToolTip(self.model_folder() or "")
        self._show_model_state()

    def has_model(self) -> bool:
        """Whether a model is offered (picked, or one to pick): without one the panel shows what to do."""
        return self.model_combo.count() > 0

    def _show_model_state(self) -> None:
        """No model: the card instead of the image, the prompt and Generate off. A model: the form as usual."""
        has = self.has_model()
        self.view_stack.setCurrentWidget(self.view if has else self.model_needed)
        self.prompt.setEnabled(has)
        self.prompt.setPlaceholderText(
            "Describe the image — Ctrl+Enter generates, Esc cancels" if has else "Download or choose a model first"
        )
        if not self.busy:
            self.generate_button.setEnabled(has)

    def model_folder(self) -> str | None:
        """The model folder picked, or None."""
        folder = self.model_combo.currentData()
        return str(folder) if folder else None

    def add_model_folder(self, folder: str) -> bool:
        """Use the model in ``folder`` (remembered among the recent ones); returns whether it looks usable.

        A folder that is not a diffusers ONNX model is explained under the model chooser and not added.
        """
        folder = str(Path(folder).expanduser())
        problem = model_folder_problem(folder)
        if problem:
            self._show_model_message(problem)
            return False
        self._remember_model(folder)
        self._refill_models(folder)
        self._on_model_changed(self.model_combo.currentIndex())
        return True

    def select_model(self, folder: str) -> bool:
        """Pick the model in ``folder`` (adding it when it is not offered yet); returns whether it can be used."""
        index = self.model_combo.findData(folder)
        if index < 0:
            return self.add_model_folder(folder)
        self.model_combo.setCurrentIndex(index)
        problem = model_folder_problem(folder)
        if problem:
            self._show_model_message(problem)
        return not problem

    def choose_model_folder(self) -> None:
        """Ask for a model folder and use it."""
        start = self.model_folder() or ""
        folder = QFileDialog.getExistingDirectory(self, "Choose a diffusion model folder", start)
        if folder:
            self.add_model_folder(folder)

    def _remember_model(self, folder: str) -> None:
        recent = [folder] + [f for f in self.recent_models() if f != folder]
        try:
            self.settings_store.set(RECENT_MODELS_KEY, recent[:_RECENT_MODELS_KEPT])
        except EmberError as exc:  # a full disk: the model is still used, just not remembered
            self._show_model_message(f"The model is used, but Ember could not remember it: {exc}")

    def _show_model_message(self, text: str) -> None:
        self.model_message.setText(text)
        self.model_message.setVisible(bool(text))

    def _on_model_changed(self, _index: int) -> None:
        folder = self.model_folder()
        self.model_combo.setToolTip(folder or "")
        problem = model_folder_problem(folder) if folder else ""
        self._show_model_message(problem)
        size = native_size(folder) if folder and not problem else None
        if size:
            # A model makes its best images at the size it was trained for.
            self.set_size(size, size)

    # -- the form ------------------------------------------------------------------------------
    def roll_seed(self) -> int:
        """Put a new random seed in the seed box and return it."""
        old = self.seed.seed()
        seed = random.randrange(_SEED_MAX + 1)
        while seed == old:
            seed = random.randrange(_SEED_MAX + 1)
        self.seed.set_seed(seed)
        return seed

    def set_size(self, width: int, height: int) -> None:
        """Set the width and height boxes (the preset follows)."""
        self.width_box.setValue(width)
        self.height_box.setValue(height)
        self._sync_preset()

    def swap_size(self) -> None:
        """Swap width and height."""
        self.set_size(self.height_box.value(), self.width_box.value())

    def image_size(self) -> tuple[int, int]:
        """The (width, height) of the images, as in the form."""
        return self.width_box.value(), self.height_box.value()

    def _on_preset_picked(self, index: int) -> None:
        data = self.size_preset.itemData(index)
        if data:
            width, height = (int(v) for v in str(data).split("x"))
            self.width_box.blockSignals(True)
            self.height_box.blockSignals(True)
            self.width_box.setValue(width)
            self.height_box.setValue(height)
            self.width_box.blockSignals(False)
            self.height_box.blockSignals(False)

    def _sync_preset(self) -> None:
        index = self.size_preset.findData(f"{self.width_box.value()}x{self.height_box.value()}")
        if index < 0:
            index = self.size_preset.findText(CUSTOM_SIZE)
        self.size_preset.blockSignals(True)
        self.size_preset.setCurrentIndex(index)
        self.size_preset.blockSignals(False)

    def set_scheduler(self, name: str) -> None:
        """Pick a scheduler by the engine's name ("" or an unknown name: the model's own)."""
        index = self.scheduler.findData(name if name in SCHEDULERS else "")
        self.scheduler.setCurrentIndex(max(index, 0))

    # -- image to image ------------------------------------------------------------------------
    def choose_init_image(self) -> None:
        """Ask for an image file to start from."""
        start = str(Path(self._init_path).parent) if self._init_path else ""
        path, _ = QFileDialog.getOpenFileName(self, "Choose an image to start from", start, _IMAGE_FILTER)
        if path:
            self.set_init_image(path)

    def set_init_image(self, path: str) -> bool:
        """Start the next images from the image in ``path``; returns whether it could be read.

        A file that is not a readable image is explained under the drop area, and the
        image chosen before (if any) stays.
        """
        suffix = Path(path).suffix.lower()
        image, problem = read_image(path)
        if image is None:
            if suffix and suffix not in IMAGE_SUFFIXES and Path(path).is_file():
                problem = f"“{Path(path).name}” is not an image file. Drop a PNG, JPEG, WebP or BMP file."
            kept = " The image chosen before is still used." if self._init_path else ""
            self.init_message.setText(problem + kept)
            self.init_message.show()
            return False
        self._init_path = str(path)
        self.init_message.hide()
        self.init_drop.show_image(image, Path(path).name)
        self._update_init_widgets()
        return True

    def clear_init_image(self) -> None:
        """Go back to text to image."""
        self._init_path = None
        self.init_message.hide()
        self.init_drop.show_image(None, "")
        self._update_init_widgets()

    def _update_init_widgets(self) -> None:
        for widget in self._strength_widgets:
            widget.setEnabled(self._init_path is not None)

    # -- generating ----------------------------------------------------------------------------
    def build_request(self) -> ImageRequest | None:
        """Return the request the form describes, or None after saying inline what is wrong."""
        folder = self.model_folder()
        if not folder:
            self._show_model_message(
                "Choose a diffusion model first: click “Choose folder…” and pick the folder "
                "that holds unet/ and model_index.json."
            )
            return None
        problem = model_folder_problem(folder)
        if problem:
            self._show_model_message(problem)
            return None
        width, height = self.image_size()
        try:
            return ImageRequest(
                model=DiffusionOptions(folder),
                prompt=self.prompt.toPlainText().strip(),
                negative_prompt=self.negative_prompt.toPlainText().strip(),
                seed=self.seed.seed(),
                steps=self.steps.value() or None,
                guidance_scale=None if self.guidance.value() < 0 else float(self.guidance.value()),
                width=width,
                height=height,
                batch_size=self.batch.value(),
                scheduler=str(self.scheduler.currentData() or ""),
                init_image=self._init_path,
                strength=float(self.strength.value()),
            )
        except ValueError as exc:
            self._show_message(f"{exc} Change it and generate again.")
            return None

    def _generate_or_cancel(self) -> None:
        if self.busy:
            self.cancel()
        else:
            self.generate()

    def generate(self) -> bool:
        """Make images with the settings in the form; returns whether a job started.

        Invalid settings or a missing model are said inline and start nothing.
        """
        if self.busy:
            return False
        self._clear_messages()
        request = self.build_request()
        if request is None:
            return False
        try:
            op = (
                self.bridge.op(request, parent=self)
                .on_started(self._on_started)
                .on_progress(self._on_progress)
                .on_preview(self._on_preview)
                .on_notice(self._on_notice)
                .success(self._on_result)
                .on_blocked(self._on_blocked)
                .failure(self._on_failed)
                .on_cancelled(self._on_cancelled)
                .on_finished(self._on_finished)
                .run()
            )
        except (EmberError, RuntimeError) as exc:
            self._show_message(f"The images could not start: {exc}")
            return False
        self._request = request
        self._started_s = time.monotonic()
        self._last_step = (0, 0)
        self._pending_preview = None
        self._remember_model(request.model.folder)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.status.setText("Waiting for the engine…")
        self.view.set_caption("Waiting for the engine…")
        self._set_busy(op)
        return True

    def cancel(self) -> None:
        """Stop the images being made (nothing of them is saved)."""
        if self._op is not None:
            self._op.cancel()
            self.status.setText("Cancelling…")

    def use_settings(self, result: ResultItem) -> bool:
        """Put ``result``'s settings in the form (its own seed too), without generating.

        Returns False when something could not be restored (its image-to-image input is
        gone or unreadable, its model folder no longer usable); the form says what.
        """
        complete = True
        self.prompt.setPlainText(result.prompt)
        self.negative_prompt.setPlainText(result.negative_prompt)
        if result.negative_prompt and not self.negative_section.isExpanded():
            self.negative_section.expand()
        if result.model_folder and result.model_folder != self.model_folder():
            complete = self.select_model(result.model_folder)
        self.seed.set_seed(result.seed)
        self.steps.setValue(result.steps or 0)
        self.guidance.setValue(result.guidance if result.guidance is not None else -0.5)
        if result.width and result.height:  # after the model: its own size must not win over the image's
            self.set_size(result.width, result.height)
        # The scheduler as it was picked: "Model default" stays the model's own, whatever it resolved to.
        self.set_scheduler(result.scheduler)
        if result.init_image:
            if not self.set_init_image(result.init_image):
                complete = False
                self.init_message.setText(
                    f"This image started from {Path(result.init_image).name}, which cannot be read any more; "
                    "choose it again for the same result."
                )
        elif self._init_path is not None:
            self.clear_init_image()
        if result.strength is not None:
            self.strength.setValue(result.strength)
        return complete

    def rerun(self, result: ResultItem) -> bool:
        """Generate ``result`` again: its settings, its own seed, one image; returns whether it started.

        Nothing starts when its settings could not all be restored (see :meth:`use_settings`).
        """
        if self.busy:
            return False
        if not self.use_settings(result):
            return False
        self.batch.setValue(1)
        return self.generate()

    def open_folder(self, result: ResultItem) -> bool:
        """Show the folder that holds ``result``'s file in the file manager; returns whether it was asked to."""
        folder = Path(result.path).parent
        if not folder.is_dir():
            self._show_message(f"The folder {folder} does not exist any more.")
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def copy_path(self, result: ResultItem) -> None:
        """Put ``result``'s file path on the clipboard."""
        QGuiApplication.clipboard().setText(result.path)
        self.status.setText("Path copied.")

    # -- job events (all on the GUI thread, through the bridge) ---------------------------------
    def _on_started(self, _data: Any) -> None:
        self.status.setText("Starting…")
        self.view.set_caption("Starting…")

    def _on_progress(self, data: Any) -> None:
        if isinstance(data, Loading):
            self.status.setText("Loading the model…")
            self.view.set_caption("Loading the model…")
            self.progress.setRange(0, 0)
        elif isinstance(data, Checking):
            self.status.setText("Checking the prompt…")
        elif isinstance(data, Running):
            self.status.setText("Generating…")
            self.view.set_caption("Generating…")
        elif isinstance(data, Step) and data.total:
            done, total = data.done, data.total
            self._last_step = (done, total)
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            text = f"Step {done}/{total}"
            if done >= total:
                text += " · checking and saving…"
            elif eta := eta_text(data.eta_s):
                text += f" · {eta}"
            self.status.setText(text)

    def _on_preview(self, data: Any) -> None:
        if isinstance(data, Preview):
            self._pending_preview = data
            self._render_preview_throttled()

    def _render_preview(self) -> None:
        data, self._pending_preview = self._pending_preview, None
        if data is None or self._op is None:
            return
        try:
            image = qimage_from_array(data.image)
        except ValueError:
            return
        index = data.index
        self.view.set_image(image)
        batch = self._request.batch_size if self._request is not None else 1
        done, total = self._last_step
        caption = "Preview"
        if batch > 1:
            caption += f" · image {index + 1} of {batch}"
        if total:
            caption += f" · step {done}/{total}"
        self.view.set_caption(caption)
        self.previews_shown += 1
        self.preview_shown.emit(index)

    def _on_notice(self, text: Any) -> None:
        self._show_message(str(text), error=False)

    def _on_result(self, batch: ImageBatchResult) -> None:
        self._render_preview_throttled.cancel()
        request = self._request
        assert request is not None
        items = [
            ResultItem.from_delivered(delivered, path, request)
            for delivered, path in zip(batch.delivered, batch.paths, strict=False)
        ]
        for item in reversed(items):  # the first image of the batch ends up first in the grid
            self.results_grid.add(item)
        self.results_hint.setVisible(self.results_grid.count() == 0)
        if items:
            self.results_grid.select(items[0].output_id)
            self._show_result_image(items[0])
        else:
            self.view.set_image(None)
        self.view.set_caption("")
        elapsed = time.monotonic() - self._started_s
        made = f"{len(items)} image{'s' if len(items) != 1 else ''}"
        self.status.setText(f"Done: {made} in {elapsed:.1f} s")
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.progress.setValue(self.progress.maximum())
        if batch.withheld:
            count, total = len(batch.withheld), len(batch.withheld) + len(items)
            reasons = " ".join(dict.fromkeys(r.strip() for r in batch.withheld if r.strip()))
            lead = f"{count} of {total} images {'was' if count == 1 else 'were'} kept back by the safety filter."
            self._show_safety_notice(f"{lead} {reasons}".strip())

    def _on_blocked(self, decision: Any) -> None:
        # The prompt stays in the box as typed, so it can be rephrased.
        self._end_run("Stopped by the safety filter.")
        self.view.set_caption("")
        self._show_safety_notice(blocked_reason(decision), str(getattr(decision, "category", "") or ""))

    def _on_failed(self, message: Any) -> None:
        self._end_run("Failed.")
        self._show_message(str(message))

    def _on_cancelled(self, _data: Any) -> None:
        self._end_run("Cancelled. Nothing was saved.")

    def _end_run(self, status: str) -> None:
        self._render_preview_throttled.cancel()
        self.status.setText(status)
        self.progress.hide()
        self.view.set_caption("")
        current = self.results_grid.current_result()
        self._show_result_image(current)

    def _on_finished(self, event: JobEvent) -> None:
        self._render_preview_throttled.cancel()
        self._pending_preview = None
        self._set_busy(None)
        self.generation_finished.emit(event)

    # -- results -------------------------------------------------------------------------------
    def results(self) -> list[ResultItem]:
        """Every result of this session, newest first."""
        return self.results_grid.results()

    def _on_result_selected(self, result: ResultItem | None) -> None:
        self.details.show_result(result)
        self.details.setVisible(result is not None)
        self.details.set_actions_enabled(result is not None, rerun=not self.busy)
        if not self.busy:
            self._show_result_image(result)

    def _show_result_image(self, result: ResultItem | None) -> None:
        if result is None:
            self.view.set_image(None)
            return
        image = QImage(result.path)
        self.view.set_image(image if not image.isNull() else result.thumbnail)

    def shutdown(self) -> None:
        """Stop the images being made (the window is closing)."""
        self.cancel()
