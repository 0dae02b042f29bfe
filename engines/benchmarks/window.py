"""``main.py bench window``: the longest event-loop stall while each engine runs, and the window's idle memory.

Each run is a new process running ``desktop/bench_window.py`` (read its docstring for the method):
Ember's real window on a fresh data folder runs one job per engine (chat, images, speech, music,
upscale, dictation) while a 5 ms timer on the GUI thread measures how late it ticks. The
baseline of each stall is the same window idle for as long as the job took, measured in the same
process just before. Memory is the resident size of the window's process and its engine
processes once the window rests: with nothing loaded, then with each engine's model loaded.
Figures are medians over ``runs`` processes, with their spread. The Images row needs a diffusion
model: ``--image-model``, or a random-weight one built with the ``[convert]`` extra (as
``bench image`` does); without either it is recorded as not run, with the reason.

Engines here run in the engine processes and the queue's threads, so a stall is the GUI thread's
own work: the bridge's signals, the panels drawing tokens, previews, waveforms and results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from engines.benchmarks import Figure, Report, median
from engines.errors import EmberError

ROOT = Path(__file__).resolve().parents[2]
STALL_GOAL = "< 50 ms (a person notices ~100 ms)"
ENGINES = ("chat", "image", "speech", "music", "upscale", "dictation")


def _one_run(engines: tuple[str, ...], image_model: str | None, home: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "desktop.bench_window", "--engines", ",".join(engines)]
    if image_model:
        command += ["--image-model", image_model]
    env = {**os.environ, "EMBER_HOME": str(home)}
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    for line in done.stdout.splitlines():
        if line.startswith("ember-window-bench "):
            return json.loads(line.removeprefix("ember-window-bench "))
    raise EmberError(f"The window benchmark's process ended without figures (exit {done.returncode}): "
                     f"{done.stderr[-1500:]}")  # fmt: skip


def _image_model(given: str | None, engines: tuple[str, ...]) -> tuple[str | None, str]:
    """The diffusion folder for the Images row, and how it was got (or why there is none)."""
    if given or "image" not in engines:
        return given, given or "-"
    from engines.benchmarks.random_pipeline import random_pipeline

    try:
        return str(random_pipeline("small").onnx), "random-weight small pipeline (bench image --quick's)"
    except Exception as exc:  # the [convert] extra is missing: the row says why
        return None, f"none ({exc})"


def run_window_bench(
    runs: int = 3, engines: tuple[str, ...] = ENGINES, image_model: str | None = None, home: Path | None = None
) -> Report:
    """Run the window ``runs`` times; return the stall per engine beside the idle window's, and memory."""
    import tempfile

    folder, how = _image_model(image_model, engines)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ember-bench-window-") as tmp:
        for run in range(runs):
            results.append(_one_run(engines, folder, (home or Path(tmp)) / f"run-{run}"))
    report = Report("window")
    report.conditions.update({
        "runs": f"median of {runs} window processes, each with a fresh data folder",
        "platform": results[0].get("platform", "?"),
        "stall": "longest lateness of a 5 ms timer on the GUI thread while the job runs",
        "stall baseline": "the same window idle for as long as the job took (at most 5 s), just before",
        "memory": "resident size of the window's process and its engine processes, 2 s after",
        "image model": how,
    })  # fmt: skip
    report.figures.append(
        Figure(
            "idle memory after start-up (safety models, and the chat model when chat ran first)",
            median([r["idle_mb"] for r in results]),
            "MB",
            None,
            "",
        )
    )
    shown = [name for name in results[0]["engines"] if name not in engines] + list(engines)  # "at start" first
    for name in shown:
        rows = [r["engines"].get(name, {}) for r in results]
        good = [row for row in rows if "error" not in row and "stall_ms" in row]
        if not good:
            errors = sorted({row.get("error", "not run") for row in rows})
            report.conditions[f"{name}: not run"] = "; ".join(errors)[:300]
            continue
        report.figures += [
            Figure(f"{name}: longest event-loop stall", median([g["stall_ms"] for g in good]), "ms",
                   median([g["idle_stall_ms"] for g in good]), STALL_GOAL),
            Figure(f"{name}: job, window to result", median([g["job_s"] for g in good]), "s", None, "informational"),
            Figure(f"{name}: idle memory with it loaded", median([g["idle_mb"] for g in good]), "MB", None, ""),
        ]  # fmt: skip
        if len(good) < len(rows):
            report.conditions[f"{name}: failed runs"] = "; ".join(r["error"] for r in rows if "error" in r)[:300]
    return report
