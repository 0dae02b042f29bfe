"""The Models panel: the models this machine has, Ember's catalog, and what each needs.

Two tabs, like the model pages of LM Studio and GPT4All:

- **Installed**: the embedded defaults, the models imported in place, the ones Ember downloaded,
  and those found in the Hugging Face cache, LM Studio's and GPT4All's folders (each with its
  source). Remove forgets an imported model (its file stays where it is) and, after asking,
  deletes a model's files from the Hugging Face cache.
- **Catalog**: Ember's curated list. Download queues a model (gated ones ask for a Hugging Face
  token first); its progress is in the Queue.

Every row says which panel the model serves, its size, licence (with a link), quantisation and
parameters, and whether it fits this machine (coloured; the explanation in the tooltip and the
details). The scan is the library's (``ModelLibrary.discover``): it reads metadata only and
remembers inspections, so it runs on the GUI thread at first show and on Refresh (about 0.2 s
the first time on the embedded models, under 1 ms after). Downloads go through
:class:`desktop.queue_view.DownloadQueue`; the panel starts no thread.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge
from desktop.queue_view import DownloadEntry, DownloadQueue
from desktop.widgets import Throttled
from engines.errors import EmberError, ModelFileError
from engines.hardware import GpuInfo, gpus, machine
from engines.jobs import EventKind, JobEvent
from engines.models.catalog import PANELS, CatalogEntry, CatalogError, download_request, load_catalog
from engines.models.downloads import DownloadResult, DownloadState
from engines.models.embedded import EMBEDDED_PREFIX, EMBEDDED_TEXT_MODELS
from engines.models.fit import Fit, Verdict, estimate_model, fit_of_entry, fit_of_model
from engines.models.library import InstalledModel, ModelLibrary, delete_hf_cache_files, hf_cache_files
from engines.units import human_bytes

log = logging.getLogger(__name__)

INSTALLED_COLUMNS = ("Name", "Serves", "Size", "Licence", "Quantisation", "Fit", "Source")
CATALOG_COLUMNS = ("Name", "Serves", "Size", "Licence", "Quantisation", "Fit", "Status")
KIND_NAMES = {
    "text": "Text",
    "diffusion": "Diffusion",
    "gan": "GAN",
    "upscaler": "Upscaler",
    "voice": "Voice",
    "guard": "Guard",
    "clip": "CLIP (image-prompt score)",
}
SOURCE_NAMES = {
    "embedded": "Comes with Ember",
    "imported": "Imported",
    "downloaded": "Downloaded",
    "huggingface": "Hugging Face cache",
    "lmstudio": "LM Studio",
    "gpt4all": "GPT4All",
}
VERDICT_NAMES = {
    Verdict.FITS_GPU: "Fits on the GPU",
    Verdict.PARTIAL: "Partly offloaded",
    Verdict.CPU_ONLY: "CPU only",
    Verdict.DOES_NOT_FIT: "Does not fit",
}
# Table items cannot be styled from the stylesheet; these match its palette.
VERDICT_COLOURS = {
    Verdict.FITS_GPU: "#2f7d4f",
    Verdict.PARTIAL: "#a86b12",
    Verdict.CPU_ONLY: "#3d6480",
    Verdict.DOES_NOT_FIT: "#a3361b",
}
# The panels a model can be opened in from here ("Use in Chat"); a kind's panel is its modality's.
USE_IN_PANELS = ("Chat", "Images")
_EMBEDDED_LICENCES = {m.id: m.license for m in EMBEDDED_TEXT_MODELS}
_KEY = Qt.ItemDataRole.UserRole
_FIXED_WIDTHS = {3: 175, 6: 125}  # Licence, Source/Status
_URL = Qt.ItemDataRole.UserRole + 2
LINK_COLOUR = "#2d6686"


def panel_name(kind: str) -> str:
    """Return the panel a model of ``kind`` serves, as the navigation names it ("Chat", "Safety")."""
    return PANELS.get(kind, "—").replace("Settings/", "")


def short_count(n: int | None) -> str:
    """Return a parameter count as people write it: "135M", "1.7B", or "" when unknown."""
    if not n:
        return ""
    if n >= 0.95e9:
        return f"{n / 1e9:.1f}B".replace(".0B", "B")
    if n >= 1e6:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K"


# -- widgets ----------------------------------------------------------------------------------


def _label(text: str = "", name: str = "", *, wrap: bool = False) -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(wrap)
    return label


def _link(text: str, url: str) -> str:
    if not url:
        return html.escape(text)
    return f'<a href="{html.escape(url, quote=True)}">{html.escape(text)}</a>'


def _table(name: str, columns: Sequence[str]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().hide()
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setShowGrid(False)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    header = table.horizontalHeader()
    header.setHighlightSections(False)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for column in range(1, len(columns)):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
    for column, width in _FIXED_WIDTHS.items():  # long licence names and states elide; the name gets the room
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(column, width)
    header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    table.cellClicked.connect(lambda row, column: _open_link(table, row, column))
    return table


def _open_link(table: QTableWidget, row: int, column: int) -> None:
    item = table.item(row, column)
    url = item.data(_URL) if item is not None else None
    if url:
        QDesktopServices.openUrl(QUrl(url))


def short_licence(name: str) -> str:
    """Return a licence's name without its notes: "MIT License (piper-voices); see …" -> "MIT License"."""
    return name.split(";")[0].split(" (")[0].strip() or name


class ModelsPanel(QWidget):
    """Installed and catalog models, with Download, Remove, Import and Refresh.

    ``model_chosen`` carries (kind, path) when the person picks "Use in Chat" or "Use in
    Images" (``path`` is what the engines take: a file, a folder, or ``embedded:<id>``).
    ``scanned`` is emitted after each refresh of the Installed list.
    """

    model_chosen = Signal(str, str)
    scanned = Signal()

    def __init__(
        self,
        bridge: EventBridge,
        downloads: DownloadQueue | None = None,
        parent: QWidget | None = None,
        *,
        catalog: Sequence[CatalogEntry] | None = None,
        library: ModelLibrary | None = None,
        gpu_list: Sequence[GpuInfo] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("modelsPanel")
        self.bridge = bridge
        self.studio = bridge.studio
        self.downloads = downloads if downloads is not None else DownloadQueue(bridge, self)
        self._catalog_given = list(catalog) if catalog is not None else None
        self._library_given = library
        self._library: ModelLibrary | None = library
        self._gpus: list[GpuInfo] | None = list(gpu_list) if gpu_list is not None else None
        self.catalog: list[CatalogEntry] = []
        self.installed: list[InstalledModel] = []
        self._installed_fit: dict[str, Fit | None] = {}
        self._catalog_fit: dict[str, Fit] = {}
        self._download_entries: dict[int, str] = {}  # download id -> catalog id
        self.last_scan_s = 0.0
        self._loaded = False
        self._build()
        # Progress arrives ten times a second a download; the catalog's Status column needs far less.
        self._download_changed_throttled = Throttled(self._on_download_changed, 250, parent=self)
        self.downloads.changed.connect(self._download_changed_throttled)
        self.downloads.removed.connect(self._on_download_changed)
        self.downloads.finished.connect(self._on_download_finished)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        title = _label("Models", "pageTitle")
        intro = _label(
            "The models on this computer and the ones Ember can download. Imported models stay where they are.",
            "settingsHint",
            wrap=True,
        )
        self.search = QLineEdit()
        self.search.setObjectName("modelSearch")
        self.search.setPlaceholderText("Search models")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._apply_filter)
        self.kind_filter = QComboBox()
        self.kind_filter.setObjectName("kindFilter")
        self.kind_filter.addItem("All kinds", "")
        for kind, name in KIND_NAMES.items():
            self.kind_filter.addItem(f"{name} — {panel_name(kind)}", kind)
        self.kind_filter.currentIndexChanged.connect(self._apply_filter)

        self.import_button = QPushButton("Import")
        self.import_button.setObjectName("importButton")
        self.import_button.setToolTip("Use a model file or folder where it is (nothing is copied).")
        menu = QMenu(self.import_button)
        menu.setObjectName("importMenu")
        menu.addAction("Model file…", self.import_file)
        menu.addAction("Diffusers ONNX folder…", self.import_folder)
        self.import_button.setMenu(menu)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setObjectName("refreshButton")
        self.refresh_button.setToolTip(
            "Look again in the Hugging Face cache, LM Studio's and GPT4All's folders, and at the imported models."
        )
        self.refresh_button.clicked.connect(self.refresh)

        tools = QHBoxLayout()
        tools.setSpacing(8)
        tools.addWidget(self.search, 1)
        tools.addWidget(self.kind_filter)
        tools.addStretch(0)
        tools.addWidget(self.import_button)
        tools.addWidget(self.refresh_button)

        self.message = _label("", "modelsMessage", wrap=True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()

        self.installed_table = _table("installedTable", INSTALLED_COLUMNS)
        self.catalog_table = _table("catalogTable", CATALOG_COLUMNS)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("modelTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.installed_table, "Installed")
        self.tabs.addTab(self.catalog_table, "Catalog")
        self.tabs.currentChanged.connect(lambda _i: self._show_selected())
        for table in (self.installed_table, self.catalog_table):
            table.itemSelectionChanged.connect(self._show_selected)
        self.scan_label = _label("", "scanLabel")

        left = QWidget()
        left.setObjectName("modelsLeft")
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.setSpacing(6)
        left_layout.addWidget(self.tabs, 1)
        left_layout.addWidget(self.scan_label)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setObjectName("modelsSplitter")
        splitter.addWidget(left)
        splitter.addWidget(self._build_details())
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([250, 300])
        splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 20, 28, 12)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addLayout(tools)
        layout.addWidget(self.message)
        layout.addWidget(splitter, 1)

    def _build_details(self) -> QWidget:
        """The selected model's card: name, buttons, purpose, fit, and the facts in two columns."""
        self.details = QFrame()
        self.details.setObjectName("modelDetails")
        self.details.setMinimumHeight(150)
        self.details_title = _label("", "cardTitle", wrap=True)
        self.details_purpose = _label("", "detailsPurpose", wrap=True)
        self.details_empty = _label("Pick a model to see what it is, what it needs and where it is.", "emptyHint")
        self.detail_fields: dict[str, QLabel] = {}
        self._detail_keys: dict[str, QLabel] = {}
        fit = _label("", "fitValue", wrap=True)
        fit.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail_fields["Fit"] = fit
        columns = QHBoxLayout()
        columns.setSpacing(28)
        for keys in (
            ("Serves", "Kind", "Source", "Repository", "Files", "Path"),
            ("Size", "Licence", "Quantisation", "Parameters", "Context length", "Chat template", "Needs", "Runs on"),
        ):
            form = QFormLayout()
            form.setHorizontalSpacing(14)
            form.setVerticalSpacing(4)
            form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            for key in keys:
                name = QLabel(key)
                name.setObjectName("fieldName")
                value = _label("", "fieldValue", wrap=True)
                value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                self.detail_fields[key] = value
                self._detail_keys[key] = name
                form.addRow(name, value)
            columns.addLayout(form, 1)
        licence = self.detail_fields["Licence"]
        licence.setTextFormat(Qt.TextFormat.RichText)
        licence.setOpenExternalLinks(True)
        licence.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)

        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("downloadButton")
        self.download_button.clicked.connect(lambda: self.download())
        self.remove_button = QPushButton("Remove")
        self.remove_button.setObjectName("removeButton")
        self.remove_button.clicked.connect(lambda: self.remove())
        self.use_button = QPushButton("Use in Chat")
        self.use_button.setObjectName("useButton")
        self.use_button.clicked.connect(self._use_selected)
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.details_title, 1)
        head.addWidget(self.use_button, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(self.download_button, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        self.action_hint = _label("", "actionHint", wrap=True)

        inner = QWidget()
        inner.setObjectName("detailsInner")
        column = QVBoxLayout(inner)
        column.setContentsMargins(16, 12, 16, 12)
        column.setSpacing(6)
        column.addLayout(head)
        column.addWidget(self.details_purpose)
        column.addWidget(self.action_hint)
        column.addWidget(fit)
        column.addWidget(self.details_empty)
        column.addLayout(columns)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setObjectName("modelDetailsScroll")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self.details)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._show_selected()
        return self.details

    # -- loading -----------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._loaded:
            self.refresh()

    @property
    def library(self) -> ModelLibrary:
        """The model library (made on first use, on the Studio's database)."""
        if self._library is None:
            catalog = self.catalog or self._catalog_given
            self._library = ModelLibrary(self.studio.db, catalog=catalog or None)
        return self._library

    def refresh(self) -> None:
        """Read the catalog (the first time) and scan for installed models; fill both tables."""
        started = time.perf_counter()
        if not self._loaded:
            self._loaded = True
            if self._gpus is None:
                self._gpus = gpus()
            self._load_catalog()
        try:
            self.installed = self.library.discover()
        except EmberError as exc:
            self._show_message(f"Ember could not look for models: {exc}", error=True)
            self.installed = []
        self._installed_fit = {m.id: fit_of_model(m.info, machine(), self._gpus or []) for m in self.installed}
        self._fill_installed()
        self._refresh_catalog_status()
        self.last_scan_s = time.perf_counter() - started
        problems = self.library.problems
        text = f"{len(self.installed)} installed model{'s' if len(self.installed) != 1 else ''}"
        if problems:
            text += f" · {len(problems)} file{'s' if len(problems) != 1 else ''} could not be used"
        self.scan_label.setText(text)
        self.scan_label.setToolTip("\n".join(f"{p.path}: {p.reason}" for p in problems[:20]))
        log.info("Model scan: %d models in %.3f s", len(self.installed), self.last_scan_s)
        self._show_selected()
        self.scanned.emit()

    def show_catalog(self, kind: str = "") -> None:
        """Show the Catalog tab, filtered to models of ``kind`` ("" for all)."""
        if not self._loaded:
            self.refresh()
        index = self.kind_filter.findData(kind)
        self.kind_filter.setCurrentIndex(max(0, index))
        self.tabs.setCurrentIndex(1)

    def download_entry(self, entry_id: str) -> int | None:
        """Download the catalog entry ``entry_id`` (from another panel's empty state); returns its download id."""
        if not self._loaded:
            self.refresh()  # the catalog, so the finished download is recorded and offered where it belongs
        entry = next((e for e in self.catalog if e.id == entry_id), None)
        if entry is None:
            self._show_message(f"There is no '{entry_id}' in the catalog.", error=True)
            return None
        return self.download(entry)

    def installed_of_kind(self, kind: str) -> list[InstalledModel]:
        """The installed models of ``kind`` (as the last scan found them)."""
        return [m for m in self.installed if m.kind == kind]

    def set_catalog(self, entries: Sequence[CatalogEntry]) -> None:
        """Show ``entries`` as the catalog instead of Ember's own (a catalog update, or a test's)."""
        self._catalog_given = list(entries)
        if self._library is not None and self._library_given is None:
            self._library = None  # made again, to match downloads against the new catalog
        if self._loaded:
            self._load_catalog()
            self.refresh()

    def _load_catalog(self) -> None:
        if self._catalog_given is not None:
            self.catalog = list(self._catalog_given)
        else:
            try:
                self.catalog = load_catalog()
            except CatalogError as exc:
                self.catalog = []
                self._show_message(str(exc), error=True)
        self._catalog_fit = {e.id: fit_of_entry(e, machine(), self._gpus or []) for e in self.catalog}
        self._fill_catalog()

    # -- tables --------------------------------------------------------------------------------
    def _fill_installed(self) -> None:
        selected = self.selected_installed()
        table = self.installed_table
        table.setSortingEnabled(False)
        table.setRowCount(0)
        for model in self.installed:
            licence, url = self._installed_licence(model)
            self._append_row(
                table,
                model.id,
                [
                    self.display_name(model),
                    panel_name(model.kind),
                    human_bytes(model.size_bytes),
                    None,
                    self._quant_text(model.info.quantisation, model.info.parameter_count),
                    None,
                    SOURCE_NAMES.get(model.source, model.source),
                ],
                licence,
                url,
                self._installed_fit.get(model.id),
            )
            row = table.rowCount() - 1
            table.item(row, 0).setToolTip(model.path)
        self._apply_filter()
        if selected is not None:
            self.select_installed(selected.id)

    def _fill_catalog(self) -> None:
        table = self.catalog_table
        table.setRowCount(0)
        for entry in self.catalog:
            self._append_row(
                table,
                entry.id,
                [
                    entry.name,
                    panel_name(entry.kind),
                    ("about " if entry.include else "") + human_bytes(entry.size_bytes),
                    None,
                    self._quant_text(entry.quantisation, entry.parameters),
                    None,
                    "",
                ],
                short_licence(entry.licence_name),
                entry.licence_url,
                self._catalog_fit.get(entry.id),
            )
            table.item(table.rowCount() - 1, 0).setToolTip(entry.purpose)
        self._refresh_catalog_status()
        self._apply_filter()

    @staticmethod
    def _append_row(
        table: QTableWidget, key: str, texts: list[str | None], licence: str, url: str, fit: Fit | None
    ) -> None:
        row = table.rowCount()
        table.insertRow(row)
        for column, text in enumerate(texts):
            item = QTableWidgetItem(text or "")
            item.setData(_KEY, key)
            table.setItem(row, column, item)
        licence_item = table.item(row, 3)
        licence_item.setText(licence or "—")
        if url:  # drawn as a link; a click on it opens the licence (see _on_cell_clicked)
            licence_item.setData(_URL, url)
            licence_item.setToolTip(f"Open the licence: {url}")
            licence_item.setForeground(QBrush(QColor(LINK_COLOUR)))
            font = licence_item.font()
            font.setUnderline(True)
            licence_item.setFont(font)
        fit_item = table.item(row, 5)
        if fit is None:
            fit_item.setText("—")
            fit_item.setToolTip("Ember cannot estimate what this model needs.")
        else:
            fit_item.setText(VERDICT_NAMES[fit.verdict])
            fit_item.setForeground(QBrush(QColor(VERDICT_COLOURS[fit.verdict])))
            fit_item.setToolTip(f"{fit.summary[:1].upper()}{fit.summary[1:]}.\n{fit.explanation}")
            fit_item.setData(Qt.ItemDataRole.UserRole + 1, fit.verdict.value)

    @staticmethod
    def _quant_text(quantisation: str | None, parameters: int | None) -> str:
        return " · ".join(p for p in (quantisation or "", short_count(parameters)) if p)

    def _installed_licence(self, model: InstalledModel) -> tuple[str, str]:
        """Return (licence, URL): the catalog's when the model came from it, else the file's own."""
        entry = self._entry_for_installed(model)
        if entry is not None:
            return short_licence(entry.licence_name), entry.licence_url
        if model.source == "embedded":
            licence = _EMBEDDED_LICENCES.get(model.id[len(EMBEDDED_PREFIX) :], model.info.licence)
        else:
            licence = model.info.licence
        wanted = licence.lower()
        for candidate in self.catalog:
            if wanted and wanted in (candidate.licence.lower(), candidate.licence_name.lower()):
                return short_licence(candidate.licence_name), candidate.licence_url
        return licence, ""

    def display_name(self, model: InstalledModel) -> str:
        """The name to show: the catalog's for a model downloaded from it, else the model's own."""
        entry = self._entry_for_installed(model)
        return entry.name if entry is not None else model.name

    def _entry_for_installed(self, model: InstalledModel) -> CatalogEntry | None:
        if not model.catalog_id:
            return None
        return next((e for e in self.catalog if e.id == model.catalog_id), None)

    def _apply_filter(self) -> None:
        words = self.search.text().lower().split()
        kind = self.kind_filter.currentData() or ""
        for table, haystack in (
            (self.installed_table, self._installed_haystack),
            (self.catalog_table, self._catalog_haystack),
        ):
            for row in range(table.rowCount()):
                key = table.item(row, 0).data(_KEY)
                text, row_kind = haystack(key)
                hidden = bool(kind and row_kind != kind) or not all(w in text for w in words)
                table.setRowHidden(row, hidden)

    def _installed_haystack(self, key: str) -> tuple[str, str]:
        model = next((m for m in self.installed if m.id == key), None)
        if model is None:
            return "", ""
        parts = (
            self.display_name(model),
            model.name,
            model.path,
            model.kind,
            panel_name(model.kind),
            model.source,
            model.repo or "",
        )
        return " ".join(parts).lower() + " " + (model.info.quantisation or "").lower(), model.kind

    def _catalog_haystack(self, key: str) -> tuple[str, str]:
        entry = next((e for e in self.catalog if e.id == key), None)
        if entry is None:
            return "", ""
        parts = (entry.name, entry.family, entry.repo, entry.purpose, entry.quantisation, entry.kind, entry.panel)
        return " ".join(parts).lower(), entry.kind

    # -- selection -----------------------------------------------------------------------------
    def _selected_key(self, table: QTableWidget) -> str | None:
        rows = table.selectionModel().selectedRows()
        if not rows:
            return None
        item = table.item(rows[0].row(), 0)
        return item.data(_KEY) if item is not None else None

    def selected_installed(self) -> InstalledModel | None:
        """The installed model selected in its table, or None."""
        key = self._selected_key(self.installed_table)
        return next((m for m in self.installed if m.id == key), None)

    def selected_entry(self) -> CatalogEntry | None:
        """The catalog entry selected in its table, or None."""
        key = self._selected_key(self.catalog_table)
        return next((e for e in self.catalog if e.id == key), None)

    def select_installed(self, model_id: str) -> bool:
        """Show the Installed tab with this model selected; returns False when it is not listed."""
        return self._select(self.installed_table, model_id, 0)

    def select_entry(self, entry_id: str) -> bool:
        """Show the Catalog tab with this entry selected; returns False when it is not listed."""
        return self._select(self.catalog_table, entry_id, 1)

    def _select(self, table: QTableWidget, key: str, tab: int) -> bool:
        for row in range(table.rowCount()):
            if table.item(row, 0).data(_KEY) == key:
                self.tabs.setCurrentIndex(tab)
                if table.isRowHidden(row):
                    self.search.clear()
                    self.kind_filter.setCurrentIndex(0)
                table.selectRow(row)
                table.scrollToItem(table.item(row, 0))
                return True
        return False

    def row_texts(self, table: QTableWidget, key: str) -> dict[str, str]:
        """Return {column: text} of the row for ``key`` (for tests and accessibility), or {}."""
        columns = INSTALLED_COLUMNS if table is self.installed_table else CATALOG_COLUMNS
        for row in range(table.rowCount()):
            if table.item(row, 0).data(_KEY) == key:
                return {name: table.item(row, c).text() for c, name in enumerate(columns)}
        return {}

    def visible_keys(self, table: QTableWidget) -> list[str]:
        """The keys of the rows the filter leaves visible, top to bottom."""
        return [table.item(r, 0).data(_KEY) for r in range(table.rowCount()) if not table.isRowHidden(r)]

    def _show_selected(self) -> None:
        catalog_tab = self.tabs.currentIndex() == 1
        model = None if catalog_tab else self.selected_installed()
        entry = self.selected_entry() if catalog_tab else None
        for key in self.detail_fields:
            self._set_field(key, "")
        self.download_button.hide()
        self.remove_button.hide()
        self.use_button.hide()
        self.action_hint.setText("")
        if model is not None:
            self._show_installed(model)
        elif entry is not None:
            self._show_entry(entry)
        shown = model is not None or entry is not None
        self.action_hint.setVisible(bool(self.action_hint.text()))
        self.details_title.setVisible(shown)
        self.details_purpose.setVisible(shown and bool(self.details_purpose.text()))
        self.details_empty.setVisible(not shown)

    def _set_field(self, key: str, text: str) -> None:
        value = self.detail_fields[key]
        value.setText(text)
        value.setVisible(bool(text))
        if key in self._detail_keys:
            self._detail_keys[key].setVisible(bool(text))

    def _set_fit(self, fit: Fit | None) -> None:
        value = self.detail_fields["Fit"]
        if fit is None:
            self._set_field("Fit", "Ember cannot estimate what this model needs.")
            value.setProperty("verdict", "")
        else:
            summary = fit.summary[:1].upper() + fit.summary[1:]
            self._set_field("Fit", f"{summary}. {fit.explanation}")
            value.setProperty("verdict", fit.verdict.value)
        value.style().unpolish(value)
        value.style().polish(value)

    def _show_installed(self, model: InstalledModel) -> None:
        info = model.info
        entry = self._entry_for_installed(model)
        self.details_title.setText(self.display_name(model))
        self.details_purpose.setText(entry.purpose if entry is not None else "")
        self._set_field("Serves", panel_name(model.kind))
        self._set_field("Kind", f"{KIND_NAMES.get(model.kind, model.kind)} ({info.format}, {info.architecture})")
        self._set_fit(self._installed_fit.get(model.id))
        self._set_field("Source", SOURCE_NAMES.get(model.source, model.source))
        self._set_field("Repository", model.repo or "")
        if model.path.startswith(EMBEDDED_PREFIX):
            self._set_field("Path", f"{info.path} (comes with Ember)")
        else:
            self._set_field("Path", model.path)
        self._set_field("Size", human_bytes(model.size_bytes))
        licence, url = self._installed_licence(model)
        self._set_field("Licence", _link(licence, url) + (f"<br><small>{html.escape(url)}</small>" if url else ""))
        self._set_field("Quantisation", info.quantisation or "")
        self._set_field("Parameters", short_count(info.parameter_count))
        self._set_field("Context length", f"{info.context_length:,} tokens" if info.context_length else "")
        if info.format == "gguf" and info.details.get("assembled", True) is not False:
            self._set_field("Chat template", "Yes" if info.chat_template else "No (a base model: it continues text)")
        fit = self._installed_fit.get(model.id)
        if fit is not None:
            self._set_field("Needs", self._needs_text(fit, model))
        use = PANELS.get(model.kind)
        if use in USE_IN_PANELS:
            self.use_button.setText(f"Use in {use}")
            self.use_button.show()
        self.remove_button.show()
        removable, hint = self._removal(model)
        self.remove_button.setEnabled(removable)
        self.remove_button.setToolTip(hint)
        if not removable:
            self.action_hint.setText(hint)

    @staticmethod
    def _needs_text(fit: Fit, model: InstalledModel) -> str:
        try:
            estimate = estimate_model(model.info)
        except (ValueError, TypeError, ZeroDivisionError, KeyError, EmberError):
            return ""
        context = f" at {estimate.context_tokens:,} tokens of context" if estimate.context_tokens else ""
        ram = human_bytes(estimate.ram_bytes, approximate=True)
        vram = human_bytes(estimate.vram_bytes, approximate=True)
        return f"about {ram} of RAM on the CPU, {vram} on a GPU{context}"

    def _removal(self, model: InstalledModel) -> tuple[bool, str]:
        if model.source == "embedded":
            return False, "This model comes with Ember and cannot be removed."
        if model.source == "imported":
            return True, "Ember forgets this model; the file stays where it is."
        if model.source in ("downloaded", "huggingface"):
            if hf_cache_files(model, self.library.hf_cache_dir()):
                return True, "Deletes the model's files from the Hugging Face cache (Ember asks first)."
            if model.source == "downloaded":
                return True, "Ember forgets this model; its files stay where they are."
            return False, "This model is not in a Hugging Face cache folder that Ember can remove it from."
        app = SOURCE_NAMES.get(model.source, model.source)
        return False, f"Found in {app}'s models folder. Remove it in {app}; Ember never deletes another app's files."

    def _show_entry(self, entry: CatalogEntry) -> None:
        self.details_title.setText(entry.name)
        self.details_purpose.setText(entry.purpose + (f" {entry.notes}" if entry.notes else ""))
        self._set_field("Serves", panel_name(entry.kind))
        self._set_field("Kind", f"{KIND_NAMES.get(entry.kind, entry.kind)} ({entry.format})")
        self._set_fit(self._catalog_fit.get(entry.id))
        self._set_field("Repository", f"{entry.repo} @ {entry.revision}")
        files = "\n".join(f"{f.path} ({human_bytes(f.size_bytes)})" for f in entry.files)
        if entry.include:
            files += f"\n… and the rest of the folder matching {', '.join(entry.include)}"
        self._set_field("Files", files)
        self._set_field("Size", ("about " if entry.include else "") + human_bytes(entry.size_bytes))
        self._set_field(
            "Licence",
            _link(entry.licence_name, entry.licence_url) + f"<br><small>{html.escape(entry.licence_url)}</small>",
        )
        self._set_field("Quantisation", entry.quantisation)
        self._set_field("Parameters", short_count(entry.parameters))
        if entry.context_tokens:
            self._set_field("Context length", f"{entry.context_tokens:,} tokens (Ember's default)")
        self._set_field(
            "Needs",
            f"about {human_bytes(entry.ram_bytes, approximate=True)} of RAM on the CPU, "
            f"{human_bytes(entry.vram_bytes, approximate=True)} on a GPU",
        )
        self._set_field("Runs on", ", ".join(b.upper() if len(b) <= 4 else b.capitalize() for b in entry.backends))
        self.download_button.show()
        status = self._catalog_status(entry)
        installed = self._installed_for_entry(entry)
        downloading = self._download_for_entry(entry)
        self.download_button.setEnabled(self._can_download(entry))
        hints = []
        if entry.gated:
            hints.append(
                "This model is gated: accept its licence on huggingface.co, then Ember asks for a Hugging Face "
                "token with read access (used for this download only, never stored)."
            )
        if installed is not None:
            hints.append("Installed: it is in the Installed list.")
        elif downloading is not None and status:
            hints.append(f"{status}: see the Queue.")
        self.download_button.setToolTip(hints[0] if hints else f"Download {human_bytes(entry.size_bytes)}.")
        self.action_hint.setText("\n".join(hints))

    # -- catalog status ----------------------------------------------------------------------
    def _installed_for_entry(self, entry: CatalogEntry) -> InstalledModel | None:
        return next((m for m in self.installed if m.catalog_id == entry.id), None)

    def _can_download(self, entry: CatalogEntry) -> bool:
        """Whether Download makes sense: not installed, no download of it under way or waiting, no folder."""
        if self._installed_for_entry(entry) is not None:
            return False
        item = self._download_for_entry(entry)
        return item is None or (not item.active and item.state == DownloadState.DONE.value)

    def _download_for_entry(self, entry: CatalogEntry) -> DownloadEntry | None:
        files = tuple(f.path for f in entry.files)
        for item in self.downloads.entries():
            if self._download_entries.get(item.id) == entry.id or (
                item.request.repo_id == entry.repo and item.request.files == files
            ):
                return item
        return None

    def _catalog_status(self, entry: CatalogEntry) -> str:
        if self._installed_for_entry(entry) is not None:
            return "Installed"
        item = self._download_for_entry(entry)
        if item is not None:
            if item.active:
                return f"Downloading {item.fraction:.0%}" if item.bytes_total else "Downloading"
            if item.state == DownloadState.PAUSED.value or item.state == "interrupted":
                return "Paused"
            if item.state == DownloadState.FAILED.value:
                return "Needs a token" if item.needs_token else "Failed"
        return "Token needed" if entry.gated else ""

    def _refresh_catalog_status(self) -> None:
        table = self.catalog_table
        for row in range(table.rowCount()):
            key = table.item(row, 0).data(_KEY)
            entry = next((e for e in self.catalog if e.id == key), None)
            if entry is not None:
                table.item(row, 6).setText(self._catalog_status(entry))

    # -- actions -----------------------------------------------------------------------------
    def download(self, entry: CatalogEntry | None = None) -> int | None:
        """Start downloading a catalog entry (the selected one by default); returns its download id.

        A gated entry asks for a Hugging Face token first (a password field; the token goes with
        this download only). Returns None when nothing was started, with the reason shown.
        """
        entry = entry or self.selected_entry()
        if entry is None:
            return None
        token: str | None = None
        if entry.gated:
            token, ok = QInputDialog.getText(
                self,
                "A Hugging Face token is needed",
                f"{entry.name} is gated. Accept its licence on huggingface.co/{entry.repo}, then paste a token "
                "with read access (huggingface.co/settings/tokens).\nEmber uses it for this download only and "
                "does not keep it. Leave it empty to use the token the Hugging Face tools already know.",
                QLineEdit.EchoMode.Password,
            )
            if not ok:
                return None
            token = token.strip() or None
        try:
            download_id = self.downloads.start(download_request(entry, token))
        except (EmberError, RuntimeError) as exc:
            self._show_message(f"{entry.name} could not be downloaded: {exc}", error=True)
            return None
        self._download_entries[download_id] = entry.id
        self._show_message(f"Downloading {entry.name} ({human_bytes(entry.size_bytes)}). Follow it in the Queue.")
        self._refresh_catalog_status()
        self._show_selected()
        return download_id

    def import_file(self) -> None:
        """Ask for a model file and import it where it is."""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import a model file",
            "",
            "Models (*.gguf *.onnx);;All files (*)",
        )
        if path:
            self.import_path(path)

    def import_folder(self) -> None:
        """Ask for a diffusers ONNX folder and import it where it is."""
        path = QFileDialog.getExistingDirectory(self, "Import a diffusers ONNX folder")
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> InstalledModel | None:
        """Import the model at ``path`` (used where it is, never copied) and select it.

        A file Ember cannot use is explained in the panel's message, and nothing is added.
        """
        try:
            model = self.library.import_path(path)
        except ModelFileError as exc:
            self._show_message(f"Ember cannot use {Path(path).name}: {exc}", error=True)
            return None
        except EmberError as exc:
            self._show_message(f"{Path(path).name} could not be imported: {exc}", error=True)
            return None
        self.refresh()
        self.select_installed(model.id)
        self._show_message(f"Imported {model.name}. Ember uses it where it is: {model.path}")
        return model

    def remove(self, model: InstalledModel | None = None) -> bool:
        """Remove an installed model (the selected one by default); returns whether it was removed.

        An imported model is only forgotten (its file stays). A model in the Hugging Face cache is
        deleted from it after the person confirms what will be deleted. Embedded models and other
        apps' models are never removed.
        """
        model = model or self.selected_installed()
        if model is None:
            return False
        removable, hint = self._removal(model)
        if not removable:
            self._show_message(hint, error=True)
            return False
        cache = self.library.hf_cache_dir()
        files = hf_cache_files(model, cache) if model.source in ("downloaded", "huggingface") else []
        try:
            if files:
                if not self._confirm_delete(model, files, cache):
                    return False
                freed = delete_hf_cache_files(files, cache)
                if model.source == "downloaded":
                    self.library.remove(model.id)
                message = (
                    f"Deleted {self.display_name(model)} from the Hugging Face cache ({human_bytes(freed)} freed)."
                )
            else:
                self.library.remove(model.id)
                message = f"Ember forgot {model.name}. The file stays where it is: {model.path}"
        except EmberError as exc:
            self._show_message(f"{self.display_name(model)} could not be removed: {exc}", error=True)
            return False
        self.refresh()
        self._show_message(message)
        return True

    def _confirm_delete(self, model: InstalledModel, files: list[tuple[Path, Path | None]], cache: Path) -> bool:
        size = sum((blob or pointer).stat().st_size for pointer, blob in files)
        shown = [str(p.relative_to(cache)) for p, _ in files[:8]]
        if len(files) > 8:
            shown.append(f"… and {len(files) - 8} more")
        text = (
            f"Delete {self.display_name(model)} ({human_bytes(size)}) from the Hugging Face cache?\n\n"
            f"These files in {cache} are deleted:\n" + "\n".join(shown) + "\n\n"
            "Other apps that use the Hugging Face cache (transformers, diffusers, llama.cpp) will not find "
            "it any more; it can be downloaded again."
        )
        answer = QMessageBox.question(
            self,
            "Delete the model's files?",
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _use_selected(self) -> None:
        model = self.selected_installed()
        if model is not None:
            self.model_chosen.emit(model.kind, model.path)

    # -- downloads -------------------------------------------------------------------------------
    def _on_download_changed(self, _download_id: int = 0) -> None:
        if self._loaded:
            self._refresh_catalog_status()
            if self.tabs.currentIndex() == 1:
                entry = self.selected_entry()
                if entry is not None:
                    self.download_button.setEnabled(self._can_download(entry))

    def _on_download_finished(self, download_id: int, event: JobEvent) -> None:
        if event.kind is not EventKind.RESULT or not isinstance(event.data, DownloadResult):
            self._on_download_changed(download_id)
            return
        result: DownloadResult = event.data
        entry = self._entry_for_download(download_id, result)
        if entry is not None:
            main = entry.main_file.path
            path = result.paths.get(main)
            if path is not None and main == "model_index.json":
                path = os.path.dirname(path)
            if path is not None:
                try:
                    self.library.record_download(path, catalog_id=entry.id, repo=entry.repo)
                except EmberError as exc:
                    self._show_message(f"{entry.name} was downloaded, but Ember cannot use it: {exc}", error=True)
                    entry = None
        if self._loaded:
            self.refresh()
        if entry is not None:
            self._show_message(f"{entry.name} is downloaded and ready in the Installed list.")

    def _entry_for_download(self, download_id: int, result: DownloadResult) -> CatalogEntry | None:
        wanted = self._download_entries.get(download_id)
        for entry in self.catalog:
            # A folder's download holds more files than the entry names (its include patterns).
            if entry.id == wanted or (
                entry.repo == result.repo_id and {f.path for f in entry.files} <= set(result.paths)
            ):
                return entry
        return None

    # -- messages --------------------------------------------------------------------------------
    def _show_message(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setProperty("error", error)
        self.message.style().unpolish(self.message)
        self.message.style().polish(self.message)
        self.message.show()

    def message_text(self) -> str:
        """The message shown above the lists ("" when none)."""
        return "" if self.message.isHidden() else self.message.text()
