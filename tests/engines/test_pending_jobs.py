"""Queued and running jobs are written down, so that what a crash interrupts is offered again at the next start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engines.database import Database
from engines.jobs import EventKind, JobEvent
from engines.music.requests import ComposeRequest
from engines.paths import database_path
from engines.pending_jobs import PendingJobs, decode, encode
from engines.speech.requests import SpeechOptions, SpeechRequest
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling
from engines.upscale.requests import UpscaleOptions, UpscaleRequest


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_requests_are_kept_as_json_and_come_back_equal() -> None:
    requests = [
        ComposeRequest(key="D minor", style="ballad", bars=2, seed=1, title="Dusk"),
        ChatRequest(
            ModelOptions("/m/smol.gguf", 2048),
            (Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Name a colour.")),
            system_prompt="Be brief.",
            sampling=Sampling(temperature=0.7, max_tokens=24, seed=5),
            conversation_id=4,
        ),
        SpeechRequest(SpeechOptions("heart"), "Hello there.", seed=1),
    ]
    for request in requests:
        again = decode(encode(request))
        assert again == request and type(again) is type(request)
    chat = decode(encode(requests[1]))
    assert chat.conversation_id == 4 and isinstance(chat.messages, tuple)
    upscale = UpscaleRequest(UpscaleOptions("animevideo-x2"), "/pictures/cat.png", scale=2, source_output_id="ab" * 16)
    assert decode(encode(upscale)).image == "/pictures/cat.png"


def test_a_request_holding_pixels_in_memory_is_not_kept(ember_home: Path) -> None:
    db = Database(database_path())
    try:
        pending = PendingJobs(db)
        upscale = UpscaleRequest(UpscaleOptions("animevideo-x2"), np.zeros((8, 8, 3), np.uint8), scale=2)
        assert pending.add(upscale) is None
        assert pending.add(object()) is None  # not a modality's request
        assert db.query("SELECT COUNT(*) AS n FROM pending_jobs")[0]["n"] == 0
    finally:
        db.close()


@pytest.mark.parametrize(
    "data",
    [
        {"__dataclass__": "os:system", "fields": {}},
        {"__dataclass__": "subprocess:Popen", "fields": {"args": "true"}},
        {"__dataclass__": "engines.paths:data_dir", "fields": {}},
        {"__enum__": "builtins:int", "value": 1},
    ],
)
def test_only_embers_own_dataclasses_are_made_from_a_row(data: dict) -> None:
    with pytest.raises(ValueError):
        decode(data)


def test_a_job_is_written_down_while_it_waits_and_forgotten_when_it_ends(studio: Studio) -> None:
    pytest.importorskip("tinysoundfont")
    seen: list[int] = []

    def listen(event: JobEvent) -> None:
        if event.kind is EventKind.QUEUED:
            seen.append(studio.db.query("SELECT COUNT(*) AS n FROM pending_jobs")[0]["n"])

    final = studio.submit(ComposeRequest(bars=1, seed=2), listener=listen).wait(120)
    assert final is not None and final.kind is EventKind.RESULT
    assert seen == [1]
    assert studio.db.query("SELECT COUNT(*) AS n FROM pending_jobs")[0]["n"] == 0
    assert studio.pending_from_last_run() == []


def test_what_a_dead_process_left_pending_is_offered_and_can_be_resumed(ember_home: Path) -> None:
    pytest.importorskip("tinysoundfont")
    db = Database(database_path())
    pending = PendingJobs(db)
    first, second = ComposeRequest(bars=1, seed=11), ComposeRequest(bars=1, seed=12)
    for request in (first, second):
        pending.add(request, priority=2)
    with db.transaction() as conn:
        conn.execute("UPDATE pending_jobs SET owner_pid = ?", (dead_pid(),))
    db.close()

    studio = Studio()
    try:
        assert studio.pending_from_last_run() == [first, second]
        (job,) = studio.resume_pending([second])
        assert job.priority == 2
        final = job.wait(120)
        assert final is not None and final.kind is EventKind.RESULT
        assert final.data.delivered.record.provenance.seed == 12
        assert studio.pending_from_last_run() == []
    finally:
        studio.close()
    again = Studio()
    try:
        assert again.pending_from_last_run() == []  # the one not chosen was forgotten too
    finally:
        again.close()


def test_pending_jobs_of_a_process_still_running_are_not_offered(ember_home: Path) -> None:
    db = Database(database_path())
    try:
        pending = PendingJobs(db)
        pending.add(ComposeRequest(bars=1))
        assert pending.orphaned() == []  # this process: still running
        assert len(pending.orphaned(alive=lambda pid: False)) == 0  # ... even if the check said otherwise
        with db.transaction() as conn:
            conn.execute("UPDATE pending_jobs SET owner_pid = ?", (dead_pid(),))
        assert [p.request for p in pending.orphaned()] == [ComposeRequest(bars=1)]
        with db.transaction() as conn:
            conn.execute('UPDATE pending_jobs SET request_json = \'{"__dataclass__": "os:system", "fields": {}}\'')
        assert pending.orphaned() == []  # a row that cannot be read is dropped, not offered
        assert db.query("SELECT COUNT(*) AS n FROM pending_jobs")[0]["n"] == 0
    finally:
        db.close()


def test_discarding_forgets_what_was_pending(ember_home: Path) -> None:
    db = Database(database_path())
    PendingJobs(db).add(ComposeRequest(bars=1, seed=3))
    with db.transaction() as conn:
        conn.execute("UPDATE pending_jobs SET owner_pid = ?", (dead_pid(),))
    db.close()
    studio = Studio()
    try:
        assert len(studio.pending_from_last_run()) == 1
        studio.discard_pending()
        assert studio.pending_from_last_run() == []
        assert studio.db.query("SELECT COUNT(*) AS n FROM pending_jobs")[0]["n"] == 0
    finally:
        studio.close()
