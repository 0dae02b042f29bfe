"""Facts about model files that the catalog, the downloader, the inspector and the converter share.

It imports nothing of Ember's, so each of them can read it without importing the others.
"""

from __future__ import annotations

PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
"""Endings of pickle-based weight files, which can run code when loaded: Ember lists, fetches and opens none."""


def is_pickle(name: str) -> bool:
    """Return whether the file called ``name`` (a name or a path) is pickle-based, by its ending."""
    return name.lower().endswith(PICKLE_SUFFIXES)
