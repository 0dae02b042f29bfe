"""Files written whole or not at all: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engines.errors import EmberError


def write_atomic(path: Path | str, text: str | bytes) -> Path:
    """Write ``text`` (or bytes) to ``path`` through a temporary file and a rename.

    Raises EmberError (with the reason) when the folder cannot be written or the disk is full;
    the old file, if any, is left untouched.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise EmberError(f"Ember cannot write to {path.parent} ({exc.strerror or exc}).") from None
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise EmberError(
            f"Ember could not save {path.name} ({exc.strerror or exc}). Nothing was half-written; "
            "free some disk space or pick another folder."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
