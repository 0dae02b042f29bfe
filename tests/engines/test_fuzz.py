"""``main.py bench fuzz``: every target runs under atheris from its seed corpus and finds nothing.

Each target gets a few hundred inputs (its seeds, then mutations), in its own process as in the
benchmark; the long runs are ``main.py bench fuzz``'s. What the long runs found is in
test_fuzz_regressions.py. Skipped where atheris has no wheel (it is a test tool, not part of Ember).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engines.benchmarks import fuzz
from engines.benchmarks.all import _namespace
from engines.cli import benches
from engines.errors import EmberError

ROOT = Path(__file__).resolve().parents[2]
needs_atheris = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris is not installed (pip install -e '.[test]' on Linux)"
)


@needs_atheris
@pytest.mark.parametrize("name", list(fuzz.TARGETS))
def test_every_target_runs_from_its_seeds_and_finds_nothing(name: str, tmp_path: Path) -> None:
    run = fuzz.fuzz_target(fuzz.TARGETS[name], tmp_path, seconds=30, runs=300)
    assert run.executions > 0, run.log.read_text()[-3000:]
    assert not run.findings, "\n".join(f"{f.kind}: {f.summary} [{f.input_path}]" for f in run.findings)
    assert run.coverage > 0
    assert (fuzz.SEEDS / name).is_dir() and any((fuzz.SEEDS / name).iterdir()), f"no seeds for {name}"


def test_the_seed_corpus_is_small() -> None:
    size = sum(p.stat().st_size for p in fuzz.SEEDS.rglob("*") if p.is_file())
    assert 0 < size < 2 * 2**20, f"the committed seed corpus is {size:,} bytes"
    assert {p.name for p in fuzz.SEEDS.iterdir()} == set(fuzz.TARGETS)


@needs_atheris
def test_bench_fuzz_reports_executions_rates_and_findings_per_target(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "main.py", "bench", "fuzz", "--seconds", "3", "--only", "text-metadata,gguf-header",
         "--out", str(tmp_path / "fuzz"), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    figures = {f["name"]: f for f in report["figures"]}
    for target in ("text-metadata", "gguf-header"):
        assert figures[f"{target}: executions"]["value"] > 0
        assert figures[f"{target}: exec/s"]["value"] > 0
        assert figures[f"{target}: findings"]["value"] == 0
        assert figures[f"{target}: executions"]["baseline"] is None
    assert report["machine"]["findings"] == "none"
    assert "gguf-header: executions" in done.stdout  # the table
    assert (tmp_path / "fuzz" / "corpus" / "gguf-header").is_dir()


def test_an_unknown_target_is_refused_with_the_names_there_are() -> None:
    with pytest.raises(EmberError, match="No fuzzing target named nope; there are: gguf-header"):
        fuzz.chosen_targets("gguf-header,nope")


def test_without_atheris_the_bench_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "atheris", None)  # what an install without the wheel looks like
    with pytest.raises(EmberError, match=r"pip install 'atheris>=3.0'"):
        fuzz.run_fuzz_bench(seconds=1)


def test_bench_all_runs_the_fuzzer_for_ten_seconds_a_target_when_quick() -> None:
    bench = next(b for b in benches() if b.name == "fuzz")
    assert _namespace(bench, quick=False).seconds == 60
    quick = _namespace(bench, quick=True)
    assert quick.quick is True and quick.only == "" and quick.out is None
