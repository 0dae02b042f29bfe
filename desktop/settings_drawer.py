"""The chat settings drawer: system prompt, sampling and how the model is loaded."""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engines.hardware import default_threads
from engines.text.requests import ModelOptions, Sampling


def _double(minimum: float, maximum: float, value: float, step: float) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(minimum, maximum)
    box.setDecimals(2)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _integer(minimum: int, maximum: int, value: int, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(minimum, maximum)
    box.setSingleStep(step)
    box.setValue(value)
    return box


class SettingsDrawer(QFrame):
    """The side section with the settings of the next reply.

    The spin boxes allow a little more than :class:`Sampling` accepts on purpose:
    Sampling is the one place that knows the valid ranges, and its message is shown
    as it is.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDrawer")
        defaults = Sampling()
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("How the assistant should behave (kept with this conversation)")
        self.system_prompt.setFixedHeight(96)
        self.temperature = _double(0.0, 5.0, defaults.temperature, 0.05)
        self.top_p = _double(0.0, 1.0, defaults.top_p, 0.05)
        self.top_k = _integer(0, 1000, defaults.top_k)
        self.min_p = _double(0.0, 1.0, defaults.min_p, 0.01)
        self.repeat_penalty = _double(0.0, 2.0, defaults.repeat_penalty, 0.05)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.max_tokens = _integer(1, 32768, defaults.max_tokens, 64)
        self.context_tokens = _integer(256, 131072, ModelOptions("").context_tokens, 256)
        self.threads = _integer(1, os.cpu_count() or 1, default_threads())

        form = QFormLayout()
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Top-k", self.top_k)
        form.addRow("Min-p", self.min_p)
        form.addRow("Repeat penalty", self.repeat_penalty)
        form.addRow("Seed", self.seed)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Context length", self.context_tokens)
        form.addRow("Threads", self.threads)

        layout = QVBoxLayout(self)
        title = QLabel("Settings")
        title.setObjectName("drawerTitle")
        layout.addWidget(title)
        layout.addWidget(QLabel("System prompt"))
        layout.addWidget(self.system_prompt)
        layout.addLayout(form)
        layout.addStretch(1)

    def sampling(self) -> Sampling:
        """Return the sampling settings; raises ValueError with a readable message when one is out of range."""
        text = self.seed.text().strip()
        if text:
            try:
                seed: int | None = int(text)
            except ValueError:
                raise ValueError(
                    f"Invalid sampling setting: the seed must be a whole number (not '{text}'), or blank for random."
                ) from None
        else:
            seed = None
        return Sampling(
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=self.top_k.value(),
            min_p=self.min_p.value(),
            repeat_penalty=self.repeat_penalty.value(),
            seed=seed,
            max_tokens=self.max_tokens.value(),
        )

    def model_options(self, path: str) -> ModelOptions:
        """Return how to load the model at ``path`` with the chosen context and threads."""
        return ModelOptions(path, context_tokens=self.context_tokens.value(), threads=self.threads.value())

    def values(self) -> dict[str, Any]:
        """The settings as a plain dict, to keep with a conversation."""
        return {
            "temperature": self.temperature.value(),
            "top_p": self.top_p.value(),
            "top_k": self.top_k.value(),
            "min_p": self.min_p.value(),
            "repeat_penalty": self.repeat_penalty.value(),
            "seed": self.seed.text().strip(),
            "max_tokens": self.max_tokens.value(),
            "context_tokens": self.context_tokens.value(),
            "threads": self.threads.value(),
        }

    def set_values(self, values: dict[str, Any]) -> None:
        """Show settings kept with a conversation; unknown or missing keys keep the current value."""
        boxes: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "context_tokens": self.context_tokens,
            "threads": self.threads,
        }
        for key, box in boxes.items():
            if isinstance(values.get(key), (int, float)):
                box.setValue(values[key])
        if isinstance(values.get("seed"), str):
            self.seed.setText(values["seed"])
