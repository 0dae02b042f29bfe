"""``main.py bench window``: the event loop's longest stall while engines run in the real window, and memory."""

from __future__ import annotations

from engines.benchmarks.window import run_window_bench


def test_the_window_bench_runs_engines_in_the_real_window_and_reports_stalls_beside_the_idle_window(
    tmp_path,
) -> None:
    report = run_window_bench(runs=1, engines=("chat", "music"), home=tmp_path)

    figures = {f.name: f for f in report.figures}
    assert figures["idle memory, nothing loaded"].value > 50  # a Qt window and a Studio, in MB
    for engine in ("chat", "music"):
        stall = figures[f"{engine}: longest event-loop stall"]
        assert stall.unit == "ms" and stall.value >= 0 and stall.baseline is not None and stall.baseline >= 0
        assert stall.spread.runs == 1 and figures[f"{engine}: job, window to result"].value > 0
    # The chat's engine process keeps the model loaded: the window holds more than before it ran.
    assert figures["chat: idle memory with it loaded"].value > figures["idle memory, nothing loaded"].value
    assert not [key for key in report.conditions if key.endswith("not run")]
