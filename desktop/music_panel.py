"""The Music panel: compose a piece in MIDI (built in) or make music from a description (a MusicGen model).

The model box chooses: "Ember composer" shows the key, style, tempo, bars and SoundFont; a
MusicGen folder shows the description, length, guidance and sampling. Both share the seed (with
dice), Generate (Ctrl+Enter), Cancel, the waveform and transport, Save as… (WAV, FLAC, OGG),
Save MIDI… (a composition's notes) and Re-run (the last piece's settings and seed again).
MusicGen's audio arrives as previews while it is made (checked and watermarked), and the
waveform grows. "Tune to MIDI…" turns a recording into notes (Basic Pitch). The panel sends
requests through the bridge and never calls an engine.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.audio_player import OutputDevice
from desktop.bridge import EventBridge, JobOp
from desktop.chat_panel import PromptEdit
from desktop.clip_player import ClipPanel
from desktop.image_view import dice_icon
from desktop.images_panel import SeedBox
from engines.errors import EmberError
from engines.media import AudioOutput
from engines.progress import Loading, Preview, Step

MODELS_KEY = "music.models"  # MusicGen folders the person opened
MODEL_KEY = "music.model"
KEYS = tuple(f"{tonic} {mode}" for mode in ("major", "minor") for tonic in
             ("C", "G", "D", "A", "E", "B", "F#", "Db", "Ab", "Eb", "Bb", "F"))  # fmt: skip
_OPEN_FOLDER = "Open MusicGen folder…"
_SEED_MAX = 2**32 - 1


class MusicPanel(ClipPanel):
    """Compose or generate music; listen, save, re-run. ``piece_ready`` carries each MusicResult."""

    piece_ready = Signal(object)
    music_finished = Signal(object)

    def __init__(
        self, bridge: EventBridge, parent: QWidget | None = None, *, device: OutputDevice | None = None
    ) -> None:
        super().__init__(bridge, parent, device=device, placeholder="The waveform of the piece shows here.",
                         message_name="musicMessage")  # fmt: skip
        self.setObjectName("musicPanel")
        self.last_request: Any = None  # what made the piece shown (Re-run sends it again)
        self._build()
        self._fill_models()

    # -- building --------------------------------------------------------------------------------
    def _build(self) -> None:
        from engines.music.compose import STYLES

        self.model = QComboBox()
        self.model.setObjectName("musicModelCombo")
        self.model.setMinimumWidth(300)
        self.model.activated.connect(self._on_model_picked)
        self.model.currentIndexChanged.connect(self._show_form)

        # The composer's form.
        self.key = QComboBox()
        self.key.setObjectName("keyCombo")
        self.key.setEditable(True)  # "F# dorian", "Bb mixolydian" too
        self.key.addItems(KEYS)
        self.style = QComboBox()
        self.style.setObjectName("styleCombo")
        for name, spec in STYLES.items():
            self.style.addItem(name.capitalize(), name)
            self.style.setItemData(self.style.count() - 1, spec.description, 3)  # Qt.ToolTipRole
        self.tempo = QSpinBox()
        self.tempo.setObjectName("tempoBox")
        self.tempo.setRange(29, 300)
        self.tempo.setSpecialValueText("Style's own")
        self.tempo.setSuffix(" BPM")
        self.tempo.setValue(29)
        self.bars = QSpinBox()
        self.bars.setObjectName("barsBox")
        self.bars.setRange(1, 256)
        self.bars.setValue(16)
        self.metre = QComboBox()
        self.metre.setObjectName("metreCombo")
        for text, value in (("Style's own", ""), ("4/4", "4/4"), ("3/4", "3/4")):
            self.metre.addItem(text, value)
        self.soundfont = QLineEdit()
        self.soundfont.setObjectName("soundfontEdit")
        self.soundfont.setPlaceholderText("Ember's own General MIDI sounds")
        soundfont_button = QPushButton("Choose…")
        soundfont_button.clicked.connect(self._choose_soundfont)
        soundfont_row = QHBoxLayout()
        soundfont_row.addWidget(self.soundfont, 1)
        soundfont_row.addWidget(soundfont_button)
        self.title = QLineEdit()
        self.title.setObjectName("titleEdit")
        self.title.setPlaceholderText("Untitled")
        tempo_row = QHBoxLayout()
        tempo_row.addWidget(self.tempo)
        tempo_row.addSpacing(12)
        tempo_row.addWidget(QLabel("Bars"))
        tempo_row.addWidget(self.bars)
        tempo_row.addSpacing(12)
        tempo_row.addWidget(QLabel("Time"))
        tempo_row.addWidget(self.metre)
        tempo_row.addStretch(1)
        compose_form = QFormLayout()
        compose_form.addRow("Title", self.title)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addSpacing(12)
        key_row.addWidget(QLabel("Style"))
        key_row.addWidget(self.style, 1)
        compose_form.addRow("Key", key_row)
        compose_form.addRow("Tempo", tempo_row)
        compose_form.addRow("Sounds", soundfont_row)
        note = QLabel(
            "The composer is an algorithm, not a model: a Markov chain over each style's chords, a melody that "
            "favours chord tones, a bass line and drums. It writes MIDI you can edit."
        )
        note.setObjectName("composerNote")
        note.setWordWrap(True)
        compose_page = QWidget()
        compose_layout = QVBoxLayout(compose_page)
        compose_layout.setContentsMargins(0, 0, 0, 0)
        compose_layout.addLayout(compose_form)
        compose_layout.addWidget(note)
        compose_layout.addStretch(1)

        # MusicGen's form.
        self.prompt = PromptEdit()
        self.prompt.setObjectName("musicPrompt")
        self.prompt.setPlaceholderText("Describe the music: “calm lo-fi piano with soft rain, 80 BPM” (Ctrl+Enter)")
        self.prompt.submit_requested.connect(self.generate)
        self.prompt.stop_requested.connect(self.cancel)
        self.seconds = QDoubleSpinBox()
        self.seconds.setObjectName("secondsBox")
        self.seconds.setRange(1.0, 300.0)
        self.seconds.setValue(10.0)
        self.seconds.setSuffix(" s")
        self.seconds.setToolTip("Over 30 s the piece is made in windows, each continuing the last 12 s")
        self.guidance = QDoubleSpinBox()
        self.guidance.setObjectName("guidanceBox")
        self.guidance.setRange(1.0, 10.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setValue(3.0)
        self.guidance.setToolTip("How closely the music follows the description (1: not guided; 3 is usual)")
        self.temperature = QDoubleSpinBox()
        self.temperature.setObjectName("temperatureBox")
        self.temperature.setRange(0.05, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        gen_row = QHBoxLayout()
        gen_row.addWidget(self.seconds)
        gen_row.addSpacing(12)
        gen_row.addWidget(QLabel("Guidance"))
        gen_row.addWidget(self.guidance)
        gen_row.addSpacing(12)
        gen_row.addWidget(QLabel("Temperature"))
        gen_row.addWidget(self.temperature)
        gen_row.addStretch(1)
        musicgen_page = QWidget()
        musicgen_layout = QVBoxLayout(musicgen_page)
        musicgen_layout.setContentsMargins(0, 0, 0, 0)
        musicgen_layout.addWidget(self.prompt, 1)
        gen_form = QFormLayout()
        gen_form.addRow("Length", gen_row)
        musicgen_layout.addLayout(gen_form)

        self.forms = QStackedWidget()
        self.forms.addWidget(compose_page)
        self.forms.addWidget(musicgen_page)

        self.seed = SeedBox()
        self.seed.setObjectName("musicSeedBox")
        self.seed.setToolTip("The same seed with the same settings makes the same piece on this machine.")
        dice = QToolButton()
        dice.setObjectName("musicDiceButton")
        dice.setIcon(dice_icon())
        dice.setToolTip("A new random seed")
        dice.clicked.connect(self.roll_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed)
        seed_row.addWidget(dice)
        seed_row.addStretch(1)
        top = QFormLayout()
        top.addRow("Model", self.model)
        top.addRow("Seed", seed_row)

        self.generate_button = QPushButton("Compose")
        self.generate_button.setObjectName("generateMusicButton")
        self.generate_button.setMinimumWidth(150)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelMusicButton")
        self.cancel_button.setMinimumWidth(110)
        self.cancel_button.clicked.connect(self.cancel)
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.setObjectName("rerunMusicButton")
        self.rerun_button.setToolTip("The last piece's settings and seed again: the same piece on this machine")
        self.rerun_button.clicked.connect(self.rerun)
        self.tune_button = QPushButton("Tune to MIDI…")
        self.tune_button.setObjectName("tuneToMidiButton")
        self.tune_button.setToolTip("Turn a recording of one instrument or a hummed tune into MIDI notes")
        self.tune_button.clicked.connect(self._choose_tune)
        for button in (self.generate_button, self.cancel_button, self.rerun_button, self.tune_button):
            button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.progress = QProgressBar()
        self.progress.setObjectName("musicProgress")
        self.progress.setVisible(False)
        actions = QHBoxLayout()
        actions.addWidget(self.generate_button)
        actions.addWidget(self.cancel_button)
        actions.addWidget(self.rerun_button)
        actions.addWidget(self.progress, 4)
        actions.addStretch(1)
        actions.addWidget(self.tune_button)

        self.save_button = QPushButton("Save as…")
        self.save_button.setObjectName("saveMusicButton")
        self.save_button.clicked.connect(self._choose_save_path)
        self.save_midi_button = QPushButton("Save MIDI…")
        self.save_midi_button.setObjectName("saveMidiButton")
        self.save_midi_button.clicked.connect(self._choose_midi_path)
        self.player.extra.addWidget(self.save_button)
        self.player.extra.addWidget(self.save_midi_button)

        self.status = QLabel()
        self.status.setObjectName("musicStatus")
        self.status.setWordWrap(True)

        title = QLabel("Music")
        title.setObjectName("panelTitle")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        layout.addWidget(title)
        layout.addLayout(top)
        layout.addWidget(self.forms, 2)
        layout.addLayout(actions)
        layout.addWidget(self.player, 3)
        layout.addWidget(self.status)
        layout.addWidget(self.message)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.generate)
        self.setStyleSheet(
            "QPushButton#generateMusicButton { background: #d9622b; color: #ffffff; border: none; font-weight: 600;"
            " padding: 7px 14px; border-radius: 8px; }"
            "QPushButton#generateMusicButton:hover { background: #c4551f; }"
            "QPushButton#generateMusicButton:disabled { background: #e7b9a1; }"
            "QLabel#musicMessage { color: #8c3b1a; background: #fbeee6; border-radius: 8px; padding: 6px 10px; }"
            "QLabel#musicStatus, QLabel#composerNote { color: #6d655e; }"
        )
        self._set_busy(None)

    # -- models ----------------------------------------------------------------------------------
    def _fill_models(self) -> None:
        from engines.music.requests import COMPOSER

        self.model.addItem("Ember composer (MIDI, built in)", COMPOSER)
        saved = self.settings_store.get(MODELS_KEY, []) or []
        for folder in saved if isinstance(saved, list) else []:
            self._add_folder(str(folder))
        self.model.addItem(_OPEN_FOLDER, None)
        chosen = self.settings_store.get(MODEL_KEY, COMPOSER)
        self.select_model(str(chosen) if chosen else COMPOSER)

    def _add_folder(self, folder: str) -> int:
        index = self.model.findData(folder)
        if index >= 0:
            return index
        name = Path(folder).name if Path(folder).name != "onnx" else Path(folder).parent.name
        at = max(1, self.model.count() - (1 if self.model.findData(None) >= 0 else 0))
        self.model.insertItem(at, f"MusicGen · {name}", folder)
        return at

    def model_value(self) -> str:
        from engines.music.requests import COMPOSER

        return str(self.model.currentData() or COMPOSER)

    def select_model(self, value: str) -> bool:
        """Choose the composer or a MusicGen folder (added when new). Returns whether it is shown."""
        from engines.music.requests import COMPOSER

        index = self.model.findData(value)
        if index < 0 and value != COMPOSER and Path(value).is_dir():
            index = self._add_folder(value)
            self._remember_folders()
        if index >= 0:
            self.model.setCurrentIndex(index)
        return index >= 0

    def is_composer(self) -> bool:
        from engines.music.requests import COMPOSER

        return self.model_value() == COMPOSER

    def _on_model_picked(self, index: int) -> None:
        if self.model.itemData(index) is None:  # "Open MusicGen folder…"
            folder = QFileDialog.getExistingDirectory(self, "Open a MusicGen ONNX folder")
            if not folder or not self.select_model(folder):
                self.model.setCurrentIndex(0)

    def _show_form(self) -> None:
        composer = self.is_composer()
        self.forms.setCurrentIndex(0 if composer else 1)
        self.generate_button.setText("Compose" if composer else "Generate")
        self._set_busy(self._op)

    def _remember_folders(self) -> None:
        folders = [str(self.model.itemData(i)) for i in range(1, self.model.count()) if self.model.itemData(i)]
        store = self.settings_store
        self.bridge.background(lambda: store.set(MODELS_KEY, folders), parent=self).run()

    def _choose_soundfont(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a SoundFont", "", "SoundFonts (*.sf2 *.sf3)")
        if path:
            self.soundfont.setText(path)

    # -- the request -----------------------------------------------------------------------------
    def roll_seed(self) -> int:
        """Put a new random seed in the seed box and return it."""
        seed = random.randrange(_SEED_MAX + 1)
        self.seed.set_seed(seed)
        return seed

    def request(self) -> Any:
        """The request the form describes; raises ValueError (worded for a person) for a bad setting."""
        from engines.music.requests import ComposeRequest, MusicOptions, MusicRequest

        if self.is_composer():
            return ComposeRequest(
                MusicOptions(soundfont=self.soundfont.text().strip()),
                key=self.key.currentText().strip() or "C major",
                style=str(self.style.currentData()),
                tempo_bpm=None if self.tempo.value() < 30 else float(self.tempo.value()),
                bars=self.bars.value(),
                time_signature=str(self.metre.currentData()),
                seed=self.seed.seed(),
                title=self.title.text().strip(),
            )
        return MusicRequest(
            MusicOptions(self.model_value()),
            self.prompt.toPlainText().strip(),
            seconds=round(self.seconds.value(), 1),
            guidance=round(self.guidance.value(), 2),
            temperature=round(self.temperature.value(), 2),
            seed=self.seed.seed(),
            preview=True,
        )

    # -- making music ----------------------------------------------------------------------------
    def generate(self) -> JobOp | None:
        """Send the form's request; returns the job op, or None (a bad setting, or busy)."""
        if self.busy():
            return None
        if not self.is_composer() and not self.prompt.toPlainText().strip():
            self._show_message("Describe the music first.")
            return None
        try:
            request = self.request()
        except (ValueError, EmberError) as exc:
            self._show_message(str(exc))
            return None
        return self.send(request)

    def rerun(self) -> JobOp | None:
        """The last piece's request again, with the seed it was made with (the same piece on this machine)."""
        if self.last_request is None or self.result is None or self.busy():
            return None
        seed = self.result.delivered.record.provenance.seed
        request = replace(self.last_request, seed=seed) if seed is not None else self.last_request
        return self.send(request)

    def send(self, request: Any) -> JobOp | None:
        """Send ``request`` (a MusicRequest or ComposeRequest); returns the job op, or None."""
        self.settings_store_set(MODEL_KEY, request.model.model)
        self.last_request = request
        return self.start_job(request)

    def _set_busy(self, op: JobOp | None) -> None:
        self._op = op
        self.generate_button.setEnabled(op is None)
        self.cancel_button.setEnabled(op is not None)
        self.rerun_button.setEnabled(op is None and self.result is not None)
        self.progress.setVisible(op is not None)
        self.save_button.setEnabled(self.result is not None)
        self.save_midi_button.setEnabled(self.result is not None and bool(self.result.midi_path))
        self.player.update_times()

    def _on_progress(self, data: Any) -> None:
        if isinstance(data, Loading):
            self.status.setText(f"Loading {data.model}…")
        elif isinstance(data, Step):
            self.progress.setRange(0, data.total)
            self.progress.setValue(data.done)
            what = "rendering" if self.is_composer() else "frame"
            self.progress.setFormat(f"{what} %v of %m" if what == "frame" else "rendering %p%")

    def _on_preview(self, preview: Preview) -> None:
        """MusicGen's audio so far (checked and watermarked): the waveform grows, the first part plays."""
        chunk = preview.image
        if not isinstance(chunk, AudioOutput):
            return
        first = len(self.player.playback.samples) == 0
        self.player.playback.append(chunk.samples, chunk.sample_rate)
        expected = float(getattr(self.last_request, "seconds", 0.0))
        self.player.waveform.set_clip(self.player.playback.samples, chunk.sample_rate, expected)
        self.status.setText(f"Making the music: {self.player.playback.duration_s:.0f} s so far")
        self.player.update_times()
        if first:
            self.player.play()

    def _on_result(self, result: Any) -> None:
        """The finished piece (saved in the library): it replaces the previews at the same place."""
        self.result = result
        audio = result.delivered.output
        self.player.playback.replace_samples(audio.samples, audio.sample_rate)
        self.player.waveform.set_clip(audio.samples, audio.sample_rate)
        seconds = len(audio.samples) / audio.sample_rate
        seed = result.delivered.record.provenance.seed
        what = audio.parameters.get("chords") and f" · {audio.parameters['key']}, {audio.parameters['chords']}"
        self.status.setText(
            f"{seconds:.1f} s of music, made {result.realtime_factor:.1f}× faster than real time · seed {seed}"
            f"{what or ''} · saved to {result.path}"
        )
        self.player.update_times()
        self.piece_ready.emit(result)

    def _on_cancelled(self, kept: Any) -> None:
        self.status.setText("Stopped; nothing was kept.")

    def _on_finished(self, event: Any) -> None:
        self.player.playback.complete = True
        self._set_busy(None)
        self.music_finished.emit(event)

    # -- files -----------------------------------------------------------------------------------
    def _choose_save_path(self) -> None:
        if self.result is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Save the music",
            Path(self.result.path).name,
            "WAV with Content Credentials (*.wav);;FLAC (*.flac);;Ogg Vorbis (*.ogg)",
        )
        if path:
            self.save_clip(path)

    def _choose_midi_path(self) -> None:
        if self.result is None or not self.result.midi_path:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save the notes", Path(self.result.midi_path).name, "MIDI (*.mid)")
        if path:
            self.save_midi(path)

    def save_midi(self, path: str) -> None:
        """Copy the composition's MIDI file to ``path``, off the GUI thread."""
        from engines.atomic import write_atomic

        if self.result is None or not self.result.midi_path:
            return
        source = Path(self.result.midi_path)
        self.bridge.background(lambda: write_atomic(path, source.read_bytes()), parent=self).success(
            lambda written: self.status.setText(f"Saved {written}")
        ).run()

    def _choose_tune(self) -> None:
        source, _ = QFileDialog.getOpenFileName(self, "A recording of a tune", "", "Audio (*.wav *.flac *.ogg *.mp3)")
        if not source:
            return
        suggested = str(Path(source).with_suffix(".mid"))
        target, _ = QFileDialog.getSaveFileName(self, "Save the notes", suggested, "MIDI (*.mid)")
        if target:
            self.tune_to_midi(source, target)

    def tune_to_midi(self, source: str, target: str) -> Any:
        """Transcribe ``source`` with Basic Pitch and write ``target`` (.mid), off the GUI thread."""
        from engines.music.compose import write_midi
        from engines.music.transcribe import transcribe

        def work() -> tuple[Path, int, str]:
            found = transcribe(Path(source))
            return write_midi(found.composition, target), len(found.events), found.composition.key

        def show(done: tuple[Path, int, str]) -> None:
            self.status.setText(f"{done[1]} notes, in {done[2]} (an estimate) · saved to {done[0]}")

        self.status.setText(f"Listening for the notes in {Path(source).name}…")
        return self.bridge.background(work, parent=self).success(show).run()

    def settings_store_set(self, key: str, value: Any) -> None:
        store = self.settings_store
        self.bridge.background(lambda: store.set(key, value), parent=self).run()
