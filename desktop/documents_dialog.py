"""The Documents dialog: the folders Chat answers from, their files, and adding, updating, stopping or removing one.

Every read and write of the index goes off the GUI thread (``bridge.background``); an index run
is a job of the Studio's "documents" lane. The dialog shows every run, not only those it
started: the refresh at start and the folder watch (``engines/documents/watch.py``) run them too,
so it follows the IndexProgress events of all jobs and asks ``Documents.index_jobs`` which
folders have one now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import BackgroundOp, EventBridge, JobOp
from engines.documents.indexing import IndexProgress, IndexReport
from engines.documents.store import FileInfo, FolderInfo
from engines.jobs import EventKind
from engines.progress import Step

FOLDER_COLUMNS = ("Folder", "Files", "Passages", "Status", "Errors")
FILE_COLUMNS = ("File", "Status", "Passages", "Error")
_FILE_STATUS = {"done": "Indexed", "embedding": "Not finished", "error": "Could not be read"}


def folder_status(folder: FolderInfo, indexing: bool = False, waiting: bool = False) -> str:
    """A folder's state in words: indexing now, waiting for its turn, not indexed yet, partly indexed, or indexed."""
    if indexing:
        return "Indexing…"
    if waiting:
        return "Waiting to be indexed"
    if folder.indexed_utc is None and folder.files == 0:
        return "Not indexed yet"
    if folder.indexed_utc is None or folder.files_done + folder.files_failed < folder.files:
        return "Partly indexed (finishes on the next run)"
    return "Indexed"


def failures_text(report: IndexReport) -> str:
    """The files an index run could not read, one a line, for the person; "" when every file was read."""
    if not report.failed:
        return ""
    lines = [f"{len(report.failed)} file(s) could not be read:"]
    lines += [f"• {Path(path).name}: {reason}" for path, reason in report.failed]
    return "\n".join(lines)


class DocumentsDialog(QDialog):
    """Indexed folders (path, files, passages, status, errors) and the files of the selected one.

    ``folders_changed`` fires when a folder was added, indexed or removed; ``index_finished``
    carries the terminal JobEvent of every index run, whoever started it.
    """

    folders_changed = Signal()
    index_finished = Signal(object)

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("documentsDialog")
        self.setWindowTitle("Your documents")
        self.resize(760, 520)
        self.bridge = bridge
        self.documents = bridge.studio.documents
        self._folders: list[FolderInfo] = []
        self._runs: dict[int, str] = {}  # job id -> folder, of the index runs seen running
        self._own: list[JobOp] = []  # the runs started here: stopped when the window closes
        bridge.event.connect(self._on_event)

        intro = QLabel(
            "With “Use my documents” on, Chat answers from the passages of these folders that fit "
            "your message, and shows where they came from. Files stay where they are; nothing leaves this computer."
        )
        intro.setWordWrap(True)
        self.folder_table = self._table(FOLDER_COLUMNS)
        self.folder_table.itemSelectionChanged.connect(self._folder_selected)
        self.file_table = self._table(FILE_COLUMNS)
        self.add_button = QPushButton("Add folder…")
        self.update_button = QPushButton("Update now")
        self.update_button.setToolTip(
            "Read what changed in this folder now (Ember also looks for changes by itself every few seconds)."
        )
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(
            "Stop indexing this folder; what was read is kept, and the next run goes on from there."
        )
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Forget this folder and its passages; the files themselves stay.")
        self.close_button = QPushButton("Close")
        self.add_button.clicked.connect(self._add_clicked)
        self.update_button.clicked.connect(self.update_selected)
        self.stop_button.clicked.connect(self.stop_selected)
        self.remove_button.clicked.connect(self.remove_selected)
        self.close_button.clicked.connect(self.close)
        self.progress = QProgressBar()
        self.progress.setObjectName("indexProgress")
        self.progress.hide()
        self.status = QLabel("")
        self.status.setObjectName("indexStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.update_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.folder_table, 2)
        layout.addWidget(QLabel("Files of the selected folder"))
        layout.addWidget(self.file_table, 3)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._update_buttons()

    @staticmethod
    def _table(columns: tuple[str, ...]) -> QTableWidget:
        table = QTableWidget(0, len(columns))
        table.setHorizontalHeaderLabels(list(columns))
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.verticalHeader().hide()
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(columns)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        return table

    def show_notice(self, text: str, *, error: bool = False, decision: Any = None) -> None:
        """Where background work and index jobs that did not succeed are explained: the status line."""
        self.status.setText(text)

    # -- folders ------------------------------------------------------------------------------
    def selected_folder(self) -> str | None:
        """The path of the selected folder, or None."""
        rows = self.folder_table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self._folders):
            return None
        return self._folders[rows[0].row()].path

    def refresh(self) -> BackgroundOp:
        """Re-read the folders (off the GUI thread), keeping the selection."""
        return self.bridge.background(self.documents.folders, parent=self).success(self._show_folders).run()

    def index_jobs(self) -> dict[str, list[Any]]:
        """Folder -> its index jobs queued or running now, whoever started them."""
        return self.documents.index_jobs()

    def _show_folders(self, folders: list[FolderInfo]) -> None:
        keep = self.selected_folder()
        self._folders = list(folders)
        jobs = self.index_jobs()
        table = self.folder_table
        table.blockSignals(True)
        table.setRowCount(len(folders))
        for row, folder in enumerate(folders):
            running = any(job.started for job in jobs.get(folder.path, []))
            if running and self.progress.isHidden():
                self._show_busy(folder.path)  # a run started elsewhere, before its first file count
            values = (
                folder.path,
                str(folder.files),
                str(folder.chunks),
                folder_status(folder, running, bool(jobs.get(folder.path))),
                str(folder.files_failed) if folder.files_failed else "",
            )
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column == 0:
                    item.setToolTip(value)
                table.setItem(row, column, item)
            if folder.path == keep:
                table.selectRow(row)
        table.blockSignals(False)
        if not jobs and not self._runs:
            self.progress.hide()  # no run queued or going, whoever started it
        if self.selected_folder() is None and folders:
            table.selectRow(0)
        else:
            self._folder_selected()
        self._update_buttons()

    def _folder_selected(self) -> None:
        self._update_buttons()
        folder = self.selected_folder()
        if folder is None:
            self.file_table.setRowCount(0)
            return
        documents = self.documents
        self.bridge.background(lambda: documents.files(folder), parent=self).success(
            lambda files: self._show_files(folder, files)
        ).run()

    def _show_files(self, folder: str, files: list[FileInfo]) -> None:
        if folder != self.selected_folder():
            return  # another folder was picked meanwhile
        self.file_table.setRowCount(len(files))
        for row, info in enumerate(files):
            try:
                name = str(Path(info.path).relative_to(folder))
            except ValueError:
                name = info.path
            values = (name, _FILE_STATUS.get(info.status, info.status), str(info.chunks_total), info.error)
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(info.path if column == 0 else value)
                self.file_table.setItem(row, column, item)

    def _update_buttons(self) -> None:
        folder = self.selected_folder()
        busy = folder is not None and bool(self.index_jobs().get(folder))
        self.update_button.setEnabled(folder is not None and self.documents.queued_job(folder) is None)
        self.stop_button.setEnabled(busy)
        self.remove_button.setEnabled(folder is not None and not busy)

    # -- adding and removing -------------------------------------------------------------------
    def _add_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of documents", str(Path.home()))
        if path:
            self.add_folder(path)

    def add_folder(self, path: str) -> BackgroundOp:
        """Remember ``path`` (off the GUI thread), then index it as a job; the bar shows its progress."""
        documents = self.documents
        self.status.setText(f"Adding {path}…")
        return self.bridge.background(lambda: documents.add_folder(path), parent=self).success(self._index).run()

    def update_selected(self) -> JobOp | None:
        """Index the selected folder again now (only what changed is read)."""
        folder = self.selected_folder()
        if folder is None:
            return None
        from engines.documents.service import IndexFolderRequest

        return self._index(IndexFolderRequest(folder))

    def stop_selected(self) -> bool:
        """Stop the index runs of the selected folder, whoever started them; what they read is kept."""
        folder = self.selected_folder()
        if folder is None or not self.documents.stop(folder):
            return False
        self.status.setText(f"Stopping {folder}…")
        return True

    def _show_busy(self, folder: str) -> None:
        self.progress.setRange(0, 0)  # busy until the first file count arrives
        self.progress.show()
        self.status.setText(f"Reading {folder}…")

    def _index(self, request: Any) -> JobOp:
        self._show_busy(request.folder)
        # Progress and the end are followed for every run (_on_event); the op reports what failed to start.
        op = self.bridge.op(request, parent=self).on_notice(lambda _text: None).run()
        self._own = [o for o in self._own if o.job is not None and not o.job.done] + [op]
        self.refresh()
        self.folders_changed.emit()
        return op

    def _on_event(self, event: Any) -> None:
        """Every job's events: the index runs' progress fills the bar, their end refreshes the folders."""
        data = event.data
        if isinstance(data, IndexProgress):
            first = event.job_id not in self._runs
            self._runs[event.job_id] = data.folder
            self._on_progress(data)
            if first:
                self.refresh()
                self.folders_changed.emit()
            return
        if not event.kind.terminal:
            return
        folder = self._runs.pop(event.job_id, None)
        if folder is None:
            own = next((o for o in self._own if o.job is not None and o.job.id == event.job_id), None)
            if own is None:
                if self.progress.isVisible():
                    self.refresh()  # perhaps a run started elsewhere ended before its first file count
                return
            folder = own.job.request.folder
        if isinstance(data, IndexReport):
            self._on_indexed(data)
        elif event.kind is EventKind.CANCELLED:
            self.status.setText(f"Indexing {folder} stopped; what was read is kept and the next run goes on.")
        elif event.kind is EventKind.FAILED:
            self.status.setText(f"Indexing {folder} failed: {data}")
        if not self._runs:
            self.progress.hide()
        self.refresh()
        self.folders_changed.emit()
        self.index_finished.emit(event)

    def _on_progress(self, data: Any) -> None:
        if not isinstance(data, Step):
            return
        self.progress.show()
        self.progress.setRange(0, max(1, data.total))
        self.progress.setValue(data.done)
        where = Path(data.folder).name if isinstance(data, IndexProgress) and data.folder else ""
        if isinstance(data, IndexProgress) and data.file:
            self.status.setText(f"{where}: reading {Path(data.file).name} ({data.done} of {data.total} files)")
        else:
            self.status.setText(
                f"{where}: {data.done} of {data.total} files" if where else f"{data.done} of {data.total} files"
            )

    def _on_indexed(self, report: IndexReport) -> None:
        done = f"{Path(report.folder).name}: {report.files} file(s), {report.chunks} passages."
        failed = failures_text(report)
        self.status.setText(f"{done}\n{failed}" if failed else done)

    def remove_selected(self) -> BackgroundOp | None:
        """Forget the selected folder and its passages (off the GUI thread); the files stay."""
        folder = self.selected_folder()
        if folder is None:
            return None
        return self.remove_folder(folder)

    def remove_folder(self, folder: str) -> BackgroundOp:
        """Forget ``folder`` and its passages (off the GUI thread), then show the folders again."""
        documents = self.documents

        def removed(_gone: bool) -> None:
            self.status.setText(f"Removed {folder}. Its files are untouched.")
            self.refresh()
            self.folders_changed.emit()

        return self.bridge.background(lambda: documents.remove_folder(folder), parent=self).success(removed).run()

    def shutdown(self) -> None:
        """Stop the index runs started here (the window is closing); they resume at the next start."""
        for op in self._own:
            op.cancel()
