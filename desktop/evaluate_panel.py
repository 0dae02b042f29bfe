"""The Evaluate panel: pick a kind, a model and a prompt set; run; watch progress; see the table and a chart.

The run is :func:`engines.evaluation.sets.run_set` on a thread of its own (it waits on Studio jobs, one
sample after another; the samples go through the queue, the safety filter and the library as every
output). Each finished run is saved as JSON and Markdown in the data folder's ``evaluations``, and can
be exported. Stop ends the run after the prompt that is being evaluated.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import EventBridge
from engines.errors import Cancelled
from engines.evaluation.sets import KINDS, SetResult, prompt_sets, run_set, save

_KIND_NAMES = {"text": "Text", "image": "Images", "speech": "Speech", "music": "Music"}
_COLUMNS = ["Prompt", "Figure", "Min", "Median", "Max"]


class _Signals(QObject):
    progress = Signal(str)
    finished = Signal(object, object)  # SetResult or None, error or None


class RangeChart(QWidget):
    """One row a prompt: the figure's min-to-max range as a line and its median as a dot, to one scale."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evaluateChart")
        self.setMinimumHeight(140)
        self.rows: list[tuple[str, tuple[float, float, float]]] = []
        self.title = ""

    def show_rows(self, title: str, rows: list[tuple[str, tuple[float, float, float]]]) -> None:
        self.title, self.rows = title, rows
        self.setMinimumHeight(40 + 28 * max(len(rows), 1))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("white"))
        painter.setPen(QColor("#333333"))
        painter.drawText(QRectF(8, 4, self.width() - 16, 20), Qt.AlignmentFlag.AlignLeft, self.title)
        if not self.rows:
            return
        values = [v for _, spread in self.rows for v in spread]
        low, high = min([*values, 0.0]), max(values)
        span = (high - low) or 1.0
        left, right = min(260, self.width() // 3), self.width() - 70
        for i, (label, (lo, mid, hi)) in enumerate(self.rows):
            y = 36 + i * 28
            painter.setPen(QColor("#333333"))
            painter.drawText(QRectF(8, y - 9, left - 16, 18), Qt.AlignmentFlag.AlignVCenter, label[:40])

            def x(value: float) -> float:
                return left + (right - left) * (value - low) / span

            painter.setPen(QPen(QColor("#999999"), 3))
            painter.drawLine(int(x(lo)), y, int(x(hi)), y)
            painter.setPen(QPen(QColor("#d95f26"), 1))
            painter.setBrush(QColor("#d95f26"))
            painter.drawEllipse(QRectF(x(mid) - 5, y - 5, 10, 10))
            painter.setPen(QColor("#333333"))
            painter.drawText(QRectF(right + 6, y - 9, 64, 18), Qt.AlignmentFlag.AlignVCenter, f"{mid:.3g}")


class EvaluatePanel(QWidget):
    """Evaluate a model on a prompt set. ``evaluation_finished`` carries the SetResult (or None) and the error."""

    evaluation_finished = Signal(object, object)

    def __init__(self, bridge: EventBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evaluatePanel")
        self.bridge = bridge
        self.studio = bridge.studio
        self.result: SetResult | None = None
        self.saved: Path | None = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._signals = _Signals()
        self._signals.progress.connect(self._on_progress)
        self._signals.finished.connect(self._on_finished)
        self._sets = prompt_sets()
        self._listed = False  # the models are looked up when the panel is first shown, not at start-up
        self._build()

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        title = QLabel("Evaluate")
        title.setObjectName("pageTitle")
        intro = QLabel(
            "Measure a model on your own hardware: diversity, quality proxies and speed, on a set of prompts. "
            "The proxies are named for what they are (no model here judges quality). Every sample is made like "
            "any output: checked, watermarked and kept in your library."
        )
        intro.setObjectName("settingsHint")
        intro.setWordWrap(True)
        self.kind = QComboBox()
        self.kind.setObjectName("evaluateKind")
        for kind in KINDS:
            self.kind.addItem(_KIND_NAMES[kind], kind)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.model = QComboBox()
        self.model.setObjectName("evaluateModel")
        self.model.setMinimumContentsLength(24)
        self.prompt_set = QComboBox()
        self.prompt_set.setObjectName("evaluateSet")
        self.samples = QSpinBox()
        self.samples.setObjectName("evaluateSamples")
        self.samples.setRange(1, 32)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("primaryButton")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export)
        self.export_button.setEnabled(False)
        row = QHBoxLayout()
        for label, widget in (("Kind", self.kind), ("Model", self.model), ("Prompts", self.prompt_set)):
            row.addWidget(QLabel(label))
            row.addWidget(widget, 1 if widget is self.model else 0)
        row.addWidget(QLabel("Samples"))
        row.addWidget(self.samples)
        row.addWidget(self.run_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.export_button)

        self.busy = QProgressBar()
        self.busy.setObjectName("busyBar")
        self.busy.setTextVisible(False)
        self.busy.setFixedHeight(4)
        self.busy.setRange(0, 0)
        self.busy.hide()
        self.status = QLabel("Pick a model and a set of prompts, then Run.")
        self.status.setObjectName("busyLabel")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Images: whether the prompt alignment was measured (by a CLIP model the person downloaded) or not.
        self.alignment = QLabel()
        self.alignment.setObjectName("settingsHint")
        self.alignment.setWordWrap(True)
        self.alignment.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.alignment.hide()

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setObjectName("evaluateTable")
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.figure = QComboBox()
        self.figure.setObjectName("evaluateFigure")
        self.figure.currentIndexChanged.connect(self._draw_chart)
        self.chart = RangeChart()
        chart_row = QHBoxLayout()
        chart_row.addWidget(QLabel("Chart of"))
        chart_row.addWidget(self.figure, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 24, 32, 16)
        layout.setSpacing(12)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.busy)
        layout.addWidget(self.status)
        layout.addWidget(self.alignment)
        layout.addWidget(self.table, 2)
        layout.addLayout(chart_row)
        layout.addWidget(self.chart, 1)

    # -- choices -----------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        if not self._listed:
            self._listed = True
            self._kind_changed()
        super().showEvent(event)

    def refresh(self) -> None:
        """List the models of the chosen kind again (and now, if the panel was never shown)."""
        self._listed = True
        self._kind_changed()

    def _kind_changed(self) -> None:
        if not self._listed:
            return
        kind = self.kind.currentData()
        self.model.clear()
        for name, value in self._models(kind):
            self.model.addItem(name, value)
        self.prompt_set.clear()
        for name, prompts in self._sets.get(kind, {}).items():
            self.prompt_set.addItem(f"{name} ({len(prompts)})", name)
        self.samples.setValue({"text": 4, "image": 3, "speech": 1, "music": 2}[kind])
        self.samples.setMinimum(2 if kind in ("text", "image") else 1)
        self.run_button.setEnabled(self.model.count() > 0 and self.prompt_set.count() > 0 and self._thread is None)
        if self.model.count() == 0:
            self.status.setText(f"No {_KIND_NAMES[kind].lower()} model is installed: add one in Models.")

    def _models(self, kind: str) -> list[tuple[str, str]]:
        if kind == "music":
            return [("The composer (MIDI, SoundFont)", "composer")]
        from engines.api.models import CHAT, IMAGE, SPEECH, ServedModels

        wanted = {"text": CHAT, "image": IMAGE, "speech": SPEECH}[kind]
        found = ServedModels(self.studio.db).all()
        return [(m.name, m.path) for m in found if m.kind == wanted and (kind != "text" or m.chat)]

    # -- running -----------------------------------------------------------------------------
    def run(self) -> bool:
        """Start evaluating the chosen model on the chosen set; returns whether it started."""
        if self._thread is not None or self.model.count() == 0 or self.prompt_set.count() == 0:
            return False
        kind, model, set_name = self.kind.currentData(), self.model.currentData(), self.prompt_set.currentData()
        prompts = self._sets[kind][set_name]
        samples = self.samples.value()
        options: dict[str, Any] = {"max_tokens": 64} if kind == "text" else {}
        if kind == "image":
            options = {"size": 512}
        self._stop = threading.Event()
        stop, signals, studio = self._stop, self._signals, self.studio

        def work() -> None:
            try:
                result = run_set(studio, kind, model, set_name, prompts, samples=samples,
                                 progress=signals.progress.emit, stop=stop, **options)  # fmt: skip
                signals.finished.emit(result, None)
            except Cancelled as stopped:
                signals.finished.emit(stopped.partial, stopped)
            except Exception as exc:  # shown in the panel
                signals.finished.emit(None, exc)

        self._thread = threading.Thread(target=work, name="ember-evaluate", daemon=True)
        self._set_running(True)
        self.status.setText(f"Evaluating {self.model.currentText()} on '{set_name}'…")
        self._thread.start()
        return True

    def stop(self) -> None:
        """End the run after the prompt being evaluated (its samples finish)."""
        if self._stop is not None:
            self._stop.set()
            self.status.setText("Stopping after this prompt…")

    def _set_running(self, running: bool) -> None:
        self.busy.setVisible(running)
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for widget in (self.kind, self.model, self.prompt_set, self.samples):
            widget.setEnabled(not running)

    def _on_progress(self, message: str) -> None:
        self.status.setText(f"Evaluating {message}")

    def _on_finished(self, result: SetResult | None, error: BaseException | None) -> None:
        if self._thread is not None:
            self._thread.join(5)
        self._thread, self._stop = None, None
        self._set_running(False)
        if result is not None and result.rows:
            self.result = result
            self.saved = save(result)
            self._show(result)
            done = "Stopped; kept what finished" if isinstance(error, Cancelled) else "Done"
            self.status.setText(f"{done}: {len(result.rows)} row(s) in {result.seconds:.0f} s. Saved to {self.saved}")
            self.export_button.setEnabled(True)
        elif isinstance(error, Cancelled):
            self.status.setText("Stopped before a prompt finished: nothing to show.")
        elif error is not None:
            self.status.setText(f"The evaluation did not finish: {error}")
        self.evaluation_finished.emit(result, error)

    def _show(self, result: SetResult) -> None:
        notes = [n for n in dict.fromkeys(row.get("extra", {}).get("alignment", "") for row in result.rows) if n]
        self.alignment.setText("Prompt alignment: " + "; ".join(notes) if notes else "")
        self.alignment.setVisible(bool(notes))
        self.table.setRowCount(0)
        for row in result.rows:
            for name, (low, median, high) in row["figures"].items():
                r = self.table.rowCount()
                self.table.insertRow(r)
                cells = [row["prompt"], name, f"{low:.4g}", f"{median:.4g}", f"{high:.4g}"]
                for c, text in enumerate(cells):
                    self.table.setItem(r, c, QTableWidgetItem(text))
        self.figure.blockSignals(True)
        self.figure.clear()
        for name in result.figure_names():
            self.figure.addItem(name)
        self.figure.blockSignals(False)
        self._draw_chart()

    def _draw_chart(self) -> None:
        if self.result is None or not self.figure.currentText():
            return
        name = self.figure.currentText()
        rows = [(row["prompt"], tuple(row["figures"][name])) for row in self.result.rows if name in row["figures"]]
        self.chart.show_rows(f"{name}: min to max, median as the dot", rows)  # type: ignore[arg-type]

    def export(self, path: str | None = None) -> Path | None:
        """Copy the last result (JSON, or Markdown for a .md name) to a file the person picks."""
        if self.saved is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export the evaluation", self.saved.name, "JSON (*.json);;Markdown (*.md)"
            )
            if not path:
                return None
        target = Path(path)
        source = self.saved.with_suffix(".md") if target.suffix == ".md" else self.saved
        shutil.copyfile(source, target)
        self.status.setText(f"Exported to {target}")
        return target

    def shutdown(self) -> None:
        """Stop the run (the window is closing); the thread ends with its current prompt or the Studio."""
        if self._stop is not None:
            self._stop.set()
