"""The results of the Images panel: one item per saved image, the grid of thumbnails and the details card.

A result keeps what is needed to show it again and to re-run it: the saved file, the
parameters the engine reported for that very image (defaults resolved, its own seed),
and what the request asked for that the parameters may not say (the model folder, the
scheduler as picked, the image-to-image input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.image_view import qimage_from_array, thumbnail_icon
from desktop.widgets import ElidingLabel
from engines.diffusion.requests import ImageRequest
from engines.diffusion.schedulers import sampler_label, sampler_name
from engines.reproducibility import reproducibility

THUMBNAIL_PX = 96


def _first(parameters: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = parameters.get(name)
        if value not in (None, ""):
            return value
    return None


@dataclass(frozen=True, eq=False)
class ResultItem:
    """One saved image of the Images panel and what made it."""

    remakeable: ClassVar[bool] = True  # its settings fit the panel's form (Use settings, Re-run)

    output_id: str
    path: str
    parameters: dict[str, Any]
    model_folder: str
    model_name: str = ""
    scheduler: str = ""  # as picked in the form ("" = the model's own), which re-running must repeat
    init_image: str | None = None
    init_strength: float | None = None  # as requested, for an engine that does not report it
    blurred: bool = False
    notes: tuple[str, ...] = ()
    thumbnail: QImage = field(default_factory=QImage, repr=False)
    reproducibility: str = ""  # what re-running promises (the same pixels here; maybe not elsewhere)

    @classmethod
    def from_delivered(cls, delivered: Any, path: str, request: ImageRequest) -> ResultItem:
        """Return the item for one delivered image (``ImageBatchResult.delivered[i]``) saved at ``path``."""
        output = delivered.output
        record = delivered.record
        pixels = getattr(output, "pixels", None)
        thumbnail = qimage_from_array(pixels) if pixels is not None else QImage(path)
        if not thumbnail.isNull():
            thumbnail = thumbnail.scaled(
                THUMBNAIL_PX * 2,
                THUMBNAIL_PX * 2,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        init = request.init_image if isinstance(request.init_image, str) else None
        return cls(
            output_id=record.output_id,
            path=str(path),
            parameters=dict(getattr(output, "parameters", {}) or {}),
            model_folder=request.model.folder,
            model_name=record.provenance.model_name or Path(request.model.folder).name,
            scheduler=request.scheduler,
            init_image=init,
            init_strength=request.strength if request.init_image is not None else None,
            blurred=bool(getattr(output, "blurred", False)),
            notes=tuple(getattr(output, "notes", ()) or ()),
            thumbnail=thumbnail,
            reproducibility=reproducibility(record.provenance.settings),
        )

    # -- the settings, whatever spelling the engine used --------------------------------------
    @property
    def prompt(self) -> str:
        return str(self.parameters.get("prompt", "") or "")

    @property
    def negative_prompt(self) -> str:
        return str(self.parameters.get("negative_prompt", "") or "")

    @property
    def seed(self) -> int | None:
        value = _first(self.parameters, "seed")
        return int(value) if value is not None else None

    @property
    def steps(self) -> int | None:
        value = _first(self.parameters, "steps")
        return int(value) if value is not None else None

    @property
    def guidance(self) -> float | None:
        value = _first(self.parameters, "guidance", "guidance_scale", "cfg_scale")
        return float(value) if value is not None else None

    @property
    def sampler(self) -> str:
        return str(_first(self.parameters, "sampler", "scheduler") or "")

    @property
    def width(self) -> int | None:
        value = _first(self.parameters, "width")
        return int(value) if value is not None else None

    @property
    def height(self) -> int | None:
        value = _first(self.parameters, "height")
        return int(value) if value is not None else None

    @property
    def strength(self) -> float | None:
        if self.init_image is None and self.init_strength is None:
            return None
        value = _first(self.parameters, "strength")
        return float(value) if value is not None else self.init_strength

    def rows(self) -> list[tuple[str, str]]:
        """The settings as (name, value) rows, in the order the details card shows them."""
        sampler = self.sampler
        if sampler:
            sampler = sampler_label(sampler_name(sampler)) if sampler_name(sampler) else sampler
        else:
            sampler = sampler_label(self.scheduler)
        size = f"{self.width} × {self.height}" if self.width and self.height else "—"
        rows = [
            ("Prompt", self.prompt or "(empty)"),
            ("Negative", self.negative_prompt or "(none)"),
            ("Seed", str(self.seed) if self.seed is not None else "—"),
            ("Steps", str(self.steps) if self.steps is not None else "—"),
            ("Guidance", f"{self.guidance:g}" if self.guidance is not None else "—"),
            ("Sampler", sampler),
            ("Size", size),
        ]
        if self.strength is not None:
            source = Path(self.init_image).name if self.init_image else "an image"
            rows.append(("Init image", f"{source}, strength {self.strength:.2f}"))
        rows += [("Model", self.model_name), ("Output id", self.output_id), ("Saved to", self.path)]
        if self.blurred or self.notes:
            rows.append(("Safety", " ".join(self.notes) or "Blurred by the safety filter."))
        return rows

    def tooltip(self) -> str:
        """A short summary for the thumbnail's tooltip."""
        prompt = self.prompt if len(self.prompt) <= 80 else self.prompt[:79] + "…"
        return f"{prompt or '(empty prompt)'}\nSeed {self.seed} · {self.width} × {self.height}"


class ResultsGrid(QListWidget):
    """Thumbnails of the results, newest first; ``result_selected`` carries the ResultItem clicked."""

    result_selected = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsGrid")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(THUMBNAIL_PX, THUMBNAIL_PX))
        self.setGridSize(QSize(THUMBNAIL_PX + 8, THUMBNAIL_PX + 8))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setWrapping(True)
        self.setSpacing(0)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._items: dict[str, ResultItem] = {}
        self.currentItemChanged.connect(self._on_current_changed)

    def add(self, result: ResultItem) -> QListWidgetItem:
        """Put ``result`` first in the grid and return its list item."""
        item = QListWidgetItem()
        if not result.thumbnail.isNull():
            item.setIcon(thumbnail_icon(result.thumbnail, THUMBNAIL_PX))
        item.setToolTip(result.tooltip())
        item.setData(Qt.ItemDataRole.UserRole, result.output_id)
        item.setSizeHint(QSize(THUMBNAIL_PX + 8, THUMBNAIL_PX + 8))
        self._items[result.output_id] = result
        self.insertItem(0, item)
        return item

    def results(self) -> list[ResultItem]:
        """Every result, newest first (the order shown)."""
        return [self._items[self.item(row).data(Qt.ItemDataRole.UserRole)] for row in range(self.count())]

    def current_result(self) -> ResultItem | None:
        """The selected result, or None."""
        item = self.currentItem()
        return self._items.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def select(self, output_id: str) -> bool:
        """Select the result with this output id; returns whether it is in the grid."""
        for row in range(self.count()):
            if self.item(row).data(Qt.ItemDataRole.UserRole) == output_id:
                self.setCurrentRow(row)
                return True
        return False

    def _on_current_changed(self, current: QListWidgetItem | None, _previous: object = None) -> None:
        if current is not None:
            self.result_selected.emit(self._items.get(current.data(Qt.ItemDataRole.UserRole)))


class ResultDetails(QFrame):
    """The settings of the selected result, compact under the image, and what can be done with it."""

    rerun_requested = Signal(object)
    use_settings_requested = Signal(object)
    open_folder_requested = Signal(object)
    copy_path_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultDetails")
        self._result: ResultItem | None = None
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(12)
        self.grid.setVerticalSpacing(4)
        self.grid.setColumnStretch(1, 1)
        self.grid.setColumnStretch(3, 1)
        self.fields: dict[str, QLabel] = {}

        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setObjectName("rerunButton")
        self.rerun_button.setToolTip("Make this image again: the same settings and the same seed")
        self.use_settings_button = QPushButton("Use settings")
        self.use_settings_button.setObjectName("useSettingsButton")
        self.use_settings_button.setToolTip("Put this image's settings in the form, without generating")
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setObjectName("openFolderButton")
        self.open_folder_button.setToolTip("Show the saved file's folder")
        self.copy_path_button = QPushButton("Copy path")
        self.copy_path_button.setObjectName("copyPathButton")
        self.copy_path_button.setToolTip("Copy the saved file's path")
        self.rerun_button.clicked.connect(lambda: self._emit(self.rerun_requested))
        self.use_settings_button.clicked.connect(lambda: self._emit(self.use_settings_requested))
        self.open_folder_button.clicked.connect(lambda: self._emit(self.open_folder_requested))
        self.copy_path_button.clicked.connect(lambda: self._emit(self.copy_path_requested))
        buttons = QVBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.setSpacing(6)
        for button in (self.rerun_button, self.use_settings_button, self.open_folder_button, self.copy_path_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.empty = QLabel("Select a result to see its settings.")
        self.empty.setObjectName("emptyHint")
        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.empty)
        left.addLayout(self.grid)
        left.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 10, 12, 10)
        layout.setSpacing(14)
        layout.addLayout(left, 1)
        layout.addLayout(buttons)
        self.show_result(None)

    @property
    def result(self) -> ResultItem | None:
        """The result shown, or None."""
        return self._result

    def show_result(self, result: ResultItem | None) -> None:
        """Show ``result``'s settings (None: the empty hint, buttons disabled)."""
        self._result = result
        while self.grid.count():
            widget = self.grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.fields = {}
        self.empty.setVisible(result is None)
        if result is not None:
            row = column = 0
            for name, value in result.rows():
                wide = name not in _PAIRED_ROWS
                if wide and column:
                    row, column = row + 1, 0
                key = QLabel(name)
                key.setObjectName("fieldName")
                label = self._value_label(name, value)
                self.fields[name] = label
                self.grid.addWidget(key, row, column, Qt.AlignmentFlag.AlignTop)
                self.grid.addWidget(label, row, column + 1, 1, 3 if wide else 1)
                if wide or column:
                    row, column = row + 1, 0
                else:
                    column = 2
        self.set_actions_enabled(result is not None, rerun=result is not None)
        tip = "Make this image again: the same settings and the same seed"
        self.rerun_button.setToolTip(f"{tip}. {result.reproducibility}" if result and result.reproducibility else tip)

    @staticmethod
    def _value_label(name: str, value: str) -> QLabel:
        label: QLabel
        if name in _ELIDED_ROWS:
            # Paths and ids have no spaces to wrap at: elide the middle, the whole text in the tooltip.
            label = ElidingLabel(value)
            label.setElideMode(Qt.TextElideMode.ElideMiddle)
            label.setToolTip(value)
        else:
            shown = value if len(value) <= _LONG_TEXT else value[: _LONG_TEXT - 1] + "…"
            label = QLabel(shown)
            label.setWordWrap(True)
            if shown != value:
                label.setToolTip(value)
        label.setObjectName("fieldValue")
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return label

    def set_actions_enabled(self, enabled: bool, *, rerun: bool) -> None:
        """Enable the buttons (``rerun`` separately: not while another image is being made)."""
        for button in (self.open_folder_button, self.copy_path_button):
            button.setEnabled(enabled)
        remake = enabled and (self._result is None or self._result.remakeable)
        self.use_settings_button.setEnabled(remake)
        self.rerun_button.setEnabled(remake and rerun)
        why = "" if remake or not enabled else "An upscaled image is made again with Upscale…, not from the form."
        for button in (self.use_settings_button, self.rerun_button):
            button.setToolTip(why)

    def text(self) -> str:
        """Everything the card shows, one "Name: value" a line (for tests and copying)."""
        return "\n".join(f"{name}: {label.text()}" for name, label in self.fields.items())

    def _emit(self, signal: Signal) -> None:
        if self._result is not None:
            signal.emit(self._result)  # type: ignore[attr-defined]


# Short settings shown two to a line; the rest take a whole line.
_PAIRED_ROWS = frozenset({"Seed", "Steps", "Guidance", "Sampler", "Size", "Model"})
_ELIDED_ROWS = frozenset({"Output id", "Saved to"})
_LONG_TEXT = 300
