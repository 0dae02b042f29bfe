"""How long an installed Ember takes to show its window, cold (page cache dropped) and warm.

    python packaging/measure_start.py /opt/ember/ember [--runs 5]     # needs a display (xvfb-run)

Cold: every file of the installed app (and its models) is evicted from the page cache first with
``posix_fadvise(DONTNEED)`` (which needs no root, unlike ``/proc/sys/vm/drop_caches``), and
``fincore`` confirms it when util-linux has it. The time runs from the launch to the moment the
window was shown (the app prints it when ``EMBER_START_PROBE`` is set, then quits). Each run uses a
fresh, empty user data folder, as a first start does; ``--same-home`` measures a later start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def evict(folder: Path) -> int:
    """Drop ``folder``'s files from the page cache; return how many files were evicted."""
    count = 0
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        finally:
            os.close(fd)
    return count


def resident_mb(folder: Path) -> float | None:
    """The megabytes of ``folder`` still in the page cache (``fincore``), or None without it."""
    if shutil.which("fincore") is None:
        return None
    files = [str(p) for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    total = 0
    for i in range(0, len(files), 500):
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", *files[i : i + 500]],
                             capture_output=True, text=True)  # fmt: skip
        total += sum(int(line) for line in out.stdout.split() if line.isdigit())
    return total / 1e6


def start_once(exe: Path, home: Path) -> float:
    """Seconds from launching ``exe`` to its window being shown."""
    env = {**os.environ, "EMBER_START_PROBE": "1", "HOME": str(home), "EMBER_HOME": str(home / "ember")}
    start = time.time()
    done = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=300)
    for line in done.stdout.splitlines():
        if line.startswith("ember-window-shown "):
            return float(line.split()[1]) - start
    raise SystemExit(f"the window was not shown (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exe", type=Path, help="the installed launcher, e.g. /opt/ember/ember")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--same-home", action="store_true", help="keep one user data folder for every run")
    args = parser.parse_args(argv)
    exe = args.exe.resolve()
    folder = exe.parent
    with tempfile.TemporaryDirectory(prefix="ember-start-") as tmp:
        figures: dict[str, list[float]] = {"cold": [], "warm": []}
        left: list[float] = []
        for run in range(args.runs):
            home = Path(tmp) / ("home" if args.same_home else f"home-{run}")
            home.mkdir(exist_ok=True)
            evict(folder)
            still = resident_mb(folder)
            if still is not None:
                left.append(still)
            figures["cold"].append(start_once(exe, home))
            warm = home if args.same_home else Path(tmp) / f"warm-{run}"
            warm.mkdir(exist_ok=True)
            figures["warm"].append(start_once(exe, warm))
    print(f"{exe}: {args.runs} runs, each a {'later' if args.same_home else 'first'} start")
    for kind, values in figures.items():
        print(f"  {kind:<5} window shown after  min {min(values):.3f} s  median {statistics.median(values):.3f} s  "
              f"max {max(values):.3f} s")  # fmt: skip
    if left:
        print(f"  page cache before each cold start: at most {max(left):.1f} MB of {folder} resident")
    return 0


if __name__ == "__main__":
    sys.exit(main())
