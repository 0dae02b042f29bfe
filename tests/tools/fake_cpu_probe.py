"""A stand-in for engines.text.cpu_check.probe whose first choice of CPU variant really crashes (abort)."""

from __future__ import annotations

import os
from typing import Any

VARIANTS = ("zen4", "icelake", "haswell")  # best first, as the scores would rank them
CRASHING = "zen4"


def probe(conn: Any, excluded: tuple[str, ...], model_path: str) -> None:
    chosen = next(v for v in VARIANTS if v not in excluded)
    conn.send(("trying", chosen))
    if chosen == CRASHING:
        os.abort()  # what a kernel that cannot run on this CPU does to its process
    conn.send(("ok", chosen))
