"""Benchmarks: Ember's figures beside the bare library's, measured in the same run."""

from __future__ import annotations

import platform
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from engines.hardware import machine


@dataclass(frozen=True)
class Figure:
    """One measured figure; ``baseline`` is the same work done bare in the same run."""

    name: str
    value: float
    unit: str
    baseline: float | None
    goal: str

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline


@dataclass
class Report:
    """A benchmark's figures and the conditions they were measured under."""

    bench: str
    conditions: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form: {"bench", "machine", "figures": [{"name", "value", "unit", ...}]}."""
        m = machine()
        return {
            "bench": self.bench,
            "machine": {**asdict(m), "python": platform.python_version(), **self.conditions},
            "figures": [{**asdict(f), "ratio": f.ratio} for f in self.figures],
        }

    def table(self) -> str:
        """Return the human-readable table, conditions first (like llama-bench)."""
        m = machine()
        lines = [f"bench {self.bench} on {m.cpu} ({m.physical_cores} cores, {m.ram_total_bytes / 2**30:.0f} GiB)"]
        lines += [f"  {k}: {v}" for k, v in self.conditions.items()]
        width = max([44, *(len(f.name) for f in self.figures)])
        head = f"{'figure':<{width}} {'ember':>10} {'baseline':>10} {'unit':<8} {'ratio':>7}  goal"
        lines += ["", head, "-" * len(head)]
        for f in self.figures:
            base = f"{f.baseline:10.2f}" if f.baseline is not None else f"{'-':>10}"
            ratio = f"{f.ratio:7.3f}" if f.ratio is not None else f"{'-':>7}"
            lines.append(f"{f.name:<{width}} {f.value:10.2f} {base} {f.unit:<8} {ratio}  {f.goal}")
        return "\n".join(lines)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
