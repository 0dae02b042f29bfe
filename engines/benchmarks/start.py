"""``main.py bench start``: how long the window takes to appear, and the memory it takes, beside a bare Qt window.

Each run launches ``main.py`` (the window) as a new process with ``EMBER_START_PROBE`` set: the app
prints when its window was shown, then quits. The baseline, in the same run, is a bare PySide6 window
(a QApplication and an empty QMainWindow shown the same way): what any Qt app pays. Each run gets a
fresh user data folder (a first start). The memory is the peak resident size of the window's process
until then (its ``VmHWM``; the engine processes it starts are not counted). Idle memory is read
:data:`IDLE_S` seconds later, when the start-up work (model scans, the library's repair) is over
and nothing runs: the resident size of the window's process and every process it started (the
engine processes), which is what the app holds while a person reads. Warm starts only:
the page cache holds the files after the first run (``packaging/measure_start.py`` measures an
installed app cold). ``QT_QPA_PLATFORM=offscreen`` unless a display is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engines.benchmarks import Figure, Report, median

ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 4.0  # after the window is shown: start-up work is over well before (0.2-0.5 s here)
_BARE = """
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow


def peak_memory_kb():
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


app = QApplication(sys.argv)
window = QMainWindow()
window.resize(1280, 800)
window.show()
def idle_memory_kb():
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


probe = lambda: print(f"ember-window-shown {time.time():.6f}\\nember-window-memory-kb {peak_memory_kb()}", flush=True)
idle = lambda: print(f"ember-window-idle-kb {idle_memory_kb()}", flush=True)
QTimer.singleShot(0, probe)
QTimer.singleShot(int(float(sys.argv[1]) * 1000), lambda: (idle(), app.quit()))
app.exec()
"""  # Linux's /proc: the bare window is measured where the bench runs (Ember's own probe falls back elsewhere)


def peak_memory_kb() -> int:
    """This process's peak resident memory in KiB: ``VmHWM`` on Linux (its own, unlike ``ru_maxrss``, which
    keeps the size of the process it was forked from across exec), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def idle_memory_kb() -> int:
    """The resident memory in KiB of this process and every process it started (the engine processes)."""
    import psutil

    me = psutil.Process()
    total = 0
    for process in (me, *me.children(recursive=True)):
        try:
            total += process.memory_info().rss
        except psutil.Error:  # ended meanwhile
            pass
    return total // 1024


def _launch(command: list[str], home: Path) -> tuple[float, float, float]:
    """Seconds to the window being shown, the process's peak resident MB until then, and the idle MB
    (the window's process and its engine processes) :data:`IDLE_S` later; the window prints all three."""
    env = {**os.environ, "EMBER_START_PROBE": f"idle={IDLE_S}", "EMBER_HOME": str(home)}
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    start = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    shown = memory = idle = None
    for line in done.stdout.splitlines():
        if line.startswith("ember-window-shown "):
            shown = float(line.split()[1]) - start
        elif line.startswith("ember-window-memory-kb "):
            memory = int(line.split()[1]) / 1024
        elif line.startswith("ember-window-idle-kb "):
            idle = int(line.split()[1]) / 1024
    if shown is None or memory is None or idle is None:
        raise RuntimeError(f"the window was not shown (exit status {done.returncode}): {done.stderr[-1500:]}")
    return shown, memory, idle


def run_start_bench(runs: int = 5) -> Report:
    """Launch the window and the bare Qt window ``runs`` times each (alternating); medians with their spread."""
    report = Report("start")
    report.conditions.update({"runs": runs, "start": "warm (page cache full), a fresh user data folder each"})
    timings: dict[str, list[float]] = {"ember": [], "bare": []}
    memory: dict[str, list[float]] = {"ember": [], "bare": []}
    idle: dict[str, list[float]] = {"ember": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="ember-start-") as tmp:
        bare = Path(tmp) / "bare_window.py"
        bare.write_text(_BARE, encoding="utf-8")
        commands = {"ember": [sys.executable, str(ROOT / "main.py")], "bare": [sys.executable, str(bare), str(IDLE_S)]}
        _launch(commands["ember"], Path(tmp) / "first")  # fills the page cache; not counted
        for run in range(runs):
            for name, command in commands.items():
                seconds, peak, resting = _launch(command, Path(tmp) / f"{name}-{run}")
                timings[name].append(seconds)
                memory[name].append(peak)
                idle[name].append(resting)
    for label, values, unit, goal in (
        ("window shown", timings, "s", "<= 0.5 s"),
        ("peak memory until shown", memory, "MB", ""),
        (f"idle memory {IDLE_S:g} s after (with engine processes)", idle, "MB", ""),
    ):
        report.figures.append(Figure(f"{label}, median", median(values["ember"]), unit, median(values["bare"]), goal))
    report.conditions["baseline"] = "a bare PySide6 QMainWindow shown the same way"
    return report
