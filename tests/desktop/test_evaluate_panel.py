"""The Evaluate panel: a prompt set on the embedded model, progress, the table, the chart, saved and exported."""

from __future__ import annotations

import json
from pathlib import Path

from engines.errors import Cancelled

RUN_TIMEOUT_MS = 300_000


def _choose(combo, data) -> None:
    index = combo.findData(data)
    assert index >= 0, f"{data!r} is not offered"
    combo.setCurrentIndex(index)


def test_a_text_evaluation_runs_shows_its_figures_and_is_saved_and_exported(qtbot, window, tmp_path: Path) -> None:
    panel = window.evaluate
    window.show_panel(panel)
    assert panel.model.count() >= 1 and panel.prompt_set.count() >= 1
    _choose(panel.kind, "text")
    _choose(panel.prompt_set, "Explanations")
    panel.samples.setValue(2)
    seen: list[str] = []
    panel._signals.progress.connect(seen.append)
    with qtbot.waitSignal(panel.evaluation_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert panel.run()
        assert not panel.run_button.isEnabled() and panel.stop_button.isEnabled() and panel.busy.isVisible()
    result, error = blocker.args
    assert error is None and len(result.rows) == 3 and seen[0].startswith("1 of 3")
    assert panel.table.rowCount() == sum(len(row["figures"]) for row in result.rows)
    names = [panel.table.item(r, 1).text() for r in range(panel.table.rowCount())]
    assert "self-BLEU" in names and "perplexity (reference model)" in names
    assert panel.figure.count() == len(result.figure_names()) and len(panel.chart.rows) == 3
    assert panel.run_button.isEnabled() and not panel.busy.isVisible() and "Saved to" in panel.status.text()
    saved = json.loads(panel.saved.read_text(encoding="utf-8"))
    assert saved["kind"] == "text" and saved["set_name"] == "Explanations" and len(saved["rows"]) == 3
    assert len(window.studio.library.search(kinds=("text",))) == 6  # every sample kept, like any reply
    exported = panel.export(str(tmp_path / "eval.md"))
    assert exported is not None and "| self-BLEU |" in exported.read_text(encoding="utf-8")


def test_stop_keeps_what_finished(qtbot, window) -> None:
    panel = window.evaluate
    panel.refresh()
    _choose(panel.kind, "music")
    panel.samples.setValue(1)
    with qtbot.waitSignal(panel.evaluation_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert panel.run()
        panel.stop()  # music runs as one group: it finishes, then nothing more runs
    result, error = blocker.args
    assert result is not None or isinstance(error, Cancelled)


def test_a_kind_without_an_installed_model_says_so(qtbot, window) -> None:
    panel = window.evaluate
    panel.refresh()
    _choose(panel.kind, "image")  # no diffusion model in a fresh installation
    assert panel.model.count() == 0 and not panel.run_button.isEnabled()
    assert "No images model is installed" in panel.status.text() or "model is installed" in panel.status.text()
