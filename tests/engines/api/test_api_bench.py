"""`bench api` measures the API beside the Studio in the same run."""

from __future__ import annotations

from pathlib import Path

from engines.benchmarks.api import run_api_bench


def test_bench_api_reports_each_client_count_beside_the_studio(ember_home: Path) -> None:
    report = run_api_bench(tokens=4, clients=[1, 2], requests_each=1)
    names = [f.name for f in report.figures]
    assert names == [
        "1 client(s): requests/s",
        "1 client(s): time to first token (median)",
        "2 client(s): requests/s",
        "2 client(s): time to first token (median)",
    ]
    assert all(f.value > 0 and f.baseline and f.baseline > 0 for f in report.figures)
    assert "baseline" in report.table() and report.as_dict()["bench"] == "api"
