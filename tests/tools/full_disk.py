"""A disk that fills up mid-write, for the tests of saving: patch ``engines.atomic.os.fdopen`` with it."""

from __future__ import annotations

import errno
import os
from typing import Any


class FullDisk:
    """A file object that writes part of the data, then reports the disk full (ENOSPC)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()
