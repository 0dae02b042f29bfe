"""The Verify panel: drop files (or pick them) to see whether Ember made them.

It submits one :class:`VerifyRequest` through the bridge and shows one card per file:
the summary, the watermark verdict, the Content Credentials, the generation
parameters written in the file and the matching library record. It never reads a
file itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge, JobOp
from engines.errors import EmberError
from engines.jobs import JobEvent
from engines.progress import Step
from engines.provenance.verify import VerifyReport, VerifyRequest
from engines.reproducibility import reproducibility

_FILE_FILTER = "Images, audio and text (*.png *.jpg *.jpeg *.webp *.wav *.txt *.md);;All files (*)"
_KIND_NAMES = {"image": "Image", "audio": "Audio", "text": "Text", "unknown": "File"}
_PARAMETERS_SHOWN = 12


def _label(text: str, name: str = "", *, selectable: bool = True) -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _p_value(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3g}"


def watermark_text(report: VerifyReport) -> str:
    """Return the watermark line of a card, e.g. "Watermarked — confidence 99%, p = 3.1e-12"."""
    mark = report.watermark
    if mark is None:
        return "Not checked"
    verdict = mark.verdict[:1].upper() + mark.verdict[1:]
    if mark.verdict == "too short to tell":
        text = verdict
    elif mark.found:
        text = f"{verdict} — confidence {mark.confidence:.0%}, p = {_p_value(mark.p_value)}"
    else:
        text = f"{verdict} (p = {_p_value(mark.p_value)})"
    if mark.payload is not None and mark.found:
        text += f", mark {mark.payload}"
    if mark.detail:
        text += f" ({mark.detail})"
    return text


def credentials_text(report: VerifyReport) -> str:
    """Return the Content Credentials line of a card."""
    creds = report.credentials
    if creds is None or not getattr(creds, "present", False):
        if report.kind == "text":
            return "Not used for text"
        return "None in this file"
    state = str(getattr(creds, "validation_state", "") or ("Valid" if getattr(creds, "valid", False) else "Invalid"))
    details = [str(v) for v in (getattr(creds, "issuer", ""), getattr(creds, "created", "")) if v]
    return f"{state} ({', '.join(details)})" if details else state


def record_text(report: VerifyReport) -> str:
    """Return the library record line of a card."""
    if not report.records:
        return "No matching record in this library"
    rec = report.records[0]
    made = rec.created_utc[:19].replace("T", " ")
    text = f"{rec.provenance.model_name or 'Ember'} · {made} UTC · output {rec.output_id}"
    if len(report.records) > 1:
        text += f" (and {len(report.records) - 1} more)"
    return text


class VerifyCard(QFrame):
    """One file's report."""

    def __init__(self, report: VerifyReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report = report
        self.setObjectName("verifyCard")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.setSpacing(8)
        head = QHBoxLayout()
        name = _label(Path(report.path).name or report.path, "cardTitle")
        name.setToolTip(report.path)
        head.addWidget(name, 1)
        kind = QLabel(_KIND_NAMES.get(report.kind, report.kind.capitalize()))
        kind.setObjectName("kindBadge")
        head.addWidget(kind, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(head)

        self.summary = _label(report.summary, "errorRow" if report.error else "verifySummary")
        layout.addWidget(self.summary)
        self.fields: dict[str, QLabel] = {}
        if report.error:
            return
        form = QFormLayout()
        form.setHorizontalSpacing(18)
        form.setVerticalSpacing(6)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        rows = [("Watermark", watermark_text(report)), ("Content Credentials", credentials_text(report))]
        if report.parameters:
            rows.append(("Parameters", self._parameters(report.parameters)))
        rows.append(("Library record", record_text(report)))
        if report.records:
            rows.append(("Made again", reproducibility(report.records[0].provenance.settings)))
        for title, value in rows:
            key = QLabel(title)
            key.setObjectName("fieldName")
            field = _label(value, "fieldValue")
            self.fields[title] = field
            form.addRow(key, field)
        layout.addLayout(form)

    @staticmethod
    def _parameters(parameters: dict[str, Any]) -> str:
        lines = []
        filled = {k: v for k, v in parameters.items() if v not in ("", None)}
        for key, value in list(filled.items())[:_PARAMETERS_SHOWN]:
            text = str(value)
            lines.append(f"{key}: {text if len(text) <= 160 else text[:157] + '…'}")
        if len(filled) > _PARAMETERS_SHOWN:
            lines.append(f"… and {len(filled) - _PARAMETERS_SHOWN} more")
        return "\n".join(lines)

    def text(self) -> str:
        """Everything the card shows, as one text (for tests and copying)."""
        parts = [self.summary.text()] + [f"{k}: {v.text()}" for k, v in self.fields.items()]
        return "\n".join(parts)


class DropZone(QFrame):
    """The dashed area that invites a drop; it only changes its look while files hover."""

    def set_hovered(self, hovered: bool) -> None:
        self.setProperty("hover", hovered)
        self.style().unpolish(self)
        self.style().polish(self)


class VerifyPanel(QWidget):
    """Drop files or pick them; one card per file.

    ``verify_finished`` carries the terminal JobEvent of each verification.
    """

    verify_finished = Signal(object)

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("verifyPanel")
        self.bridge = bridge
        self._op: JobOp | None = None
        self.setAcceptDrops(True)
        self._build()

    def _build(self) -> None:
        title = QLabel("Verify")
        title.setObjectName("pageTitle")
        intro = _label(
            "Check whether a file was made by Ember on this computer: its watermark, its Content "
            "Credentials, the settings written in it and the matching record in your library. "
            "The files stay where they are; nothing is uploaded.",
            "settingsHint",
            selectable=False,
        )
        self.drop_zone = DropZone()
        self.drop_zone.setObjectName("dropZone")
        zone = QVBoxLayout(self.drop_zone)
        zone.setContentsMargins(24, 22, 24, 22)
        zone.setSpacing(10)
        hint = QLabel("Drop images, WAV files or text files here")
        hint.setObjectName("dropHint")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.choose_button = QPushButton("Choose files…")
        self.choose_button.setObjectName("chooseFiles")
        self.choose_button.clicked.connect(self.choose_files)
        zone.addWidget(hint)
        zone.addWidget(self.choose_button, 0, Qt.AlignmentFlag.AlignCenter)

        self.busy_bar = QProgressBar()
        self.busy_bar.setObjectName("busyBar")
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setFixedHeight(4)
        self.busy_bar.setRange(0, 0)
        self.busy_label = QLabel()
        self.busy_label.setObjectName("busyLabel")
        busy = QHBoxLayout()
        busy.addWidget(self.busy_label)
        busy.addWidget(self.busy_bar, 1)
        self.busy_bar.hide()
        self.busy_label.hide()

        self.message = _label("", "errorRow")
        self.message.hide()

        self._cards_column = QWidget()
        self._cards_column.setObjectName("cardsColumn")
        self._cards = QVBoxLayout(self._cards_column)
        self._cards.setContentsMargins(0, 0, 0, 0)
        self._cards.setSpacing(12)
        self._cards.addStretch(1)
        scroll = QScrollArea()
        scroll.setObjectName("cardsScroll")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self._cards_column)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 24, 32, 16)
        layout.setSpacing(12)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addWidget(self.drop_zone)
        layout.addLayout(busy)
        layout.addWidget(self.message)
        layout.addWidget(scroll, 1)

    # -- state -------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether files are being verified."""
        return self._op is not None

    def cards(self) -> list[VerifyCard]:
        """The cards shown, in the order of the files."""
        found = []
        for i in range(self._cards.count()):
            widget = self._cards.itemAt(i).widget()
            if isinstance(widget, VerifyCard):
                found.append(widget)
        return found

    def _set_busy(self, op: JobOp | None, count: int = 0) -> None:
        self._op = op
        busy = op is not None
        self.busy_label.setText(f"Checking {count} file{'s' if count != 1 else ''}…" if busy else "")
        self.busy_label.setVisible(busy)
        self.busy_bar.setRange(0, 0)  # moving until the first file is done
        self.busy_bar.setVisible(busy)
        self.choose_button.setEnabled(not busy)
        self.setAcceptDrops(not busy)

    # -- files in ----------------------------------------------------------------------------
    def choose_files(self) -> None:
        """Ask for files and verify them."""
        paths, _ = QFileDialog.getOpenFileNames(self, "Choose files to verify", "", _FILE_FILTER)
        if paths:
            self.verify_paths(paths)

    def verify_paths(self, paths: list[str]) -> bool:
        """Submit the files for verification; returns whether it started (not while busy, not for none)."""
        paths = [p for p in paths if p]
        if self.busy or not paths:
            return False
        self.message.hide()
        try:
            op = (
                self.bridge.op(VerifyRequest(paths=tuple(paths)), parent=self)
                .on_progress(self._on_progress)
                .success(self._on_result)
                .on_finished(self._on_finished)
                .run()
            )
        except (EmberError, RuntimeError) as exc:
            self._show_message(f"Ember could not start checking these files: {exc}")
            return False
        self._set_busy(op, len(paths))
        return True

    @staticmethod
    def _local_paths(event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> list[str]:
        data = event.mimeData()
        if not data.hasUrls():
            return []
        return [url.toLocalFile() for url in data.urls() if url.isLocalFile() and url.toLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if not self.busy and self._local_paths(event):
            event.acceptProposedAction()
            self.drop_zone.set_hovered(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if not self.busy and self._local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self.drop_zone.set_hovered(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.drop_zone.set_hovered(False)
        paths = self._local_paths(event)
        if paths and self.verify_paths(paths):
            event.acceptProposedAction()
        else:
            event.ignore()

    # -- results (on the GUI thread, through the bridge) ---------------------------------------
    def _on_progress(self, data: Any) -> None:
        if isinstance(data, Step) and data.total:
            self.busy_bar.setRange(0, data.total)
            self.busy_bar.setValue(data.done)

    def _on_result(self, reports: list[VerifyReport]) -> None:
        self.clear_cards()
        for report in reports:
            self._cards.insertWidget(self._cards.count() - 1, VerifyCard(report))

    def show_notice(self, text: str, *, error: bool = False, decision: Any = None) -> None:
        """The shared default for a check that did not finish (failed, stopped): the message line."""
        self._on_failed(text)

    def _on_failed(self, reason: Any) -> None:
        text = str(getattr(reason, "reason", "") or reason)
        self._show_message(f"The files could not be checked: {text}")

    def _on_finished(self, event: JobEvent) -> None:
        self._set_busy(None)
        self.verify_finished.emit(event)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def clear_cards(self) -> None:
        """Remove every card."""
        for card in self.cards():
            self._cards.removeWidget(card)
            card.deleteLater()

    def shutdown(self) -> None:
        """Stop a running verification (the window is closing)."""
        if self._op is not None:
            self._op.cancel()
