"""The Settings page: the safety filter's levels, what happens to unsafe images, the guard model, recent decisions.

Every change goes to the Studio at once (``studio.set_policy``, ``studio.set_guard_model``), which
applies it to the next check; it is saved off the GUI thread (a background op). The page never
checks anything itself.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge
from engines.errors import EmberError
from engines.jobs import JobEvent
from engines.safety.policy import Action, Category, Level, Policy

AUDIT_ROWS = 50
_AUDIT_ROWS_VISIBLE = 12
AUDIT_COLUMNS = ("Time", "What", "Action", "Category", "Score", "Layer")

LEVEL_NAMES = {Level.STRICT: "Strict", Level.STANDARD: "Standard", Level.MINIMAL: "Minimal"}
LEVEL_HELP = (
    (
        "Strict",
        "stops anything the checkers see even a moderate sign of. It catches the most, "
        "and now and then it also stops something harmless.",
    ),
    ("Standard", "the default balance: stops what the checkers are fairly sure of."),
    (
        "Minimal",
        "stops only what the checkers are very sure of. At this level profanity is not filtered at all.",
    ),
)
IMAGE_ACTIONS = {Action.BLUR: "Blur", Action.BLOCK: "Withhold"}
_SUBJECTS = {"prompt": "Prompt", "text": "Reply", "image": "Image", "preview": "Preview", "audio": "Speech"}
_ACTIONS = {"allow": "Allowed", "block": "Blocked", "blur": "Blurred"}
_NO_GUARD = "None: the built-in rules and classifier check the text."


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


_LAYERS = {
    "rules": "Word rules",
    "semantic": "Meaning model",
    "profanity-model": "Profanity model",
    "open-nsfw": "Image classifier",
    "nudenet": "Image classifier (NudeNet)",
}


def layer_label(checker: str) -> str:
    """The filter's layer that made a decision, in words ("guard:<model>" is a guard model)."""
    if checker.startswith("guard:"):
        return f"Guard model ({checker.removeprefix('guard:')})"
    return _LAYERS.get(checker, checker or "—")


def _local_time(time_utc: str) -> str:
    """Return an ISO time in UTC as local time for a person ("2026-11-23 05:41:07")."""
    try:
        return datetime.fromisoformat(time_utc.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return time_utc


def _category_label(value: str) -> str:
    try:
        return _capitalised(Category(value).label)
    except ValueError:
        return value or "—"


class SegmentedChoice(QWidget):
    """A row of exclusive, checkable buttons (e.g. strict / standard / minimal).

    ``chosen`` is emitted with the value of the button the person picked (not when the
    choice is set from code).
    """

    chosen = Signal(object)

    def __init__(self, options: dict[Any, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("segmentedChoice")
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[Any, QPushButton] = {}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        for i, (value, text) in enumerate(options.items()):
            button = QPushButton(text)
            button.setObjectName("segment")
            button.setCheckable(True)
            button.setProperty("position", "first" if i == 0 else "last" if i == len(options) - 1 else "middle")
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.clicked.connect(lambda _checked=False, v=value: self.chosen.emit(v))
            self.group.addButton(button)
            self.buttons[value] = button
            layout.addWidget(button)

    def set_value(self, value: Any) -> None:
        """Check the button for ``value`` without emitting ``chosen``."""
        button = self.buttons.get(value)
        if button is not None:
            button.setChecked(True)

    def value(self) -> Any:
        """The value of the checked button, or None."""
        for value, button in self.buttons.items():
            if button.isChecked():
                return value
        return None


class SettingsPage(QWidget):
    """Ember's settings; for now the safety filter.

    ``policy_changed`` carries the new :class:`Policy` after a change was applied and
    saved; ``guard_model_changed`` the new guard model path (or None).
    """

    policy_changed = Signal(object)
    guard_model_changed = Signal(object)

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsPage")
        self.bridge = bridge
        self.studio = bridge.studio
        self.rows: dict[Category, QWidget] = {}
        self.level_choices: dict[Category, SegmentedChoice] = {}
        self._build()
        self.sync_from_studio()
        self.refresh_audit()
        bridge.event.connect(self._on_event)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        column = QWidget()
        column.setObjectName("settingsColumn")
        column.setMaximumWidth(860)
        layout = QVBoxLayout(column)
        layout.setContentsMargins(32, 24, 32, 32)
        layout.setSpacing(12)

        title = QLabel("Settings")
        title.setObjectName("pageTitle")
        layout.addWidget(title)
        layout.addWidget(self._section_title("Safety"))
        layout.addWidget(
            self._hint(
                "Everything Ember makes passes a safety filter on this computer before you see it: your "
                "requests, replies as they stream, images and speech. Choose how strict it is for each kind "
                "of content. Changes apply at once and are kept."
            )
        )
        layout.addWidget(self._levels_card())
        layout.addWidget(self._images_card())
        layout.addWidget(self._guard_card())

        self.settings_error = QLabel()
        self.settings_error.setObjectName("errorRow")
        self.settings_error.setWordWrap(True)
        self.settings_error.hide()
        layout.addWidget(self.settings_error)

        layout.addWidget(self._section_title("Recent decisions"))
        layout.addWidget(
            self._hint(
                "The newest decisions of the safety filter. Only the decision is kept (what was checked, "
                "the category, the score and the layer of the filter that decided: its word rules, its meaning "
                "model, the profanity model, a guard model or the image classifier): the content itself is never "
                "stored."
            )
        )
        self.audit_table = QTableWidget(0, len(AUDIT_COLUMNS))
        self.audit_table.setObjectName("auditTable")
        self.audit_table.setHorizontalHeaderLabels(AUDIT_COLUMNS)
        self.audit_table.verticalHeader().hide()
        self.audit_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.audit_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.audit_table.setAlternatingRowColors(True)
        self.audit_table.setShowGrid(False)
        self.audit_table.setWordWrap(False)
        header = self.audit_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.audit_table)
        self.audit_empty = QLabel("No decisions yet. They appear here as Ember checks requests and outputs.")
        self.audit_empty.setObjectName("emptyHint")
        layout.addWidget(self.audit_empty)

        layout.addWidget(self._section_title("Local API"))
        layout.addWidget(
            self._hint(
                "Other programs (editors, notebooks, chat front ends) can use Ember's models through an "
                "OpenAI-compatible API, as they would LM Studio's or Ollama's. What they get passes the same "
                "safety filter, carries the watermark and is kept in your library. Off unless you turn it on."
            )
        )
        layout.addWidget(self._api_card())

        from desktop.remote_card import RemoteCard

        layout.addWidget(self._section_title("Remote engines"))
        layout.addWidget(
            self._hint(
                "A bigger model on another computer: add an OpenAI-compatible server (llama.cpp's server, vLLM, "
                "Ollama, another Ember) and chat or make images with its models here. Prompts and replies still "
                "pass Ember's safety filter and are kept in your library; the record says where each was made. "
                "A remote server cannot carry Ember's text watermark (images get Ember's own), and the record "
                "says that too."
            )
        )
        self.remote_card = RemoteCard(self.studio)
        layout.addWidget(self.remote_card)

        layout.addWidget(self._section_title("About this installation"))
        layout.addWidget(self._about_card())
        layout.addStretch(1)

        holder = QWidget()
        holder.setObjectName("settingsHolder")
        centred = QHBoxLayout(holder)
        centred.setContentsMargins(0, 0, 0, 0)
        centred.addWidget(column, 1)
        centred.addStretch(0)
        scroll = QScrollArea()
        scroll.setObjectName("settingsScroll")
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(holder)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    @staticmethod
    def _section_title(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("sectionTitle")
        label.setIndent(0)
        return label

    @staticmethod
    def _hint(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("settingsHint")
        label.setWordWrap(True)
        return label

    @staticmethod
    def _card() -> tuple[QFrame, QVBoxLayout]:
        card = QFrame()
        card.setObjectName("settingsCard")
        layout = QVBoxLayout(card)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.setSpacing(10)
        return card, layout

    def _about_card(self) -> QFrame:
        """The version, which build runs (CPU, CUDA or Metal, or a source checkout) and where data lives."""
        from engines import paths
        from engines.build_info import build_info, package_version

        card, layout = self._card()
        build = build_info()
        self.about_build = QLabel(f"Ember {package_version()}: {build.describe()}")
        self.about_build.setObjectName("aboutBuild")
        self.about_build.setWordWrap(True)
        self.about_build.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.about_build)
        data = QLabel(f"Your data (conversations, library, settings): {paths.data_dir()}")
        data.setWordWrap(True)
        data.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(data)
        layout.addWidget(
            self._hint("`ember --self-test` (or `python main.py self-test`) checks every stage and prints this too.")
        )
        return card

    def _api_card(self) -> QFrame:
        """Serve the API on or off, its port, other computers (with a key) or this one only, and its state."""
        from engines.api.service import ApiService

        self.api = ApiService(self.studio)
        card, layout = self._card()
        self.api_enabled = QCheckBox("Serve the OpenAI-compatible API")
        self.api_enabled.setObjectName("apiEnabled")
        layout.addWidget(self.api_enabled)
        row = QHBoxLayout()
        row.addWidget(QLabel("Port"))
        self.api_port = QSpinBox()
        self.api_port.setObjectName("apiPort")
        self.api_port.setRange(1024, 65535)
        row.addWidget(self.api_port)
        row.addStretch(1)
        layout.addLayout(row)
        self.api_network = QCheckBox("Let other computers on the network use it (they must send the key)")
        self.api_network.setObjectName("apiNetwork")
        layout.addWidget(self.api_network)
        key_row = QHBoxLayout()
        key_row.addWidget(QLabel("Key"))
        self.api_key = QLineEdit()
        self.api_key.setObjectName("apiKey")
        self.api_key.setReadOnly(True)
        self.api_key.setPlaceholderText("none: this computer only")
        key_row.addWidget(self.api_key, 1)
        self.api_new_key = QPushButton("New key")
        self.api_new_key.clicked.connect(self.make_api_key)
        self.api_copy_key = QPushButton("Copy")
        self.api_copy_key.clicked.connect(lambda: QApplication.clipboard().setText(self.api_key.text()))
        key_row.addWidget(self.api_new_key)
        key_row.addWidget(self.api_copy_key)
        layout.addLayout(key_row)
        self.api_status = QLabel()
        self.api_status.setObjectName("apiStatus")
        self.api_status.setWordWrap(True)
        self.api_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.api_status)
        layout.addWidget(
            self._hint(
                "Clients use the address shown as their base URL (from openai import OpenAI; "
                "OpenAI(base_url=..., api_key=...)). On this computer any key is accepted until you make one. "
                "python main.py serve runs the same API without the window."
            )
        )
        self.api.start_saved()
        self._show_api()
        self.api_enabled.toggled.connect(lambda on: self._change_api(enabled=on))
        self.api_network.toggled.connect(self._network_toggled)
        self.api_port.editingFinished.connect(lambda: self._change_api(port=self.api_port.value()))
        return card

    # -- the local API -----------------------------------------------------------------------
    def _change_api(self, **changes: Any) -> bool:
        """Apply a change of the API's choice at once (restarting the server) and keep it."""
        choice = replace(self.api.choice, **changes)
        if choice == self.api.choice and not changes.get("enabled"):
            return True
        try:
            served = self.api.apply(choice)
        except EmberError as exc:  # the settings could not be written
            self.api.error = f"The change is in use but could not be saved: {exc}"
            served = False
        self._show_api()
        return served

    def _network_toggled(self, on: bool) -> None:
        key = self.api.choice.key
        if on and not key:
            from engines.api.service import new_key

            key = new_key()
        self._change_api(network=on, key=key)

    def make_api_key(self) -> str:
        """Replace the API's key with a new one (clients with the old one get 401); returns it."""
        from engines.api.service import new_key

        key = new_key()
        self._change_api(key=key)
        return key

    def _show_api(self) -> None:
        choice = self.api.choice
        for widget, value in ((self.api_enabled, choice.enabled), (self.api_network, choice.network)):
            widget.blockSignals(True)
            widget.setChecked(value)
            widget.blockSignals(False)
        self.api_port.blockSignals(True)
        self.api_port.setValue(choice.port)
        self.api_port.blockSignals(False)
        self.api_key.setText(choice.key)
        self.api_copy_key.setEnabled(bool(choice.key))
        if self.api.error:
            self.api_status.setObjectName("errorRow")
            self.api_status.setText(self.api.error)
        elif self.api.url and choice.network:
            import socket

            self.api_status.setObjectName("apiStatus")
            self.api_status.setText(
                f"Serving at http://127.0.0.1:{choice.port}/v1 here, and at http://{socket.gethostname()}:"
                f"{choice.port}/v1 to other computers on the network, with the key."
            )
        elif self.api.url:
            self.api_status.setObjectName("apiStatus")
            self.api_status.setText(f"Serving at {self.api.url} (this computer only).")
        else:
            self.api_status.setObjectName("apiStatus")
            self.api_status.setText("Off.")
        self.api_status.style().unpolish(self.api_status)
        self.api_status.style().polish(self.api_status)

    def shutdown(self) -> None:
        """Stop serving the API (before the Studio closes)."""
        self.api.close()

    def _levels_card(self) -> QFrame:
        card, layout = self._card()
        heading = QLabel("Levels")
        heading.setObjectName("cardTitle")
        layout.addWidget(heading)
        grid = QGridLayout()
        grid.setHorizontalSpacing(24)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(0, 1)
        for i, category in enumerate(Category):
            name = QLabel(_capitalised(category.label))
            name.setObjectName("settingName")
            if category is Category.MINORS:
                control: QWidget = QLabel("Always blocked")
                control.setObjectName("fixedLevel")
                control.setToolTip("No level allows this: Ember never makes it, whatever the settings.")
            else:
                choice = SegmentedChoice(LEVEL_NAMES)
                choice.chosen.connect(lambda level, c=category: self.set_level(c, level))
                self.level_choices[category] = choice
                control = choice
            row = QWidget()
            row.setObjectName("settingsRow")
            row_layout = QHBoxLayout(row)
            row_layout.setContentsMargins(0, 4, 0, 4)
            row_layout.addWidget(name, 1)
            row_layout.addWidget(control, 0, Qt.AlignmentFlag.AlignRight)
            self.rows[category] = row
            grid.addWidget(row, i, 0)
        layout.addLayout(grid)
        explained = QLabel(
            "<p style='margin:0'>"
            + "<br>".join(f"<b>{name}</b> {text}" for name, text in LEVEL_HELP)
            + "<br><b>Sexual content involving minors</b> is always blocked, at every level.</p>"
        )
        explained.setObjectName("levelHelp")
        explained.setTextFormat(Qt.TextFormat.RichText)
        explained.setWordWrap(True)
        layout.addWidget(explained)
        return card

    def _images_card(self) -> QFrame:
        card, layout = self._card()
        row = QHBoxLayout()
        name = QLabel("Unsafe images")
        name.setObjectName("cardTitle")
        row.addWidget(name, 1)
        self.image_choice = SegmentedChoice(IMAGE_ACTIONS)
        self.image_choice.chosen.connect(self.set_image_action)
        row.addWidget(self.image_choice)
        layout.addLayout(row)
        layout.addWidget(
            self._hint(
                "Blur: the image is shown blurred, with the reason, and you can change the level and make it "
                "again. Withhold: the image is neither shown nor saved. Sexual images involving minors are "
                "always withheld."
            )
        )
        return card

    def _guard_card(self) -> QFrame:
        card, layout = self._card()
        row = QHBoxLayout()
        name = QLabel("Guard model (optional)")
        name.setObjectName("cardTitle")
        row.addWidget(name, 1)
        self.guard_choose = QPushButton("Choose .gguf file…")
        self.guard_choose.clicked.connect(self.choose_guard_model)
        self.guard_none = QPushButton("None")
        self.guard_none.clicked.connect(lambda: self.set_guard_model(None))
        row.addWidget(self.guard_choose)
        row.addWidget(self.guard_none)
        layout.addLayout(row)
        self.guard_label = QLabel()
        self.guard_label.setObjectName("guardModel")
        self.guard_label.setWordWrap(True)
        self.guard_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.guard_label)
        layout.addWidget(
            self._hint(
                "A Llama Guard 3 or ShieldGemma model in GGUF format, if you installed one, gives a second "
                "opinion on requests and replies. It runs on this computer too, and makes each check slower."
            )
        )
        self.guard_error = QLabel()
        self.guard_error.setObjectName("errorRow")
        self.guard_error.setWordWrap(True)
        self.guard_error.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.guard_error.hide()
        layout.addWidget(self.guard_error)
        return card

    # -- state -------------------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        """The policy the Studio applies now."""
        return self.studio.safety.policy

    def sync_from_studio(self) -> None:
        """Show the Studio's current policy and guard model."""
        policy = self.policy
        for category, choice in self.level_choices.items():
            choice.set_value(policy.level(category))
        self.image_choice.set_value(policy.image_action)
        self._show_guard(self.studio.guard_model())

    def set_level(self, category: Category, level: Level) -> bool:
        """Apply and save ``level`` for ``category``; returns whether the Studio took it.

        The minors category has no level to set: it is always blocked.
        """
        if category is Category.MINORS:
            return False
        return self._apply(self.policy.with_level(category, Level(level)))

    def set_image_action(self, action: Action) -> bool:
        """Apply and save what happens to unsafe images (blur or withhold); returns whether it was taken."""
        return self._apply(replace(self.policy, image_action=Action(action)))

    def _apply(self, policy: Policy) -> bool:
        try:
            self.studio.set_policy(policy, save=False)  # at once, for the next check
        except EmberError as exc:
            self.settings_error.setText(f"The setting was not changed: {exc}")
            self.settings_error.show()
            self.sync_from_studio()
            return False
        self.settings_error.hide()
        self._save()
        self.sync_from_studio()
        self.policy_changed.emit(self.policy)
        return True

    def _save(self) -> None:
        """Write the safety settings off the GUI thread (in the order they were changed)."""
        self.bridge.background(self.studio.save_safety_settings).failure(self._not_saved).run()

    def _not_saved(self, error: BaseException) -> None:
        self.settings_error.setText(f"The setting is in use but could not be saved: {error}")
        self.settings_error.show()

    # -- guard model -------------------------------------------------------------------------
    def choose_guard_model(self) -> None:
        """Ask for a guard model file and use it (a refused file is explained below the buttons)."""
        current = self.studio.guard_model()
        start = str(Path(current).parent) if current else ""
        path, _ = QFileDialog.getOpenFileName(self, "Choose a guard model", start, "GGUF models (*.gguf)")
        if path:
            self.set_guard_model(path)

    def set_guard_model(self, path: str | None) -> bool:
        """Use the guard model at ``path`` (None for none); returns whether the Studio took it.

        A file the Studio refuses leaves the previous choice in place and shows its reason.
        """
        try:
            self.studio.set_guard_model(path, save=False)
        except EmberError as exc:
            self.guard_error.setText(str(exc))
            self.guard_error.show()
            self._show_guard(self.studio.guard_model())
            return False
        self.guard_error.hide()
        self._save()
        self._show_guard(self.studio.guard_model())
        self.guard_model_changed.emit(self.studio.guard_model())
        return True

    def _show_guard(self, path: str | None) -> None:
        if path:
            self.guard_label.setText(f"In use: {Path(path).name}")
            self.guard_label.setToolTip(path)
        else:
            self.guard_label.setText(_NO_GUARD)
            self.guard_label.setToolTip("")
        self.guard_none.setEnabled(bool(path))

    # -- the audit log -----------------------------------------------------------------------
    def refresh_audit(self) -> None:
        """Re-read the newest decisions from the audit log into the table."""
        entries = self.studio.audit.recent(AUDIT_ROWS)
        table = self.audit_table
        table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            cells = (
                _local_time(entry.time_utc),
                _SUBJECTS.get(entry.subject, _capitalised(entry.subject)),
                _ACTIONS.get(entry.action, _capitalised(entry.action)),
                _category_label(entry.category) if entry.category else "—",
                f"{entry.score:.2f}",
                layer_label(entry.checker),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 4:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if column == 5 and entry.checker:
                    item.setToolTip(f"Checker: {entry.checker}" + (f"; rule: {entry.rule}" if entry.rule else ""))
                table.setItem(row, column, item)
        # As tall as its rows (up to a screenful): the page scrolls, not a half-empty table.
        shown = min(len(entries), _AUDIT_ROWS_VISIBLE)
        rows_height = sum(table.rowHeight(r) for r in range(shown))
        table.setFixedHeight(table.horizontalHeader().sizeHint().height() + rows_height + 2 * table.frameWidth() + 2)
        table.setVisible(bool(entries))
        self.audit_empty.setVisible(not entries)

    def _on_event(self, event: JobEvent) -> None:
        # A job's decisions are logged before its last event, so the table is complete here.
        if event.kind.terminal and self.isVisible():
            self.refresh_audit()

    def showEvent(self, event: QShowEvent) -> None:
        self.sync_from_studio()
        self.refresh_audit()
        super().showEvent(event)
