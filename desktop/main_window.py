"""The main window: navigation on the left, the panel in the middle, a status bar below."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge
from desktop.chat_panel import ChatPanel
from desktop.models_panel import ModelsPanel
from desktop.queue_view import DownloadQueue, QueueView

# Panels made the first time they are shown (or asked for): importing and building them all took a
# third of the time until the window was shown. Chat (the first page) and Models (it scans for the
# installed models the other panels offer) are made at once.
_PANEL_CLASSES: dict[str, tuple[str, str]] = {
    "Images": ("desktop.images_panel", "ImagesPanel"),
    "Speech": ("desktop.speech_panel", "SpeechPanel"),
    "Music": ("desktop.music_panel", "MusicPanel"),
    "Library": ("desktop.gallery_panel", "GalleryPanel"),
    "Verify": ("desktop.verify_panel", "VerifyPanel"),
    "Evaluate": ("desktop.evaluate_panel", "EvaluatePanel"),
    "Settings": ("desktop.settings_page", "SettingsPage"),
}
LAZY_PANELS: tuple[str, ...] = tuple(_PANEL_CLASSES)


def _lazy_panel(name: str) -> property:
    """The window's attribute for a lazy panel: made the first time it is read."""
    return property(lambda window: window.panel(name), doc=f"The {name} panel (made when first needed).")


class MainWindow(QMainWindow):
    """Ember's window: Chat, Images, Models, Verify, Queue and Settings in the navigation."""

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.studio = bridge.studio
        self.setWindowTitle("Ember")
        self.resize(1180, 760)

        self.navigation = QListWidget()
        self.navigation.setObjectName("navigation")
        self.navigation.setFixedWidth(132)
        self.pages = QStackedWidget()
        self._rows: dict[str, int] = {}  # each panel's row in the navigation and page in the stack
        self._made: dict[str, QWidget] = {}  # the lazy panels made so far
        self.chat = ChatPanel(bridge)
        self.add_panel("Chat", self.chat)
        self.chat.model_picker.set_remote_models(_remote_models(self.studio))
        for name in LAZY_PANELS[:4]:
            self._add_lazy(name)
        self.downloads = DownloadQueue(bridge, self)
        self.models = ModelsPanel(bridge, self.downloads)
        self.add_panel("Models", self.models)
        self._add_lazy("Verify")
        self._add_lazy("Evaluate")
        self.queue_view = QueueView(self.downloads)
        self.add_panel("Queue", self.queue_view)
        self._add_lazy("Settings")
        self.models.model_chosen.connect(self.use_model)
        self.models.scanned.connect(self._offer_installed_models)
        self.navigation.currentRowChanged.connect(self._show_row)
        self.navigation.setCurrentRow(0)

        self.interrupted = InterruptedBar(self.studio)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(0)
        right_layout.addWidget(self.interrupted)
        right_layout.addWidget(self.pages, 1)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.navigation)
        layout.addWidget(right, 1)
        self.setCentralWidget(central)

        self.backend_label = QLabel()
        self.model_label = QLabel()
        self.speed_label = QLabel()
        for label, name in (
            (self.backend_label, "backendLabel"),
            (self.model_label, "modelLabel"),
            (self.speed_label, "speedLabel"),
        ):
            label.setObjectName(name)
            self.statusBar().addPermanentWidget(label)
        self.queue_button = QPushButton()
        self.queue_button.setObjectName("queueButton")
        self.queue_button.setFlat(True)
        self.queue_button.setToolTip("Show the queue: downloads and other jobs")
        self.queue_button.clicked.connect(lambda: self.show_panel(self.queue_view))
        self.statusBar().addWidget(self.queue_button)
        self.downloads.changed.connect(self._show_queue_state)
        self.downloads.removed.connect(self._show_queue_state)
        self._show_queue_state()
        self.show_backend("CPU")  # nothing is loaded yet, and the CPU is always there
        self.show_speed(0.0)
        model = self.chat.model_picker.current_choice()
        self.show_model(model.name if model else "none")
        self.chat.backend_changed.connect(self.show_backend)
        self.chat.model_changed.connect(self.show_model)
        self.chat.speed_changed.connect(self.show_speed)
        self.chat.safety_settings_requested.connect(self.show_settings)
        self._shut = False
        if _serves_api(self.studio):
            self.panel("Settings")  # its API service starts the server that was on when Ember last stopped
        # Downloads that were running when Ember last stopped continue, and show in the queue.
        self.downloads.resume_unfinished()

    def add_panel(self, name: str, panel: QWidget) -> None:
        """Add a panel and its entry in the navigation."""
        self._rows[name] = self.navigation.count()
        self.navigation.addItem(name)
        item = self.navigation.item(self.navigation.count() - 1)
        item.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.pages.addWidget(panel)

    def _add_lazy(self, name: str) -> None:
        """Add the navigation entry of a panel made when first needed (an empty page holds its place)."""
        self.add_panel(name, QWidget())

    def _show_row(self, row: int) -> None:
        name = self.navigation.item(row).text() if row >= 0 else ""
        if name in LAZY_PANELS:
            self.panel(name)
        self.pages.setCurrentIndex(row)

    def panel(self, name: str) -> QWidget:
        """The panel called ``name`` in the navigation, made now if it is a lazy one not made yet."""
        if name not in LAZY_PANELS:
            return self.pages.widget(self._rows[name])
        made = self._made.get(name)
        if made is None:
            made = self._make(name)
            self._made[name] = made
            row = self._rows[name]
            placeholder = self.pages.widget(row)
            current = self.pages.currentIndex()
            self.pages.insertWidget(row, made)
            self.pages.removeWidget(placeholder)
            placeholder.deleteLater()
            self.pages.setCurrentIndex(current)
            self._wire(name, made)
        return made

    def _make(self, name: str) -> QWidget:
        import importlib

        module, cls = _PANEL_CLASSES[name]
        made = getattr(importlib.import_module(module), cls)(self.bridge)
        if name == "Library":
            made.window_actions = self
        return made

    def _wire(self, name: str, panel: Any) -> None:
        """Connect a lazy panel, once made, to the window and the other panels."""
        if name == "Images":
            needed = panel.model_needed  # the Images panel's "no model yet" card
            needed.download_requested.connect(lambda entry_id: self.download_for(needed, entry_id))
            needed.browse_requested.connect(self.browse_catalog)
            panel.safety_settings_requested.connect(self.show_settings)
            self._offer_diffusion_models(panel)
        elif name == "Settings":
            panel.remote_card.changed.connect(self._remote_models_changed)
        elif name == "Speech":
            voices = panel.model_needed  # the Speech panel's "no voice yet" card
            voices.download_requested.connect(lambda entry_id: self.download_for(voices, entry_id))
            voices.browse_requested.connect(self.browse_catalog)

    images = _lazy_panel("Images")
    speech = _lazy_panel("Speech")
    music = _lazy_panel("Music")
    library = _lazy_panel("Library")
    verify = _lazy_panel("Verify")
    evaluate = _lazy_panel("Evaluate")
    settings_page = _lazy_panel("Settings")

    def show_panel(self, panel: QWidget) -> None:
        """Switch to ``panel`` (as if its navigation entry were clicked)."""
        index = self.pages.indexOf(panel)
        if index >= 0:
            self.navigation.setCurrentRow(index)

    def show_settings(self) -> None:
        """Open the Settings page (e.g. from a safety notice)."""
        self.show_panel(self.settings_page)

    def show_backend(self, backend: str) -> None:
        """Show where the model runs, e.g. "Backend: CPU"."""
        self.backend_label.setText(f"Backend: {backend}")

    def show_model(self, name: str) -> None:
        """Show the model's name."""
        self.model_label.setText(f"Model: {name}")

    def show_speed(self, tokens_per_s: float) -> None:
        """Show the speed of the current or last reply (a dash before the first)."""
        self.speed_label.setText(f"{tokens_per_s:.1f} tok/s" if tokens_per_s > 0 else "— tok/s")

    # -- what the Library panel asks of the other panels --------------------------------------------
    def rerun_library_item(self, item: Any) -> bool:
        """Make a kept image, clip or piece of music again, with its settings and seed, in the panel that made it."""
        from desktop.image_results import ResultItem

        record = self.studio.records.get(item.output_id)
        if record is None:
            return False
        if item.kind == "image":
            result = ResultItem(item.output_id, item.path, dict(item.settings), record.provenance.model_path,
                                record.provenance.model_name)  # fmt: skip
            self.show_panel(self.images)
            return self.images.rerun(result)
        if item.kind == "music":
            request = music_request(item.settings, record.provenance.model_path, item.prompt)
            if request is None:
                return False
            self.show_panel(self.music)
            return self.music.send(request) is not None
        if item.kind == "speech":
            request = speech_request(item.settings, item.prompt)
            if request is None:
                return False
            self.show_panel(self.speech)
            return self.speech.send(request) is not None
        return False

    def download_for(self, card: Any, entry_id: str) -> int | None:
        """Download a catalog entry a panel's empty state offered; the card says it is on its way."""
        download_id = self.models.download_entry(entry_id)
        if download_id is not None:
            entry = next((e for e in self.models.catalog if e.id == entry_id), None)
            name = entry.name if entry is not None else entry_id
            card.downloading(
                entry_id, f"Downloading {name}. It is offered here when it is done; follow it in the Queue."
            )
        return download_id

    def browse_catalog(self, kind: str) -> None:
        """Show the Models panel's catalog of ``kind``."""
        self.show_panel(self.models)
        self.models.show_catalog(kind)

    def _offer_installed_models(self) -> None:
        """After each model scan: the installed diffusion models are offered in the Images panel, and the
        Speech panel lists its voices again when it had none (a voice was just downloaded). A panel not
        made yet is offered them when it is made."""
        speech = self._made.get("Speech")
        if speech is not None and not speech.has_voice() and self.models.installed_of_kind("voice"):
            speech.refresh_voices()
        images = self._made.get("Images")
        if images is not None:
            self._offer_diffusion_models(images)

    def _remote_models_changed(self, _models: Any = None) -> None:
        """Settings added or removed a remote server: the Chat and Images panels list its models, or no more."""
        self.chat.model_picker.set_remote_models(_remote_models(self.studio))
        images = self._made.get("Images")
        if images is not None:
            self._offer_diffusion_models(images)

    def _offer_diffusion_models(self, images: Any) -> None:
        diffusion = [(self.models.display_name(m), m.path) for m in self.models.installed_of_kind("diffusion")]
        diffusion += _remote_models(self.studio, "image")
        had = images.has_model()
        images.set_models(diffusion)
        if not had and diffusion:
            images.select_model(diffusion[0][1])

    def use_as_init_image(self, path: str) -> bool:
        """Put the image at ``path`` in the Images panel as the image-to-image input."""
        if not self.images.set_init_image(path):
            return False
        self.show_panel(self.images)
        return True

    def upscale_image(self, path: str, source_output_id: str = "") -> bool:
        """Ask how to upscale the image at ``path`` (its record linked as the source)."""
        self.show_panel(self.images)
        return self.images.upscaler.ask(path, source_output_id)

    def use_model(self, kind: str, path: str) -> None:
        """Open the panel that serves a model of ``kind`` with the model at ``path`` chosen."""
        if kind == "diffusion":
            if self.images.select_model(path):
                self.show_panel(self.images)
        elif kind == "voice":
            if self.speech.select_voice(path):
                self.show_panel(self.speech)
        elif kind == "music":
            if self.music.select_model(path):
                self.show_panel(self.music)
        elif kind == "text":
            if path.startswith("embedded:") or path.lower().endswith(".gguf"):
                chosen = self.chat.model_picker.select_model_path(path) or self.chat.model_picker.add_model_file(path)
                if chosen:
                    self.show_panel(self.chat)

    def _show_queue_state(self, _download_id: int = 0) -> None:
        """Show in the status bar how many downloads run and how far the first one is."""
        active = [e for e in self.downloads.entries() if e.active]
        if not active:
            self.queue_button.setText("Queue")
        elif len(active) == 1:
            first = active[0]
            self.queue_button.setText(f"Downloading {first.name} · {first.fraction:.0%}")
        else:
            self.queue_button.setText(f"{len(active)} downloads · {active[-1].fraction:.0%}")

    def shutdown(self) -> None:
        """Stop the running reply and stop listening to the Studio (before it closes)."""
        if self._shut:
            return
        self._shut = True
        self.chat.shutdown()
        for panel in self._made.values():  # the lazy panels that were made
            panel.shutdown()
        self.downloads.shutdown()
        self.bridge.detach()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


def _remote_models(studio: Any, kind: str = "text") -> list[tuple[str, str]]:
    """(display name, model path) of the models of ``kind`` on remote servers that Settings keeps."""
    from engines.remote.endpoints import remote_models

    return remote_models(studio.settings, kind)


def _serves_api(studio: Any) -> bool:
    """Whether the local API was left on (Settings starts it again)."""
    from engines.api.service import SETTING, ApiChoice

    return ApiChoice.from_json(studio.settings.get(SETTING)).enabled


def speech_request(settings: dict[str, Any], text: str) -> Any:
    """The request that speaks a kept clip again (its voice, speed, pause and seed), or None when its
    settings do not say."""
    from engines.speech.requests import SpeechOptions, SpeechRequest

    try:
        return SpeechRequest(
            SpeechOptions(str(settings["voice"])),
            text,
            speed=float(settings["speed"]),
            pause_ms=int(settings["pause_ms"]),
            seed=settings.get("seed"),
            preview=True,
        )
    except (KeyError, TypeError, ValueError):
        return None


def music_request(settings: dict[str, Any], model_path: str, prompt: str) -> Any:
    """The request that makes a kept piece again (its own seed), or None when its settings do not say."""
    from engines.music.requests import ComposeRequest, MusicOptions, MusicRequest

    try:
        if "style" in settings:
            return ComposeRequest(
                MusicOptions(soundfont=model_path if model_path.lower().endswith((".sf2", ".sf3")) else ""),
                key=str(settings["key"]),
                style=str(settings["style"]),
                tempo_bpm=float(settings["tempo_bpm"]),
                bars=int(settings["bars"]),
                time_signature=str(settings.get("time_signature", "")),
                seed=settings.get("seed"),
                title=str(settings.get("title", "")),
            )
        return MusicRequest(
            MusicOptions(model_path),
            prompt or str(settings.get("prompt", "")),
            seconds=float(settings["seconds"]),
            guidance=float(settings["guidance"]),
            temperature=float(settings["temperature"]),
            top_k=int(settings["top_k"]),
            top_p=float(settings["top_p"]),
            seed=settings.get("seed"),
            greedy=bool(settings.get("greedy", False)),
            preview=True,
        )
    except (KeyError, TypeError, ValueError):
        return None


class InterruptedBar(QFrame):
    """Shown at start when jobs were queued or running as Ember last stopped (a crash, a kill): Resume or Discard."""

    def __init__(self, studio: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("interruptedBar")
        self.studio = studio
        self.requests = list(studio.pending_from_last_run())
        self.label = QLabel()
        self.label.setObjectName("interruptedText")
        self.label.setWordWrap(True)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resumeInterrupted")
        self.resume_button.clicked.connect(self.resume)
        self.discard_button = QPushButton("Discard")
        self.discard_button.setObjectName("discardInterrupted")
        self.discard_button.clicked.connect(self.discard)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(16, 8, 16, 8)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.resume_button)
        layout.addWidget(self.discard_button)
        self.setStyleSheet("QFrame#interruptedBar { background: #fbeee6; border-bottom: 1px solid #ecd3c4; }")
        count = len(self.requests)
        kinds = sorted({type(r).__name__.removesuffix("Request").lower() or "job" for r in self.requests})
        self.label.setText(
            f"{count} job{'s were' if count != 1 else ' was'} not finished when Ember last stopped "
            f"({', '.join(kinds)}). Resume runs {'them' if count != 1 else 'it'} again with the same settings."
        )
        self.setVisible(count > 0)

    def resume(self) -> list[Any]:
        jobs = self.studio.resume_pending()
        self.setVisible(False)
        return jobs

    def discard(self) -> None:
        self.studio.discard_pending()
        self.setVisible(False)
