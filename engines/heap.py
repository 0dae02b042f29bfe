"""Giving the memory that finished jobs freed back to the operating system.

glibc's allocator keeps freed blocks in per-thread arenas for reuse, and returns little of them to
the system on its own. The Studio's threads (the lanes, the event dispatcher, the output pipeline)
pass images, audio and token streams between them, so without help its resident size climbs to the
high-water mark of whatever buffers happened to coincide and stays there: in ``bench soak`` the
Studio process went from 301 MB at the 100th job to 384 MB at the 1,000th, with Python's own
objects flat (tracemalloc) and the difference all free blocks (``malloc_trim`` took it back).
Other C libraries (macOS, Windows, musl) return free memory differently; there this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only: musl has none
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the operating system; whether this platform could.

    Takes a few milliseconds; the Studio calls it when its queue has nothing left to run.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    try:
        trim(0)
    except OSError as exc:  # never worth failing for
        log.debug("malloc_trim failed: %s", exc)
        return False
    return True
