"""``main.py bench window``: the event loop's longest stall while engines run in the real window, and memory."""

from __future__ import annotations

from engines.benchmarks.window import run_window_bench


def test_the_window_bench_runs_engines_in_the_real_window_and_reports_stalls_beside_the_idle_window(
    tmp_path,
) -> None:
    report = run_window_bench(runs=1, engines=("chat", "music"), home=tmp_path)

    figures = {f.name: f for f in report.figures}
    idle = figures["idle memory after start-up (safety models, and the chat model when chat ran first)"]
    assert idle.value > 50  # a Qt window, a Studio and its engine processes, in MB
    for engine in ("chat", "music"):
        stall = figures[f"{engine}: longest event-loop stall"]
        assert stall.unit == "ms" and stall.value >= 0 and stall.baseline is not None and stall.baseline >= 0
        assert stall.spread.runs == 1 and figures[f"{engine}: job, window to result"].value > 0
    # The music engine's process keeps its model loaded: the window holds more than before it ran.
    assert figures["music: idle memory with it loaded"].value > idle.value
    assert figures["chat, sent 0.3 s after the window opens: longest event-loop stall"].baseline is not None
    assert not [key for key in report.conditions if key.endswith("not run")]
