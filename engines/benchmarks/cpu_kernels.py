"""`bench cpu-kernels`: llama.cpp's CPU variants of this build, side by side on this CPU.

Ember loads the best-scoring variant that is not known to crash (engines/text/cpu_backend.py).
This measures that choice: every variant this CPU runs, each in a process of its own (a process
can load one CPU backend), on the embedded model with the same prompt, greedy, one thread. The
baseline is the Haswell variant (AVX2, FMA, F16C): what a fixed x86-64-v3 build would run.
Rounds alternate between the variants, so drift in the machine's speed touches all alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

from engines.benchmarks import Figure, Report, median
from engines.errors import EmberError

BASELINE = "haswell"

_MEASURE = textwrap.dedent(
    """
    import json, sys, time
    from engines.text.cpu_backend import ready_llama_cpp, loaded_cpu_backend
    llama_cpp = ready_llama_cpp()
    path, tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    llm = llama_cpp.Llama(path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    text = "You are helping me write a children's book about a small dragon in a lighthouse by the sea. " * 8
    prompt = llm.tokenize(text.encode())[:128]
    llm.eval(prompt); llm.reset()  # warm-up
    start = time.perf_counter(); llm.eval(prompt); prompt_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(tokens):
        llm.eval([llm.sample(temp=0.0)])
    generation_s = time.perf_counter() - start
    print(json.dumps({"variant": loaded_cpu_backend().variant, "pp": len(prompt) / prompt_s,
                      "tg": tokens / generation_s}))
    """
)


def runnable_variants() -> list[str]:
    """The CPU variants of this build that this CPU runs (their score above 0), found in a child process."""
    probe = (
        "import json, llama_cpp\n"
        "from engines.text.cpu_backend import library_folders, variant_files, _score\n"
        "files = variant_files(library_folders(llama_cpp))\n"
        "print(json.dumps({name: _score(path) for name, path in files.items()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise EmberError(f"The CPU variants could not be listed: {done.stderr.strip()[-300:]}")
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    return sorted((name for name, score in scores.items() if score > 0), key=lambda name: -scores[name])


def _run_variant(variant: str, path: str, tokens: int, threads: int) -> dict[str, Any]:
    env = {**os.environ, "EMBER_LLAMA_CPU_VARIANT": variant}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, path, str(tokens), str(threads)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        return {"variant": variant, "error": f"exit {done.returncode}: {done.stderr.strip()[-200:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cpu_kernels_bench(tokens: int = 64, rounds: int = 3, variants: list[str] | None = None) -> Report:
    """Prompt and generation tokens/s of each runnable CPU variant; the Haswell (AVX2) variant is the baseline."""
    from engines.hardware import default_threads
    from engines.models.embedded import DEFAULT_TEXT_MODEL
    from engines.text.cpu_backend import KNOWN_CRASHING

    ranked = runnable_variants()
    names = variants or ranked
    if not names:
        raise EmberError("This llama.cpp build has its CPU backend built in: there are no variants to compare.")
    path = str(DEFAULT_TEXT_MODEL.path())
    threads = default_threads()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            if name in KNOWN_CRASHING:
                continue  # never run here: it is left out because it crashes
            runs[name].append(_run_variant(name, path, tokens, threads))
    # What Ember loads on this CPU: the best-scoring variant not known to crash, whichever are measured.
    chosen = next((name for name in ranked if name not in KNOWN_CRASHING), "")
    report = Report(
        "cpu-kernels",
        conditions={
            "model": DEFAULT_TEXT_MODEL.name,
            "threads": threads,
            "prompt tokens": 128,
            "generated tokens": tokens,
            "rounds": rounds,
            "Ember's choice": chosen,
            "left out (known to crash)": ", ".join(n for n in names if n in KNOWN_CRASHING) or "none here",
            "baseline": f"{BASELINE} (AVX2/FMA/F16C: a fixed x86-64-v3 build)",
        },
    )

    def med(name: str, key: str) -> float | None:
        values = [r[key] for r in runs.get(name, []) if key in r]
        return median(values) if values else None

    base_pp, base_tg = med(BASELINE, "pp"), med(BASELINE, "tg")
    for name in names:
        if name in KNOWN_CRASHING or med(name, "tg") is None:
            continue
        mark = " (Ember's choice)" if name == chosen else ""
        report.figures.append(Figure(f"{name}{mark}: generation", med(name, "tg") or 0.0, "tok/s", base_tg, ""))
        report.figures.append(Figure(f"{name}{mark}: prompt", med(name, "pp") or 0.0, "tok/s", base_pp, ""))
    return report
