"""``main.py bench library`` runs end to end on a small library and reports every figure beside its baseline
(the figures themselves are for the bench to print, not for a test to judge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.benchmarks.library import FIRST_SCREEN_GOAL, SEARCH_GOAL, run_library_bench


def test_the_library_bench_reports_first_screen_and_searches_with_baselines(ember_home: Path) -> None:
    report = run_library_bench(items=80, runs=1)
    figures = {f.name: f for f in report.figures}
    assert figures["first screen, thumbnails cached"].goal == FIRST_SCREEN_GOAL
    assert figures["first screen, thumbnails cold (made now)"].baseline is not None
    searches = [f for f in report.figures if f.name.startswith("search")]
    assert len(searches) >= 4 and all(f.goal == SEARCH_GOAL and f.baseline is not None for f in searches)
    assert all(f.value >= 0 and f.unit == "ms" for f in report.figures)
    assert report.conditions["items"] == 80
    assert "first screen" in report.table() and json.dumps(report.as_dict())


def test_main_py_bench_library_writes_its_json(ember_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import main

    out = tmp_path / "bench.json"
    assert main.main(["bench", "library", "--items", "40", "--runs", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["bench"] == "library" and {"name", "value", "baseline", "ratio", "goal"} <= set(data["figures"][0])
    assert "search 'castle'" in capsys.readouterr().out
