"""Quantities written for a person to read: sizes in bytes."""

from __future__ import annotations

_UNITS = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3))


def human_bytes(n: int | float, *, approximate: bool = False) -> str:
    """Return ``n`` bytes as a person reads them, in powers of 1000 as disks and shops count.

    A measured size keeps one decimal in every unit ("812.3 KB", "201.0 MB", "4.1 GB"), so two
    sizes that differ show it. An ``approximate`` one (an estimate, "about ...") drops the
    decimal of kilobytes and megabytes from 10 up ("75 MB", "1.5 MB", "9.1 GB"). Below a
    kilobyte it is "N bytes". Raises nothing.
    """
    for unit, scale in _UNITS:
        if abs(n) >= scale:
            value = n / scale
            if approximate and unit in ("MB", "KB") and abs(value) >= 10:
                return f"{value:.0f} {unit}"
            return f"{value:.1f} {unit}"
    return f"{int(n)} bytes"
