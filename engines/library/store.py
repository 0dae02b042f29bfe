"""The library: every output a person made, findable, in one SQLite file with the files beside it.

``library_items`` holds a row for each output (image, upscale, speech, music, transcript, chat
reply): where its file is, what it shows, the words to search. What made it (settings, seed,
backend, timings, the safety and watermark decisions) is the output's record in
``output_records``, joined, never copied. The files stay where the modality sinks write them:
the outputs folder, a folder a day, ``<output id>.<ext>``; the trash is ``.trash/`` in it.

Nothing is written half. A sink writes its file first (temporary file and rename), then the
row in one transaction, so a crash leaves at worst a file without a row; :meth:`Library.repair`
(run as the Studio starts) adopts it from its record, and drops rows whose file a person
deleted by hand. A row never points at nothing for long.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from engines.database import Database
from engines.errors import EmberError
from engines.library import thumbnails
from engines.library.adopt import KINDS
from engines.library.layout import OUTPUT_ID_RE, TRASH, list_outputs, sha256_of
from engines.library.schema import COMPONENT, adopt_files, migrations, upsert_item
from engines.library.search import match_expression
from engines.migrations import migrate
from engines.pipeline import Delivered, StageDecision, require_delivered, utc_now

log = logging.getLogger(__name__)

FILELESS_KINDS = frozenset({"text", "transcript"})
THUMBNAIL_SIZES = range(16, 2049)
DEFAULT_THUMBNAIL = 256
_PREPARED_SIZES = 3


@dataclass(frozen=True)
class LibraryItem:
    """One output as the gallery shows it: the library row joined with the output's record.

    ``path`` is absolute ("" for a chat reply or a transcript, which have no file); for an item
    in the trash it is where the file lies in the trash. ``settings``, ``seed``, ``backend``,
    ``timings`` and ``decisions`` (the safety and watermark :class:`StageDecision`\\ s) are the
    record's; the watermark carries ``output_id``. ``extra`` holds what only one kind has:
    ``conversation_id`` of a reply, ``midi`` (absolute path) of a composition, and for every item
    with a file ``c2pa``: what its Content Credentials said when it was kept (see :attr:`c2pa`).
    """

    output_id: str
    kind: str
    path: str
    created_utc: str
    prompt: str
    negative_prompt: str
    model_name: str
    model_sha256: str
    seed: int | None
    backend: str
    settings: dict
    timings: dict
    decisions: tuple
    width: int
    height: int
    duration_s: float
    text: str
    source_output_id: str
    trashed: bool
    extra: dict = field(default_factory=dict)
    file_sha256: str = ""

    @property
    def c2pa(self) -> str:
        """ "valid", "invalid" or "none" (the file carried no manifest); "" for an item without a file."""
        return str(self.extra.get("c2pa", "")) if self.path else ""


@dataclass(frozen=True)
class RepairReport:
    """What :meth:`Library.repair` changed; all zero when the library was consistent."""

    dropped: int = 0  # rows whose file was gone
    adopted: int = 0  # files without a row, added from their record
    trashed_orphans: int = 0  # files without a row or a record, moved to the trash
    moved: int = 0  # rows whose trash state followed where their file was
    temporary_removed: int = 0  # temporary files of interrupted writes

    @property
    def changed(self) -> bool:
        return any((self.dropped, self.adopted, self.trashed_orphans, self.moved, self.temporary_removed))


_SELECT = (
    "SELECT li.*, r.model_sha256, r.seed, r.backend, r.settings_json, r.timings_json, r.decisions_json "
    "FROM library_items li JOIN output_records r ON r.output_id = li.output_id"
)


class Library:
    """The library over the Studio's database (the same SQLite file) and the outputs folder ``root``.

    Opening it brings the schema up to date (engines/library/schema.py); a database from before
    the library has its earlier outputs adopted then. Thread-safe as the Database is.
    """

    def __init__(self, db: Database, root: Path | str | None = None, *, thumbnail_dir: Path | str | None = None):
        from engines.paths import cache_dir, outputs_dir
        from engines.records import RecordStore

        self._db = db
        # Not made here: an outputs folder on a drive that is not plugged in must not keep Ember from
        # starting (chat needs no folder); saving a file says so when it happens.
        self.root = Path(root) if root is not None else outputs_dir(create=False)
        self.thumbnail_dir = Path(thumbnail_dir) if thumbnail_dir is not None else cache_dir() / "thumbnails"
        # The sizes made as each output is added: the default and the latest the gallery asked for.
        asked = [e for e in _scandir(self.thumbnail_dir) if e.name.isdigit() and int(e.name) in THUMBNAIL_SIZES]
        asked.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        self._thumbnail_sizes = list(dict.fromkeys([DEFAULT_THUMBNAIL, *(int(e.name) for e in asked)]))
        del self._thumbnail_sizes[_PREPARED_SIZES:]
        RecordStore(db)  # output_records must exist before the library's rows can reference it
        migrate(db, COMPONENT, migrations(self.root))

    @property
    def trash_dir(self) -> Path:
        return self.root / TRASH

    # -- adding ---------------------------------------------------------------------------------
    def add(
        self,
        item: Delivered,
        path: Path | str | None,
        *,
        kind: str,
        prompt: str = "",
        negative_prompt: str = "",
        text: str = "",
        source_output_id: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> LibraryItem:
        """Add a delivered output whose file is already written at ``path`` (None for a reply); return its item.

        The prompts default to the output's own parameters (a clip's: its text); the size or length
        is read from the output; a composition's ``.mid`` beside its WAV is noted in ``extra``. One
        transaction; adding an output twice replaces the first row. The thumbnails are made then.
        Raises TypeError for anything that did not come through the OutputPipeline, ValueError for
        an unknown kind or a file outside the outputs folder, EmberError when the file cannot be
        read or the database refuses.
        """
        delivered = require_delivered(item)
        if kind not in KINDS:
            raise ValueError(f"Unknown library kind {kind!r}; one of {', '.join(KINDS)}.")
        record, output = delivered.record, delivered.output
        parameters = getattr(output, "parameters", None) or {}
        settings = record.provenance.settings
        extras = dict(extra or {})
        relative, digest = "", ""
        if path:
            file = Path(path)
            relative = self._relative(file)
            try:
                digest = sha256_of(file)
            except OSError as exc:
                raise EmberError(
                    f"Ember cannot read {file} to keep it in the library ({exc.strerror or exc})."
                ) from exc
            extras.setdefault("c2pa", credentials_state(file))
            midi = file.with_suffix(".mid")
            if kind == "music" and midi.exists():
                extras["midi"] = relative.rsplit(".", 1)[0] + ".mid"
        width, height = _size_of(output)
        row = {
            "output_id": record.output_id,
            "kind": kind,
            "path": relative,
            "file_sha256": digest,
            "prompt": prompt or str(parameters.get("prompt") or _spoken(output, kind)),
            "negative_prompt": negative_prompt or str(parameters.get("negative_prompt") or ""),
            "model_name": record.provenance.model_name,
            "created_utc": record.created_utc,
            "width": width,
            "height": height,
            "duration_s": _duration_of(output),
            "text": text,
            "source_output_id": source_output_id or str(settings.get("source_output_id") or ""),
            "extra_json": json.dumps(extras, sort_keys=True, default=str),
        }
        with self._db.transaction() as conn:
            upsert_item(conn, row)
        if relative:
            for size in list(self._thumbnail_sizes):  # made now, on the worker thread, so the gallery only reads them
                self.thumbnail(record.output_id, size)
        added = self.get(record.output_id)
        assert added is not None
        return added

    def _relative(self, file: Path) -> str:
        try:
            return file.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            raise ValueError(
                f"{file} is not in the outputs folder {self.root}; the library keeps only files there."
            ) from None

    # -- reading --------------------------------------------------------------------------------
    def search(
        self,
        text: str = "",
        *,
        kinds: Sequence[str] = (),
        model: str = "",
        since: str = "",
        until: str = "",
        trashed: bool = False,
        limit: int = 200,
        offset: int = 0,
    ) -> list[LibraryItem]:
        """Return the items that match, newest first.

        ``text`` is searched in prompts, negative prompts, model names and reply texts (every word
        must occur; the last may be the start of a word); any text is safe, quotes and operators
        are taken as words. ``kinds`` and ``model`` filter exactly; ``since``/``until`` are
        ISO dates (``2025-01-31``, both days included) or UTC timestamps. ``trashed`` shows the trash
        instead. Raises EmberError if the database cannot be read.
        """
        where, params = self._where(text, kinds, model, since, until, trashed)
        return self._select(where, params, limit, offset)

    def count(
        self,
        text: str = "",
        *,
        kinds: Sequence[str] = (),
        model: str = "",
        since: str = "",
        until: str = "",
        trashed: bool = False,
    ) -> int:
        """Return how many items :meth:`search` with the same filters would find without a limit."""
        where, params = self._where(text, kinds, model, since, until, trashed)
        rows = self._query(f"SELECT COUNT(*) AS n FROM library_items li WHERE {where}", tuple(params))
        return int(rows[0]["n"])

    def get(self, output_id: str) -> LibraryItem | None:
        """Return the item of this output (in the trash or not), or None."""
        rows = self._query(f"{_SELECT} WHERE li.output_id = ?", (output_id,))
        return self._item(rows[0]) if rows else None

    def models(self) -> list[str]:
        """The model names of the items outside the trash, sorted (for the model filter)."""
        rows = self._query(
            "SELECT DISTINCT model_name FROM library_items WHERE trashed_utc IS NULL AND model_name != '' "
            "ORDER BY model_name COLLATE NOCASE"
        )
        return [r["model_name"] for r in rows]

    def kinds(self) -> list[str]:
        """The kinds that items outside the trash have, in the order of :data:`KINDS` (for the kind filter)."""
        present = {r["kind"] for r in self._query("SELECT DISTINCT kind FROM library_items WHERE trashed_utc IS NULL")}
        return [k for k in KINDS if k in present]

    def _where(
        self, text: str, kinds: Sequence[str], model: str, since: str, until: str, trashed: bool
    ) -> tuple[str, list[Any]]:
        clauses = ["li.trashed_utc IS NOT NULL" if trashed else "li.trashed_utc IS NULL"]
        params: list[Any] = []
        expression = match_expression(text)
        if expression:
            # "+" keeps SQLite from fetching every match by seq and sorting them all: it walks the items
            # newest first and stops at a page, checking each against the (once materialised) matches.
            # A common word is then as fast as a rare one (measured in ``main.py bench library``).
            clauses.append("+li.seq IN (SELECT rowid FROM library_search WHERE library_search MATCH ?)")
            params.append(expression)
        if kinds:
            clauses.append(f"li.kind IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        if model:
            clauses.append("li.model_name = ?")
            params.append(model)
        if since:
            clauses.append("li.created_utc >= ?")
            params.append(_time_bound(since, end=False))
        if until:
            clauses.append("li.created_utc < ?" if _is_day(until) else "li.created_utc <= ?")
            params.append(_time_bound(until, end=True))
        return " AND ".join(clauses), params

    def _select(self, where: str, params: Sequence[Any], limit: int, offset: int) -> list[LibraryItem]:
        rows = self._query(
            f"{_SELECT} WHERE {where} ORDER BY li.created_utc DESC, li.seq DESC LIMIT ? OFFSET ?",
            (*params, max(0, int(limit)), max(0, int(offset))),
        )
        return [self._item(r) for r in rows]

    def _query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        try:
            return self._db.query(sql, params)
        except sqlite3.Error as exc:
            raise EmberError(f"Ember could not read its library ({exc}).") from exc

    def _item(self, row: sqlite3.Row) -> LibraryItem:
        trashed = row["trashed_utc"] is not None
        extra = json.loads(row["extra_json"] or "{}")
        if extra.get("midi"):
            extra["midi"] = str(self._absolute(extra["midi"], trashed))
        return LibraryItem(
            output_id=row["output_id"],
            kind=row["kind"],
            path=str(self._absolute(row["path"], trashed)) if row["path"] else "",
            created_utc=row["created_utc"],
            prompt=row["prompt"],
            negative_prompt=row["negative_prompt"],
            model_name=row["model_name"],
            model_sha256=row["model_sha256"],
            seed=row["seed"],
            backend=row["backend"],
            settings=json.loads(row["settings_json"]),
            timings=json.loads(row["timings_json"]),
            decisions=tuple(StageDecision(**d) for d in json.loads(row["decisions_json"])),
            width=row["width"],
            height=row["height"],
            duration_s=row["duration_s"],
            text=row["text"],
            source_output_id=row["source_output_id"],
            trashed=trashed,
            extra=extra,
            file_sha256=row["file_sha256"],
        )

    def _absolute(self, relative: str, trashed: bool) -> Path:
        return (self.trash_dir if trashed else self.root) / relative

    # -- thumbnails -------------------------------------------------------------------------------
    def thumbnail_path(self, output_id: str, size: int = DEFAULT_THUMBNAIL) -> Path:
        """Where the thumbnail of this output at this size is cached (it may not exist yet)."""
        return self.thumbnail_dir / str(int(size)) / f"{output_id}.jpg"

    def thumbnail(self, output_id: str, size: int = DEFAULT_THUMBNAIL) -> Path | None:
        """Return the cached JPEG thumbnail (made now if need be), or None for a reply, a transcript,
        an unknown output or a file that cannot be read.

        Images and upscales: the picture scaled to fit ``size`` x ``size``; speech and music: the
        waveform drawn at ``size`` x ``size``. A size asked for is made from then on as each output
        is added (the default and the two sizes asked for last), so the gallery's grid finds it
        cached. Raises ValueError for a size outside 16 to 2048.
        """
        if int(size) not in THUMBNAIL_SIZES:
            raise ValueError(f"A thumbnail is 16 to 2048 pixels, not {size}.")
        if not OUTPUT_ID_RE.match(output_id):
            return None
        target = self.thumbnail_path(output_id, size)
        if thumbnails.cached(target):
            return target
        rows = self._query("SELECT kind, path, trashed_utc FROM library_items WHERE output_id = ?", (output_id,))
        if not rows or rows[0]["kind"] in FILELESS_KINDS or not rows[0]["path"]:
            return None
        source = self._absolute(rows[0]["path"], rows[0]["trashed_utc"] is not None)
        if int(size) not in self._thumbnail_sizes:
            self._thumbnail_sizes = [DEFAULT_THUMBNAIL, int(size), *self._thumbnail_sizes[1:]][:_PREPARED_SIZES]
        try:
            return thumbnails.write_thumbnail(source, rows[0]["kind"], target, int(size))
        except Exception as exc:  # a damaged or vanished file: the grid shows no picture, the item stays
            log.warning("No thumbnail for %s (%s: %s).", source, type(exc).__name__, exc)
            return None

    def thumbnails(self, output_ids: Sequence[str], size: int = DEFAULT_THUMBNAIL) -> dict[str, Path | None]:
        """Return :meth:`thumbnail` for each id (a screenful at once): cached ones at once, the missing ones
        made on a few threads (decoding and encoding release the GIL). Raises ValueError as :meth:`thumbnail`."""
        found = {i: self.thumbnail_path(i, size) for i in output_ids if OUTPUT_ID_RE.match(i)}
        result: dict[str, Path | None] = {i: None for i in output_ids}
        missing = []
        for output_id, path in found.items():
            if thumbnails.cached(path):
                result[output_id] = path
            else:
                missing.append(output_id)
        if len(missing) == 1:
            result[missing[0]] = self.thumbnail(missing[0], size)
        elif missing:
            from concurrent.futures import ThreadPoolExecutor

            workers = min(len(missing), os.cpu_count() or 2, 8)
            with ThreadPoolExecutor(workers, thread_name_prefix="ember-thumbnails") as pool:
                for output_id, path in zip(missing, pool.map(lambda i: self.thumbnail(i, size), missing), strict=True):
                    result[output_id] = path
        return result

    # -- the trash --------------------------------------------------------------------------------
    def trash(self, output_id: str) -> None:
        """Move the item's file (and a composition's MIDI) into the trash folder and mark it trashed.

        An item whose file is already gone is dropped (logged). Raises EmberError for an unknown
        item or a file that cannot be moved.
        """
        row = self._row(output_id)
        if row["trashed_utc"] is not None:
            return
        if not self._move_files(row, to_trash=True):
            return
        with self._db.transaction() as conn:
            conn.execute("UPDATE library_items SET trashed_utc = ? WHERE output_id = ?", (utc_now(), output_id))

    def restore(self, output_id: str) -> None:
        """Put a trashed item's file back where it was and show it again; raises EmberError as :meth:`trash`."""
        row = self._row(output_id)
        if row["trashed_utc"] is None:
            return
        if not self._move_files(row, to_trash=False):
            return
        with self._db.transaction() as conn:
            conn.execute("UPDATE library_items SET trashed_utc = NULL WHERE output_id = ?", (output_id,))

    def empty_trash(self, older_than_days: float | None = None) -> int:
        """Delete for good the items in the trash (only those trashed more than ``older_than_days`` ago, if
        given), their files and thumbnails; return how many items went.

        The output records stay: a watermarked copy found elsewhere can still be traced. Emptying the
        whole trash also removes files left there without a row.
        """
        sql = "SELECT output_id, path, extra_json FROM library_items WHERE trashed_utc IS NOT NULL"
        params: tuple = ()
        if older_than_days is not None:
            cutoff = datetime.now(timezone.utc) - timedelta(days=older_than_days)
            sql += " AND trashed_utc < ?"
            params = (cutoff.isoformat(timespec="milliseconds"),)
        rows = self._query(sql, params)
        ids = [r["output_id"] for r in rows]
        with self._db.transaction() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                conn.execute(f"DELETE FROM library_items WHERE output_id IN ({', '.join('?' for _ in chunk)})", chunk)
        # The rows go first: a crash now leaves only files in the trash without a row, which the next
        # emptying removes; never a row pointing at nothing.
        for row in rows:
            for relative in _files_of(row):
                _unlink(self.trash_dir / relative)
            self._forget_thumbnails(row["output_id"])
        if older_than_days is None:
            owned = {r["output_id"] for r in self._query("SELECT output_id FROM library_items")}
            for found in list_outputs(self.root).files:
                if found.trashed and found.output_id not in owned:
                    _unlink(self.trash_dir / found.relative)
        return len(rows)

    def _row(self, output_id: str) -> sqlite3.Row:
        rows = self._query(
            "SELECT output_id, path, trashed_utc, extra_json FROM library_items WHERE output_id = ?", (output_id,)
        )
        if not rows:
            raise EmberError("That item is no longer in the library (it may have been deleted).")
        return rows[0]

    def _move_files(self, row: sqlite3.Row, *, to_trash: bool) -> bool:
        """Move the row's files to (or from) the trash; False when the main file is gone (the row is dropped)."""
        files = _files_of(row)
        for index, relative in enumerate(files):
            source = self._absolute(relative, trashed=not to_trash)
            target = self._absolute(relative, trashed=to_trash)
            if not source.exists() and target.exists():
                continue  # moved already (a crash came before the row changed)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
            except FileNotFoundError:
                if index == 0:
                    log.warning("%s is gone; its library item is dropped.", source)
                    with self._db.transaction() as conn:
                        conn.execute("DELETE FROM library_items WHERE output_id = ?", (row["output_id"],))
                    return False
            except OSError as exc:
                where = "into the trash" if to_trash else "back"
                raise EmberError(f"Ember could not move {source.name} {where} ({exc.strerror or exc}).") from exc
        return True

    def _forget_thumbnails(self, output_id: str) -> None:
        if self.thumbnail_dir.is_dir():
            for folder in self.thumbnail_dir.iterdir():
                _unlink(folder / f"{output_id}.jpg")

    # -- after a crash ----------------------------------------------------------------------------
    def repair(self, *, min_temp_age_s: float = 60.0) -> RepairReport:
        """Make rows and files agree again; cheap enough for every start (one directory listing a day).

        Rows whose file is gone are dropped (logged); rows whose file is in the other place (a crash
        in the middle of trash or restore) follow it; files without a row are adopted from their
        output record, or moved to the trash when there is none; temporary files of interrupted
        writes older than ``min_temp_age_s`` are deleted (younger ones may belong to another Ember
        process writing now). Returns what changed.
        """
        # Rows first, then the listing: a row is only added after its file is written, so every row
        # read here has its file in the listing unless the file really is gone.
        rows = self._query("SELECT output_id, path, trashed_utc, extra_json FROM library_items WHERE path != ''")
        listing = list_outputs(self.root)
        now = time.time()
        removed = 0
        stale = [*listing.temporary, *self._thumbnail_temporaries()]
        for temporary in stale:
            try:
                if now - temporary.stat().st_mtime >= min_temp_age_s:
                    temporary.unlink()
                    removed += 1
            except OSError:
                pass
        live = {f.relative for f in listing.files if not f.trashed}
        in_trash = {f.relative for f in listing.files if f.trashed}
        drop: list[str] = []
        flip: list[tuple[str, bool]] = []
        lost_midi: list[tuple[str, str]] = []
        kept: set[str] = set()
        for row in rows:
            trashed = row["trashed_utc"] is not None
            here, there = (in_trash, live) if trashed else (live, in_trash)
            relative = row["path"]
            if relative in here or self._absolute(relative, trashed).exists():
                kept.add(row["output_id"])
            elif relative in there or self._absolute(relative, not trashed).exists():
                flip.append((row["output_id"], not trashed))
                kept.add(row["output_id"])
            else:
                log.warning("The library's file %s is gone; its item is dropped.", relative)
                drop.append(row["output_id"])
                continue
            if '"midi"' not in row["extra_json"]:
                continue
            extra = json.loads(row["extra_json"])
            if extra.get("midi") and extra["midi"] not in live and extra["midi"] not in in_trash:
                extra.pop("midi")
                lost_midi.append((row["output_id"], json.dumps(extra, sort_keys=True)))
        orphans = {f.output_id for f in listing.files if not f.trashed and not f.companion} - kept
        adopted = 0
        if drop or flip or lost_midi or orphans:
            with self._db.transaction() as conn:
                for output_id in drop:
                    conn.execute("DELETE FROM library_items WHERE output_id = ?", (output_id,))
                now_utc = utc_now()
                for output_id, to_trash in flip:
                    conn.execute(
                        "UPDATE library_items SET trashed_utc = ? WHERE output_id = ?",
                        (now_utc if to_trash else None, output_id),
                    )
                for output_id, extra_json in lost_midi:
                    conn.execute("UPDATE library_items SET extra_json = ? WHERE output_id = ?", (extra_json, output_id))
                if orphans:
                    adopted = adopt_files(conn, self.root, only=orphans)
        for output_id, to_trash in flip:  # a composition's MIDI follows its WAV
            self._follow_companions(output_id, to_trash)
        unowned = [f for f in listing.files if not f.trashed and f.output_id not in kept]
        owned = {r["output_id"] for r in self._query("SELECT output_id FROM library_items")} if unowned else set()
        trashed_orphans = 0
        for found in unowned:
            if found.output_id in owned:
                continue
            source, target = self.root / found.relative, self.trash_dir / found.relative
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                trashed_orphans += 1
                log.warning("%s had no output record; it was moved to the library's trash.", found.relative)
            except OSError:
                pass
        report = RepairReport(len(drop), adopted, trashed_orphans, len(flip), removed)
        if report.changed:
            log.info("Library repaired: %s", report)
        return report

    def _follow_companions(self, output_id: str, trashed: bool) -> None:
        rows = self._query("SELECT output_id, path, extra_json FROM library_items WHERE output_id = ?", (output_id,))
        for relative in _files_of(rows[0])[1:] if rows else []:
            source, target = self._absolute(relative, not trashed), self._absolute(relative, trashed)
            if source.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)

    def _thumbnail_temporaries(self) -> Iterable[Path]:
        found: list[Path] = []
        for folder in _scandir(self.thumbnail_dir):
            if folder.is_dir():
                found += [
                    Path(e.path) for e in _scandir(Path(folder.path)) if e.name[:1] == "." and e.name[-4:] == ".tmp"
                ]
        return found

    # -- export and import ------------------------------------------------------------------------
    def export_zip(self, path: Path | str, output_ids: Sequence[str] | None = None) -> Path:
        """Write the items (all outside the trash, or those named) to a zip another Ember can import; see
        engines/library/archive.py. Returns the path; raises EmberError when it cannot be written."""
        from engines.library.archive import export_zip

        return export_zip(self, self._db, Path(path), output_ids)

    def import_zip(self, path: Path | str) -> int:
        """Add the items of an exported zip (ids kept, ones already here skipped); return how many were added.

        Raises EmberError for a file that is not an Ember library export, or one with unsafe paths."""
        from engines.library.archive import import_zip

        return import_zip(self, self._db, Path(path))


def _files_of(row: sqlite3.Row | Mapping[str, Any]) -> list[str]:
    """The relative paths of a row's files: the output's own first, then its companions."""
    files = [row["path"]] if row["path"] else []
    midi = json.loads(row["extra_json"] or "{}").get("midi")
    if midi:
        files.append(midi)
    return files


def _scandir(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("Could not delete %s (%s).", path, exc)


def _spoken(output: Any, kind: str) -> str:
    """What a clip says it is (the words spoken, a piece's description): its prompt when none is given."""
    return str(getattr(output, "text", "") or "") if kind in ("speech", "music") else ""


def _size_of(output: Any) -> tuple[int, int]:
    pixels = getattr(output, "pixels", None)
    if pixels is not None and getattr(pixels, "ndim", 0) >= 2:
        return int(pixels.shape[1]), int(pixels.shape[0])
    return 0, 0


def _duration_of(output: Any) -> float:
    samples, rate = getattr(output, "samples", None), getattr(output, "sample_rate", 0)
    if samples is not None and rate:
        return float(len(samples)) / float(rate)
    return float(getattr(output, "duration_s", 0.0) or 0.0)


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _time_bound(text: str, *, end: bool) -> str:
    """A filter bound as the stored timestamps compare: a day's start (or for ``end`` the next day's start).

    Raises ValueError for text that is neither a date nor a timestamp.
    """
    if _is_day(text):
        day = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
        return day.isoformat()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2025-01-31) or a time (2025-01-31T12:00:00Z).") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def credentials_state(file: Path) -> str:
    """What ``file``'s Content Credentials say: "valid", "invalid" or "none" (no manifest, or a kind Ember
    does not sign). Read when the output is kept: 1-2 ms for a PNG or a WAV."""
    from engines.provenance.content_credentials import read_manifest

    try:
        report = read_manifest(file)
    except (EmberError, ValueError):
        return "none"
    if not report.present:
        return "none"
    return "valid" if report.valid else "invalid"
