"""``main.py bench all``: every benchmark in turn, into one JSON, a Markdown report and charts."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from engines.benchmarks import Figure, Report
from engines.benchmarks.all import run_all
from engines.errors import EmberError
from engines.modality import Bench


def _fast(parser) -> None:
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)


def _fast_run(args) -> Report:
    report = Report("fast")
    report.conditions["repeats"] = args.repeats
    report.conditions["quick"] = args.quick
    report.figures += [
        Figure("tokens/s", 62.5, "tok/s", 64.0, ">= 0.9x"),
        Figure("first token", 120.0, "ms", 100.0, ""),
        Figure("no baseline", 3.0, "", None, ""),
    ]
    return report


def _broken_run(args) -> Report:
    raise EmberError("the model for this benchmark is not installed")


def test_every_benchmark_runs_and_one_that_cannot_is_recorded_with_its_reason(tmp_path: Path) -> None:
    benches = [
        Bench("fast", "a fast one", _fast, _fast_run),
        Bench("broken", "needs a model", lambda p: None, _broken_run),
    ]
    summary, _ = run_all(benches, tmp_path, quick=True)

    assert [f.name for f in summary.figures] == ["fast: time", "broken: time"]
    saved = json.loads((tmp_path / "bench-all.json").read_text(encoding="utf-8"))
    assert saved["quick"] is True and "cpu" in saved["machine"]
    fast = saved["benches"]["fast"]["report"]
    assert fast["machine"]["quick"] is True and fast["machine"]["repeats"] == 3  # the bench's own defaults, quick
    assert [f["name"] for f in fast["figures"]] == ["tokens/s", "first token", "no baseline"]
    assert "not installed" in saved["benches"]["broken"]["error"]

    text = (tmp_path / "bench-all.md").read_text(encoding="utf-8")
    assert "| tokens/s | 62.5 | 64 | tok/s | 0.977 | >= 0.9x |" in text
    assert "## broken" in text and "Not run here: EmberError: the model for this benchmark is not installed" in text
    chart = Image.open(tmp_path / "fast.png")
    assert chart.width == 900 and chart.height > 60  # two rows with baselines
    assert not (tmp_path / "broken.png").exists()
