"""The record store: one row for every output the pipeline saw, delivered or blocked."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from engines.database import Database
from engines.pipeline import OutputRecord, Provenance, StageDecision, mark_of

_SCHEMA = """
CREATE TABLE IF NOT EXISTS output_records (
    output_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    model_name TEXT NOT NULL,
    model_path TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    backend TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    seed INTEGER,
    timings_json TEXT NOT NULL,
    decisions_json TEXT NOT NULL,
    partial INTEGER NOT NULL,
    delivered INTEGER NOT NULL
)
"""


class RecordStore:
    """Keeps :class:`OutputRecord` rows; used as a record sink of the pipeline."""

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as conn:
            conn.execute(_SCHEMA)

    def __call__(self, record: OutputRecord) -> None:
        self.add(record)

    def add(self, record: OutputRecord) -> None:
        """Store one record in one transaction; raises EmberError if the disk refuses."""
        p = record.provenance
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO output_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.output_id,
                    record.kind,
                    record.created_utc,
                    record.job_id,
                    p.model_name,
                    p.model_path,
                    p.model_sha256,
                    p.backend,
                    json.dumps(p.settings, sort_keys=True, default=str),
                    p.seed,
                    json.dumps(record.timings, sort_keys=True),
                    json.dumps([asdict(d) for d in record.decisions]),
                    int(record.partial),
                    int(record.delivered),
                ),
            )

    def get(self, output_id: str) -> OutputRecord | None:
        """Return the record with this id, or None."""
        rows = self._db.query("SELECT * FROM output_records WHERE output_id = ?", (output_id,))
        return _from_row(rows[0]) if rows else None

    def find_by_mark(self, mark: int, bits: int = 32) -> list[OutputRecord]:
        """Return the records whose output id starts with the ``bits``-bit ``mark`` a watermark carried."""
        digits = bits // 4
        prefix = f"{mark >> (bits - digits * 4):0{digits}x}" if digits else ""
        rows = self._db.query("SELECT * FROM output_records WHERE output_id LIKE ? LIMIT 50", (prefix + "%",))
        return [r for r in (_from_row(row) for row in rows) if mark_of(r.output_id, bits) == mark]

    def recent(self, limit: int = 50) -> list[OutputRecord]:
        """Return the newest records first."""
        rows = self._db.query("SELECT * FROM output_records ORDER BY created_utc DESC LIMIT ?", (limit,))
        return [_from_row(r) for r in rows]


def _from_row(row: Any) -> OutputRecord:
    return OutputRecord(
        output_id=row["output_id"],
        kind=row["kind"],
        created_utc=row["created_utc"],
        job_id=row["job_id"],
        provenance=Provenance(
            model_name=row["model_name"],
            model_path=row["model_path"],
            model_sha256=row["model_sha256"],
            backend=row["backend"],
            settings=json.loads(row["settings_json"]),
            seed=row["seed"],
        ),
        timings=json.loads(row["timings_json"]),
        decisions=tuple(StageDecision(**d) for d in json.loads(row["decisions_json"])),
        partial=bool(row["partial"]),
        delivered=bool(row["delivered"]),
    )
