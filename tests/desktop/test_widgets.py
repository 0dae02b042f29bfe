"""The small shared widgets: the throttled call, the eliding label, the collapsible section, the slider."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from desktop.widgets import Collapsible, ElidingLabel, FractionSlider, Throttled


def test_a_throttled_call_runs_at_once_then_once_more_with_the_latest_arguments(qtbot) -> None:
    calls: list[int] = []
    throttled = Throttled(calls.append, 50)
    for i in range(5):
        throttled(i)
    assert calls == [0]  # the first at once; the others wait for the interval's end
    qtbot.waitUntil(lambda: calls == [0, 4], timeout=2000)
    qtbot.wait(120)
    assert calls == [0, 4]  # nothing more was asked for


def test_a_cancelled_throttled_call_forgets_what_was_pending(qtbot) -> None:
    calls: list[int] = []
    throttled = Throttled(calls.append, 50)
    throttled(1)
    throttled(2)
    throttled.cancel()
    qtbot.wait(150)
    assert calls == [1]
    throttled(3)
    assert calls == [1, 3]


def test_the_eliding_label_keeps_the_whole_text_and_shows_what_fits(qtbot) -> None:
    label = ElidingLabel("/a/very/long/path/to/a/model/folder/that/cannot/fit/model.gguf")
    qtbot.addWidget(label)
    label.resize(120, 20)
    label.show()
    assert label.text().endswith("model.gguf")
    shown = QLabel.text(label)
    assert shown != label.text() and "…" in shown


def test_the_collapsible_shows_its_content_only_when_expanded(qtbot) -> None:
    section = Collapsible("Negative prompt")
    qtbot.addWidget(section)
    inside = QLabel("inside")
    section.addWidget(inside)
    section.show()
    assert not section.isExpanded() and not inside.isVisible() and section.button.text().startswith("▸")
    section.expand()
    assert section.isExpanded() and inside.isVisible() and section.button.text().startswith("▾")
    section.button.click()
    assert not section.isExpanded() and not inside.isVisible()


def test_the_fraction_slider_keeps_the_slider_and_the_number_together(qtbot) -> None:
    slider = FractionSlider(0.05, 1.0, 0.05, decimals=2)
    qtbot.addWidget(slider)
    seen: list[float] = []
    slider.valueChanged.connect(seen.append)
    slider.setValue(0.75)
    assert slider.value() == 0.75 and slider.slider.value() == 14 and slider.box.value() == 0.75
    slider.slider.setValue(3)
    assert slider.value() == 0.2 and slider.box.value() == 0.2
    slider.box.setValue(2.0)  # out of range: held at the top
    assert slider.value() == 1.0 and slider.slider.value() == slider.slider.maximum()
    slider.setValue(5.0)
    assert seen == [0.75, 0.2, 1.0]  # no signal when nothing changed
