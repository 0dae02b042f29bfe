"""``main.py bench all``: every benchmark in turn, into one JSON, a Markdown report and charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from engines.benchmarks import Figure, Report, median
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
        Figure("tokens/s", median([61.0, 62.5, 70.0]), "tok/s", median([64.0, 63.0, 66.0]), ">= 0.9x"),
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
    assert "| tokens/s | 62.5 | 61..70 (3) | 64 | 63..66 (3) | tok/s | 0.977 | >= 0.9x |" in text
    assert "| first token | 120 | - | 100 | - | ms |" in text  # one sample: no spread is made up
    assert "## broken" in text and "Not run here: EmberError: the model for this benchmark is not installed" in text
    chart = Image.open(tmp_path / "fast.png")
    assert chart.width == 900 and chart.height > 60  # two rows with baselines
    assert not (tmp_path / "broken.png").exists()


def test_a_median_keeps_the_spread_of_its_samples_and_the_table_shows_it() -> None:
    taken = median([0.012, 0.010, 0.030, 0.011])
    assert taken == 0.0115 and (taken.low, taken.high, taken.runs) == (0.010, 0.030, 4)
    in_ms = taken.scaled(1000)
    assert (in_ms, in_ms.low, in_ms.high, in_ms.runs) == (pytest.approx(11.5), pytest.approx(10), pytest.approx(30), 4)
    figure = Figure("time to first token", median([10.0, 11.5, 30.0]), "ms", None, "")
    assert type(figure.value) is float and figure.spread.low == 10.0 and figure.baseline_spread is None
    assert Figure("recall", 96.0, "%", None, "").spread is None  # a rate over a set is one measurement
    report = Report("demo", figures=[figure])
    assert "10..30 (3)" in report.table()
    assert report.as_dict()["figures"][0]["spread"] == {"low": 10.0, "high": 30.0, "runs": 3}
