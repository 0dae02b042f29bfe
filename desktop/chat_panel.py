"""The Chat panel: conversations on the left, messages in the middle, settings on the right.

It sends requests through the bridge and shows what comes back; it never touches a
thread. Streamed text is what TOKEN events carried; a reply is final (and stored)
only as the Delivered object of a RESULT, or of a CANCELLED with a partial output.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qthrottled

from desktop.bridge import EventBridge, JobOp
from desktop.message_view import MessageView, MessageWidget, SafetyNotice
from desktop.model_picker import ModelChoice, ModelPicker
from desktop.settings_drawer import SettingsDrawer
from engines.conversations import Conversation
from engines.errors import EmberError
from engines.jobs import JobEvent
from engines.pipeline import Delivered, require_delivered
from engines.progress import Loading, Running
from engines.safety.policy import Category
from engines.text.requests import ChatRequest, CompletionRequest, Sampling

# About 30 renders a second: Markdown re-layout of a long reply for every token would
# starve the event loop, and the eye cannot follow faster anyway.
_RENDER_INTERVAL_MS = 33
_TITLE_WORDS = 6
_TITLE_CHARS = 48
_MARKDOWN_MARKS = str.maketrans("", "", "*_`#>")

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


def completion_prompt(conversation: Conversation) -> str:
    """Return a conversation as one plain text for a base model.

    Each reply of a base model continues the text before it, so replies are joined
    without a break; the person's messages start a new paragraph.
    """
    text = ""
    for message in conversation.messages:
        if message.role == "assistant":
            text += message.content
        else:
            text += ("\n\n" if text else "") + message.content
    return text


def blocked_reason(decision: Any) -> str:
    """Return the sentence to show for a ``blocked`` event's data (a StageDecision, or anything).

    The safety stage writes a full sentence (what was stopped, the category, what to
    do); a decision without one gets a calm sentence made from its category.
    """
    reason = str(getattr(decision, "reason", "") or "").strip()
    if reason:
        return reason
    category = str(getattr(decision, "category", "") or "")
    try:
        label = f" ({Category(category).label})"
    except ValueError:
        label = f" ({category})" if category else ""
    return f"This was stopped by the safety filter{label}. You can rephrase, or change the level in Settings."


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
        self._render_throttled = qthrottled(self._render_stream, timeout=_RENDER_INTERVAL_MS, parent=self)

        self._build()
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
        self.input = PromptEdit()
        self.input.setObjectName("promptInput")
        self.input.setPlaceholderText("Write a message — Ctrl+Enter sends, Esc stops")
        self.input.setFixedHeight(96)
        self.input.submit_requested.connect(self.send)
        self.input.stop_requested.connect(self.stop)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.clicked.connect(self._send_or_stop)
        self.regenerate_button = QPushButton("Regenerate")
        self.continue_button = QPushButton("Continue")
        self.regenerate_button.clicked.connect(self.regenerate)
        self.continue_button.clicked.connect(self.continue_reply)
        buttons = QHBoxLayout()
        buttons.addWidget(self.regenerate_button)
        buttons.addWidget(self.continue_button)
        buttons.addStretch(1)
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
        """Whether a reply is being generated."""
        return self._op is not None

    @property
    def conversation_id(self) -> int | None:
        """The conversation shown, or None before the first message of a new one."""
        return self._conversation_id

    @property
    def completion_mode(self) -> bool:
        """Whether the picked model is a base model, so replies continue the text."""
        return self._is_base

    def _set_busy(self, op: JobOp | None) -> None:
        self._op = op
        self._update_buttons()
        self.busy_changed.emit(op is not None)

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
        self.message_view.clear()
        for message in convo.messages:
            self.message_view.add_message(message.role, message.content, partial=message.partial)
        self.settings.system_prompt.setPlainText(convo.system_prompt)
        self.settings.set_values(convo.settings)
        if convo.model_path and convo.model_path != self._model_path:
            if not self.model_picker.select_model_path(convo.model_path):
                self.message_view.add_notice(
                    f"This conversation was written with {Path(convo.model_path).name}, which is no longer "
                    "available here; new replies use the model selected above."
                )
        self._update_buttons()

    def rename_conversation(self, title: str) -> None:
        """Give the shown conversation a new title (blank titles are ignored)."""
        if self._conversation_id is None or not title.strip():
            return
        self.store.update(self._conversation_id, title=title.strip())
        self.refresh_conversations()

    def delete_conversation(self) -> None:
        """Delete the shown conversation and start a new one."""
        if self._conversation_id is None:
            return
        self.store.delete(self._conversation_id)
        self.new_conversation()
        self.refresh_conversations()

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
        self.model_changed.emit(choice.name)

    def unload_models(self) -> int:
        """Unload every idle model and say how much memory that freed; returns how many were unloaded."""
        freed = self.bridge.studio.unload_models()
        if freed:
            total = sum(freed.values())
            names = ", ".join(freed)
            self.message_view.add_notice(f"Unloaded {names}: about {total / 2**20:.0f} MB of memory is free again.")
        else:
            self.message_view.add_notice("No model is loaded (a model that is writing a reply stays loaded).")
        return len(freed)

    # -- sending -----------------------------------------------------------------------------
    def _send_or_stop(self) -> None:
        if self.busy:
            self.stop()
        else:
            self.send()

    def send(self) -> bool:
        """Send the text in the input box; returns whether a reply was started.

        Invalid settings or a missing model are shown inline and change nothing.
        """
        text = self.input.toPlainText().strip()
        if self.busy or not text:
            return False
        sampling = self._sampling()
        if sampling is None:
            return False
        created = self._conversation_id is None
        if self._conversation_id is None:
            self._conversation_id = self.store.create(
                title_from(text), self._model_path, self.settings.system_prompt.toPlainText(), self.settings.values()
            )
        message_id = self.store.add_user_message(self._conversation_id, text)
        widget = self.message_view.add_message("user", text)
        self.input.clear()
        self.refresh_conversations()
        started = self._start("reply", sampling)
        if started:
            # Job events arrive through queued signals, so this is set before any of them.
            self._sent = (message_id, widget, text, created)
        return started

    def regenerate(self) -> bool:
        """Replace the last reply with a new one; returns whether a reply was started."""
        if self.busy or self._conversation_id is None:
            return False
        sampling = self._sampling()
        if sampling is None:
            return False
        self.store.remove_last_reply(self._conversation_id)
        convo = self.store.get(self._conversation_id)
        self._show_conversation(convo.id)
        if not convo.messages:
            self.message_view.add_notice("There is nothing to reply to yet. Write a message first.")
            return False
        return self._start("reply", sampling)

    def continue_reply(self) -> bool:
        """Let the model go on with its last reply; returns whether it started."""
        if self.busy or self._conversation_id is None:
            return False
        sampling = self._sampling()
        if sampling is None:
            return False
        convo = self.store.get(self._conversation_id)
        if not convo.messages or convo.messages[-1].role != "assistant":
            self.message_view.add_notice("There is no reply to continue yet. Send a message first.")
            return False
        return self._start("continue", sampling)

    def stop(self) -> None:
        """Stop the running reply; what was written so far is kept, marked as stopped."""
        if self._op is not None:
            self._op.cancel()

    def _sampling(self) -> Sampling | None:
        if self._model is None:
            self.message_view.add_notice("Pick a model first: no text model is selected.", error=True)
            return None
        try:
            return self.settings.sampling()
        except ValueError as exc:
            self.message_view.add_notice(f"{exc} Change it in Settings and send again.", error=True)
            return None

    def _start(self, mode: Mode, sampling: Sampling) -> bool:
        assert self._conversation_id is not None and self._model is not None
        system_prompt = self.settings.system_prompt.toPlainText()
        self.store.update(
            self._conversation_id,
            model_path=self._model_path,
            system_prompt=system_prompt,
            settings=self.settings.values(),
        )
        convo = self.store.get(self._conversation_id)
        options = self.settings.model_options(self._model_path)
        request: ChatRequest | CompletionRequest
        if self._is_base:
            request = CompletionRequest(options, completion_prompt(convo), sampling)
        else:
            request = ChatRequest(options, convo.as_messages(), system_prompt, sampling, mode=mode)

        existing = self.message_view.messages()
        if mode == "continue" and existing and existing[-1].role == "assistant":
            self._reply = existing[-1]
            self._reply_base = self._reply.text
            self._reply.set_partial(False)
        else:
            self._reply = self.message_view.add_message("assistant", "")
            self._reply_base = ""
        self._mode = mode
        self._stream = []
        self._tokens = 0
        self._first_token_s = 0.0
        try:
            op = self.bridge.submit(request)
        except (EmberError, RuntimeError) as exc:
            self._drop_stream()
            self.message_view.add_notice(f"The reply could not start: {exc}", error=True)
            return False
        (
            op.on_progress(self._on_progress)
            .on_token(self._on_token)
            .on_notice(self._on_notice)
            .on_result(self._on_result)
            .on_cancelled(self._on_cancelled)
            .on_failed(self._on_failed)
            .on_blocked(self._on_blocked)
            .on_finished(self._on_finished)
        )
        self._set_busy(op)
        self.speed_changed.emit(0.0)
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
        self._drop_stream()
        self.message_view.add_notice(str(message), error=True)

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
        self.store.delete_message(message_id)
        self.message_view.remove(widget)
        if created and not self.store.get(self._conversation_id).messages:
            # A conversation that only held the refused message (and is named after it) goes too.
            self.store.delete(self._conversation_id)
            self._conversation_id = None
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
        self._sent = None
        self._stream = []
        self._set_busy(None)
        self.refresh_conversations()
        self.reply_finished.emit(event)

    def _keep(self, delivered: Delivered) -> None:
        """Store a delivered reply and show it as the store has it."""
        assert self._conversation_id is not None
        self._render_throttled.cancel()
        if self._mode == "continue":
            self.store.extend_reply(self._conversation_id, delivered)
        else:
            self.store.add_reply(self._conversation_id, delivered)
        last = self.store.get(self._conversation_id).messages[-1]
        if self._reply is not None:
            self._reply.set_text(last.content)
            self._reply.set_partial(last.partial)
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
