"""``main.py bench start``: how long the window takes to appear, and the memory it takes, beside a bare Qt window.

Each run launches ``main.py`` (the window) as a new process with ``EMBER_START_PROBE`` set: the app
prints when its window was shown, then quits. The baseline, in the same run, is a bare PySide6 window
(a QApplication and an empty QMainWindow shown the same way): what any Qt app pays. Each run gets a
fresh user data folder (a first start). The memory is the peak resident size of the window's process
until then (``wait4``'s rusage; the engine processes it starts are not counted). Warm starts only:
the page cache holds the files after the first run (``packaging/measure_start.py`` measures an
installed app cold). ``QT_QPA_PLATFORM=offscreen`` unless a display is set.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engines.benchmarks import Figure, Report

ROOT = Path(__file__).resolve().parents[2]
_BARE = """
import os, sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv)
window = QMainWindow()
window.resize(1280, 800)
window.show()
QTimer.singleShot(0, lambda: (print(f"ember-window-shown {time.time():.6f}", flush=True), app.quit()))
app.exec()
"""


def _launch(command: list[str], home: Path) -> tuple[float, float]:
    """Seconds to the window being shown and the process's peak resident MB (from ``wait4``: that child only)."""
    env = {**os.environ, "EMBER_START_PROBE": "1", "EMBER_HOME": str(home)}
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "stdout.txt", "w+") as out, open(home / "stderr.txt", "w+") as err:
        start = time.time()
        child = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, code, usage = os.wait4(child.pid, 0)
        child.returncode = code  # reaped here, so that Popen does not wait for it again
        out.seek(0)
        err.seek(0)
        for line in out.read().splitlines():
            if line.startswith("ember-window-shown "):
                return float(line.split()[1]) - start, usage.ru_maxrss / 1024
        raise RuntimeError(f"the window was not shown (exit status {code}): {err.read()[-1500:]}")


def run_start_bench(runs: int = 5) -> Report:
    """Launch the window and the bare Qt window ``runs`` times each (alternating); median, min and max."""
    report = Report("start")
    report.conditions.update({"runs": runs, "start": "warm (page cache full), a fresh user data folder each"})
    timings: dict[str, list[float]] = {"ember": [], "bare": []}
    memory: dict[str, list[float]] = {"ember": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="ember-start-") as tmp:
        bare = Path(tmp) / "bare_window.py"
        bare.write_text(_BARE, encoding="utf-8")
        commands = {"ember": [sys.executable, str(ROOT / "main.py")], "bare": [sys.executable, str(bare)]}
        _launch(commands["ember"], Path(tmp) / "first")  # fills the page cache; not counted
        for run in range(runs):
            for name, command in commands.items():
                seconds, peak = _launch(command, Path(tmp) / f"{name}-{run}")
                timings[name].append(seconds)
                memory[name].append(peak)
    for label, values, unit in (("window shown", timings, "s"), ("peak memory until shown", memory, "MB")):
        ember, bare = values["ember"], values["bare"]
        report.figures.append(
            Figure(
                f"{label}, median",
                statistics.median(ember),
                unit,
                statistics.median(bare),
                "<= 0.5 s" if unit == "s" else "",
            )
        )
        report.figures.append(Figure(f"{label}, min", min(ember), unit, min(bare), ""))
        report.figures.append(Figure(f"{label}, max", max(ember), unit, max(bare), ""))
    report.conditions["baseline"] = "a bare PySide6 QMainWindow shown the same way"
    return report
