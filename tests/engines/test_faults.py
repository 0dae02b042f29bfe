"""Faults: a full disk while an output is saved, a model file deleted or changed under a loaded model, and
the engine process killed at random moments. Each ends its job with a message for a person, the Studio
carries on, and nothing already saved is lost.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from full_disk import FullDisk

from engines.jobs import EventKind, JobEvent
from engines.music.requests import ComposeRequest
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

HI = (Message("user", "Say hello."),)
SHORT = Sampling(temperature=0.0, max_tokens=6)


def _saved_files(home: Path) -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in home.rglob("*")
        if p.is_file() and p.suffix in (".wav", ".mid", ".png")
    }


def test_a_full_disk_while_saving_fails_the_job_plainly_and_loses_nothing_saved(
    studio: Studio, ember_home: Path
) -> None:
    first = studio.submit(ComposeRequest(bars=4, seed=1)).wait(120)
    assert first is not None and first.kind is EventKind.RESULT, first
    before = _saved_files(ember_home)
    assert before  # the piece's WAV and MIDI

    real_fdopen = os.fdopen
    with pytest.MonkeyPatch.context() as disk:  # only while this job saves
        disk.setattr("engines.atomic.os.fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
        full = studio.submit(ComposeRequest(bars=4, seed=2)).wait(120)

    assert full is not None and full.kind is EventKind.FAILED, full
    assert "Nothing was half-written" in full.data and "free some disk space" in full.data, full.data
    after = _saved_files(ember_home)
    assert {p: h for p, h in after.items() if p in before} == before  # what was saved is as it was
    assert not [p for p in ember_home.rglob("*.tmp")]  # no temporary file left behind
    again = studio.submit(ComposeRequest(bars=4, seed=3)).wait(120)
    assert again is not None and again.kind is EventKind.RESULT, again


@pytest.mark.parametrize("change", ["deleted", "changed"])
def test_a_model_file_deleted_or_changed_under_a_loaded_model_never_takes_the_studio_down(
    studio: Studio, smollm2_path: str, tmp_path: Path, change: str
) -> None:
    copy = tmp_path / "model.gguf"
    shutil.copyfile(smollm2_path, copy)
    options = ModelOptions(str(copy), context_tokens=512)
    loaded = studio.submit(ChatRequest(options, HI, sampling=SHORT)).wait(120)
    assert loaded is not None and loaded.kind is EventKind.RESULT, loaded

    if change == "deleted":
        copy.unlink()
    else:  # rewritten in place: the same size, other bytes in the middle
        with open(copy, "r+b") as f:
            f.seek(copy.stat().st_size // 2)
            f.write(os.urandom(4096))
    final = studio.submit(ChatRequest(options, HI, sampling=SHORT)).wait(120)

    assert final is not None and final.kind in (EventKind.RESULT, EventKind.FAILED), final
    if final.kind is EventKind.FAILED:
        assert "Traceback" not in final.data and "unexpected error" not in final.data, final.data
    fresh = studio.submit(ChatRequest(ModelOptions(smollm2_path, context_tokens=512), HI, sampling=SHORT)).wait(120)
    assert fresh is not None and fresh.kind is EventKind.RESULT, fresh


def test_the_engine_process_killed_at_random_moments_fails_only_that_job(studio: Studio, smol: ModelOptions) -> None:
    chance = random.Random(int(os.environ.get("EMBER_FAULT_SEED", "20")))
    long = Sampling(temperature=0.7, max_tokens=200, seed=1)
    ended: list[str] = []
    for _ in range(6):
        events: list[JobEvent] = []
        job = studio.submit(ChatRequest(smol, (Message("user", "Tell me a long story."),), sampling=long),
                            listener=events.append)  # fmt: skip
        time.sleep(chance.uniform(0.0, 1.5))  # while it loads, prompts or streams: wherever it is
        pid = studio.engines.host("cpu").pid
        if pid is not None:
            try:
                os.kill(pid, chance.choice([signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT]))
            except ProcessLookupError:
                pass
        final = job.wait(120)
        assert final is not None, "a job never ended after its engine process was killed"
        assert final.kind in (EventKind.RESULT, EventKind.FAILED), final
        if final.kind is EventKind.FAILED:
            assert "stopped unexpectedly" in final.data and "Ember restarted it" in final.data, final.data
        ended.append(final.kind.value)
    assert "failed" in ended  # at least one kill landed mid-job
    after = studio.submit(ChatRequest(smol, HI, sampling=SHORT)).wait(120)
    assert after is not None and after.kind is EventKind.RESULT, after
