"""The model picker: the embedded text models that are installed, and GGUF files the person opens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QMessageBox, QWidget

from engines.errors import ModelFileError
from engines.models.embedded import DEFAULT_TEXT_MODEL, EMBEDDED_PREFIX, EMBEDDED_TEXT_MODELS, EmbeddedModel
from engines.remote import is_remote
from engines.text.gguf_header import read_gguf_header
from engines.text.requests import is_base_model

_OPEN_FILE = "Open GGUF file…"


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the picker: an embedded model (its path found on first use) or a file."""

    name: str
    embedded: EmbeddedModel | None = None
    file_path: str = ""
    remote_path: str = ""  # a model on a remote server (engines/remote), chosen in Settings

    def resolve(self) -> tuple[str, bool]:
        """Return the model's path and whether it is a base model (no chat template).

        An embedded model is named ``embedded:<id>``: the engine finds (and, for a model
        that ships in parts, assembles) its file on the worker thread, so this never
        blocks the window. For a file only the header is read, which takes milliseconds.
        Raises ModelFileError when the file is missing or not a usable GGUF model.
        """
        if self.embedded is not None:
            return EMBEDDED_PREFIX + self.embedded.id, self.embedded.purpose == "completion"
        if self.remote_path:
            return self.remote_path, False  # a server's chat endpoint: it applies its model's template
        return self.file_path, is_base_model(read_gguf_header(self.file_path).chat_template)


class ModelPicker(QComboBox):
    """A combo box of models; its last entry opens a GGUF file from disk.

    ``model_picked`` is emitted with the new :class:`ModelChoice` whenever the selection
    changes to a model (never for the "Open" entry itself).
    """

    model_picked = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.setMinimumContentsLength(24)
        self._previous = 0
        for model in EMBEDDED_TEXT_MODELS:
            if model.installed:
                self.addItem(model.name, ModelChoice(model.name, embedded=model))
        self.addItem(_OPEN_FILE, None)
        default = self._index_of_embedded(DEFAULT_TEXT_MODEL)
        self.setCurrentIndex(max(default, 0))
        self._previous = self.currentIndex()
        self.activated.connect(self._on_activated)

    def current_choice(self) -> ModelChoice | None:
        """Return the selected model, or None when no model is installed or opened yet."""
        choice = self.currentData()
        return choice if isinstance(choice, ModelChoice) else None

    def select_embedded(self, model: EmbeddedModel) -> bool:
        """Select an embedded model; returns False when it is not installed."""
        index = self._index_of_embedded(model)
        if index < 0:
            return False
        self._select(index)
        return True

    def add_model_file(self, path: str) -> bool:
        """Add the GGUF file at ``path`` and select it; returns whether it was usable.

        A file that is not a usable GGUF model is explained in a message box, and the
        selection stays as it was.
        """
        try:
            header = read_gguf_header(path)
        except ModelFileError as exc:
            QMessageBox.warning(self, "Ember cannot use this model", str(exc))
            self.setCurrentIndex(self._previous)
            return False
        self._select_file(path, header.name)
        return True

    def set_remote_models(self, models: list[tuple[str, str]]) -> None:
        """List the remote models (display name, model path) Settings has, in place of those listed before.

        When the selected model was a remote one that is gone, the default model is selected.
        """
        current = self.current_choice()
        for i in reversed(range(self.count())):
            choice = self.itemData(i)
            if isinstance(choice, ModelChoice) and choice.remote_path:
                self.removeItem(i)
        for label, path in models:
            self.insertItem(self.count() - 1, label, ModelChoice(label, remote_path=path))
        if current is not None and current.remote_path:
            index = self._index_where(lambda choice: choice.remote_path == current.remote_path)
            if index < 0:
                index = max(self._index_of_embedded(DEFAULT_TEXT_MODEL), 0)
                self._select(index)
            else:
                self.setCurrentIndex(index)
                self._previous = index

    def select_model_path(self, path: str) -> bool:
        """Select the model a conversation used (``embedded:<id>`` or a file), without any dialog.

        Returns False, leaving the selection as it was, when that model is no longer available.
        """
        if path.startswith(EMBEDDED_PREFIX):
            wanted = path[len(EMBEDDED_PREFIX) :]
            model = next((m for m in EMBEDDED_TEXT_MODELS if m.id == wanted), None)
            return model is not None and self.select_embedded(model)
        if is_remote(path):
            index = self._index_where(lambda choice: choice.remote_path == path)
            if index >= 0:
                self._select(index)
            return index >= 0
        name = ""  # only read for a file the picker does not list yet
        if self._index_of_file(path) < 0:
            try:
                name = read_gguf_header(path).name
            except ModelFileError:
                return False
        self._select_file(path, name)
        return True

    def _index_of_file(self, path: str) -> int:
        return self._index_where(lambda choice: choice.file_path == path)

    def _select_file(self, path: str, name: str) -> None:
        """Select the entry for ``path``, adding it (labelled with the model's ``name``) if new."""
        index = self._index_of_file(path)
        if index < 0:
            label = f"{name} ({Path(path).name})"
            index = self.count() - 1
            self.insertItem(index, label, ModelChoice(label, file_path=path))
        self._select(index)

    def _index_of_embedded(self, model: EmbeddedModel) -> int:
        return self._index_where(lambda choice: choice.embedded == model)

    def _index_where(self, match: Callable[[ModelChoice], bool]) -> int:
        """Return the index of the first model entry that ``match`` accepts, or -1."""
        for i in range(self.count()):
            choice = self.itemData(i)
            if isinstance(choice, ModelChoice) and match(choice):
                return i
        return -1

    def _select(self, index: int) -> None:
        self.setCurrentIndex(index)
        self._previous = index
        self.model_picked.emit(self.itemData(index))

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) is not None:
            if index != self._previous:
                self._select(index)
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", "", "GGUF models (*.gguf);;All files (*)")
        if not path:
            self.setCurrentIndex(self._previous)
            return
        self.add_model_file(path)
