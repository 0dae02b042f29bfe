"""What "the same settings and seed make it again" covers: this machine and backend, not every machine.

Ember makes outputs reproducibly where the arithmetic is the same: the same model, settings and
seed on the same CPU (or GPU) with the same kernels give the same text, bit for bit, and the
same pixels. Another CPU's instruction set picks other kernels (llama.cpp's AVX-512 and AVX2
kernels round differently), and another backend computes differently again, so there the
output may differ. Every record keeps where it was made (``made_on`` in its settings), and
the verifier and the re-run button say which of the two holds, instead of promising identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engines.hardware import machine


def made_on(backend: str, kernels: str) -> dict[str, str]:
    """Where an output is being made: this CPU and OS, the backend ("CPU", "CUDA"), the kernels in use."""
    here = machine()
    return {"cpu": here.cpu, "os": here.os.split()[0] if here.os else "", "backend": backend, "kernels": kernels}


def same_place(made: Mapping[str, Any], backend: str | None = None) -> bool:
    """Whether an output made at ``made`` would be made again here (the same CPU, OS and backend)."""
    here = made_on(str(made.get("backend", "")), str(made.get("kernels", "")))
    if backend is not None and backend != made.get("backend"):
        return False
    return here["cpu"] == made.get("cpu") and here["os"] == made.get("os")


def reproducibility(settings: Mapping[str, Any]) -> str:
    """One sentence a person reads: whether re-running these settings here gives the same output."""
    made = settings.get("made_on")
    if isinstance(made, Mapping) and made.get("remote"):
        return (
            f"Made on a remote server ({made['remote']}), not by Ember's own engines: it carries no sampling "
            "watermark, and re-running its settings there may give another output."
        )
    if not isinstance(made, Mapping) or not made.get("cpu"):
        return (
            "This record does not say which machine made it: re-running its settings and seed gives a "
            "similar output, perhaps not the same."
        )
    where = ", ".join(str(made[k]) for k in ("cpu", "backend", "kernels") if made.get(k))
    if same_place(made):
        return (
            f"Re-running with these settings and seed gives the same output on this machine ({where}); "
            "on another CPU or backend it may differ."
        )
    return f"Made on another machine ({where}): re-running here with these settings and seed may give another output."
