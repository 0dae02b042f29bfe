"""The safety audit log: every decision the filter makes, never the content it judged.

A row says when, which job and output, what was checked (a prompt, an output, a
preview), the action, the category, the score, the checker and rule names, and the
level the policy had. There is no column that could hold text or pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.database import Database
from engines.pipeline import utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS safety_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    job_id INTEGER,
    output_id TEXT,
    subject TEXT NOT NULL,
    action TEXT NOT NULL,
    category TEXT NOT NULL,
    score REAL NOT NULL,
    checker TEXT NOT NULL,
    rule TEXT NOT NULL,
    level TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class AuditEntry:
    time_utc: str
    job_id: int | None
    output_id: str | None
    subject: str  # "prompt", "text", "image", "preview", "audio"
    action: str  # "allow", "block", "blur"
    category: str
    score: float
    checker: str
    rule: str
    level: str


class AuditLog:
    """Append-only log of safety decisions in Ember's database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as conn:
            conn.execute(_SCHEMA)

    def add(self, entry: AuditEntry) -> None:
        """Append one decision in one transaction; raises EmberError if the disk refuses."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO safety_audit (time_utc, job_id, output_id, subject, action, category, score, checker, "
                "rule, level) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.time_utc or utc_now(),
                    entry.job_id,
                    entry.output_id,
                    entry.subject,
                    entry.action,
                    entry.category,
                    float(entry.score),
                    entry.checker,
                    entry.rule,
                    entry.level,
                ),
            )

    def recent(self, limit: int = 100) -> list[AuditEntry]:
        """Return the newest entries first."""
        rows = self._db.query(
            "SELECT time_utc, job_id, output_id, subject, action, category, score, checker, rule, level "
            "FROM safety_audit ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AuditEntry(**dict(row)) for row in rows]
