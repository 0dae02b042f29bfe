"""llama.cpp's CPU kernels, chosen at run time for the CPU Ember runs on.

Ember's llama-cpp-python is built with ``GGML_BACKEND_DL`` and ``GGML_CPU_ALL_VARIANTS``
(packaging/bootstrap.py): the CPU backend exists once per instruction-set level (x64,
SSE4.2, AVX, AVX2 "haswell", AVX-512 "skylakex", ... "zen4", "sapphirerapids") as a library
that is loaded at run time, as llama.cpp's own release builds do. llama-cpp-python loads
none of them, so the engine process does, here, before its first model: each variant
scores itself on this CPU (0 where it cannot run) and the best one is loaded, except a
variant known to crash. The "sapphirerapids" variant is the only one with llama.cpp's AMX
matrix kernels, and those segfault on any batch of two tokens or more on Intel Xeons with
AMX (ggml-org/llama.cpp#20824); the next best variant (AVX-512 with VNNI and BF16) runs there.

``EMBER_LLAMA_CPU_VARIANT`` names the variant to load instead (for benchmarks, and for a
person who wants to try the AMX one). A build with one CPU backend built in (a native or a
fixed-baseline build, or a prebuilt wheel) has no variant files, and nothing is loaded here.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EmberError

log = logging.getLogger(__name__)

# Variants that load and score well on their CPUs but crash there; the reason is shown by self-test.
KNOWN_CRASHING: Mapping[str, str] = {
    "sapphirerapids": "its AMX matrix kernels crash on batches of two or more tokens (ggml-org/llama.cpp#20824)",
}
OVERRIDE_ENV = "EMBER_LLAMA_CPU_VARIANT"
# Set in an engine process by the Studio: variants that crashed this machine's probe (engines/host/probe.py).
EXCLUDED_ENV = "EMBER_EXCLUDED_CPU_VARIANTS"


@dataclass(frozen=True)
class CpuBackend:
    """Which CPU kernels llama.cpp uses in this process.

    ``variant`` is "" for a build with its CPU backend built in; ``skipped`` lists the
    variants this CPU could run that were left out, with why; ``features`` is llama.cpp's own
    list of the instruction sets it uses ("AVX2 = 1 | AVX512 = 1 | ...").
    """

    variant: str
    path: str
    score: int
    skipped: tuple[tuple[str, str], ...]
    features: str
    other_backends: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for a person: the variant and what was left out."""
        name = f"CPU variant '{self.variant}'" if self.variant else "built-in CPU backend (no run-time variants)"
        left = "; ".join(f"'{v}' left out: {why}" for v, why in self.skipped)
        return f"{name}{f' ({left})' if left else ''}"


_PREFIX = "ggml-cpu-"


def library_folders(llama_cpp: Any) -> list[Path]:
    """Where a llama-cpp-python build keeps its run-time backends: site-packages/bin, or beside its own libraries."""
    package = Path(llama_cpp.__file__).resolve().parent
    return [package.parent / "bin", package / "lib"]


def variant_files(folders: list[Path]) -> dict[str, Path]:
    """Return {variant name: library} for the CPU variant libraries in ``folders`` (first folder wins)."""
    suffix = ".dll" if sys.platform == "win32" else ".so"
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            name = path.name
            stem = name[3:] if name.startswith("lib") else name
            if stem.startswith(_PREFIX) and name.endswith(suffix):
                found.setdefault(stem[len(_PREFIX) : -len(suffix)], path)
    return found


def other_backend_files(folders: list[Path]) -> list[Path]:
    """The GPU and other non-CPU backend libraries (ggml-cuda, ggml-vulkan, ...) in ``folders``."""
    suffix = ".dll" if sys.platform == "win32" else ".so"
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            stem = path.name[3:] if path.name.startswith("lib") else path.name
            is_backend = stem.startswith("ggml-") and path.name.endswith(suffix)
            if is_backend and not stem.startswith(("ggml-cpu", "ggml-base")):
                found.append(path)
    return found


def choose_variant(
    scores: Mapping[str, int], *, override: str = "", crashing: Mapping[str, str] = KNOWN_CRASHING
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Return the variant to load from {variant: score on this CPU} and those left out, with why.

    The highest score wins among variants this CPU runs (score > 0) that are not known to
    crash; ``override`` names one to take instead. Raises EmberError when the override cannot
    run here or no variant can.
    """
    if override:
        if override not in scores:
            raise EmberError(
                f"{OVERRIDE_ENV}={override}, but this llama.cpp build has no such CPU variant; "
                f"it has {', '.join(sorted(scores))}."
            )
        if scores[override] <= 0:
            raise EmberError(f"{OVERRIDE_ENV}={override}, but this CPU cannot run that variant.")
        return override, ()
    runnable = {name: score for name, score in scores.items() if score > 0}
    skipped = tuple((name, crashing[name]) for name in sorted(runnable) if name in crashing)
    usable = {name: score for name, score in runnable.items() if name not in crashing}
    if not usable:
        raise EmberError(
            "This llama.cpp build has no CPU variant that runs on this processor. "
            "Reinstall Ember (python3 packaging/bootstrap.py start) to build one."
        )
    return max(usable, key=lambda name: (usable[name], name)), skipped


_loaded: CpuBackend | None = None
_lock = threading.Lock()


def _ggml(llama_cpp: Any) -> ctypes.CDLL:
    """The libggml that libllama itself uses.

    The wheel holds libggml.so, libggml.so.0 and libggml.so.0.x.y as three copies of one
    file; libllama links libggml.so.0, and a backend registered in another copy is invisible
    to it ("no backends are loaded"), so this opens exactly that file.
    """
    folder = Path(llama_cpp.__file__).resolve().parent / "lib"
    names = ["ggml.dll"] if sys.platform == "win32" else ["libggml.so.0", "libggml.0.dylib", "libggml.dylib"]
    for name in names:
        if (folder / name).exists():
            lib = ctypes.CDLL(str(folder / name))
            lib.ggml_backend_load.restype = ctypes.c_void_p
            lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
            lib.ggml_backend_reg_count.restype = ctypes.c_size_t
            return lib
    raise EmberError(f"llama-cpp-python's libggml was not found in {folder}. Reinstall Ember.")


def _score(path: Path) -> int:
    # ggml itself opens every variant to ask its score: the score function is built for the
    # lowest level, so asking is safe on any CPU.
    try:
        lib = ctypes.CDLL(str(path))
        lib.ggml_backend_score.restype = ctypes.c_int
        return int(lib.ggml_backend_score())
    except (OSError, AttributeError) as exc:
        log.warning("llama.cpp CPU variant %s cannot be opened: %s", path.name, exc)
        return 0


def load_cpu_backend(llama_cpp: Any, *, override: str | None = None, check: bool = True) -> CpuBackend:
    """Load the best CPU variant (and any GPU backend) of this llama.cpp build, once per process.

    Call it in the engine process after importing llama_cpp and before loading a model.
    With ``check``, this machine's one-time check (engines/text/cpu_check.py) runs first if it
    never ran, and the variants that crashed in it are left out. Returns what is in use;
    raises EmberError when no variant can run or one fails to load.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        folders = library_folders(llama_cpp)
        files = variant_files(folders)
        if not files:
            if override or os.environ.get(OVERRIDE_ENV):
                raise EmberError(
                    f"{OVERRIDE_ENV} names a CPU variant, but this llama.cpp build has its CPU backend built in."
                )
            _loaded = CpuBackend("", "", 0, (), _features(llama_cpp))
            return _loaded
        ggml = _ggml(llama_cpp)
        others = []
        for path in other_backend_files(folders):
            if ggml.ggml_backend_load(str(path).encode()):
                others.append(path.name)
        scores = {name: _score(path) for name, path in files.items()}
        wanted = os.environ.get(OVERRIDE_ENV, "") if override is None else override
        crashing = dict(KNOWN_CRASHING)
        excluded = list(filter(None, os.environ.get(EXCLUDED_ENV, "").split(",")))
        if check and not wanted:
            from engines.text import cpu_check

            found = cpu_check.check()
            excluded += list(found.get("crashed", ())) if found else []
        for name in excluded:
            crashing.setdefault(name, "it crashed in Ember's check of this machine")
        variant, skipped = choose_variant(scores, override=wanted, crashing=crashing)
        if not ggml.ggml_backend_load(str(files[variant]).encode()):
            raise EmberError(f"llama.cpp's CPU variant '{variant}' ({files[variant]}) could not be loaded.")
        features = _features(llama_cpp)
        _loaded = CpuBackend(variant, str(files[variant]), scores[variant], skipped, features, tuple(others))
        log.info("llama.cpp: %s", _loaded.describe())
        return _loaded


def loaded_cpu_backend() -> CpuBackend | None:
    """What :func:`load_cpu_backend` loaded in this process, or None before it ran."""
    return _loaded


def _features(llama_cpp: Any) -> str:
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    parts = (part.split(":")[-1].strip() for part in info.split("|"))
    return " ".join(part[: -len(" = 1")] for part in parts if part.endswith(" = 1"))


def cpu_flags() -> list[str]:
    """The instruction-set extensions this CPU reports (Linux: /proc/cpuinfo; macOS: sysctl), for reports."""
    wanted = (
        *("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f", "avx512bw", "avx512vl"),
        *("avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"),
    )
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in have] or sorted(have)[:24]
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            done = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            )
            return done.stdout.lower().split()
        except (OSError, subprocess.SubprocessError):
            return []
    return []


def ready_llama_cpp() -> Any:
    """Import llama_cpp with its log routed and this CPU's kernels loaded; return the module.

    Everything that uses llama-cpp-python (the engines, benchmarks' bare baselines, tests)
    starts here: with a run-time-variant build no model loads before a CPU backend is.
    """
    import llama_cpp

    from engines.text.llama_log import route_llama_log

    route_llama_log(llama_cpp)
    load_cpu_backend(llama_cpp)
    return llama_cpp
