"""A check, once per machine and llama.cpp build, that the CPU variant Ember loads really runs here.

:data:`engines.text.cpu_backend.KNOWN_CRASHING` leaves out the AMX variant, whose crash is
known. A variant that crashed on some CPU for a reason nobody has reported yet would take
every text job down with it, so before the first model loads on a machine a throwaway
process loads the variant Ember would choose and the embedded model, and evaluates a batch
of tokens and a few single ones (the shapes that crashed before). If that process dies, the
variant is recorded as crashing on this machine and the next best one is checked the same
way. Verdicts live in the cache folder, keyed by the build and the CPU, so this runs once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_FILE = "llama-cpu-check.json"
_ATTEMPTS = 4
_TIMEOUT_S = 120.0


def _variant_folder() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")  # found without importing it
    if spec is None or spec.origin is None:
        return []
    package = Path(spec.origin).parent
    return [package.parent / "bin", package / "lib"]


def machine_key() -> str:
    """The build and the CPU the verdicts hold for: llama-cpp-python's version, its variant files, the CPU model."""
    from engines.hardware import machine
    from engines.text.cpu_backend import variant_files

    files = variant_files(_variant_folder())
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    build = ",".join(f"{name}:{path.stat().st_size}" for name, path in sorted(files.items()))
    digest = hashlib.sha256(f"{version}|{build}".encode()).hexdigest()[:16]
    return f"{machine().cpu}|{digest}"


def _path() -> Path:
    from engines.paths import cache_dir

    return cache_dir() / _FILE


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(data: dict[str, Any]) -> None:
    from engines.atomic import write_atomic

    try:
        write_atomic(_path(), json.dumps(data, indent=2, sort_keys=True))
    except OSError as exc:  # a read-only cache only costs the check again next time
        log.warning("The llama.cpp CPU check could not be saved: %s", exc)


def verdict() -> dict[str, Any] | None:
    """This machine's verdict: {"ok": variant or "", "crashed": [variants]}, or None before the check ran."""
    entry = _read().get(machine_key())
    return entry if isinstance(entry, dict) else None


def recorded_crashes() -> tuple[str, ...]:
    """The CPU variants that crashed in this machine's check."""
    entry = verdict()
    return tuple(entry.get("crashed", ())) if entry else ()


def probe(conn: Any, excluded: tuple[str, ...], model_path: str) -> None:
    """The throwaway process: load the variant Ember would choose and the model, evaluate; say how far it got."""
    from engines.text.cpu_backend import EXCLUDED_ENV

    os.environ[EXCLUDED_ENV] = ",".join(excluded)
    import llama_cpp

    from engines.text.cpu_backend import load_cpu_backend
    from engines.text.llama_log import route_llama_log

    route_llama_log(llama_cpp)
    backend = load_cpu_backend(llama_cpp, check=False)
    conn.send(("trying", backend.variant))
    llm = llama_cpp.Llama(model_path, n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)
    tokens = llm.tokenize(b"The lighthouse keeper counted the boats coming home through the storm.")
    llm.eval(tokens[:24])
    for token in tokens[24:27] or tokens[:3]:
        llm.eval([token])
    conn.send(("ok", backend.variant))


Probe = Callable[[Any, tuple[str, ...], str], None]


def check(probe_target: Probe = probe, model_path: str | None = None) -> dict[str, Any] | None:
    """Run the check unless this machine has a verdict; return the verdict (None when it cannot run here).

    It cannot run without variant files (a build with one CPU backend) or without the embedded model.
    """
    from engines.text.cpu_backend import variant_files

    known = verdict()
    if known is not None:
        return known
    if not variant_files(_variant_folder()):
        return None
    if model_path is None:
        from engines.errors import ModelFileError
        from engines.models.embedded import DEFAULT_TEXT_MODEL

        try:
            model_path = str(DEFAULT_TEXT_MODEL.path())
        except ModelFileError:
            return None
    crashed: list[str] = []
    ok = ""
    context = multiprocessing.get_context("spawn")
    for _ in range(_ATTEMPTS):
        parent, child = context.Pipe(duplex=False)
        process = context.Process(target=probe_target, args=(child, tuple(crashed), model_path), daemon=True)
        process.start()
        child.close()
        trying, messages = "", []
        try:
            while parent.poll(_TIMEOUT_S):
                messages.append(parent.recv())
                if messages[-1][0] == "trying":
                    trying = messages[-1][1]
        except (EOFError, OSError):
            pass
        process.join(_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()
        if any(m[0] == "ok" for m in messages):
            ok = trying
            break
        if not trying or process.exitcode == 0:
            log.warning("The llama.cpp CPU check could not run (exit code %s); skipping it.", process.exitcode)
            return None
        log.error("llama.cpp's CPU variant '%s' crashed on this machine (exit code %s).", trying, process.exitcode)
        crashed.append(trying)
    entry = {"ok": ok, "crashed": crashed}
    data = _read()
    data[machine_key()] = entry
    _write(data)
    return entry
