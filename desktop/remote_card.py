"""Settings > Remote engines: add an OpenAI-compatible server (llama.cpp's, vLLM, Ollama, another Ember) as a
text backend, see the servers added, and remove one. Its models then show in the Chat panel's model list."""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engines.errors import EmberError


class RemoteCard(QFrame):
    """The card. ``changed`` carries the (display name, model path) of every remote model after a change."""

    changed = Signal(object)
    _connected = Signal(object, object)  # (endpoint, error message or None), from the worker thread

    def __init__(self, studio: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsCard")
        self.studio = studio
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.setSpacing(10)
        self.endpoints = QListWidget()
        self.endpoints.setObjectName("remoteEndpoints")
        self.endpoints.setMaximumHeight(110)
        layout.addWidget(self.endpoints)
        row = QHBoxLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("Name (e.g. gpu-box)")
        self.url = QLineEdit()
        self.url.setPlaceholderText("Address, e.g. http://192.168.1.20:8080/v1")
        self.key = QLineEdit()
        self.key.setPlaceholderText("API key (if it needs one)")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.kind = QComboBox()
        self.kind.addItem("Text models", "text")
        self.kind.addItem("Image models", "image")
        self.kind.setToolTip("What Ember uses this server's models for: chat and writing, or making images")
        for field, stretch in ((self.name, 1), (self.url, 3), (self.key, 2), (self.kind, 1)):
            row.addWidget(field, stretch)
        layout.addLayout(row)
        buttons = QHBoxLayout()
        self.connect_button = QPushButton("Connect and add")
        self.connect_button.clicked.connect(self.connect_endpoint)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons.addWidget(self.connect_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.status = QLabel("")
        self.status.setObjectName("remoteStatus")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self._connected.connect(self._on_connected)
        self.refresh()

    def refresh(self) -> None:
        """List the kept endpoints."""
        from engines.remote.endpoints import saved

        self.endpoints.clear()
        for endpoint in saved(self.studio.settings):
            models = ", ".join(endpoint.models) or "no models"
            what = "images" if endpoint.kind == "image" else "text"
            item = QListWidgetItem(f"{endpoint.name} ({what}): {endpoint.url} ({models})")
            item.setData(256, endpoint.name)
            self.endpoints.addItem(item)
        self.remove_button.setEnabled(self.endpoints.count() > 0)

    def remote_models(self) -> list[tuple[str, str]]:
        """(display name, model path) of the text models on the kept servers."""
        from engines.remote.endpoints import remote_models

        return remote_models(self.studio.settings, "text")

    def connect_endpoint(self) -> None:
        """Ask the server for its models (on a worker thread, so the window never waits); keep it when it answers."""
        from engines.remote.endpoints import Endpoint, normalized_url

        name = self.name.text().strip()
        if not name or "/" in name:
            self.status.setText("Give the server a short name without '/', e.g. gpu-box.")
            return
        try:
            url = normalized_url(self.url.text())
        except EmberError as exc:
            self.status.setText(str(exc))
            return
        endpoint = Endpoint(name, url, self.key.text().strip(), kind=self.kind.currentData())
        self.connect_button.setEnabled(False)
        self.status.setText(f"Asking {url} for its models…")
        threading.Thread(target=self._ask, args=(endpoint,), name="ember-remote-connect", daemon=True).start()

    def _ask(self, endpoint: Any) -> None:
        from dataclasses import replace

        from engines.remote.endpoints import list_models

        try:
            models = list_models(endpoint.url, endpoint.api_key)
        except EmberError as exc:
            self._connected.emit(endpoint, str(exc))
            return
        self._connected.emit(replace(endpoint, models=tuple(models)), None)

    def _on_connected(self, endpoint: Any, error: str | None) -> None:
        from engines.remote.endpoints import keep

        self.connect_button.setEnabled(True)
        if error is not None:
            self.status.setText(error)
            return
        if not endpoint.models:
            self.status.setText(f"{endpoint.url} answers but lists no models; load one there, then connect again.")
            return
        keep(self.studio.settings, endpoint)
        self.status.setText(
            f"Added {endpoint.name}: {', '.join(endpoint.models)}. "
            + (
                "Its models are in the Images panel's list; what they make passes Ember's safety filter, gets "
                "Ember's watermark and is kept in your library."
                if endpoint.kind == "image"
                else "Its models are in the Chat panel's list; what they write passes Ember's safety filter and is "
                "kept in your library, without Ember's watermark (a remote server cannot carry it)."
            )
        )
        self.name.clear()
        self.url.clear()
        self.key.clear()
        self.refresh()
        self.changed.emit(self.remote_models())

    def remove_selected(self) -> None:
        from engines.remote.endpoints import forget

        item = self.endpoints.currentItem() or self.endpoints.item(0)
        if item is None:
            return
        name = item.data(256)
        forget(self.studio.settings, name)
        self.status.setText(f"Removed {name}.")
        self.refresh()
        self.changed.emit(self.remote_models())
