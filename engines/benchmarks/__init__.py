"""Benchmarks: Ember's figures beside the bare library's, measured in the same run.

A figure taken over repetitions is a :class:`Median`: the median, and the spread (min, max) and
count of the samples it came from, so that every table shows the spread and not one sample.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engines.hardware import machine


class Median(float):
    """The median of repeated samples, which keeps their spread: ``low`` (min), ``high`` (max) and ``runs``.

    It is a float, so it is used as the figure itself; :class:`Figure` reads the spread from it.
    """

    low: float
    high: float
    runs: int

    def __new__(cls, values: Sequence[float]) -> Median:
        samples = [float(v) for v in values]
        self = super().__new__(cls, statistics.median(samples) if samples else float("nan"))
        self.low = min(samples) if samples else float("nan")
        self.high = max(samples) if samples else float("nan")
        self.runs = len(samples)
        return self

    def scaled(self, factor: float) -> Median:
        """The same samples times ``factor`` (seconds to milliseconds, say), spread included."""
        return Median._of(float(self) * factor, self.low * factor, self.high * factor, self.runs)

    @classmethod
    def _of(cls, middle: float, low: float, high: float, runs: int) -> Median:
        self = super().__new__(cls, middle)
        self.low, self.high, self.runs = (min(low, high), max(low, high), runs)
        return self


@dataclass(frozen=True)
class Spread:
    """The samples behind a figure: their min, max and count (the figure itself is their median)."""

    low: float
    high: float
    runs: int


def spread_of(value: float | None) -> Spread | None:
    """The spread a :class:`Median` carries, or None for a figure that is one measurement (a count, a rate)."""
    if isinstance(value, Median) and value.runs:
        return Spread(value.low, value.high, value.runs)
    return None


@dataclass(frozen=True)
class Figure:
    """One measured figure; ``baseline`` is the same work done bare in the same run.

    ``spread`` and ``baseline_spread`` are the min, max and count of the repetitions behind a
    median; they are taken from ``value`` and ``baseline`` when those are :class:`Median`.
    """

    name: str
    value: float
    unit: str
    baseline: float | None
    goal: str
    spread: Spread | None = None
    baseline_spread: Spread | None = None

    def __post_init__(self) -> None:
        if self.spread is None:
            object.__setattr__(self, "spread", spread_of(self.value))
        if self.baseline_spread is None:
            object.__setattr__(self, "baseline_spread", spread_of(self.baseline))
        # The JSON and the tables hold plain numbers; the spread is kept beside them.
        object.__setattr__(self, "value", float(self.value))
        if self.baseline is not None:
            object.__setattr__(self, "baseline", float(self.baseline))

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
        head = (
            f"{'figure':<{width}} {'ember':>10} {'min..max (n)':>22} {'baseline':>10} {'min..max (n)':>22} "
            f"{'unit':<8} {'ratio':>7}  goal"
        )
        lines += ["", head, "-" * len(head)]
        for f in self.figures:
            base = f"{f.baseline:10.2f}" if f.baseline is not None else f"{'-':>10}"
            ratio = f"{f.ratio:7.3f}" if f.ratio is not None else f"{'-':>7}"
            lines.append(
                f"{f.name:<{width}} {f.value:10.2f} {spread_text(f.spread):>22} {base} "
                f"{spread_text(f.baseline_spread):>22} {f.unit:<8} {ratio}  {f.goal}"
            )
        return "\n".join(lines)


def spread_text(spread: Spread | None) -> str:
    """``"1.02..1.31 (7)"`` for a spread, ``"-"`` for a single measurement."""
    if spread is None:
        return "-"
    return f"{spread.low:.3g}..{spread.high:.3g} ({spread.runs})"


def median(values: Sequence[float]) -> Median:
    """The median of ``values`` with their spread (NaN for none)."""
    return Median(values)
