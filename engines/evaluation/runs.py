"""What every evaluation shares: a job run to its end, the (min, median, max) of a figure, the table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from engines.errors import EmberError

Spread = tuple[float, float, float]


def spread(values: Sequence[float]) -> Spread:
    """(min, median, max) of the values of one figure over the samples."""
    return (min(values), statistics.median(values), max(values))


def finished(studio: Any, request: Any, what: str, listener: Callable[[Any], None] | None = None) -> Any:
    """Submit ``request`` and wait for its result; raise EmberError (saying ``what``) when it fails, is
    blocked, is stopped or has its output withheld."""
    from engines.jobs import EventKind

    final = studio.submit(request, listener=listener).wait()
    if final is None or final.kind is not EventKind.RESULT:
        reason = getattr(final.data, "reason", None) if final is not None else None
        raise EmberError(f"{what} did not finish: {reason or (final.data if final else 'timed out')}")
    if getattr(final.data, "withheld", ()):
        raise EmberError(f"{what} was withheld by the safety filter: {'; '.join(final.data.withheld)}")
    return final.data


def table(heading: Sequence[str], single: dict[str, float], spreads: dict[str, Spread], width: int = 40) -> str:
    """The heading lines, then one row a figure: single values, then (min, median, max) ones."""
    lines = [*heading, "", f"{'figure':<{width}} {'value':>10}  {'min':>9} {'median':>9} {'max':>9}"]
    lines += [f"{name:<{width}} {value:10.3f}" for name, value in single.items()]
    lines += [
        f"{name:<{width}} {mid:10.3f}  {low:9.3f} {mid:9.3f} {high:9.3f}" for name, (low, mid, high) in spreads.items()
    ]
    return "\n".join(lines)
