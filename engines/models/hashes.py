"""SHA-256 of model files, computed once per file version and remembered."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from engines.atomic import write_atomic
from engines.errors import EmberError
from engines.paths import cache_dir

_lock = threading.Lock()


def file_sha256(path: Path | str) -> str:
    """Return the hex SHA-256 of ``path``, from the cache when size and mtime are unchanged.

    Raises OSError if the file cannot be read.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_dir() / "model-hashes.json"
    with _lock:
        index = _load(index_path)
        if key in index:
            return index[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    value = digest.hexdigest()
    with _lock:
        index = _load(index_path)
        index[key] = value
        _save(index_path, index)
    return value


def _load(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save(path: Path, index: dict[str, str]) -> None:
    try:
        write_atomic(path, json.dumps(index))
    except EmberError:
        pass  # a cache that cannot be written is only slower next time
