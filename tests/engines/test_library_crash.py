"""SIGKILL in the middle of generating leaves the library consistent, and the queue is offered again.

A real subprocess (tests/tools/make_outputs_until_killed.py) runs a Studio that makes compositions
in a loop; it is killed at a random moment, again and again, on the same Ember home. After each
kill, before anything repairs it, every library row must point at its file with the right hash
(a row is only written after its file); after the repair a next start runs, no temporary file is
left and every file has its row. The jobs the killed process had queued or running are exactly
what the next start offers, and it resumes them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

from engines.database import Database
from engines.library import Library
from engines.library.layout import list_outputs, sha256_of
from engines.paths import database_path, outputs_dir
from engines.pending_jobs import decode

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and process groups are POSIX")

ROOT = Path(__file__).resolve().parents[2]
CHILD = ROOT / "tests" / "tools" / "make_outputs_until_killed.py"
KILLS = 15
BUDGET_S = 55.0


def run_until_killed(seed: int, delay_s: float, log: Path, *, after_first_output: bool = False) -> list[list[str]]:
    """Start the child, SIGKILL it (and then its engine processes) ``delay_s`` after it started (or after its
    first output); return its lines, split."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    lines: list[list[str]] = []
    first_output = threading.Event()
    with open(log, "ab") as errors:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(seed)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        )

        def read() -> None:
            assert child.stdout is not None
            for raw in child.stdout:
                words = raw.decode().split()
                if words:
                    lines.append(words)
                    if words[0] == "done":
                        first_output.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if after_first_output:  # the first start makes the caches (SoundFont, safety model): let it finish once
            assert first_output.wait(120), log.read_text(errors="replace")[-3000:]
        time.sleep(delay_s)
        os.kill(child.pid, signal.SIGKILL)  # the app dies; its engine processes are ended after it
        child.wait(10)
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reader.join(10)
    assert child.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-3000:]
    return lines


def rows_point_at_their_files(db: Database, root: Path) -> int:
    """Check every library row's file is there with the hash the row has; return how many rows have files."""
    if not db.query("SELECT 1 FROM sqlite_master WHERE name = 'library_items'"):
        return 0  # killed before the library's tables were made
    rows = db.query("SELECT path, file_sha256, trashed_utc FROM library_items WHERE path != ''")
    for row in rows:
        path = (root / ".trash" if row["trashed_utc"] else root) / row["path"]
        assert path.is_file(), f"a row points at nothing: {row['path']}"
        assert sha256_of(path) == row["file_sha256"], f"{row['path']} is not the file its row describes"
        assert_whole_wav(path)
    return len(rows)


def assert_whole_wav(path: Path) -> None:
    """The WAV holds every sample its header announces (a half-written file would not)."""
    with wave.open(str(path), "rb") as clip:
        frames = clip.getnframes()
        assert frames > 0 and len(clip.readframes(frames)) == frames * clip.getsampwidth() * clip.getnchannels()


def pending_seeds(db: Database) -> set[int]:
    return {decode(json.loads(r["request_json"])).seed for r in db.query("SELECT request_json FROM pending_jobs")}


def made_seeds(db: Database) -> set[int]:
    rows = db.query(
        "SELECT r.seed FROM library_items li JOIN output_records r ON r.output_id = li.output_id "
        "WHERE li.kind = 'music'"
    )
    return {r["seed"] for r in rows}


def test_sigkill_at_random_moments_leaves_the_library_consistent_and_the_queue_offered(
    ember_home: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tinysoundfont")
    seed = int(os.environ.get("EMBER_CRASH_SEED", time.time_ns() % 1_000_000))
    chance = random.Random(seed)
    again = f" (EMBER_CRASH_SEED={seed} makes the same kills again)"
    started = time.monotonic()
    root = outputs_dir()
    log = tmp_path / "child-stderr.log"
    kills = outputs = offers_checked = resumed = 0
    expected_offer: set[int] | None = None
    for round_ in range(KILLS):
        if round_ >= 5 and time.monotonic() - started > BUDGET_S:
            break
        lines = run_until_killed(1000 * (round_ + 1), chance.uniform(0.3, 3.5), log, after_first_output=round_ == 0)
        kills += 1
        offered = next((set(map(int, words[1:])) for words in lines if words[0] == "offered"), None)
        if offered is not None and expected_offer is not None:
            assert offered == expected_offer, f"round {round_}: offered {offered}, pending were {expected_offer}{again}"
            offers_checked += 1
            resumed += len(offered)
        submitted = {int(words[1]) for words in lines if words[0] == "submitted"}
        done = {int(words[1]) for words in lines if words[0] == "done"}

        db = Database(database_path())
        try:
            rows_point_at_their_files(db, root)  # before any repair: a row never points at nothing
            library = Library(db)
            library.repair(min_temp_age_s=0)  # the killed process writes nothing any more
            listing = list_outputs(root)
            assert not listing.temporary, f"temporary files left: {listing.temporary}{again}"
            assert not list(library.thumbnail_dir.glob("*/.*.tmp")), again
            owned = {r["output_id"] for r in db.query("SELECT output_id FROM library_items")}
            strays = [f.relative for f in listing.files if not f.trashed and f.output_id not in owned]
            assert not strays, f"files without a row after repair: {strays}{again}"
            outputs = rows_point_at_their_files(db, root)
            pending = (
                pending_seeds(db) if db.query("SELECT 1 FROM sqlite_master WHERE name = 'pending_jobs'") else set()
            )
            assert not pending & done, f"a job that had ended is still pending{again}"
            unaccounted = (submitted - done) - pending - made_seeds(db)
            assert not unaccounted, f"jobs lost by the crash: {unaccounted}{again}"
            expected_offer = pending
        finally:
            db.close()
    print(
        f"\n{kills} kills in {time.monotonic() - started:.1f} s: {outputs} outputs kept, "
        f"{offers_checked} offers of pending jobs checked ({resumed} jobs resumed)"
    )
    assert kills >= 5 and outputs > 0, again
