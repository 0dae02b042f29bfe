"""The Library panel: every output Ember kept, as a thumbnail grid that stays fast with tens of thousands.

Search (full text over prompts, models and replies, as you type), filters by kind, model and date,
the trash. The grid asks the library for 200 items at a time as it scrolls, and for the
thumbnails of the rows on screen only; thumbnails are made once and cached on disk by the library,
and kept in memory here for the rows seen. The details pane shows what made the item (prompt,
model and hash, seed, backend, settings, timings, the safety decision, the watermark id) and its
actions: Re-run, Use as image-to-image input, Upscale…, Open folder, Delete (to the trash) or
Restore, Export…, Import…. Every library call runs off the GUI thread (``bridge.background``).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge

PAGE = 200
THUMB_PX = 160
KINDS = (("All kinds", ""), ("Images", "image"), ("Upscales", "upscale"), ("Speech", "speech"),
         ("Music", "music"), ("Transcripts", "transcript"), ("Chat replies", "text"))  # fmt: skip
DATES = (("Any time", 0), ("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30), ("Last year", 365))
_KIND_GLYPH = {"text": "¶", "speech": "♪", "music": "♫", "transcript": "✎"}


class GalleryModel(QAbstractListModel):
    """The items of one search, fetched a page at a time; thumbnails asked for as rows are painted."""

    thumbnails_wanted = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.items: list[Any] = []
        self.total = 0
        self.fetch_page: Any = None  # set by the panel: fetch_page(offset) asks for the next page
        self._fetching = False
        self._icons: OrderedDict[str, QIcon] = OrderedDict()  # output id -> icon, the most recent 2,000
        self._wanted: list[str] = []
        self._asked: set[str] = set()

    # -- the list ------------------------------------------------------------------------------
    def reset(self, items: list[Any], total: int) -> None:
        self.beginResetModel()
        self.items, self.total, self._fetching = list(items), total, False
        self._wanted.clear()
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.items)

    def canFetchMore(self, parent: QModelIndex = QModelIndex()) -> bool:
        return not parent.isValid() and len(self.items) < self.total and not self._fetching

    def fetchMore(self, parent: QModelIndex = QModelIndex()) -> None:
        if self.fetch_page is not None and self.canFetchMore(parent):
            self._fetching = True
            self.fetch_page(len(self.items))

    def append(self, offset: int, items: list[Any]) -> None:
        """A page arrived (for the search still shown: ``offset`` is where it starts)."""
        self._fetching = False
        if offset != len(self.items) or not items:
            return
        self.beginInsertRows(QModelIndex(), len(self.items), len(self.items) + len(items) - 1)
        self.items.extend(items)
        self.endInsertRows()

    def item(self, row: int) -> Any:
        return self.items[row] if 0 <= row < len(self.items) else None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self.item(index.row())
        if item is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            words = (item.prompt or item.text or item.model_name or item.kind).replace("\n", " ")
            return words[:34] + ("…" if len(words) > 34 else "")
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{item.kind} · {item.model_name} · {item.created_utc[:16].replace('T', ' ')}\n{item.prompt[:300]}"
        if role == Qt.ItemDataRole.DecorationRole:
            icon = self._icons.get(item.output_id)
            if icon is not None:
                self._icons.move_to_end(item.output_id)
                return icon
            if item.output_id not in self._asked:
                self._asked.add(item.output_id)
                self._wanted.append(item.output_id)
                self.thumbnails_wanted.emit()
            return placeholder_icon(item.kind)
        return None

    def take_wanted(self) -> list[str]:
        wanted, self._wanted = self._wanted, []
        return wanted

    def set_thumbnails(self, images: dict[str, QImage | None]) -> None:
        """Thumbnails arrived (None: the item has none, e.g. a chat reply): the rows repaint."""
        for output_id, image in images.items():
            kind = next((i.kind for i in self.items if i.output_id == output_id), "")
            self._icons[output_id] = QIcon(QPixmap.fromImage(image)) if image is not None else placeholder_icon(kind)
            while len(self._icons) > 2_000:
                self._icons.popitem(last=False)
        rows = [r for r, i in enumerate(self.items) if i.output_id in images]
        if rows:
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)), [Qt.ItemDataRole.DecorationRole])

    def forget(self, output_id: str) -> None:
        """Drop one item (deleted or restored away from this view)."""
        row = next((r for r, i in enumerate(self.items) if i.output_id == output_id), -1)
        if row >= 0:
            self.beginRemoveRows(QModelIndex(), row, row)
            del self.items[row]
            self.total -= 1
            self.endRemoveRows()


_PLACEHOLDERS: dict[str, QIcon] = {}


def placeholder_icon(kind: str) -> QIcon:
    """A quiet tile with the kind's glyph: shown while a thumbnail loads, and for items that have none."""
    if kind not in _PLACEHOLDERS:
        pixmap = QPixmap(THUMB_PX, THUMB_PX)
        pixmap.fill(QColor("#f1ede8"))
        painter = QPainter(pixmap)
        painter.setPen(QColor("#b8a99a"))
        font = painter.font()
        font.setPointSize(40)
        painter.setFont(font)
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, _KIND_GLYPH.get(kind, "▢"))
        painter.end()
        _PLACEHOLDERS[kind] = QIcon(pixmap)
    return _PLACEHOLDERS[kind]


class GalleryPanel(QWidget):
    """The library as a grid: search, filter, look at one item, act on it."""

    item_shown = Signal(object)
    search_done = Signal(int)  # the number of items the search found

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("galleryPanel")
        self.bridge = bridge
        self.library = bridge.studio.library
        self.window_actions: Any = None  # the main window: Re-run, image-to-image and Upscale go through its panels
        self.current: Any = None
        self._search_id = 0
        self._shut = False
        self._build()
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(200)
        self._debounce.timeout.connect(self.refresh)
        self._thumb_timer = QTimer(self)
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.setInterval(30)
        self._thumb_timer.timeout.connect(self._load_thumbnails)
        self.model.thumbnails_wanted.connect(self._thumb_timer.start)
        self.model.fetch_page = self._fetch_page

    # -- building --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.search = QLineEdit()
        self.search.setObjectName("librarySearch")
        self.search.setPlaceholderText("Search prompts, models and replies…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _text: self._debounce.start())
        self.kind = QComboBox()
        self.kind.setObjectName("libraryKind")
        for text, value in KINDS:
            self.kind.addItem(text, value)
        self.model_filter = QComboBox()
        self.model_filter.setObjectName("libraryModel")
        self.model_filter.addItem("All models", "")
        self.date = QComboBox()
        self.date.setObjectName("libraryDate")
        for text, days in DATES:
            self.date.addItem(text, days)
        self.trash_button = QToolButton()
        self.trash_button.setObjectName("libraryTrash")
        self.trash_button.setText("Trash")
        self.trash_button.setCheckable(True)
        self.trash_button.setToolTip("Show the items in the trash (restore them, or empty it)")
        for combo in (self.kind, self.model_filter, self.date):
            combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.trash_button.toggled.connect(lambda _on: self.refresh())
        self.import_button = QPushButton("Import…")
        self.import_button.setObjectName("libraryImport")
        self.import_button.setToolTip("Add another Ember installation's exported collection (.zip)")
        self.import_button.clicked.connect(self._choose_import)
        self.export_all_button = QPushButton("Export…")
        self.export_all_button.setObjectName("libraryExportAll")
        self.export_all_button.setToolTip("Everything this search shows, as a .zip another Ember can import")
        self.export_all_button.clicked.connect(self._choose_export_all)
        filters = QHBoxLayout()
        filters.addWidget(self.search, 3)
        filters.addWidget(self.kind)
        filters.addWidget(self.model_filter, 1)
        filters.addWidget(self.date)
        filters.addWidget(self.trash_button)
        filters.addWidget(self.import_button)
        filters.addWidget(self.export_all_button)

        self.model = GalleryModel(self)
        self.grid = QListView()
        self.grid.setObjectName("libraryGrid")
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(100)
        self.grid.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.grid.setGridSize(QSize(THUMB_PX + 24, THUMB_PX + 40))
        self.grid.setWordWrap(True)
        self.grid.setSpacing(6)
        self.grid.setModel(self.model)
        selection = self.grid.selectionModel()
        selection.currentChanged.connect(lambda index, _old: self.show_item(self.model.item(index.row())))
        self.grid.doubleClicked.connect(lambda index: self.open_item(self.model.item(index.row())))

        # The details pane.
        self.preview = QLabel()
        self.preview.setObjectName("libraryPreview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(280, 200)
        self.preview.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.details = QPlainTextEdit()
        self.details.setObjectName("libraryDetails")
        self.details.setReadOnly(True)
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setObjectName("libraryRerun")
        self.rerun_button.setToolTip("The same settings and seed: the same output on this machine and backend")
        self.rerun_button.clicked.connect(lambda: self.rerun(self.current))
        self.init_button = QPushButton("Use as image-to-image input")
        self.init_button.setObjectName("libraryInit")
        self.init_button.clicked.connect(lambda: self.use_as_init(self.current))
        self.upscale_button = QPushButton("Upscale…")
        self.upscale_button.setObjectName("libraryUpscale")
        self.upscale_button.clicked.connect(lambda: self.upscale(self.current))
        self.folder_button = QPushButton("Open folder")
        self.folder_button.setObjectName("libraryFolder")
        self.folder_button.clicked.connect(lambda: self.open_folder(self.current))
        self.delete_button = QPushButton("Delete")
        self.delete_button.setObjectName("libraryDelete")
        self.delete_button.setToolTip("Move to the trash (restore it from there)")
        self.delete_button.clicked.connect(lambda: self.delete_or_restore(self.current))
        self.export_button = QPushButton("Export…")
        self.export_button.setObjectName("libraryExport")
        self.export_button.clicked.connect(self._choose_export_one)
        actions_top = QHBoxLayout()
        for button in (self.rerun_button, self.init_button, self.upscale_button):
            actions_top.addWidget(button)
        actions_bottom = QHBoxLayout()
        for button in (self.folder_button, self.export_button, self.delete_button):
            actions_bottom.addWidget(button)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(8, 0, 0, 0)
        side_layout.addWidget(self.preview, 2)
        side_layout.addWidget(self.details, 3)
        side_layout.addLayout(actions_top)
        side_layout.addLayout(actions_bottom)
        split = QSplitter()
        split.addWidget(self.grid)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        self.status = QLabel()
        self.status.setObjectName("libraryStatus")
        title = QLabel("Library")
        title.setObjectName("panelTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        layout.addWidget(title)
        layout.addLayout(filters)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)
        self.show_item(None)

    # -- searching -------------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        """The search box and filters as :meth:`Library.search` keywords."""
        days = int(self.date.currentData() or 0)
        since = ""
        if days:
            start = datetime.now(UTC) - timedelta(days=days)
            since = (start if days > 1 else start.replace(hour=0, minute=0, second=0)).strftime("%Y-%m-%dT%H:%M:%S")
        kind = str(self.kind.currentData() or "")
        return {
            "text": self.search.text().strip(),
            "kinds": (kind,) if kind else (),
            "model": str(self.model_filter.currentData() or ""),
            "since": since,
            "trashed": self.trash_button.isChecked(),
        }

    def refresh(self, note: str = "") -> Any:
        """Search again with the filters; the first page replaces the grid. ``note`` leads the status line."""
        if self._shut:
            return None
        self._search_id += 1
        search_id, filters, library = self._search_id, self.filters(), self.library

        def work() -> tuple[list[Any], int, list[str]]:
            return library.search(**filters, limit=PAGE), library.count(**filters), library.models()

        def show(found: tuple[list[Any], int, list[str]]) -> None:
            if search_id != self._search_id:
                return  # a newer search is on its way
            items, total, models = found
            self.model.reset(items, total)
            self._fill_models(models)
            trash = " in the trash" if filters["trashed"] else ""
            shown = f"{total:,} item{'s' if total != 1 else ''}{trash}" if total else self._empty_text()
            self.status.setText(f"{note} {shown}" if note else shown)
            if self.current is not None and all(i.output_id != self.current.output_id for i in items):
                self.show_item(None)
            self.search_done.emit(total)

        return self.bridge.background(work, parent=self).success(show).run()

    def _empty_text(self) -> str:
        if self.search.text().strip():
            return f"Nothing matches “{self.search.text().strip()}”."
        return "Nothing here yet: what you make in the other panels is kept here."

    def _fetch_page(self, offset: int) -> None:
        search_id, filters, library = self._search_id, self.filters(), self.library

        def show(items: list[Any]) -> None:
            if search_id == self._search_id:
                self.model.append(offset, items)

        self.bridge.background(lambda: library.search(**filters, limit=PAGE, offset=offset), parent=self).success(
            show
        ).run()

    def _fill_models(self, models: list[str]) -> None:
        chosen = self.model_filter.currentData()
        known = [self.model_filter.itemData(i) for i in range(1, self.model_filter.count())]
        if known == models:
            return
        self.model_filter.blockSignals(True)
        self.model_filter.clear()
        self.model_filter.addItem("All models", "")
        for name in models:
            self.model_filter.addItem(name, name)
        self.model_filter.setCurrentIndex(max(0, self.model_filter.findData(chosen)))
        self.model_filter.blockSignals(False)

    def _load_thumbnails(self) -> None:
        wanted = self.model.take_wanted()
        if not wanted:
            return
        library = self.library

        def work() -> dict[str, QImage | None]:
            images: dict[str, QImage | None] = {}
            for output_id, path in library.thumbnails(wanted, THUMB_PX).items():  # a screenful at once
                image = QImage(str(path)) if path is not None else None
                images[output_id] = image if image is not None and not image.isNull() else None
            return images

        self.bridge.background(work, parent=self).success(self.model.set_thumbnails).run()

    # -- one item --------------------------------------------------------------------------------
    def show_item(self, item: Any) -> None:
        """Show ``item``'s preview, what made it and the actions that fit it (None: nothing chosen)."""
        self.current = item
        for button in (self.rerun_button, self.init_button, self.upscale_button, self.folder_button,
                       self.delete_button, self.export_button):  # fmt: skip
            button.setEnabled(item is not None)
        if item is None:
            self.preview.setText("Choose an item to see what made it.")
            self.details.setPlainText("")
            return
        is_image = item.kind in ("image", "upscale")
        self.init_button.setEnabled(is_image and bool(item.path))
        self.upscale_button.setEnabled(is_image and bool(item.path))
        self.rerun_button.setEnabled(item.kind in ("image", "speech", "music") and not item.trashed)
        self.folder_button.setEnabled(bool(item.path))
        self.delete_button.setText("Restore" if item.trashed else "Delete")
        self.preview.setText("")
        if is_image and item.path and Path(item.path).is_file():
            pixmap = QPixmap(item.path)
            self.preview.setPixmap(pixmap.scaled(self.preview.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.SmoothTransformation))  # fmt: skip
        else:
            self.preview.setText(item.text[:600] if item.text else Path(item.path).name if item.path else item.kind)
            self.preview.setWordWrap(True)
        self.details.setPlainText(details_text(item))
        self.item_shown.emit(item)

    def open_item(self, item: Any) -> None:
        """Open the file in the program the system uses for it."""
        if item is not None and item.path and Path(item.path).is_file():
            QDesktopServices.openUrl(QUrl.fromLocalFile(item.path))

    def open_folder(self, item: Any) -> bool:
        if item is None or not item.path:
            return False
        folder = Path(item.path).parent
        if not folder.is_dir():
            self.status.setText(f"The folder {folder} does not exist any more.")
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def rerun(self, item: Any) -> bool:
        """Make ``item`` again with its settings and seed, in the panel that made it."""
        if item is None or self.window_actions is None:
            return False
        return bool(self.window_actions.rerun_library_item(item))

    def use_as_init(self, item: Any) -> bool:
        if item is None or self.window_actions is None or not item.path:
            return False
        return bool(self.window_actions.use_as_init_image(item.path))

    def upscale(self, item: Any) -> bool:
        if item is None or self.window_actions is None or not item.path:
            return False
        return bool(self.window_actions.upscale_image(item.path, item.output_id))

    def delete_or_restore(self, item: Any) -> Any:
        """Move ``item`` to the trash, or back out of it; the grid drops it from this view."""
        if item is None:
            return None
        library, restore = self.library, item.trashed

        def done(_result: Any) -> None:
            self.model.forget(item.output_id)
            self.show_item(None)
            self.status.setText("Restored." if restore else "Moved to the trash (restore it from Trash).")

        work = (lambda: library.restore(item.output_id)) if restore else (lambda: library.trash(item.output_id))
        return self.bridge.background(work, parent=self).success(done).run()

    # -- export and import -----------------------------------------------------------------------
    def _choose_export_one(self) -> None:
        if self.current is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export", f"{self.current.output_id}.zip", "Ember export (*.zip)")
        if path:
            self.export(path, [self.current.output_id])

    def _choose_export_all(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export what the search shows", "ember-library.zip",
                                              "Ember export (*.zip)")  # fmt: skip
        if path:
            self.export(path, None)

    def export(self, path: str, output_ids: list[str] | None) -> Any:
        """Write the items (None: everything the search shows) with their files and records to ``path``."""
        library, filters = self.library, self.filters()

        def work() -> Path:
            ids = output_ids
            if ids is None:
                ids = [i.output_id for i in library.search(**filters, limit=1_000_000)]
            return library.export_zip(path, ids)

        return (
            self.bridge.background(work, parent=self)
            .success(lambda written: self.status.setText(f"Exported to {written}"))
            .run()
        )

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import an Ember export", "", "Ember export (*.zip)")
        if path:
            self.import_zip(path)

    def import_zip(self, path: str) -> Any:
        library = self.library

        def done(count: int) -> None:
            self.refresh(note=f"Imported {count:,} item{'s' if count != 1 else ''}.")

        return self.bridge.background(lambda: library.import_zip(path), parent=self).success(done).run()

    def show_notice(self, text: str, *, error: bool = False, decision: Any = None) -> None:
        self.status.setText(text)

    def shutdown(self) -> None:
        """Stop asking the library for anything (the window is closing)."""
        self._debounce.stop()
        self._thumb_timer.stop()
        self.model.thumbnails_wanted.disconnect(self._thumb_timer.start)
        self._shut = True

    def showEvent(self, event: Any) -> None:
        # What the other panels made since the panel was last shown is there when it opens.
        self.refresh()
        super().showEvent(event)


def details_text(item: Any) -> str:
    """What made ``item``, as the details pane shows it (nothing of a blocked output is kept)."""
    from engines.reproducibility import reproducibility

    lines = [f"{item.kind.capitalize()} · {item.created_utc[:19].replace('T', ' ')} UTC"]
    if item.prompt:
        lines.append(f"Prompt: {item.prompt}")
    if item.negative_prompt:
        lines.append(f"Negative prompt: {item.negative_prompt}")
    lines.append(f"Model: {item.model_name}" + (f" (sha256 {item.model_sha256[:12]}…)" if item.model_sha256 else ""))
    if item.seed is not None:
        lines.append(f"Seed: {item.seed}")
    lines.append(f"Backend: {item.backend}")
    if item.width and item.height:
        lines.append(f"Size: {item.width} × {item.height}")
    if item.duration_s:
        lines.append(f"Length: {item.duration_s:.1f} s")
    shown = {k: v for k, v in item.settings.items() if k not in ("prompt", "negative_prompt", "made_on")}
    if shown:
        lines.append("Settings: " + json.dumps(shown, default=str, sort_keys=True))
    if item.timings:
        lines.append("Timings: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(item.timings.items())
                                             if isinstance(v, int | float)))  # fmt: skip
    for decision in item.decisions:
        by = f" ({decision.checker})" if decision.checker else ""
        lines.append(f"{decision.stage.capitalize()}: {decision.action}{by}")
    lines.append(f"Watermark id: {item.output_id}")
    if item.c2pa:
        said = {"valid": "signed, valid", "invalid": "present but not valid", "none": "none"}
        lines.append(f"Content Credentials (C2PA): {said.get(item.c2pa, item.c2pa)}")
    promise = reproducibility(item.settings)
    if promise:
        lines.append(promise)
    if item.source_output_id:
        lines.append(f"Made from: {item.source_output_id}")
    if item.text and item.kind in ("text", "transcript"):
        lines.append("")
        lines.append(item.text)
    return "\n".join(lines)
