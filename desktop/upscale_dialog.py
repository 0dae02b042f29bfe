"""Upscaling in the Images panel: the "Upscale…" action on a result, and an image file dropped on the panel.

:class:`UpscaleDialog` asks for the scale and the model; :class:`PanelUpscaler` submits the
UpscaleRequest through the bridge, shows tile progress in the panel's status line, and adds
the upscaled image to the results grid like a generated one. Cancel (the panel's Cancel
button or Esc) stops it before the next tile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QImageReader
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import blocked_reason
from desktop.image_results import THUMBNAIL_PX, ResultItem
from desktop.image_view import qimage_from_array
from engines.errors import EmberError
from engines.progress import Loading, Step
from engines.upscale.models import DEFAULT_FOR_SCALE, UPSCALERS
from engines.upscale.requests import UpscaleOptions, UpscaleRequest, UpscaleResult

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


class UpscaleDialog(QDialog):
    """Choose how much larger (x2, x3, x4) and with which Real-ESRGAN model; ``choice()`` reads it back."""

    def __init__(self, source_name: str, size: tuple[int, int] | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("upscaleDialog")
        self.setWindowTitle("Upscale")
        self._size = size
        self.scale_combo = QComboBox()
        self.scale_combo.setObjectName("upscaleScale")
        for scale in (2, 3, 4):
            self.scale_combo.addItem(f"{scale}× larger", scale)
        self.scale_combo.setCurrentIndex(2)
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("upscaleModel")
        self.model_combo.addItem("Automatic (AnimeVideo v3, fast)", "")
        for model in UPSCALERS:
            if model.installed:
                self.model_combo.addItem(model.name, model.id)
                self.model_combo.setItemData(self.model_combo.count() - 1, model.purpose, Qt.ItemDataRole.ToolTipRole)
        self.result_size = QLabel()
        self.result_size.setObjectName("upscaleResultSize")
        self.scale_combo.currentIndexChanged.connect(self._show_size)
        form = QFormLayout()
        form.addRow("Image", QLabel(source_name))
        form.addRow("Scale", self.scale_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Result", self.result_size)
        note = QLabel("The result is checked by the safety filter and gets its own watermark and record.")
        note.setObjectName("emptyHint")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.upscale_button = buttons.addButton("Upscale", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self._show_size()

    def _show_size(self) -> None:
        scale = int(self.scale_combo.currentData())
        if self._size is None:
            self.result_size.setText(f"{scale}× the width and height")
        else:
            width, height = self._size
            self.result_size.setText(f"{width}×{height} → {width * scale}×{height * scale} pixels")

    def choice(self) -> tuple[int, str]:
        """The scale and the model id ("" for the fast model of that scale)."""
        return int(self.scale_combo.currentData()), str(self.model_combo.currentData() or "")


@dataclass(frozen=True, eq=False)
class UpscaledResult(ResultItem):
    """An upscaled image in the results grid: its card says what it was made from, not a prompt and seed."""

    remakeable: ClassVar[bool] = False  # no prompt or seed to put back in the form

    def rows(self) -> list[tuple[str, str]]:
        p = self.parameters
        source = f"{p.get('source', 'an image')} · {p.get('source_width')} × {p.get('source_height')}"
        link = p.get("source_output_id") or f"not Ember's; SHA-256 {str(p.get('source_sha256', ''))[:16]}…"
        rows = [
            ("Upscaled from", source),
            ("Source record", str(link)),
            ("Size", f"{self.width} × {self.height}" if self.width and self.height else "—"),
            ("Model", self.model_name),
            ("Tiles", f"{p.get('tiles')} of {p.get('tile_size')} px, {p.get('overlap')} px overlap"),
            ("Output id", self.output_id),
            ("Saved to", self.path),
        ]
        if self.blurred or self.notes:
            rows.append(("Safety", " ".join(self.notes) or "Blurred by the safety filter."))
        return rows

    def tooltip(self) -> str:
        p = self.parameters
        return f"Upscaled {p.get('scale')}× from {p.get('source', 'an image')}\n{self.width} × {self.height}"


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) of an image file from its header, or None when Qt cannot read it."""
    reader = QImageReader(path)
    size = reader.size()
    return (size.width(), size.height()) if size.isValid() else None


class PanelUpscaler(QObject):
    """The Images panel's upscaling: its button, the drop target, the job and its result in the grid."""

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.panel = panel
        self._request: UpscaleRequest | None = None
        self._started_s = 0.0
        self.button = QPushButton("Upscale…")
        self.button.setObjectName("upscaleButton")
        self.button.setToolTip("Make the selected image 2, 3 or 4 times larger (or drop an image file on the panel)")
        self.button.clicked.connect(self.upscale_selected)
        self.button.setEnabled(False)
        panel.results_grid.result_selected.connect(lambda result: self._sync())
        panel.busy_changed.connect(lambda busy: self._sync())
        panel.setAcceptDrops(True)
        panel.installEventFilter(self)

    def _sync(self) -> None:
        current = self.panel.results_grid.current_result()
        self.button.setEnabled(current is not None and not self.panel.busy)

    # -- asking --------------------------------------------------------------------------------
    def upscale_selected(self) -> bool:
        """Ask how to upscale the selected result, then start; returns whether a job started."""
        result = self.panel.results_grid.current_result()
        return result is not None and self.ask(result.path, result.output_id)

    def ask(self, path: str, source_output_id: str = "") -> bool:
        """Show the dialog for ``path`` and start the upscale it asks for; returns whether a job started."""
        if self.panel.busy:
            return False
        dialog = UpscaleDialog(Path(path).name, image_size(path), self.panel)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return False
        scale, model = dialog.choice()
        return self.start(path, scale, model, source_output_id)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.panel and event.type() in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            drag: QDragEnterEvent = event  # type: ignore[assignment]
            if self._dropped_image(drag) and not self.panel.busy:
                drag.acceptProposedAction()
                return True
        elif watched is self.panel and event.type() == QEvent.Type.Drop:
            drop: QDropEvent = event  # type: ignore[assignment]
            path = self._dropped_image(drop)
            if path:
                drop.acceptProposedAction()
                self.ask(path)
                return True
        return super().eventFilter(watched, event)

    @staticmethod
    def _dropped_image(event: QDropEvent | QDragEnterEvent) -> str | None:
        data = event.mimeData()
        for url in data.urls() if data is not None and data.hasUrls() else []:
            if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in IMAGE_SUFFIXES:
                return url.toLocalFile()
        return None

    # -- the job -------------------------------------------------------------------------------
    def start(self, path: str, scale: int, model: str = "", source_output_id: str = "") -> bool:
        """Upscale the image at ``path``; returns whether a job started (problems are said in the panel)."""
        panel = self.panel
        if panel.busy:
            return False
        panel._clear_messages()
        try:
            request = UpscaleRequest(
                UpscaleOptions(model or DEFAULT_FOR_SCALE[scale]),
                path,
                scale=scale,
                source_output_id=source_output_id,
                source_name=Path(path).name,
            )
            op = (
                panel.bridge.op(request, parent=panel)
                .on_progress(self._on_progress)
                .on_notice(lambda text: panel._show_message(str(text), error=False))
                .success(self._on_result)
                .on_blocked(self._on_blocked)
                .failure(self._on_failed)
                .on_cancelled(lambda data: self._end("Upscale cancelled. Nothing was saved."))
                .on_finished(self._on_finished)
                .run()
            )
        except (EmberError, ValueError, RuntimeError) as exc:
            panel._show_message(f"The upscale could not start: {exc}")
            return False
        self._request = request
        self._started_s = time.monotonic()
        panel.progress.setRange(0, 0)
        panel.progress.show()
        panel.status.setText(f"Upscaling {Path(path).name} {scale}×…")
        panel.view.set_caption("Upscaling…")
        panel._set_busy(op)
        return True

    def _on_progress(self, data: Any) -> None:
        panel = self.panel
        if isinstance(data, Loading):
            panel.status.setText("Loading the upscaler…")
        elif isinstance(data, Step) and data.total:
            panel.progress.setRange(0, data.total)
            panel.progress.setValue(data.done)
            text = f"Tile {data.done}/{data.total}"
            if data.done >= data.total:
                text += " · checking and saving…"
            panel.status.setText(text)

    def _on_result(self, result: UpscaleResult) -> None:
        panel = self.panel
        request = self._request
        assert request is not None
        items = [
            self._item(delivered, path, request)
            for delivered, path in zip(result.delivered, result.paths, strict=False)
        ]
        for item in items:
            panel.results_grid.add(item)
        panel.results_hint.setVisible(panel.results_grid.count() == 0)
        if items:
            panel.results_grid.select(items[0].output_id)
            panel._show_result_image(items[0])
            height, width = items[0].parameters.get("source_height"), items[0].parameters.get("source_width")
            made = (
                f"{width}×{height} → {width * request.scale}×{height * request.scale}" if width and height else "Done"
            )
            panel.status.setText(f"Upscaled {made} in {time.monotonic() - self._started_s:.1f} s")
        panel.view.set_caption("")
        panel.progress.setRange(0, 1)
        panel.progress.setValue(1)
        if result.withheld:
            panel._show_safety_notice(" ".join(result.withheld))

    @staticmethod
    def _item(delivered: Any, path: str, request: UpscaleRequest) -> UpscaledResult:
        output, record = delivered.output, delivered.record
        thumbnail = qimage_from_array(output.pixels).scaled(
            THUMBNAIL_PX * 2,
            THUMBNAIL_PX * 2,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        return UpscaledResult(
            output_id=record.output_id,
            path=str(path),
            parameters=dict(output.parameters),
            model_folder="",
            model_name=record.provenance.model_name,
            blurred=bool(output.blurred),
            notes=tuple(output.notes),
            thumbnail=thumbnail if not thumbnail.isNull() else QImage(path),
        )

    def _on_blocked(self, decision: Any) -> None:
        self._end("The upscaled image was stopped by the safety filter.")
        self.panel._show_safety_notice(blocked_reason(decision), str(getattr(decision, "category", "") or ""))

    def _on_failed(self, message: Any) -> None:
        self._end("The upscale failed.")
        self.panel._show_message(str(message))

    def _end(self, status: str) -> None:
        panel = self.panel
        panel.status.setText(status)
        panel.progress.hide()
        panel.view.set_caption("")
        panel._show_result_image(panel.results_grid.current_result())

    def _on_finished(self, event: Any) -> None:
        self.panel._set_busy(None)
        self._request = None
