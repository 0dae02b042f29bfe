"""The messages of one conversation: one widget a message, Markdown, following the bottom."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

_ROLE_NAMES = {"user": "You", "assistant": "Assistant", "system": "System"}


def keep_line_breaks(markdown: str) -> str:
    """Return ``markdown`` with single line breaks made hard, outside code blocks.

    Plain Markdown joins consecutive lines into one paragraph; in a chat, a poem or an
    address written line by line must stay that way, as in every chat app.
    """
    out: list[str] = []
    fenced = False
    lines = markdown.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not fenced and line.strip() and following.strip() and not line.endswith("  "):
            line += "  "
        out.append(line)
    return "\n".join(out)


class MessageWidget(QFrame):
    """One message: who said it, and what, rendered as Markdown and selectable."""

    def __init__(self, role: str, text: str = "", *, partial: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.setObjectName(f"{role}Message")
        self.role_label = QLabel()
        self.role_label.setObjectName("messageRole")
        self.body = QLabel()
        self.body.setObjectName("messageBody")
        self.body.setTextFormat(Qt.TextFormat.MarkdownText)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.body.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)
        layout.addWidget(self.role_label)
        layout.addWidget(self.body)
        self._text = ""
        self._partial = False
        self.set_text(text)
        self.set_partial(partial)

    @property
    def text(self) -> str:
        """The message's text as Markdown source."""
        return self._text

    @property
    def partial(self) -> bool:
        """Whether this reply was stopped before it ended."""
        return self._partial

    def set_text(self, text: str) -> None:
        """Show ``text`` (Markdown, with the writer's line breaks kept)."""
        self._text = text
        self.body.setText(keep_line_breaks(text))

    def set_partial(self, partial: bool) -> None:
        """Mark the reply as stopped (or not) next to its role name."""
        self._partial = partial
        name = _ROLE_NAMES.get(self.role, self.role)
        self.role_label.setText(f"{name}  (stopped)" if partial else name)


WELCOME = (
    "Chat with a language model that runs on this computer: nothing you write leaves it.\n"
    "Type below and press Ctrl+Enter. Settings holds the system prompt and sampling; "
    "every reply is kept with a record of the model and settings that made it."
)


def remote_welcome(host: str) -> str:
    """The welcome when the chosen model runs on a remote server: what is written leaves this computer."""
    return (
        f"Chat with a model on the remote server {host}: what you write is sent there. Ember's safety filter "
        "reads it first, and every reply as it arrives.\n"
        "Type below and press Ctrl+Enter. Replies are kept in your library with a record of the server that "
        "made them; a remote server cannot carry Ember's watermark."
    )


class NoticeRow(QLabel):
    """A calm inline line: a notice from the engine, or why a reply failed."""

    def __init__(self, text: str, *, error: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.error = error
        self.setObjectName("errorRow" if error else "noticeRow")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)


class SafetyNotice(QFrame):
    """A calm information box for something the safety filter stopped.

    It shows the decision's reason as it is (the sentence already names the category
    and what the person can do) and a "Safety settings" button that emits
    ``settings_requested``.
    """

    settings_requested = Signal()

    def __init__(self, reason: str, category: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("safetyNotice")
        self.category = category
        title = QLabel("Safety filter")
        title.setObjectName("safetyNoticeTitle")
        self.label = QLabel(reason)
        self.label.setObjectName("safetyNoticeText")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.settings_button = QPushButton("Safety settings")
        self.settings_button.setObjectName("safetySettingsButton")
        self.settings_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.settings_button.clicked.connect(self.settings_requested)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addStretch(1)
        buttons.addWidget(self.settings_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(6)
        layout.addWidget(title)
        layout.addWidget(self.label)
        layout.addLayout(buttons)

    def text(self) -> str:
        """The reason shown."""
        return self.label.text()


def source_name(citation: Any) -> str:
    """How a Sources line names a citation: "[1] README.md p.3" (a PDF page) or "[2] notes.md line 12"."""
    where = f"p.{citation.page}" if citation.page is not None else f"line {citation.line}"
    return f"[{citation.number}] {Path(citation.path).name} {where}"


class SourcesRow(QLabel):
    """The sources of a reply grounded in the person's documents: one link a citation.

    Each link's target is the citation's file URL (``link_targets``); a click calls ``on_open``
    with the citation, which opens the file where the passage is.
    """

    def __init__(
        self,
        citations: Sequence[Any],
        targets: Sequence[str],
        on_open: Callable[[Any], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sourcesRow")
        self.citations = tuple(citations)
        self.link_targets = tuple(targets)
        self._on_open = on_open
        links = ", ".join(
            f'<a href="{escape(url, quote=True)}" title="{escape(c.label, quote=True)}">{escape(source_name(c))}</a>'
            for c, url in zip(self.citations, self.link_targets, strict=True)
        )
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setText(f"Sources: {links}")
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.setOpenExternalLinks(False)  # the panel opens the citation (page or line), not the bare link
        self.linkActivated.connect(self.open_link)

    def plain_text(self) -> str:
        """The line as a person reads it: "Sources: [1] README.md p.3, [2] notes.md line 12"."""
        return "Sources: " + ", ".join(source_name(c) for c in self.citations)

    def open_link(self, url: str) -> None:
        """Open the citation whose link is ``url`` (what a click does)."""
        for citation, target in zip(self.citations, self.link_targets, strict=True):
            if target == url:
                self._on_open(citation)
                return


class MessageView(QScrollArea):
    """A scrolling column of messages and notices that stays at the bottom while it grows.

    It follows the bottom as long as the person has not scrolled up; scrolling back
    down to the end makes it follow again. ``safety_settings_requested`` fires when the
    person asks for the safety settings from a :class:`SafetyNotice`.
    """

    safety_settings_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageView")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._column = QWidget()
        self._column.setObjectName("messageColumn")
        self._layout = QVBoxLayout(self._column)
        self._layout.setContentsMargins(16, 16, 16, 16)
        self._layout.setSpacing(10)
        self.welcome = QLabel(WELCOME)
        self.welcome.setObjectName("welcome")
        self.welcome.setWordWrap(True)
        self.welcome.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._layout.addWidget(self.welcome)
        self._layout.addStretch(1)
        self.setWidget(self._column)
        self._follow = True
        bar = self.verticalScrollBar()
        bar.rangeChanged.connect(self._on_range_changed)
        bar.valueChanged.connect(self._on_scrolled)

    def clear(self) -> None:
        """Remove every message and notice; the welcome line shows again."""
        for widget in self._widgets():
            if widget is not self.welcome:
                self._layout.removeWidget(widget)
                widget.deleteLater()
        self.welcome.show()
        self._follow = True

    def add_message(self, role: str, text: str, *, partial: bool = False) -> MessageWidget:
        """Append a message and return its widget (to stream into it)."""
        widget = MessageWidget(role, text, partial=partial)
        self._append(widget)
        return widget

    def add_notice(self, text: str, *, error: bool = False) -> NoticeRow:
        """Append a notice row (``error`` for failures) and return it."""
        row = NoticeRow(text, error=error)
        self._append(row)
        return row

    def add_safety_notice(self, reason: str, category: str = "") -> SafetyNotice:
        """Append a calm notice for something the safety filter stopped and return it."""
        notice = SafetyNotice(reason, category)
        notice.settings_requested.connect(self.safety_settings_requested)
        self._append(notice)
        return notice

    def add_sources(
        self, citations: Sequence[Any], targets: Sequence[str], on_open: Callable[[Any], None], *, after: QWidget
    ) -> SourcesRow:
        """Show a Sources line right under ``after`` (a reply) and return it."""
        row = SourcesRow(citations, targets, on_open)
        self._insert_after(after, row)
        return row

    def add_notice_after(self, text: str, after: QWidget) -> NoticeRow:
        """A notice row right under ``after`` (a reply, or its Sources line); returns it."""
        row = NoticeRow(text)
        self._insert_after(after, row)
        return row

    def sources(self) -> list[SourcesRow]:
        """The Sources lines, top to bottom."""
        return [w for w in self._widgets() if isinstance(w, SourcesRow)]

    def safety_notices(self) -> list[SafetyNotice]:
        """The safety notices, top to bottom."""
        return [w for w in self._widgets() if isinstance(w, SafetyNotice)]

    def messages(self) -> list[MessageWidget]:
        """The message widgets, top to bottom (notices left out)."""
        return [w for w in self._widgets() if isinstance(w, MessageWidget)]

    def notices(self) -> list[NoticeRow]:
        """The notice rows, top to bottom."""
        return [w for w in self._widgets() if isinstance(w, NoticeRow)]

    def remove(self, widget: QWidget) -> None:
        """Take one message or notice out of the view."""
        self._layout.removeWidget(widget)
        widget.hide()  # at once: deleteLater waits for the event loop
        widget.deleteLater()

    def _widgets(self) -> list[QWidget]:
        found = []
        for i in range(self._layout.count()):
            widget = self._layout.itemAt(i).widget()
            if widget is not None and widget is not self.welcome:
                found.append(widget)
        return found

    def _append(self, widget: QWidget) -> None:
        self.welcome.hide()
        self._layout.insertWidget(self._layout.count() - 1, widget)
        self._follow = True

    def _insert_after(self, anchor: QWidget, widget: QWidget) -> None:
        index = self._layout.indexOf(anchor)
        if index < 0:  # the anchor is gone (another conversation is shown): the line is not this one's
            widget.deleteLater()
            return
        self.welcome.hide()
        self._layout.insertWidget(index + 1, widget)

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def _on_scrolled(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 4
