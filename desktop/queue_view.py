"""The queue view: model downloads with their progress and controls, and the window's other jobs.

:class:`DownloadQueue` is the window's side of the Studio's downloads: it starts, pauses,
resumes and cancels them through the Studio, follows each one's job through the bridge
(``bridge.track``), and keeps what the view shows. The downloads themselves run on the
Studio's ``download`` lane; nothing here waits for them.

:class:`QueueView` shows one row a download, newest first: the name, a progress bar, the
bytes done of the total, the speed and the time left, and Pause / Resume / Cancel; a failed
download shows its message and Retry, and one that needs a Hugging Face token asks for it in
a password field. The token goes with that one request and is never stored.

Downloads survive a restart: the Studio keeps them in its database, the window resumes the
interrupted ones at start-up (:meth:`DownloadQueue.resume_unfinished`); ``Studio.close`` pauses
the ones running when Ember quits, keeping their partial files, and leaves them to be resumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge, JobOp
from desktop.widgets import ElidingLabel
from engines.errors import EmberError
from engines.jobs import EventKind, JobEvent
from engines.models.downloads import DownloadProgress, DownloadRecord, DownloadRequest, DownloadState, human_bytes
from engines.progress import Step
from engines.studio import QueuedDownload

RECENT_DOWNLOADS = 50
RECENT_JOBS = 20

_JOB_NAMES = {
    "ChatRequest": "Chat reply",
    "CompletionRequest": "Text completion",
    "ImageRequest": "Images",
    "UpscaleRequest": "Upscale",
    "SpeechRequest": "Speech",
    "DictationRequest": "Dictation",
    "VerifyRequest": "Verify files",
}
_JOB_STATES = {
    EventKind.RESULT: "Done",
    EventKind.BLOCKED: "Withheld by the safety filter",
    EventKind.FAILED: "Failed",
    EventKind.CANCELLED: "Cancelled",
}


def eta_text(seconds: float | None) -> str:
    """Return "about 12 s left", "about 3 min left", "about 1 h 5 min left", or "" when not known."""
    if seconds is None or seconds < 0:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"about {max(whole, 1)} s left"
    if whole < 3600:
        minutes = round(whole / 60)
        return f"about {minutes} min left"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


@dataclass
class DownloadEntry:
    """What the view shows of one download.

    ``state`` is a :class:`DownloadState` value, or ``"interrupted"`` for a download the
    database says was running that no job runs now (Ember stopped; it needs Resume).
    """

    id: int
    name: str
    request: DownloadRequest
    state: str
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_s: float = 0.0
    eta_s: float | None = None
    stage: str = ""
    file: str = ""
    files_done: int = 0
    files_total: int = 0
    error: str | None = None
    needs_token: bool = False
    op: JobOp | None = None  # the job running it, until its terminal event
    stopping: str = ""  # "pause" or "cancel" while the job winds down

    @property
    def active(self) -> bool:
        """Whether a job is queued or running for this download."""
        return self.op is not None and not self.op.job.done

    @property
    def fraction(self) -> float:
        """Share of the bytes done, 0.0 to 1.0."""
        return self.bytes_done / self.bytes_total if self.bytes_total > 0 else 0.0


class DownloadQueue(QObject):
    """The Studio's downloads as the window sees them: start, pause, resume, cancel, progress.

    ``changed`` carries a download id whenever anything about it changed (including when
    it was added), ``removed`` an id that left the list (cancelled or cleared), and
    ``finished`` (id, terminal JobEvent) when a download's job ended in any way.
    """

    changed = Signal(int)
    removed = Signal(int)
    finished = Signal(int, object)

    def __init__(self, bridge: EventBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.studio = bridge.studio
        self._entries: dict[int, DownloadEntry] = {}
        self._shut = False
        for record in reversed(self.studio.downloads.recent(RECENT_DOWNLOADS)):
            if record.state is not DownloadState.CANCELLED:
                self._entries[record.id] = self._from_record(record)

    # -- reading -----------------------------------------------------------------------------
    def entries(self) -> list[DownloadEntry]:
        """The downloads shown, newest first."""
        return sorted(self._entries.values(), key=lambda e: e.id, reverse=True)

    def entry(self, download_id: int) -> DownloadEntry | None:
        """The download with this id, or None when it is not in the list."""
        return self._entries.get(download_id)

    def active_count(self) -> int:
        """How many downloads are queued or running."""
        return sum(1 for e in self._entries.values() if e.active)

    # -- actions -----------------------------------------------------------------------------
    def start(self, request: DownloadRequest) -> int:
        """Start downloading ``request`` and return its download id.

        Raises EmberError (or RuntimeError once the Studio is closing) when it cannot be queued.
        """
        job = self.studio.download(request)
        download_id = job.request.download_id
        record = self.studio.downloads.get(download_id)
        entry = self._from_record(record) if record is not None else None
        if entry is None:
            entry = DownloadEntry(download_id, request.name, request, DownloadState.QUEUED.value)
        self._entries[download_id] = entry
        self._follow(entry, self.bridge.track(job))
        return download_id

    def pause(self, download_id: int) -> bool:
        """Pause a queued or running download (its partial file stays); returns whether one was running."""
        entry = self._entries.get(download_id)
        if entry is None or not entry.active:
            return False
        entry.stopping = "pause"
        paused = self.studio.pause_download(download_id)
        self.changed.emit(download_id)
        return paused

    def resume(self, download_id: int, token: str | None = None) -> bool:
        """Resume (or retry) a paused, failed or interrupted download, with ``token`` for a gated one.

        Returns False, with the reason in the entry's ``error``, when the Studio refuses.
        The token is passed on with this request only; nothing keeps it.
        """
        entry = self._entries.get(download_id)
        if entry is None or entry.active:
            return False
        try:
            job = self.studio.resume_download(download_id, token=token or None)
        except (EmberError, RuntimeError) as exc:
            entry.error = str(exc)
            self.changed.emit(download_id)
            return False
        entry.error = None
        entry.state = DownloadState.QUEUED.value
        entry.bytes_per_s, entry.eta_s = 0.0, None
        self._follow(entry, self.bridge.track(job))
        return True

    def cancel(self, download_id: int) -> None:
        """Stop a download, delete its partial file, and take it off the list.

        A running download leaves the list when its job has stopped (within a fraction of a
        second); a paused or failed one at once.
        """
        entry = self._entries.get(download_id)
        if entry is None:
            return
        entry.stopping = "cancel"
        if entry.active:
            self.studio.cancel_download(download_id)  # only sets the job's cancel token
            self.changed.emit(download_id)
            return
        # Deleting the partial files may ask the hub for their names: off the GUI thread.
        self.bridge.background(lambda: self.studio.cancel_download(download_id)).run()
        self._drop(download_id)

    def clear_finished(self) -> None:
        """Take the finished downloads off the list (their files stay where they are)."""
        for entry in list(self._entries.values()):
            if entry.state == DownloadState.DONE.value and not entry.active:
                self.bridge.background(lambda done=entry.id: self.studio.downloads.remove(done)).run()
                self._drop(entry.id)

    def resume_unfinished(self) -> list[int]:
        """Resume the downloads that were running when Ember last stopped (call it once, at start-up).

        Downloads paused by the person stay paused; ones that need a token wait for it.
        Returns the ids resumed.
        """
        if self._shut:
            return []
        resumed = []
        for job in self.studio.resume_unfinished_downloads():
            queued: QueuedDownload = job.request
            entry = self._entries.get(queued.download_id)
            record = self.studio.downloads.get(queued.download_id)
            if entry is None and record is not None:
                entry = self._entries[queued.download_id] = self._from_record(record)
            if entry is not None:
                entry.state = DownloadState.QUEUED.value
                self._follow(entry, self.bridge.track(job))
                resumed.append(queued.download_id)
        return resumed

    def shutdown(self) -> None:
        """Stop acting on downloads (the window is closing).

        Nothing is paused here: ``Studio.close`` pauses the running downloads and leaves them
        queued, so the next start resumes them.
        """
        self._shut = True

    # -- following a job (GUI thread, through the bridge) -------------------------------------
    def _follow(self, entry: DownloadEntry, op: JobOp) -> None:
        entry.op = op
        download_id = entry.id
        (
            op.on_started(lambda _data: self._on_started(download_id))
            .on_progress(lambda data: self._on_progress(download_id, data))
            .on_finished(lambda event: self._on_finished(download_id, op, event))
        )
        self.changed.emit(download_id)

    def _on_started(self, download_id: int) -> None:
        entry = self._entries.get(download_id)
        if entry is not None and not entry.stopping:
            entry.state = DownloadState.RUNNING.value
            entry.stage = "checking"
            self.changed.emit(download_id)

    def _on_progress(self, download_id: int, data: Any) -> None:
        entry = self._entries.get(download_id)
        if entry is None or not isinstance(data, DownloadProgress):
            return
        entry.state = DownloadState.RUNNING.value
        entry.stage = data.stage
        entry.file = data.file
        entry.files_done, entry.files_total = data.files_done, data.files_total
        entry.bytes_done, entry.bytes_total = data.bytes_done, data.bytes_total
        entry.bytes_per_s, entry.eta_s = data.bytes_per_s, data.eta_s
        self.changed.emit(download_id)

    def _on_finished(self, download_id: int, op: JobOp, event: JobEvent) -> None:
        entry = self._entries.get(download_id)
        if entry is None or entry.op is not op:
            return  # an older job of a download that was resumed since
        # The job's own ``done`` is set only after every listener had the event, which may be later.
        entry.op = None
        stopping, entry.stopping = entry.stopping, ""
        record = self.studio.downloads.get(download_id)
        if stopping == "cancel":
            if record is not None and record.state is not DownloadState.CANCELLED:
                # A job cancelled before it started never reached the downloader: finish the cancel.
                self.bridge.background(lambda: self.studio.cancel_download(download_id)).run()
            self._drop(download_id)
            self.finished.emit(download_id, event)
            return
        if record is not None:
            fresh = self._from_record(record)
            entry.state, entry.error, entry.needs_token = fresh.state, fresh.error, fresh.needs_token
            if fresh.bytes_total:
                entry.bytes_done, entry.bytes_total = fresh.bytes_done, fresh.bytes_total
        if event.kind is EventKind.RESULT:
            entry.state = DownloadState.DONE.value
            entry.bytes_done = entry.bytes_total
            entry.error = None
        elif event.kind is EventKind.FAILED:
            entry.state = DownloadState.FAILED.value
            entry.error = str(event.data)
        elif event.kind is EventKind.CANCELLED and stopping == "pause":
            entry.state = DownloadState.PAUSED.value
        entry.bytes_per_s, entry.eta_s = 0.0, None
        self.changed.emit(download_id)
        self.finished.emit(download_id, event)

    def _drop(self, download_id: int) -> None:
        if self._entries.pop(download_id, None) is not None:
            self.removed.emit(download_id)

    @staticmethod
    def _from_record(record: DownloadRecord) -> DownloadEntry:
        state = record.state.value
        if record.state in (DownloadState.QUEUED, DownloadState.RUNNING):
            state = "interrupted"  # until a job runs it again
        return DownloadEntry(
            id=record.id,
            name=record.request.name,
            request=record.request,
            state=state,
            bytes_done=record.bytes_done,
            bytes_total=record.bytes_total,
            files_total=len(record.request.files),
            error=record.error,
            needs_token=record.needs_token,
        )


def _label(text: str = "", name: str = "") -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def _button(text: str, name: str, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    if tip:
        button.setToolTip(tip)
    return button


class DownloadRow(QFrame):
    """One download: name, state, progress, bytes, speed, time left, and its buttons."""

    def __init__(self, queue: DownloadQueue, download_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadRow")
        self.queue = queue
        self.download_id = download_id

        self.name_label = ElidingLabel("")
        self.name_label.setObjectName("downloadName")
        self.state_label = _label("", "downloadState")
        self.progress = QProgressBar()
        self.progress.setObjectName("downloadProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(6)
        self.bytes_label = _label("", "downloadBytes")
        self.speed_label = _label("", "downloadSpeed")
        self.eta_label = _label("", "downloadEta")
        self.error_label = _label("", "downloadError")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.pause_button = _button("Pause", "pauseButton", "Stop for now; the part downloaded is kept.")
        self.resume_button = _button("Resume", "resumeButton", "Continue from the part already downloaded.")
        self.retry_button = _button("Retry", "retryButton", "Try again from the part already downloaded.")
        self.cancel_button = _button("Cancel", "cancelButton", "Stop and delete the part downloaded.")
        self.pause_button.clicked.connect(lambda: self.queue.pause(self.download_id))
        self.resume_button.clicked.connect(lambda: self.queue.resume(self.download_id))
        self.retry_button.clicked.connect(lambda: self.queue.resume(self.download_id))
        self.cancel_button.clicked.connect(lambda: self.queue.cancel(self.download_id))

        self.token_field = QLineEdit()
        self.token_field.setObjectName("tokenField")
        self.token_field.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_field.setPlaceholderText("Hugging Face token (hf_…)")
        self.token_field.setToolTip(
            "A read token from huggingface.co/settings/tokens, after accepting the model's licence there. "
            "Ember uses it for this download only and does not keep it."
        )
        self.token_button = _button("Resume with token", "useTokenButton")
        self.token_button.clicked.connect(self._resume_with_token)
        self.token_field.returnPressed.connect(self._resume_with_token)
        self.token_row = QWidget()
        self.token_row.setObjectName("tokenRow")
        token_layout = QHBoxLayout(self.token_row)
        token_layout.setContentsMargins(0, 0, 0, 0)
        token_layout.addWidget(self.token_field, 1)
        token_layout.addWidget(self.token_button)

        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.name_label, 1)
        head.addWidget(self.state_label)
        head.addSpacing(8)
        for button in (self.pause_button, self.resume_button, self.retry_button, self.cancel_button):
            head.addWidget(button)
        self.figures_row = QWidget()
        self.figures_row.setObjectName("figuresRow")
        figures = QHBoxLayout(self.figures_row)
        figures.setContentsMargins(0, 0, 0, 0)
        figures.setSpacing(16)
        figures.addWidget(self.bytes_label)
        figures.addWidget(self.speed_label)
        figures.addWidget(self.eta_label)
        figures.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(6)
        layout.addLayout(head)
        layout.addWidget(self.progress)
        layout.addWidget(self.figures_row)
        layout.addWidget(self.error_label)
        layout.addWidget(self.token_row)
        self.refresh()

    def _resume_with_token(self) -> None:
        token = self.token_field.text().strip()
        self.token_field.clear()  # the field never holds the token longer than this call
        if token:
            self.queue.resume(self.download_id, token)

    def refresh(self) -> None:
        """Show the download's current state."""
        entry = self.queue.entry(self.download_id)
        if entry is None:
            return
        self.name_label.setText(entry.name)
        self.setToolTip(f"{entry.request.repo_id} — {', '.join(entry.request.files)}")
        self.state_label.setText(self._state_text(entry))
        self.setProperty("state", entry.state)
        self.progress.setRange(0, 1000)
        if entry.active and entry.bytes_total == 0:
            self.progress.setRange(0, 0)  # moving until the sizes are known
        self.progress.setValue(round(entry.fraction * 1000))
        done = entry.state == DownloadState.DONE.value
        if done and entry.bytes_total:
            self.bytes_label.setText(human_bytes(entry.bytes_total))
        elif entry.bytes_total:
            self.bytes_label.setText(f"{human_bytes(entry.bytes_done)} of {human_bytes(entry.bytes_total)}")
        else:
            self.bytes_label.setText("")
        running = entry.active and entry.state == DownloadState.RUNNING.value and not entry.stopping
        self.speed_label.setText(f"{human_bytes(entry.bytes_per_s)}/s" if running and entry.bytes_per_s else "")
        self.eta_label.setText(eta_text(entry.eta_s) if running else "")
        failed = entry.state == DownloadState.FAILED.value
        self.error_label.setText(entry.error or "")
        self.error_label.setVisible(bool(entry.error) and not entry.active)
        stoppable = entry.active and not entry.stopping
        resumable = not entry.active and entry.state in (DownloadState.PAUSED.value, "interrupted")
        self.pause_button.setVisible(stoppable)
        self.resume_button.setVisible(resumable and not entry.needs_token)
        self.retry_button.setVisible(failed and not entry.active and not entry.needs_token)
        self.cancel_button.setVisible(entry.state != DownloadState.DONE.value and entry.stopping != "cancel")
        self.token_row.setVisible(entry.needs_token and not entry.active and (failed or resumable))
        self.progress.setVisible(entry.active or (bool(entry.bytes_total) and not done))
        for label in (self.bytes_label, self.speed_label, self.eta_label):
            label.setVisible(bool(label.text()))
        self.figures_row.setVisible(bool(self.bytes_label.text()))
        for widget in (self, self.state_label, self.progress):  # the look follows the state property
            widget.style().unpolish(widget)
            widget.style().polish(widget)

    @staticmethod
    def _state_text(entry: DownloadEntry) -> str:
        if entry.stopping == "cancel":
            return "Cancelling…"
        if entry.stopping == "pause":
            return "Pausing…"
        if entry.state == DownloadState.RUNNING.value:
            if entry.stage == "checking" or not entry.bytes_total:
                return "Checking…"
            if entry.files_total > 1 and entry.file:
                return (
                    f"Downloading {entry.file} ({min(entry.files_done + 1, entry.files_total)} of {entry.files_total})"
                )
            return "Downloading"
        if entry.state == DownloadState.FAILED.value and entry.needs_token:
            return "Needs a Hugging Face token"
        return {
            DownloadState.QUEUED.value: "Waiting",
            DownloadState.PAUSED.value: "Paused",
            DownloadState.FAILED.value: "Failed",
            DownloadState.DONE.value: "Done",
            "interrupted": "Interrupted",
        }.get(entry.state, entry.state.capitalize())


class JobRow(QFrame):
    """One of the window's other jobs (a chat reply, images, a verification): what, state, Cancel."""

    def __init__(self, op: JobOp, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobRow")
        self.op = op
        name = _JOB_NAMES.get(type(op.job.request).__name__, type(op.job.request).__name__)
        self.name_label = _label(name, "jobName")
        self.state_label = _label("Waiting", "jobState")
        self.progress = QProgressBar()
        self.progress.setObjectName("jobProgress")
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(4)
        self.progress.setRange(0, 0)
        self.cancel_button = _button("Cancel", "cancelJobButton")
        self.cancel_button.clicked.connect(op.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 6, 14, 6)
        layout.setSpacing(10)
        layout.addWidget(self.name_label)
        layout.addWidget(self.progress, 1)
        layout.addWidget(self.state_label)
        layout.addWidget(self.cancel_button)
        op.on_started(self._on_started).on_progress(self._on_progress).on_finished(self._on_finished)

    def _on_started(self, _data: Any) -> None:
        self.state_label.setText("Running")

    def _on_progress(self, data: Any) -> None:
        if isinstance(data, Step) and data.total:
            self.progress.setRange(0, data.total)
            self.progress.setValue(data.done)
            self.state_label.setText(f"{data.done} of {data.total}")

    def _on_finished(self, event: JobEvent) -> None:
        self.state_label.setText(_JOB_STATES.get(event.kind, event.kind.value))
        if event.kind is EventKind.FAILED:
            self.state_label.setToolTip(str(event.data))
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if event.kind is EventKind.RESULT else 0)
        self.progress.hide()
        self.cancel_button.hide()


class QueueView(QWidget):
    """Downloads (newest first) and the window's other recent jobs."""

    def __init__(self, downloads: DownloadQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queueView")
        self.downloads = downloads
        self.bridge = downloads.bridge
        self._rows: dict[int, DownloadRow] = {}
        self._job_rows: list[JobRow] = []
        self._build()
        for entry in reversed(downloads.entries()):
            self._add_row(entry.id)
        self._update_empty()
        downloads.changed.connect(self._on_changed)
        downloads.removed.connect(self._on_removed)
        self.bridge.job_added.connect(self._on_job_added)

    def _build(self) -> None:
        title = _label("Queue", "pageTitle")
        intro = _label(
            "Model downloads and the work Ember is doing. Downloads continue where they stopped, "
            "also after Ember was closed.",
            "settingsHint",
        )
        intro.setWordWrap(True)
        self.clear_button = _button("Clear finished", "clearFinishedButton", "Take finished downloads off the list.")
        self.clear_button.clicked.connect(self.downloads.clear_finished)
        head = QHBoxLayout()
        head.addWidget(_label("Downloads", "sectionTitle"))
        head.addStretch(1)
        head.addWidget(self.clear_button)
        self.empty_label = _label(
            "No downloads yet. Models you download from the Models page appear here.", "emptyHint"
        )

        column = QWidget()
        column.setObjectName("queueColumn")
        self._column = QVBoxLayout(column)
        self._column.setContentsMargins(0, 0, 0, 0)
        self._column.setSpacing(10)
        self._column.addLayout(head)
        self._column.addWidget(self.empty_label)
        self._downloads_box = QVBoxLayout()
        self._downloads_box.setSpacing(8)
        self._column.addLayout(self._downloads_box)
        self.jobs_title = _label("Other jobs", "sectionTitle")
        self._column.addWidget(self.jobs_title)
        self._jobs_box = QVBoxLayout()
        self._jobs_box.setSpacing(6)
        self._column.addLayout(self._jobs_box)
        self._column.addStretch(1)
        self.jobs_title.hide()

        scroll = QScrollArea()
        scroll.setObjectName("queueScroll")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(column)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 24, 32, 16)
        layout.setSpacing(12)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addWidget(scroll, 1)

    # -- reading (for the window and tests) ----------------------------------------------------
    def row(self, download_id: int) -> DownloadRow | None:
        """The row of a download, or None when it is not shown."""
        return self._rows.get(download_id)

    def rows(self) -> list[DownloadRow]:
        """The download rows, top to bottom (newest first)."""
        found = []
        for i in range(self._downloads_box.count()):
            widget = self._downloads_box.itemAt(i).widget()
            if isinstance(widget, DownloadRow):
                found.append(widget)
        return found

    def job_rows(self) -> list[JobRow]:
        """The rows of other jobs, newest first."""
        return list(self._job_rows)

    # -- updates -------------------------------------------------------------------------------
    def _add_row(self, download_id: int) -> DownloadRow:
        row = DownloadRow(self.downloads, download_id)
        self._rows[download_id] = row
        self._downloads_box.insertWidget(0, row)
        return row

    def _on_changed(self, download_id: int) -> None:
        row = self._rows.get(download_id)
        if row is None:
            row = self._add_row(download_id)
            self._update_empty()
        row.refresh()
        self.clear_button.setEnabled(any(e.state == DownloadState.DONE.value for e in self.downloads.entries()))

    def _on_removed(self, download_id: int) -> None:
        row = self._rows.pop(download_id, None)
        if row is not None:
            self._downloads_box.removeWidget(row)
            row.deleteLater()
        self._update_empty()

    def _update_empty(self) -> None:
        self.empty_label.setVisible(not self._rows)
        self.clear_button.setEnabled(any(e.state == DownloadState.DONE.value for e in self.downloads.entries()))

    def _on_job_added(self, op: JobOp) -> None:
        if isinstance(op.job.request, QueuedDownload):
            return  # downloads have their own rows
        row = JobRow(op)
        self._job_rows.insert(0, row)
        self._jobs_box.insertWidget(0, row)
        self.jobs_title.show()
        for old in self._job_rows[RECENT_JOBS:]:
            if not old.op.job.done:
                continue
            self._job_rows.remove(old)
            self._jobs_box.removeWidget(old)
            old.deleteLater()
