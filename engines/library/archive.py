"""A library as one zip: the files exactly as Ember wrote them, and a manifest of their items and records.

Layout of an export (format ``ember.library/1``)::

    manifest.json                 {"format", "exported_utc", "items": [...], "records": [...]}
    files/2025-01-31/<id>.png     each file byte for byte: its watermark, metadata and Content
    files/2025-01-31/<id>.wav     Credentials travel inside it untouched
    files/2025-01-31/<id>.mid

An item in the manifest is its library row (``path`` relative to the outputs folder, ``extra``
as an object); a record is the output's ``output_records`` row with its settings, timings and
decisions as JSON objects. Importing keeps the ids (so watermarks still lead to the record),
skips items already there, checks every file against the hash in its item, and refuses a zip
with a path that could write outside the outputs folder, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.atomic import write_atomic
from engines.database import Database
from engines.errors import EmberError
from engines.library.adopt import KINDS
from engines.library.layout import OUTPUT_ID_RE, is_relative_output_path
from engines.library.schema import ITEM_COLUMNS, upsert_item
from engines.pipeline import utc_now

if TYPE_CHECKING:
    from engines.library.store import Library

FORMAT = "ember.library/1"
MANIFEST = "manifest.json"
_MANIFEST_LIMIT = 512 * 2**20
_STORED = frozenset({"png", "jpg", "jpeg", "webp"})  # compressed already
_RECORD_COLUMNS = (
    "output_id",
    "kind",
    "created_utc",
    "job_id",
    "model_name",
    "model_path",
    "model_sha256",
    "backend",
    "settings_json",
    "seed",
    "timings_json",
    "decisions_json",
    "partial",
    "delivered",
)
_JSON_COLUMNS = {"settings_json": "settings", "timings_json": "timings", "decisions_json": "decisions"}
_DRIVE = re.compile(r"^[A-Za-z]:")


# -- export ---------------------------------------------------------------------------------------
def export_zip(library: Library, db: Database, path: Path, output_ids: Sequence[str] | None) -> Path:
    """Write the zip (through a temporary file and a rename) and return ``path``.

    ``output_ids`` None exports every item outside the trash. Raises EmberError for an id that is
    not in the library, a file that is gone, or a folder that cannot be written.
    """
    if output_ids is None:
        items = db.query("SELECT * FROM library_items WHERE trashed_utc IS NULL ORDER BY created_utc, seq")
    else:
        wanted = list(dict.fromkeys(output_ids))
        items = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            items += db.query(f"SELECT * FROM library_items WHERE output_id IN ({marks})", tuple(chunk))
        if len(items) != len(wanted):
            missing = len(wanted) - len(items)
            raise EmberError(f"{missing} of the chosen items are no longer in the library; choose them again.")
    records: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    files: list[tuple[Path, str]] = []
    for row in items:
        trashed = row["trashed_utc"] is not None
        entry = {c: row[c] for c in ITEM_COLUMNS if c != "extra_json"}
        entry["extra"] = json.loads(row["extra_json"] or "{}")
        for relative in [row["path"], entry["extra"].get("midi", "")]:
            if relative:
                source = library._absolute(relative, trashed)
                if not source.is_file():
                    raise EmberError(f"{source} is gone, so it cannot be exported. Run the export again without it.")
                files.append((source, f"files/{relative}"))
        entries.append(entry)
        record = db.query("SELECT * FROM output_records WHERE output_id = ?", (row["output_id"],))[0]
        records.append(
            {
                _JSON_COLUMNS.get(c, c): (json.loads(record[c]) if c in _JSON_COLUMNS else record[c])
                for c in _RECORD_COLUMNS
            }
        )
    manifest = {"format": FORMAT, "exported_utc": utc_now(), "items": entries, "records": records}
    _write_zip_atomic(path, files, json.dumps(manifest, indent=1, ensure_ascii=False))
    return path


def _write_zip_atomic(path: Path, files: list[tuple[Path, str]], manifest: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise EmberError(f"Ember cannot write to {path.parent} ({exc.strerror or exc}).") from None
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(MANIFEST, manifest)
                for source, name in files:
                    suffix = name.rsplit(".", 1)[-1]
                    archive.write(source, name, zipfile.ZIP_STORED if suffix in _STORED else zipfile.ZIP_DEFLATED)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise EmberError(
            f"Ember could not write {path.name} ({exc.strerror or exc}). Nothing was half-written; "
            "free some disk space or pick another folder."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- import ---------------------------------------------------------------------------------------
def import_zip(library: Library, db: Database, path: Path) -> int:
    """Add the zip's items that this library does not have; return how many were added.

    Everything is checked before anything is written: member paths (no absolute paths, no
    ``..``, no links), the manifest, each item's file and its hash. Then each item is added as
    an output is: its record, its file (temporary file and rename), its row. Raises EmberError
    with what is wrong.
    """
    name = path.name
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise EmberError(f"{path} does not exist.") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise EmberError(f"{name} is not a zip file Ember can read ({exc}). Pick a library export of Ember.") from None
    with archive:
        members = {}
        for info in archive.infolist():
            _refuse_unsafe(info, name)
            members[info.filename] = info
        items, records = _read_manifest(archive, members, name)
        have = {r["output_id"] for r in db.query("SELECT output_id FROM library_items")}
        new = [item for item in items if item["output_id"] not in have]
        needed = 0
        for item in new:
            for member in _members_of(item):
                needed += members[member].file_size
                _check_hash(archive, members[member], item, member, name)
        try:
            library.root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(library.root).free
        except OSError as exc:
            raise EmberError(
                f"Ember cannot write to its outputs folder {library.root} ({exc.strerror or exc})."
            ) from None
        if needed > free:
            raise EmberError(
                f"{name} needs {needed / 2**20:.0f} MB and the outputs folder's disk has {free / 2**20:.0f} MB free."
            )
        for item in new:
            _add_one(library, db, archive, item, records[item["output_id"]])
    return len(new)


def _refuse_unsafe(info: zipfile.ZipInfo, name: str) -> None:
    member = info.filename
    parts = member.split("/")
    mode = info.external_attr >> 16
    unsafe = (
        "\\" in member
        or "\x00" in member
        or member.startswith("/")
        or _DRIVE.match(member) is not None
        or ".." in parts
        or stat.S_ISLNK(mode)
    )
    if unsafe:
        raise EmberError(
            f"{name} holds a file with an unsafe path ({member!r}) that could write outside Ember's folders. "
            "Ember refuses to import it; nothing was changed."
        )


def _read_manifest(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], name: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    not_export = f"{name} is not a library export of Ember"
    info = members.get(MANIFEST)
    if info is None:
        raise EmberError(f"{not_export} (it has no {MANIFEST}).")
    if info.file_size > _MANIFEST_LIMIT:
        raise EmberError(f"{not_export} (its {MANIFEST} is {info.file_size / 2**20:.0f} MB).")
    try:
        manifest = json.loads(archive.read(info).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise EmberError(f"{not_export} (its {MANIFEST} cannot be read: {exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise EmberError(f"{not_export} in a format this version reads ({FORMAT}; the file says {found!r}).")
    items, records = manifest.get("items"), manifest.get("records")
    if not isinstance(items, list) or not isinstance(records, list):
        raise EmberError(f"{not_export} (its {MANIFEST} has no list of items and records).")
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        if not isinstance(record, dict) or not OUTPUT_ID_RE.match(str(record.get("output_id", ""))):
            raise EmberError(f"{name}: a record in {MANIFEST} has no valid output id.")
        by_id[record["output_id"]] = record
    for item in items:
        problem = _item_problem(item, by_id, members)
        if problem:
            label = item.get("output_id", "?") if isinstance(item, dict) else "?"
            raise EmberError(f"{name}: the item {label} {problem}. Nothing was imported.")
    return items, by_id


def _item_problem(item: Any, records: dict[str, dict[str, Any]], members: dict[str, zipfile.ZipInfo]) -> str:
    if not isinstance(item, dict) or not OUTPUT_ID_RE.match(str(item.get("output_id", ""))):
        return "has no valid output id"
    if item.get("kind") not in KINDS:
        return f"has an unknown kind ({item.get('kind')!r})"
    if item["output_id"] not in records:
        return "has no record in the manifest"
    lacking = [c for c in ITEM_COLUMNS if c != "extra_json" and c not in item]
    record = records[item["output_id"]]
    lacking += [f"record {k}" for k in (_JSON_COLUMNS.get(c, c) for c in _RECORD_COLUMNS) if k not in record]
    if lacking:
        return f"lacks {', '.join(lacking)}"
    relative = item.get("path", "")
    if not isinstance(relative, str) or (relative and not _owns(relative, item["output_id"])):
        return f"has a path Ember would not write ({relative!r})"
    extra = item.get("extra", {})
    if not isinstance(extra, dict):
        return "has extra fields that are not an object"
    midi = extra.get("midi", "")
    if midi and (not isinstance(midi, str) or not _owns(midi, item["output_id"]) or not midi.endswith(".mid")):
        return f"has a MIDI path Ember would not write ({midi!r})"
    for member in _members_of(item):
        if member not in members:
            return f"lacks its file {member}"
    return ""


def _owns(relative: str, output_id: str) -> bool:
    """Whether ``relative`` is a path Ember writes for this output: ``YYYY-MM-DD/<output_id>.<ext>``."""
    return is_relative_output_path(relative) and relative.split("/")[1].split(".")[0] == output_id


def _members_of(item: dict[str, Any]) -> list[str]:
    paths = [item.get("path", ""), item.get("extra", {}).get("midi", "")]
    return [f"files/{p}" for p in paths if p]


def _check_hash(archive: zipfile.ZipFile, info: zipfile.ZipInfo, item: dict[str, Any], member: str, name: str) -> None:
    if member != f"files/{item['path']}":
        return  # a composition's MIDI has no hash of its own in the item
    digest = hashlib.sha256()
    try:
        with archive.open(info) as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
    except (zipfile.BadZipFile, OSError) as exc:
        raise EmberError(f"{name} is damaged: {member} cannot be read ({exc}). Nothing was imported.") from None
    if digest.hexdigest() != item.get("file_sha256"):
        raise EmberError(
            f"{name}: {member} is not the file its item describes (the SHA-256 differs). Nothing was imported."
        )


def _add_one(library: Library, db: Database, archive: zipfile.ZipFile, item: dict[str, Any], record: dict) -> None:
    """The record first, then the files, then the row: as an output made here, so repair finds nothing odd."""
    values = [
        json.dumps(record[_JSON_COLUMNS[c]], sort_keys=True) if c in _JSON_COLUMNS else record[c]
        for c in _RECORD_COLUMNS
    ]
    row = {c: item[c] for c in ITEM_COLUMNS if c != "extra_json"}
    row["extra_json"] = json.dumps(dict(item.get("extra", {})), sort_keys=True)
    with db.transaction() as conn:
        conn.execute(f"INSERT OR IGNORE INTO output_records VALUES ({', '.join('?' for _ in values)})", values)
    for member in _members_of(item):
        target = library.root / member[len("files/") :]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, archive.read(member))
    with db.transaction() as conn:
        upsert_item(conn, row)
