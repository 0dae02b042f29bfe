"""What a panel shows while it has no model: what is missing, and the next step, never a prompt that cannot run.

:class:`ModelNeeded` lists the catalog's models of the panel's kind that suit this machine (best
first, with their download sizes and where they would run, from ``engines.models.fit.recommended``),
each with a Download button, beside "Choose folder…" (a model already on disk) and "All models…"
(the Models panel's catalog). The catalog and the machine are read off the GUI thread when the
card is first shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop.bridge import EventBridge
from engines.units import human_bytes


def recommended_entries(kind: str, count: int = 3) -> list[tuple[Any, Any]]:
    """(CatalogEntry, Fit) of the catalog's ``kind`` models that run here, best first (reads the catalog)."""
    from engines.hardware import gpus, machine
    from engines.models.catalog import load_catalog
    from engines.models.fit import recommended

    return recommended(load_catalog(), kind, machine(), gpus(), count)


class ModelNeeded(QFrame):
    """The card of a panel with no model of ``kind``.

    ``download_requested`` carries a catalog entry's id; ``choose_requested`` asks for a model on
    disk; ``browse_requested`` for the Models panel's catalog of this kind.
    """

    download_requested = Signal(str)
    choose_requested = Signal()
    browse_requested = Signal(str)

    def __init__(
        self,
        bridge: EventBridge,
        kind: str,
        title: str,
        text: str,
        parent: QWidget | None = None,
        *,
        entries: Callable[[], list[tuple[Any, Any]]] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("modelNeeded")
        self.bridge = bridge
        self.kind = kind
        self._entries = entries or (lambda: recommended_entries(kind))
        self._asked = False
        self.download_buttons: dict[str, QPushButton] = {}
        heading = QLabel(title)
        heading.setObjectName("modelNeededTitle")
        body = QLabel(text)
        body.setWordWrap(True)
        body.setObjectName("modelNeededText")
        self.list_title = QLabel("Suggested for this computer")
        self.list_title.setObjectName("modelNeededListTitle")
        self.rows = QGridLayout()
        self.rows.setHorizontalSpacing(14)
        self.rows.setColumnStretch(0, 1)
        self.rows.setVerticalSpacing(8)
        self.status = QLabel("Looking at the catalog…")
        self.status.setObjectName("modelNeededStatus")
        self.status.setWordWrap(True)
        self.choose_button = QPushButton("Choose folder…")
        self.choose_button.setObjectName("modelNeededChoose")
        self.choose_button.clicked.connect(self.choose_requested)
        self.browse_button = QPushButton("All models…")
        self.browse_button.setObjectName("modelNeededBrowse")
        self.browse_button.clicked.connect(lambda: self.browse_requested.emit(self.kind))
        buttons = QHBoxLayout()
        buttons.addWidget(self.choose_button)
        buttons.addWidget(self.browse_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 24)
        layout.setSpacing(10)
        layout.addWidget(heading)
        layout.addWidget(body)
        layout.addSpacing(6)
        layout.addWidget(self.list_title)
        layout.addLayout(self.rows)
        layout.addWidget(self.status)
        layout.addSpacing(6)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.setStyleSheet(
            "QFrame#modelNeeded { background: #fbf8f4; border: 1px solid #e6ddd3; border-radius: 12px; }"
            "QLabel#modelNeededTitle { font-size: 17px; font-weight: 600; color: #2b2622; }"
            "QLabel#modelNeededText, QLabel#modelNeededStatus, QLabel#modelNeededDetail { color: #5c544d; }"
            "QLabel#modelNeededListTitle { color: #8a8178; font-weight: 600; }"
            "QPushButton#modelNeededDownload { background: #d9622b; color: #ffffff; border: none;"
            " font-weight: 600; padding: 5px 12px; border-radius: 7px; }"
            "QPushButton#modelNeededDownload:disabled { background: #e7b9a1; }"
        )

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._asked:
            self.load()

    def load(self) -> Any:
        """Read the suggestions (off the GUI thread) and list them."""
        self._asked = True
        return (
            self.bridge.background(self._entries, parent=None)
            .success(self.show_entries)
            .failure(
                lambda exc: self.status.setText(f"The catalog could not be read ({exc}). Choose a folder instead.")
            )
            .run()
        )

    def show_entries(self, found: list[tuple[Any, Any]]) -> None:
        """List ``found`` ((CatalogEntry, Fit) pairs), each with its Download button."""
        while self.rows.count():
            widget = self.rows.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.download_buttons = {}
        for row, (entry, fit) in enumerate(found):
            about = QWidget()
            about.setObjectName("modelNeededEntry")
            lines = QVBoxLayout(about)
            lines.setContentsMargins(0, 0, 0, 0)
            lines.setSpacing(1)
            name = QLabel(f"<b>{entry.name}</b>")
            name.setWordWrap(True)
            name.setToolTip(entry.purpose or entry.repo)
            detail = QLabel(f"{human_bytes(entry.size_bytes)} · {fit.summary}")
            detail.setObjectName("modelNeededDetail")
            detail.setWordWrap(True)
            detail.setToolTip(fit.explanation)
            lines.addWidget(name)
            lines.addWidget(detail)
            button = QPushButton("Download")
            button.setObjectName("modelNeededDownload")
            button.clicked.connect(lambda _checked=False, e=entry.id: self._download(e))
            self.download_buttons[entry.id] = button
            self.rows.addWidget(about, row, 0)
            self.rows.addWidget(button, row, 1, Qt.AlignmentFlag.AlignVCenter)
        self.list_title.setVisible(bool(found))
        self.status.setText(
            "" if found else "None of the catalog's models suits this computer; choose a model folder you have."
        )

    def downloading(self, entry_id: str, text: str) -> None:
        """Say that ``entry_id`` is on its way (its button stays disabled)."""
        button = self.download_buttons.get(entry_id)
        if button is not None:
            button.setEnabled(False)
            button.setText("Downloading…")
        self.status.setText(text)

    def _download(self, entry_id: str) -> None:
        self.download_requested.emit(entry_id)
