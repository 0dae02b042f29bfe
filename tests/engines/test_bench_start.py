"""``main.py bench start``: the window's start beside a bare Qt window, each launched as a new process."""

from __future__ import annotations

from engines.benchmarks.start import run_start_bench


def test_the_start_bench_launches_both_windows_and_reports_time_and_memory_beside_the_baseline(ember_home) -> None:
    report = run_start_bench(runs=2)
    names = [f.name for f in report.figures]
    assert names == ["window shown, median", "peak memory until shown, median",
                     "idle memory 4 s after (with engine processes), median"]  # fmt: skip
    for figure in report.figures:
        assert figure.value > 0 and figure.baseline is not None and figure.baseline > 0, figure
        assert figure.spread.runs == figure.baseline_spread.runs == 2  # the spread of the launches, both sides
        assert figure.spread.low <= figure.value <= figure.spread.high
    memory = {f.name: f for f in report.figures}["peak memory until shown, median"]
    assert memory.unit == "MB" and memory.value > memory.baseline  # Ember's window holds more than an empty one
    idle = report.figures[2]
    assert idle.value > idle.baseline
