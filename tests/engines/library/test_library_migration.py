"""A database from before the library (the schema as Ember wrote it until now) is upgraded when the library opens:
its delivered outputs whose files are still there, and its conversation replies, become library items."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from engines.database import Database
from engines.errors import EmberError
from engines.library import Library
from engines.media import AudioOutput, ImageOutput
from engines.migrations import migrate, schema_version
from engines.paths import database_path, outputs_dir
from engines.pipeline import Delivered, OutputPipeline, OutputRecord, Provenance, StageDecision
from engines.provenance.files import dated_output_path, save_audio, save_images

# The tables of an Ember home before the library, as that version created them.
OLD_SCHEMA = """
CREATE TABLE settings (key TEXT PRIMARY KEY, value_json TEXT NOT NULL);
CREATE TABLE output_records (
    output_id TEXT PRIMARY KEY, kind TEXT NOT NULL, created_utc TEXT NOT NULL, job_id INTEGER NOT NULL,
    model_name TEXT NOT NULL, model_path TEXT NOT NULL, model_sha256 TEXT NOT NULL, backend TEXT NOT NULL,
    settings_json TEXT NOT NULL, seed INTEGER, timings_json TEXT NOT NULL, decisions_json TEXT NOT NULL,
    partial INTEGER NOT NULL, delivered INTEGER NOT NULL
);
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, model_path TEXT NOT NULL, system_prompt TEXT NOT NULL DEFAULT '',
    settings_json TEXT NOT NULL DEFAULT '{}', created_utc TEXT NOT NULL, updated_utc TEXT NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL, created_utc TEXT NOT NULL, output_id TEXT,
    partial INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE TABLE safety_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_utc TEXT NOT NULL, job_id INTEGER, output_id TEXT,
    subject TEXT NOT NULL, action TEXT NOT NULL, category TEXT NOT NULL, score REAL NOT NULL,
    checker TEXT NOT NULL, rule TEXT NOT NULL, level TEXT NOT NULL
);
CREATE TABLE downloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT, repo_id TEXT NOT NULL, repo_type TEXT NOT NULL, revision TEXT NOT NULL,
    files_json TEXT NOT NULL, include_json TEXT NOT NULL DEFAULT '[]', expected_json TEXT NOT NULL,
    label TEXT NOT NULL, needs_token INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,
    bytes_done INTEGER NOT NULL DEFAULT 0, bytes_total INTEGER NOT NULL DEFAULT 0, error TEXT,
    created_s REAL NOT NULL, updated_s REAL NOT NULL
);
"""
SHA = "ab" * 32
PASS = (StageDecision("safety", "pass", score=0.0), StageDecision("provenance", "modified", checker="image-mark"))


class OldEmber:
    """Writes what the Ember before the library wrote: records by plain SQL, files with its writers."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path)
        self.conn.executescript(OLD_SCHEMA)
        self.pipeline = OutputPipeline((), [self._insert])

    def _insert(self, record: OutputRecord) -> None:
        p = record.provenance
        self.conn.execute(
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
                json.dumps(p.settings),
                p.seed,
                json.dumps(record.timings),
                json.dumps([asdict(d) for d in PASS]),
                int(record.partial),
                int(record.delivered),
            ),
        )
        self.conn.commit()

    def deliver(self, media: str, output: object, provenance: Provenance) -> Delivered:
        return self.pipeline.open(1, media, None).finish(output, provenance, {"total_s": 1.0})


def old_home() -> dict[str, object]:
    """An Ember home as the old version left it; returns what the upgrade should find."""
    old = OldEmber(database_path())
    pixels = np.full((40, 56, 3), 120, np.uint8)
    image = old.deliver(
        "image",
        ImageOutput(pixels, {"prompt": "an old lighthouse", "negative_prompt": "fog"}),
        Provenance("tiny-sd", "/m/sd", SHA, "CPU", {"prompt": "an old lighthouse", "negative_prompt": "fog"}, 5),
    )
    (image_path,) = save_images([image])
    upscale = old.deliver(
        "image",
        ImageOutput(np.full((80, 112, 3), 120, np.uint8), {}),
        Provenance(
            "animevideo-x2",
            "/m/up",
            SHA,
            "CPU",
            {"scale": 2, "model_scale": 2, "source_output_id": image.record.output_id},
        ),
    )
    (upscale_path,) = save_images([upscale])
    rate = 16_000
    clip = old.deliver(
        "audio",
        AudioOutput(np.zeros(rate, np.float32), rate, "Good morning, sailors."),
        Provenance("heart", "/v/heart", SHA, "CPU", {"voice": "heart", "seed": 1}, 1),
    )
    clip_path = save_audio(clip, dated_output_path(clip, ".wav", "speech"))
    gone = old.deliver(
        "image", ImageOutput(pixels, {"prompt": "deleted by hand"}), Provenance("tiny-sd", "/m", SHA, "CPU", {})
    )
    (gone_path,) = save_images([gone])
    Path(gone_path).unlink()
    from engines.text.requests import TextOutput

    reply = old.deliver(
        "text",
        TextOutput("Lighthouses guide ships.", "stop", 4, 5, 0, 1, 0.0, 0.1),
        Provenance("SmolLM2", "/m/smol.gguf", SHA, "CPU", {"mode": "reply"}, 1),
    )
    old.conn.execute(
        "INSERT INTO conversations (id, title, model_path, created_utc, updated_utc) VALUES (7, 'Sea', '/m', 'x', 'x')"
    )
    old.conn.execute(
        "INSERT INTO messages (conversation_id, role, content, created_utc) VALUES (7, 'user', 'What do they do?', 'x')"
    )
    old.conn.execute(
        "INSERT INTO messages (conversation_id, role, content, created_utc, output_id) "
        "VALUES (7, 'assistant', ?, 'x', ?)",
        ("Lighthouses guide ships.", reply.record.output_id),
    )
    old.pipeline.record_refusal(2, "image", (StageDecision("safety", "blocked", "violence"),))
    old.conn.commit()
    old.conn.close()
    return {
        "image": (image.record.output_id, Path(image_path)),
        "upscale": (upscale.record.output_id, Path(upscale_path)),
        "speech": (clip.record.output_id, clip_path),
        "text": (reply.record.output_id, None),
        "gone": gone.record.output_id,
    }


def test_a_database_from_before_the_library_is_upgraded_and_its_outputs_adopted(ember_home: Path) -> None:
    made = old_home()
    db = Database(database_path())
    try:
        tables = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "library_items" not in tables
        library = Library(db)
        assert schema_version(db, "library") == 1
        items = {item.kind: item for item in library.search()}
        assert set(items) == {"image", "upscale", "speech", "text"}  # not the deleted file, not the refusal
        image_id, image_path = made["image"]
        image = items["image"]
        assert (image.output_id, image.path) == (image_id, str(image_path))
        assert (image.prompt, image.negative_prompt, image.width, image.height) == ("an old lighthouse", "fog", 56, 40)
        assert image.seed == 5 and image.decisions == PASS  # joined from the old record
        import hashlib

        assert image.file_sha256 == hashlib.sha256(image_path.read_bytes()).hexdigest()
        assert items["upscale"].source_output_id == image_id and items["upscale"].width == 112
        assert items["speech"].prompt == "Good morning, sailors." and items["speech"].duration_s == pytest.approx(1.0)
        reply = items["text"]
        assert (reply.text, reply.prompt, reply.extra) == (
            "Lighthouses guide ships.",
            "What do they do?",
            {"conversation_id": 7},
        )
        assert library.get(made["gone"]) is None
        assert [i.output_id for i in library.search("lighthouse ")] == [image_id]
        assert library.thumbnail(image_id) is not None  # the old files are shown like new ones
    finally:
        db.close()


def test_the_upgrade_runs_once(ember_home: Path) -> None:
    old_home()
    db = Database(database_path())
    try:
        Library(db)
        first = db.query("SELECT output_id, seq FROM library_items ORDER BY seq")
        Library(db)
        assert db.query("SELECT output_id, seq FROM library_items ORDER BY seq") == first
        assert schema_version(db, "library") == 1
    finally:
        db.close()


def test_a_library_from_a_newer_ember_is_refused(ember_home: Path) -> None:
    db = Database(database_path())
    try:
        Library(db)
        with db.transaction() as conn:
            conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'library'")
        with pytest.raises(EmberError, match="newer version of Ember"):
            Library(db)
    finally:
        db.close()


def test_a_migration_that_fails_leaves_the_database_as_it_was(ember_home: Path) -> None:
    db = Database(database_path())

    def create(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE first (x)")

    def half_done(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE second (x)")
        raise RuntimeError("disk gone")

    try:
        with pytest.raises(RuntimeError, match="disk gone"):
            migrate(db, "test", [create, half_done])
        tables = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "first" in tables and "second" not in tables
        assert schema_version(db, "test") == 1
    finally:
        db.close()


def test_a_fresh_home_gets_the_library_at_the_newest_version(ember_home: Path) -> None:
    db = Database(database_path())
    try:
        library = Library(db)
        assert schema_version(db, "library") == 1 and library.search() == []
        assert library.root == outputs_dir()
    finally:
        db.close()
