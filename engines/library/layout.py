"""Where the library's files lie: the outputs folder, a folder a day, ``<output id>.<ext>``, and its trash.

Only names Ember writes are the library's: a day folder (``2025-01-31``) holding files named
with a 32-digit hex output id. The outputs folder is the person's own (by default in their
Pictures folder), so anything else in it is left alone.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TRASH = ".trash"
MEDIA_SUFFIXES = frozenset({"png", "jpg", "jpeg", "webp", "wav"})
COMPANION_SUFFIXES = frozenset({"mid"})  # a composition's notes beside its WAV

DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
OUTPUT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_FILE_RE = re.compile(r"^([0-9a-f]{32})\.([a-z0-9]{2,4})$")
# write_atomic's temporary files: ".<name>.<random>.tmp" in the same folder.
_TEMP_RE = re.compile(r"^\.[0-9a-f]{32}\.[a-z0-9]{2,4}\..+\.tmp$")
RELATIVE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}/[0-9a-f]{32}\.(png|jpg|jpeg|webp|wav|mid)$")


@dataclass(frozen=True)
class FoundFile:
    """One of Ember's files in the outputs folder: ``relative`` is ``<day>/<id>.<ext>`` (forward slashes)."""

    relative: str
    output_id: str
    suffix: str
    trashed: bool

    @property
    def companion(self) -> bool:
        return self.suffix in COMPANION_SUFFIXES


@dataclass(frozen=True)
class Listing:
    """What one look at the outputs folder found: Ember's files (live and in the trash) and temporary files."""

    files: tuple[FoundFile, ...]
    temporary: tuple[Path, ...]


def is_relative_output_path(relative: str) -> bool:
    """Whether ``relative`` has the form ``YYYY-MM-DD/<32 hex>.<ext>`` of a file Ember wrote."""
    return bool(RELATIVE_RE.match(relative))


def list_outputs(root: Path) -> Listing:
    """Return Ember's files under ``root`` and its trash: one directory listing a day, no file opened."""
    files: list[FoundFile] = []
    temporary: list[Path] = []
    for trashed, base in ((False, root), (True, root / TRASH)):
        for day, folder in _day_folders(base):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                name = entry.name
                match = _FILE_RE.match(name)
                if match and entry.is_file(follow_symlinks=False):
                    suffix = match.group(2)
                    if suffix in MEDIA_SUFFIXES or suffix in COMPANION_SUFFIXES:
                        files.append(FoundFile(f"{day}/{name}", match.group(1), suffix, trashed))
                elif name[:1] == "." and _TEMP_RE.match(name):
                    temporary.append(Path(entry.path))
    return Listing(tuple(files), tuple(temporary))


def _day_folders(base: Path) -> Iterator[tuple[str, str]]:
    """(day, folder path) of each day folder in ``base``."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        if DAY_RE.match(entry.name) and entry.is_dir(follow_symlinks=False):
            yield entry.name, entry.path


def sha256_of(path: Path) -> str:
    """Return the file's SHA-256 (hex); raises OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
