"""The Chat panel: conversations on the left, messages in the middle, settings on the right.

It sends requests through the bridge and shows what comes back; it never touches a
thread, and never writes a store on the GUI thread: conversations and messages are
written by background ops, replies by the Studio (the request names its conversation).
Streamed text is what TOKEN events carried; a reply is final only as the Delivered object
of a RESULT, or of a CANCELLED with a partial output, and is shown as the store keeps it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QKeyEvent, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import BackgroundOp, EventBridge, JobOp, blocked_reason
from desktop.dictation_button import DictationButton
from desktop.message_view import WELCOME, MessageView, MessageWidget, SafetyNotice, remote_welcome
from desktop.model_picker import ModelChoice, ModelPicker
from desktop.read_aloud import ReadAloud
from desktop.settings_drawer import SettingsDrawer
from desktop.widgets import Throttled
from engines.conversations import Conversation
from engines.documents.grounding import Citation, open_target
from engines.documents.service import GroundedChat, safety_screen
from engines.errors import EmberError
from engines.jobs import JobEvent
from engines.pipeline import Delivered, require_delivered
from engines.progress import Loading, Running
from engines.remote import is_remote
from engines.text.requests import Sampling, text_request
from engines.units import human_bytes

# About 30 renders a second: Markdown re-layout of a long reply for every token would
# starve the event loop, and the eye cannot follow faster anyway.
_RENDER_INTERVAL_MS = 33
_TITLE_WORDS = 6
_TITLE_CHARS = 48
_MARKDOWN_MARKS = str.maketrans("", "", "*_`#>")
USE_DOCUMENTS_KEY = "chat.use_documents"
_DOCUMENTS_ON = "Answer from the passages of your indexed folders that fit the question, and show their sources."
_NO_DOCUMENTS = "No folder is indexed yet: open Manage… to add one. Until then messages go without documents."

Mode = Literal["reply", "continue"]


def title_from(text: str) -> str:
    """Return a conversation title made of the first words of ``text`` (Markdown marks left out)."""
    words = text.translate(_MARKDOWN_MARKS).split()
    title = " ".join(words[:_TITLE_WORDS])
    if len(title) > _TITLE_CHARS:
        title = title[:_TITLE_CHARS].rstrip()
    if len(words) > _TITLE_WORDS or len(title) < len(" ".join(words)):
        title += "…"
    return title or "New conversation"


class PromptEdit(QPlainTextEdit):
    """The input box: Ctrl+Enter sends, Esc stops the running reply."""

    submit_requested = Signal()
    stop_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.submit_requested.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.stop_requested.emit()
            return
        super().keyPressEvent(event)


class ChatPanel(QWidget):
    """Chat with a local text model; conversations are kept in ``studio.conversations``.

    Signals for the status bar: ``backend_changed`` (e.g. "CPU"), ``model_changed``
    (the model's name) and ``speed_changed`` (tokens per second, live and final).
    ``stream_rendered`` fires after each (throttled) render of a streaming reply, and
    ``reply_finished`` carries the terminal JobEvent of every reply.
    ``safety_settings_requested`` fires when the person asks for the safety settings
    from a notice of something the safety filter stopped.
    """

    backend_changed = Signal(str)
    model_changed = Signal(str)
    speed_changed = Signal(float)
    busy_changed = Signal(bool)
    stream_rendered = Signal()
    reply_finished = Signal(object)
    safety_settings_requested = Signal()

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatPanel")
        self.bridge = bridge
        self.store = bridge.studio.conversations
        self._conversation_id: int | None = None
        self._model: ModelChoice | None = None
        self._model_path = ""
        self._is_base = False
        self._op: JobOp | None = None
        self._mode: Mode = "reply"
        self._reply: MessageWidget | None = None
        self._reply_base = ""
        self._stream: list[str] = []
        self._tokens = 0
        self._first_token_s = 0.0
        # The message just sent (store id, its widget, its text, whether it started the
        # conversation): a prompt refused at submission is taken back into the input box.
        self._sent: tuple[int, MessageWidget, str, bool] | None = None
        # Store work for the next reply is under way (a background op): the panel is busy already.
        self._preparing = False
        self._stop_asked = False
        self._before: tuple[int, str] = (0, "")  # messages in the conversation, and the last one, when it started
        # The reply under way was grounded in the person's documents: the person's message id and what was found.
        self._grounded: tuple[int | None, GroundedChat, str | None] | None = None
        self._forget_citations: int | None = None  # a regenerated reply without documents: its old sources go
        self._regenerating = False
        self._shown = 0  # counts conversations shown, so late Sources lines of another one are dropped
        self._has_folders = False
        self.documents_dialog: Any = None
        self._render_throttled = Throttled(self._render_stream, _RENDER_INTERVAL_MS, parent=self)

        self._build()
        self.refresh_documents()
        self.refresh_conversations()
        self._on_model_picked(self.model_picker.current_choice())

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.conversation_list = QListWidget()
        self.conversation_list.setObjectName("conversationList")
        self.conversation_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conversation_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conversation_list.currentItemChanged.connect(self._on_conversation_selected)
        self.new_button = QPushButton("New")
        self.rename_button = QPushButton("Rename")
        self.delete_button = QPushButton("Delete")
        self.export_button = QPushButton("Export")
        self.new_button.clicked.connect(self.new_conversation)
        self.rename_button.clicked.connect(self._rename_clicked)
        self.delete_button.clicked.connect(self._delete_clicked)
        self.export_button.clicked.connect(self._export_clicked)
        side = QWidget()
        side.setObjectName("conversationSide")
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(8, 8, 8, 8)
        side_layout.addWidget(self.new_button)
        side_layout.addWidget(self.conversation_list, 1)
        row = QHBoxLayout()
        for button in (self.rename_button, self.delete_button, self.export_button):
            row.addWidget(button)
        side_layout.addLayout(row)

        self.model_picker = ModelPicker()
        self.model_picker.model_picked.connect(self._on_model_picked)
        self.base_hint = QLabel("Base model: continues your text")
        self.base_hint.setObjectName("baseHint")
        self.base_hint.hide()
        self.unload_button = QPushButton("Unload")
        self.unload_button.setToolTip("Free the memory loaded models use; the model loads again on the next message.")
        self.unload_button.clicked.connect(self.unload_models)
        self.settings_button = QPushButton("Settings")
        self.settings_button.setCheckable(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_picker)
        top.addWidget(self.unload_button)
        top.addWidget(self.base_hint)
        top.addStretch(1)
        top.addWidget(self.settings_button)

        self.message_view = MessageView()
        self.message_view.safety_settings_requested.connect(self.safety_settings_requested)
        self.read_aloud = ReadAloud(self.bridge, self.message_view, self)  # a Read aloud button on each reply
        self.input = PromptEdit()
        self.input.setObjectName("promptInput")
        self.input.setPlaceholderText("Write a message — Ctrl+Enter sends, Esc stops")
        self.input.setFixedHeight(96)
        self.input.submit_requested.connect(self.send)
        self.input.stop_requested.connect(self.stop)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.clicked.connect(self._send_or_stop)
        # Dictation: the microphone's transcription goes into the message box, for the person to send.
        self.mic_button = DictationButton(self.bridge, self.input, self)
        self.regenerate_button = QPushButton("Regenerate")
        self.continue_button = QPushButton("Continue")
        self.regenerate_button.clicked.connect(self.regenerate)
        self.continue_button.clicked.connect(self.continue_reply)
        buttons = QHBoxLayout()
        buttons.addWidget(self.regenerate_button)
        buttons.addWidget(self.continue_button)
        buttons.addStretch(1)
        # Chat with your documents: the toggle, and Manage… (the indexed folders) in its menu.
        self.documents_button = QToolButton()
        self.documents_button.setObjectName("documentsButton")
        self.documents_button.setText("Use my documents")
        self.documents_button.setCheckable(True)
        self.documents_button.setChecked(bool(self.bridge.studio.settings.get(USE_DOCUMENTS_KEY, False)))
        self.documents_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        menu = QMenu(self.documents_button)
        self.manage_documents_action = menu.addAction("Manage…")
        self.manage_documents_action.triggered.connect(self.manage_documents)
        self.documents_button.setMenu(menu)
        self.documents_button.toggled.connect(self._use_documents_toggled)
        buttons.addWidget(self.documents_button)
        buttons.addWidget(self.mic_button)
        buttons.addWidget(self.send_button)

        middle = QWidget()
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(8, 8, 8, 8)
        middle_layout.addLayout(top)
        middle_layout.addWidget(self.message_view, 1)
        middle_layout.addWidget(self.input)
        middle_layout.addLayout(buttons)

        self.settings = SettingsDrawer()
        self.settings.hide()
        self.settings_button.toggled.connect(self.settings.setVisible)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(side)
        splitter.addWidget(middle)
        splitter.addWidget(self.settings)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([220, 640, 260])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        # Esc also stops when the focus is elsewhere in the panel (the input handles its own).
        stop = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        stop.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        stop.activated.connect(self.stop)
        self._update_buttons()

    # -- state -------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a reply is being generated (or its conversation is being written first)."""
        return self._op is not None or self._preparing

    @property
    def conversation_id(self) -> int | None:
        """The conversation shown, or None before the first message of a new one."""
        return self._conversation_id

    @property
    def use_documents(self) -> bool:
        """Whether replies are grounded in the person's indexed documents (the toggle)."""
        return self.documents_button.isChecked()

    @property
    def completion_mode(self) -> bool:
        """Whether the picked model is a base model, so replies continue the text."""
        return self._is_base

    def _set_busy(self, op: JobOp | None, *, preparing: bool = False) -> None:
        self._op = op
        self._preparing = preparing
        if op is None and not preparing:
            self._stop_asked = False
        self._update_buttons()
        self.busy_changed.emit(self.busy)

    def show_notice(self, text: str, *, error: bool = False, decision: Any = None) -> None:
        """The shared default for jobs and background work that did not succeed: a calm notice in the conversation."""
        if decision is not None:
            self.message_view.add_safety_notice(text, str(getattr(decision, "category", "") or ""))
        else:
            self.message_view.add_notice(text, error=error)

    def _in_background(self, work: Any) -> BackgroundOp:
        return self.bridge.background(work, parent=self)

    def _update_buttons(self) -> None:
        busy = self.busy
        selected = self._conversation_id is not None
        self.send_button.setText("Stop" if busy else "Send")
        self.send_button.setProperty("stop", busy)
        self.send_button.style().polish(self.send_button)
        for widget in (self.conversation_list, self.new_button, self.model_picker, self.settings):
            widget.setEnabled(not busy)
        for button in (self.rename_button, self.delete_button, self.export_button):
            button.setEnabled(selected and not busy)
        self.regenerate_button.setEnabled(selected and not busy)
        self.continue_button.setEnabled(selected and not busy)

    # -- conversations ---------------------------------------------------------------------
    def refresh_conversations(self) -> None:
        """Re-read the conversation list from the store, keeping the selection."""
        self.conversation_list.blockSignals(True)
        try:
            self.conversation_list.clear()
            for summary in self.store.list():
                item = QListWidgetItem(summary.title)
                item.setData(Qt.ItemDataRole.UserRole, summary.id)
                item.setToolTip(f"{summary.message_count} messages · {Path(summary.model_path).name}")
                self.conversation_list.addItem(item)
                if summary.id == self._conversation_id:
                    self.conversation_list.setCurrentItem(item)
        finally:
            self.conversation_list.blockSignals(False)

    def select_conversation(self, conversation_id: int) -> None:
        """Show the conversation with this id (as if the person clicked it)."""
        for i in range(self.conversation_list.count()):
            item = self.conversation_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == conversation_id:
                self.conversation_list.setCurrentItem(item)
                return

    def new_conversation(self) -> None:
        """Start an empty conversation; it is created in the store with its first message."""
        self._conversation_id = None
        self._shown += 1
        self.conversation_list.blockSignals(True)
        self.conversation_list.setCurrentItem(None)
        self.conversation_list.clearSelection()
        self.conversation_list.blockSignals(False)
        self.message_view.clear()
        self.settings.system_prompt.clear()
        self._update_buttons()
        self.input.setFocus()

    def _on_conversation_selected(self, current: QListWidgetItem | None, _previous: object = None) -> None:
        if current is None:
            return
        self._show_conversation(int(current.data(Qt.ItemDataRole.UserRole)))

    def _show_conversation(self, conversation_id: int) -> None:
        try:
            convo = self.store.get(conversation_id)
        except EmberError as exc:
            QMessageBox.warning(self, "Ember", str(exc))
            self.refresh_conversations()
            return
        self._conversation_id = convo.id
        self._shown += 1
        self.message_view.clear()
        replies: list[tuple[int, MessageWidget]] = []  # the person's message id, and the reply to it
        asked: int | None = None
        for message in convo.messages:
            widget = self.message_view.add_message(message.role, message.content, partial=message.partial)
            if message.role == "user":
                asked = message.id
            elif message.role == "assistant" and asked is not None:
                replies.append((asked, widget))
                asked = None
        self._show_kept_sources(replies)
        self.settings.system_prompt.setPlainText(convo.system_prompt)
        self.settings.set_values(convo.settings)
        if convo.model_path and convo.model_path != self._model_path:
            if not self.model_picker.select_model_path(convo.model_path):
                self.message_view.add_notice(
                    f"This conversation was written with {Path(convo.model_path).name}, which is no longer "
                    "available here; new replies use the model selected above."
                )
        self._update_buttons()

    def rename_conversation(self, title: str) -> BackgroundOp | None:
        """Give the shown conversation a new title (blank titles are ignored); returns the background op."""
        if self._conversation_id is None or not title.strip():
            return None
        convo, store = self._conversation_id, self.store
        return (
            self._in_background(lambda: store.update(convo, title=title.strip()))
            .success(lambda _: self.refresh_conversations())
            .run()
        )

    def delete_conversation(self) -> BackgroundOp | None:
        """Delete the shown conversation and start a new one; returns the background op."""
        if self._conversation_id is None:
            return None
        convo, store = self._conversation_id, self.store
        self.new_conversation()
        return self._in_background(lambda: store.delete(convo)).success(lambda _: self.refresh_conversations()).run()

    def export_conversation(self, path: str, json_format: bool | None = None) -> Path | None:
        """Write the shown conversation to ``path`` as Markdown or JSON and return where it went.

        The format follows the ``.json`` suffix unless ``json_format`` says otherwise. A
        failure to write is explained in a message box and returns None.
        """
        if self._conversation_id is None:
            return None
        target = Path(path)
        as_json = target.suffix.lower() == ".json" if json_format is None else json_format
        if not target.suffix:
            target = target.with_suffix(".json" if as_json else ".md")
        try:
            if as_json:
                return self.store.export_json(self._conversation_id, target)
            return self.store.export_markdown(self._conversation_id, target)
        except EmberError as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
            return None

    def _rename_clicked(self) -> None:
        item = self.conversation_list.currentItem()
        if item is None:
            return
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=item.text())
        if ok:
            self.rename_conversation(title)

    def _delete_clicked(self) -> None:
        item = self.conversation_list.currentItem()
        if item is None:
            return
        answer = QMessageBox.question(
            self, "Delete conversation", f"Delete “{item.text()}” and all its messages? This cannot be undone."
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_conversation()

    def _export_clicked(self) -> None:
        item = self.conversation_list.currentItem()
        if item is None:
            return
        suggested = "".join(c if c.isalnum() or c in " -_" else "_" for c in item.text()).strip() or "conversation"
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export conversation", f"{suggested}.md", "Markdown (*.md);;JSON (*.json)"
        )
        if path:
            self.export_conversation(path, json_format=chosen.startswith("JSON") if chosen else None)

    # -- the model ----------------------------------------------------------------------------
    def _on_model_picked(self, choice: ModelChoice | None) -> None:
        if choice is None:
            self.message_view.add_notice(
                "No text model is installed. Open a GGUF file from the model list to start.", error=True
            )
            return
        try:
            path, is_base = choice.resolve()
        except EmberError as exc:
            QMessageBox.warning(self, "Ember cannot use this model", str(exc))
            return
        self._model, self._model_path, self._is_base = choice, path, is_base
        self.base_hint.setVisible(is_base)
        self.message_view.welcome.setText(remote_welcome(_host_of(path)) if is_remote(path) else WELCOME)
        self.model_changed.emit(choice.name)

    def unload_models(self) -> BackgroundOp:
        """Unload every idle model and say how much memory that freed; the op's result is how many were unloaded.

        The engine processes are asked off the GUI thread: one may be finishing a block of idle work.
        """
        studio = self.bridge.studio

        def said(freed: dict[str, int]) -> None:
            if freed:
                total = sum(freed.values())
                names = ", ".join(freed)
                self.message_view.add_notice(
                    f"Unloaded {names}: about {human_bytes(total, approximate=True)} of memory is free again."
                )
            else:
                self.message_view.add_notice("No model is loaded (a model that is writing a reply stays loaded).")

        op = self._in_background(studio.unload_models).success(said)
        op.success(lambda freed: setattr(op, "result", len(freed)))
        return op.run()

    # -- documents ---------------------------------------------------------------------------
    def refresh_documents(self) -> BackgroundOp:
        """Re-read which folders are indexed (off the GUI thread) and say so in the toggle's tooltip."""
        documents = self.bridge.studio.documents

        def shown(folders: list[Any]) -> None:
            self._has_folders = bool(folders)
            if not folders:
                self.documents_button.setToolTip(_NO_DOCUMENTS)
                return
            passages = sum(f.chunks for f in folders)
            self.documents_button.setToolTip(f"{_DOCUMENTS_ON}\n{len(folders)} folder(s), {passages} passages indexed.")

        return self._in_background(documents.folders).success(shown).run()

    def _use_documents_toggled(self, on: bool) -> None:
        settings = self.bridge.studio.settings
        self._in_background(lambda: settings.set(USE_DOCUMENTS_KEY, on)).run()

    def manage_documents(self) -> Any:
        """Open the Documents dialog (the indexed folders, adding and removing them) and return it."""
        from desktop.documents_dialog import DocumentsDialog

        if self.documents_dialog is None:
            self.documents_dialog = DocumentsDialog(self.bridge, self)
            self.documents_dialog.folders_changed.connect(self.refresh_documents)
        self.documents_dialog.refresh()
        self.documents_dialog.show()
        self.documents_dialog.raise_()
        return self.documents_dialog

    def open_citation(self, citation: Citation) -> bool:
        """Open a citation's file where its passage is (the page of a PDF); returns whether it opened."""
        return bool(QDesktopServices.openUrl(QUrl(open_target(citation).url)))

    def _show_sources(self, citations: list[Citation], reply: MessageWidget) -> QWidget:
        targets = [open_target(c).url for c in citations]
        return self.message_view.add_sources(citations, targets, self.open_citation, after=reply)

    def _show_grounding(self, reply: MessageWidget) -> None:
        """Under a delivered reply: its sources, and a line when passages were left out or found by keywords only."""
        grounded, self._grounded = self._grounded, None
        forget, self._forget_citations = self._forget_citations, None
        store = self.bridge.studio.documents.store
        if forget is not None:
            self._in_background(lambda: store.save_citations(forget, [])).run()
        if grounded is None:
            return
        asked, found, fallback = grounded
        citations = list(found.citations)
        below: QWidget = reply
        if citations:
            below = self._show_sources(citations, reply)
        else:
            below = self.message_view.add_notice_after("No passage of your documents matched this message.", reply)
        if asked is not None:
            self._in_background(lambda: store.save_citations(asked, citations)).run()
        said = []
        if found.withheld:
            said.append(
                f"{found.withheld} passage(s) of your documents were left out: the safety filter would refuse them."
            )
        if fallback:
            said.append(f"Your documents were searched by keywords only ({fallback}).")
        if said:
            self.message_view.add_notice_after(" ".join(said), below)

    def _show_kept_sources(self, replies: list[tuple[int, MessageWidget]]) -> None:
        """Read the kept sources of a reopened conversation (off the GUI thread) and show them under their replies."""
        if not replies:
            return
        store, shown = self.bridge.studio.documents.store, self._shown
        asked = [message_id for message_id, _ in replies]

        def read() -> dict[int, list[Citation]]:
            return {m: [Citation(**c) for c in store.citations(m)] for m in asked}

        def show(kept: dict[int, list[Citation]]) -> None:
            if shown != self._shown:
                return  # another conversation is shown by now
            for message_id, reply in replies:
                if kept.get(message_id):
                    self._show_sources(kept[message_id], reply)

        self._in_background(read).success(show).run()

    # -- sending -----------------------------------------------------------------------------
    def _send_or_stop(self) -> None:
        if self.busy:
            self.stop()
        else:
            self.send()

    def send(self) -> bool:
        """Send the text in the input box; returns whether a reply was started.

        Invalid settings or a missing model are shown inline and change nothing. The message is
        stored (and a new conversation made) in the background, then the reply is asked for.
        """
        text = self.input.toPlainText().strip()
        if self.busy or not text:
            return False
        sampling = self._sampling()
        if sampling is None:
            return False
        store, convo = self.store, self._conversation_id
        created = convo is None
        model_path, system, values = self._model_path, self.settings.system_prompt.toPlainText(), self.settings.values()

        def write() -> tuple[int, Conversation]:
            target = store.create(title_from(text), model_path, system, values) if convo is None else convo
            message_id = store.add_user_message(target, text)
            return message_id, self._saved(target, model_path, system, values)

        widget = self.message_view.add_message("user", text)
        self._reply = self.message_view.add_message("assistant", "")  # where the reply will stream
        self.input.clear()
        self._set_busy(None, preparing=True)

        def written(result: tuple[int, Conversation]) -> None:
            message_id, conversation = result
            self._conversation_id = conversation.id
            self.refresh_conversations()
            # Job events arrive through queued signals, so this is set before any of them.
            self._sent = (message_id, widget, text, created)
            if not self._start("reply", sampling, conversation):
                self._sent = None

        self._in_background(write).success(written).failure(self._preparation_failed).run()
        return True

    def regenerate(self) -> bool:
        """Replace the last reply with a new one; returns whether a reply was started."""
        if self.busy or self._conversation_id is None:
            return False
        sampling = self._sampling()
        if sampling is None:
            return False
        store, convo = self.store, self._conversation_id
        model_path, system, values = self._model_path, self.settings.system_prompt.toPlainText(), self.settings.values()

        def write() -> Conversation:
            store.remove_last_reply(convo)
            return self._saved(convo, model_path, system, values)

        def written(conversation: Conversation) -> None:
            self._show_conversation(conversation.id)
            if not conversation.messages:
                self._set_busy(None)
                self.message_view.add_notice("There is nothing to reply to yet. Write a message first.")
                return
            self._regenerating = True
            try:
                self._start("reply", sampling, conversation)  # grounded again when the toggle is on
            finally:
                self._regenerating = False

        self._set_busy(None, preparing=True)
        self._in_background(write).success(written).failure(self._preparation_failed).run()
        return True

    def continue_reply(self) -> bool:
        """Let the model go on with its last reply; returns whether it started."""
        if self.busy or self._conversation_id is None:
            return False
        sampling = self._sampling()
        if sampling is None:
            return False
        current = self.store.get(self._conversation_id)
        if not current.messages or current.messages[-1].role != "assistant":
            self.message_view.add_notice("There is no reply to continue yet. Send a message first.")
            return False
        convo = self._conversation_id
        model_path, system, values = self._model_path, self.settings.system_prompt.toPlainText(), self.settings.values()
        self._set_busy(None, preparing=True)
        (
            self._in_background(lambda: self._saved(convo, model_path, system, values))
            .success(lambda conversation: self._start("continue", sampling, conversation))
            .failure(self._preparation_failed)
            .run()
        )
        return True

    def _saved(self, convo: int, model_path: str, system: str, values: dict[str, Any]) -> Conversation:
        """(In the background.) Keep the model and settings the next reply uses with the conversation; return it."""
        self.store.update(convo, model_path=model_path, system_prompt=system, settings=values)
        return self.store.get(convo)

    def _preparation_failed(self, error: BaseException) -> None:
        self._drop_stream()
        self._set_busy(None)
        self.message_view.add_notice(f"The reply could not start: {error}", error=True)

    def stop(self) -> None:
        """Stop the running reply; what was written so far is kept, marked as stopped."""
        if self._op is not None:
            self._op.cancel()
        elif self._preparing:
            self._stop_asked = True

    def _sampling(self) -> Sampling | None:
        if self._model is None:
            self.message_view.add_notice("Pick a model first: no text model is selected.", error=True)
            return None
        try:
            return self.settings.sampling()
        except ValueError as exc:
            self.message_view.add_notice(f"{exc} Change it in Settings and send again.", error=True)
            return None

    def _start(self, mode: Mode, sampling: Sampling, convo: Conversation) -> bool:
        """Ask for a reply to ``convo`` (as stored); the Studio keeps the delivered reply in it."""
        assert self._model is not None
        options = self.settings.model_options(self._model_path)
        request = text_request(
            options,
            convo.as_messages(),
            sampling=sampling,
            base_model=self._is_base,
            system_prompt=self.settings.system_prompt.toPlainText(),
            mode=mode,
            conversation_id=convo.id,
        )
        last = convo.messages[-1] if convo.messages else None
        self._before = (len(convo.messages), last.content if last else "")
        existing = self.message_view.messages()
        if mode == "continue" and existing and existing[-1].role == "assistant":
            self._reply = existing[-1]
            self._reply_base = self._reply.text
            self._reply.set_partial(False)
        elif self._reply is None:
            self._reply = self.message_view.add_message("assistant", "")
            self._reply_base = ""
        else:
            self._reply_base = ""
        self._mode = mode
        self._stream = []
        self._tokens = 0
        self._first_token_s = 0.0
        self._grounded = None
        self._forget_citations = None
        asked = last.id if last is not None and last.role == "user" and mode == "reply" else None
        if asked is not None and self.use_documents:
            self._ground_then_submit(request, asked)
            return True
        if asked is not None and self._regenerating:
            self._forget_citations = asked  # this reply has no sources: the last one's must not come back
        return self._submit(request)

    def _ground_then_submit(self, request: Any, asked: int) -> None:
        """Put the passages of the person's documents into ``request`` (off the GUI thread), then submit it.

        The conversation keeps the message as typed; only the request carries the passages. With no
        folder indexed, or when the search fails, the plain request goes (the failure said in a line).
        """
        studio = self.bridge.studio
        documents = studio.documents

        def ground() -> tuple[GroundedChat, str | None] | None:
            if not documents.folders():
                return None
            grounded = documents.ground(request, screen=safety_screen(studio.safety))
            return grounded, documents.meaning_unavailable

        def grounded(result: tuple[GroundedChat, str | None] | None) -> None:
            if result is None:
                self._submit(request)
                return
            found, fallback = result
            self._grounded = (asked, found, fallback)
            self._submit(found.request)

        def failed(error: BaseException) -> None:
            self.message_view.add_notice(f"Your documents could not be searched ({error}); answering without them.")
            self._submit(request)

        self._set_busy(None, preparing=True)
        self._in_background(ground).success(grounded).failure(failed).run()

    def _submit(self, request: Any) -> bool:
        """Submit the reply's request through the bridge; returns whether it was queued."""
        try:
            op = (
                self.bridge.op(request, parent=self)
                .on_progress(self._on_progress)
                .on_token(self._on_token)
                .on_notice(self._on_notice)
                .success(self._on_result)
                .on_cancelled(self._on_cancelled)
                .failure(self._on_failed)
                .on_blocked(self._on_blocked)
                .on_finished(self._on_finished)
                .run()
            )
        except (EmberError, RuntimeError) as exc:
            self._drop_stream()
            self._grounded = None
            self._sent = None
            self._set_busy(None)
            self.message_view.add_notice(f"The reply could not start: {exc}", error=True)
            return False
        self._set_busy(op)
        self.speed_changed.emit(0.0)
        if self._stop_asked:  # Stop was pressed while the conversation was being written
            op.cancel()
        return True

    # -- job events (all on the GUI thread, through the bridge) ---------------------------------
    def _on_progress(self, data: Any) -> None:
        if self._model is None:
            return
        if isinstance(data, Loading):
            self.model_changed.emit(f"{self._model.name} (loading…)")
        elif isinstance(data, Running):
            self.model_changed.emit(self._model.name)
            self.backend_changed.emit(data.backend)

    def _on_token(self, text: str) -> None:
        if self._tokens == 0:
            self._first_token_s = time.monotonic()
        self._tokens += 1
        self._stream.append(text)
        self._render_throttled()

    def _render_stream(self) -> None:
        if self._reply is None or self._op is None:
            return
        self._reply.set_text(self._reply_base + "".join(self._stream))
        elapsed = time.monotonic() - self._first_token_s
        if self._tokens > 1 and elapsed > 0:
            # Like the engine's figure: the first token waited for the prompt, so it is left out.
            self.speed_changed.emit((self._tokens - 1) / elapsed)
        self.stream_rendered.emit()

    def _on_notice(self, text: str) -> None:
        self.message_view.add_notice(str(text))

    def _on_result(self, delivered: Delivered) -> None:
        self._keep(require_delivered(delivered))

    def _on_cancelled(self, partial: Delivered | None) -> None:
        if partial is not None:
            self._keep(require_delivered(partial))
            return
        self._drop_stream()
        self.message_view.add_notice("Stopped before the model wrote anything.")

    def _on_failed(self, message: str) -> None:
        kept = self._kept_after_failure()
        if kept is not None:  # the engine process ended mid-reply: the Studio kept what had arrived
            self._render_throttled.cancel()
            if self._reply is not None:
                self._reply.set_text(kept.content)
                self._reply.set_partial(True)
            self._reply = None
        else:
            self._drop_stream()
        self.message_view.add_notice(str(message), error=True)

    def _kept_after_failure(self) -> Any:
        """The reply the store holds now that it did not hold when the reply started, or None."""
        if self._conversation_id is None:
            return None
        messages = self.store.get(self._conversation_id).messages
        count, last = self._before
        if not messages or messages[-1].role != "assistant":
            return None
        if len(messages) > count or (self._mode == "continue" and messages[-1].content != last):
            return messages[-1]
        return None

    def _on_blocked(self, decision: Any) -> None:
        self._drop_stream()
        reason = blocked_reason(decision)
        if reason.startswith("Your request"):
            self._take_back_prompt()
        self.message_view.add_safety_notice(reason, str(getattr(decision, "category", "") or ""))

    def _take_back_prompt(self) -> None:
        """Remove the refused message from the conversation and put its text back in the input box."""
        sent, self._sent = self._sent, None
        if sent is None or self._conversation_id is None:
            return
        message_id, widget, text, created = sent
        store, convo = self.store, self._conversation_id

        def take_back() -> bool:
            store.delete_message(message_id)
            if created and not store.get(convo).messages:
                # A conversation that only held the refused message (and is named after it) goes too.
                store.delete(convo)
                return True
            return False

        if created and self._conversation_id == convo:
            self._conversation_id = None  # it held only the refused message: it goes (in the background)
            self._update_buttons()
        self._in_background(take_back).success(lambda _deleted: self.refresh_conversations()).run()
        self.message_view.remove(widget)
        typed = self.input.toPlainText()
        self.input.setPlainText(text if not typed.strip() else f"{text}\n\n{typed}")
        self.input.moveCursor(QTextCursor.MoveOperation.End)
        self.input.setFocus()

    def safety_notices(self) -> list[SafetyNotice]:
        """The safety notices shown in the conversation, top to bottom."""
        return self.message_view.safety_notices()

    def _on_finished(self, event: JobEvent) -> None:
        self._render_throttled.cancel()
        self._reply = None
        self._grounded = None
        self._forget_citations = None
        self._sent = None
        self._stream = []
        self._set_busy(None)
        self.refresh_conversations()
        self.reply_finished.emit(event)

    def _keep(self, delivered: Delivered) -> None:
        """Show a delivered reply as the store has it (the Studio kept it there before the job ended)."""
        assert self._conversation_id is not None
        self._render_throttled.cancel()
        last = self.store.get(self._conversation_id).messages[-1]
        if self._reply is not None:
            self._reply.set_text(last.content)
            self._reply.set_partial(last.partial)
            self._show_grounding(self._reply)
        record = delivered.record
        self.backend_changed.emit(record.provenance.backend or "CPU")
        self.speed_changed.emit(float(record.timings.get("tokens_per_s", 0.0)))

    def _drop_stream(self) -> None:
        """Take back streamed text that no Delivered output confirmed."""
        self._render_throttled.cancel()
        if self._reply is None:
            return
        if self._mode == "continue" and self._reply_base:
            self._reply.set_text(self._reply_base)
            last = self.store.get(self._conversation_id).messages[-1] if self._conversation_id else None
            self._reply.set_partial(bool(last and last.partial))
        else:
            self.message_view.remove(self._reply)
        self._reply = None

    def shutdown(self) -> None:
        """Stop the running reply (the window is closing)."""
        self.stop()
        if self.documents_dialog is not None:
            self.documents_dialog.shutdown()
        self.mic_button.cancel()
        self.read_aloud.shutdown()


def _host_of(path: str) -> str:
    from urllib.parse import urlsplit

    from engines.remote import split_path

    return urlsplit(split_path(path)[0]).netloc
