"""``main.py bench soak``: mixed jobs with random cancels through the queue on the real engines.

The full run (1,000 jobs, memory growth from the 100th to the last) is the benchmark's; here a shorter
one in its own process proves what must hold at any length: every job ends, none fails unasked, every
result is in the library, nothing leaks across the samples, and the Studio closes with no thread left.
"""

from __future__ import annotations

import pytest

from engines.benchmarks.soak import KINDS, SoakResult, records_in, report_of, run_soak_bench

JOBS = 130


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, SoakResult]:
    return run_soak_bench(JOBS, seed=7, home=tmp_path_factory.mktemp("soak-home"))


def test_every_job_of_a_mixed_soak_with_cancels_ends_and_only_cancelled_ones_stop_short(soaked) -> None:
    _, result = soaked
    assert not result.deadlock
    assert sum(result.endings.values()) == JOBS
    assert result.failures == []
    kinds = {ending.split()[0] for ending in result.endings}
    assert kinds == set(KINDS), kinds  # 130 draws of 9 kinds: every kind ran
    cancelled = sum(n for ending, n in result.endings.items() if ending.endswith("cancelled"))
    assert 0 < cancelled <= result.cancels_asked  # a cancel that came after the job ended changes nothing
    assert not [ending for ending in result.endings if ending.endswith("blocked")]  # benign prompts only


def test_every_result_of_the_soak_is_in_the_library(soaked) -> None:
    _, result = soaked
    assert result.records > JOBS // 3 and result.missing_records == 0


def test_the_soak_leaks_no_threads_or_files_and_closes_cleanly(soaked) -> None:
    _, result = soaked
    assert [s.job for s in result.samples] == [1, 100, JOBS]
    at_100, last = result.samples[1], result.samples[2]
    assert last.python_threads == at_100.python_threads, result.samples
    assert last.studio_fds <= at_100.studio_fds + 2, result.samples  # SQLite's journal may come and go
    assert last.engine_processes == at_100.engine_processes, result.samples
    assert result.closed_cleanly and result.threads_left_after_close == []


def test_the_soak_report_shows_memory_growth_from_the_100th_job_beside_its_value_then(soaked) -> None:
    report, result = soaked
    figures = {f.name: f for f in report.figures}
    memory = figures["engine processes' memory at job 130 (baseline: at job 100)"]
    assert memory.baseline == result.samples[1].engines_rss_kb / 1024 and memory.value > 100
    growth = figures["engine processes' memory growth, job 100 to 130"]
    assert growth.goal == "<= 5%" and growth.value == pytest.approx(100 * (memory.value / memory.baseline - 1))
    assert figures["jobs ended (baseline: submitted)"].value == JOBS and figures["deadlocks"].value == 0
    assert figures["Studio threads left after close"].value == 0


def test_records_are_found_in_each_modalitys_result_shape() -> None:
    assert records_in(None) == [] and records_in("text") == []
    result = SoakResult(jobs=1)
    assert records_in(result) == []  # a dataclass without records


def test_the_soak_bench_refuses_too_few_jobs_to_measure_growth(capsys: pytest.CaptureFixture[str]) -> None:
    from main import main

    assert main(["bench", "soak", "--jobs", "50"]) != 0
    assert "--jobs must be at least 101" in capsys.readouterr().err
    assert report_of(SoakResult(jobs=0)).figures  # an empty run still reports what it saw
