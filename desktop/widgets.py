"""Small widgets the panels share: a throttled call, an eliding label, a collapsible section, a
labelled slider for fractions.

They replace superqt's, whose package imports qtpy, and qtpy star-imports every Qt class (about
0.2 s of the window's start on 2 cores) before a single widget is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget


class Throttled(QObject):
    """Call ``func`` at once, then at most once per ``timeout`` ms with the latest arguments."""

    def __init__(self, func: Callable[..., Any], timeout: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._func = func
        self._args: tuple[Any, ...] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(timeout)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._trailing)

    def __call__(self, *args: Any) -> None:
        if self._timer.isActive():
            self._args = args  # called again within the interval: once more at its end, with these
            return
        self._args = None
        self._timer.start()
        self._func(*args)

    def cancel(self) -> None:
        """Forget a pending call."""
        self._args = None
        self._timer.stop()

    def _trailing(self) -> None:
        if self._args is not None:
            args, self._args = self._args, None
            self._timer.start()
            self._func(*args)


class ElidingLabel(QLabel):
    """A one-line label that shortens its text with an ellipsis to fit its width; ``text()`` is the whole."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = text
        self._mode = Qt.TextElideMode.ElideRight
        self.setMinimumWidth(1)
        self._elide()

    def setText(self, text: str) -> None:
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def setElideMode(self, mode: Qt.TextElideMode) -> None:
        self._mode = mode
        self._elide()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, self._mode, max(1, self.width()))
        super().setText(shown)


class Collapsible(QWidget):
    """A section with a title button that shows or hides its content."""

    toggled = Signal(bool)

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._title = title
        self.button = QToolButton()
        self.button.setObjectName("collapsibleTitle")
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.button.setCheckable(True)
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.button.toggled.connect(self._show)
        self.content = QWidget()
        self._content_layout = QVBoxLayout(self.content)
        self._content_layout.setContentsMargins(0, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.content)
        self._show(False)

    def addWidget(self, widget: QWidget) -> None:
        self._content_layout.addWidget(widget)

    def isExpanded(self) -> bool:
        return self.button.isChecked()

    def expand(self) -> None:
        self.button.setChecked(True)

    def collapse(self) -> None:
        self.button.setChecked(False)

    def _show(self, expanded: bool) -> None:
        self.button.setText(f"{'▾' if expanded else '▸'}  {self._title}")
        self.content.setVisible(expanded)
        self.toggled.emit(expanded)


class FractionSlider(QWidget):
    """A horizontal slider for a value between two bounds in fixed steps, with an editable number beside it."""

    valueChanged = Signal(float)

    def __init__(self, minimum: float, maximum: float, step: float, decimals: int = 2,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self._minimum, self._step = minimum, step
        self._value = minimum
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, round((maximum - minimum) / step))
        self.box = QDoubleSpinBox()
        self.box.setRange(minimum, maximum)
        self.box.setSingleStep(step)
        self.box.setDecimals(decimals)
        self.box.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.box)
        self.slider.valueChanged.connect(lambda tick: self.setValue(self._minimum + tick * self._step))
        self.box.valueChanged.connect(self.setValue)

    def value(self) -> float:
        return self._value

    def setValue(self, value: float) -> None:
        value = round(min(max(float(value), self.box.minimum()), self.box.maximum()), self.box.decimals())
        changed = value != self._value
        self._value = value
        for widget, shown in ((self.box, value), (self.slider, round((value - self._minimum) / self._step))):
            widget.blockSignals(True)
            widget.setValue(shown)
            widget.blockSignals(False)
        if changed:
            self.valueChanged.emit(value)
