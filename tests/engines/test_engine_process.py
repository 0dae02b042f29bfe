"""Engines run in engine processes: a native crash ends a job, never the Studio; cancel always wins.

The echo modality (tests/tools/echo_modality) really crashes its engine process: a null-pointer
read (signal 11), abort() (signal 6), the SIGKILL the out-of-memory killer sends, native code
that sleeps without looking at its cancel token. The real text engine is crashed from outside
with the same signal a fault in llama.cpp raises, in the middle of a reply.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from engines.jobs import EventKind, JobEvent
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

WORDS = "one two three four five six seven eight"


def run(studio: Studio, request: Any, timeout_s: float = 60) -> tuple[JobEvent, list[JobEvent]]:
    events: list[JobEvent] = []
    final = studio.submit(request, listener=events.append).wait(timeout_s)
    assert final is not None, "the job never ended"
    return final, events


def echo(then: str = "echo", **kwargs: Any) -> Any:
    from echo_modality import EchoOptions, EchoRequest

    return EchoRequest(EchoOptions(), WORDS, then=then, **kwargs)  # type: ignore[arg-type]


def engine_pid(studio: Studio, lane: str = "cpu") -> int | None:
    return studio.engines.host(lane).pid


def assert_no_zombies() -> None:
    zombies = [c for c in psutil.Process().children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
    assert not zombies, zombies


@pytest.mark.parametrize(
    ("then", "said"),
    [
        ("segfault", "(signal 11)"),
        ("abort", "(signal 6)"),
        ("killed", "(signal 9: the system ended it, most likely because memory ran out)"),
    ],
)
def test_a_native_crash_fails_the_job_keeps_what_was_said_and_the_next_job_gets_a_fresh_engine(
    studio: Studio, echo_modality: Any, then: str, said: str
) -> None:
    final, events = run(studio, echo())
    assert final.kind is EventKind.RESULT
    first_pid = engine_pid(studio)

    final, events = run(studio, echo(then))
    assert final.kind is EventKind.FAILED
    assert final.data == (
        f"The echo engine stopped unexpectedly while generating with Echo (echo) {said}. "
        "Ember restarted it; what it had said is kept."
    )
    # What had streamed before the crash is kept, through the pipeline, as a partial output.
    kept = studio.echoed[-1]
    assert kept.output.text == "one two three" and kept.record.partial
    assert "".join(e.data for e in events if e.kind is EventKind.TOKEN) == "one two three"
    # "Ember restarted it": a fresh process is already there, and serves the next job.
    restarted = engine_pid(studio)
    assert restarted is not None and restarted != first_pid
    final, _ = run(studio, echo())
    assert final.kind is EventKind.RESULT and final.data.output.text == WORDS
    assert_no_zombies()


def test_a_crash_while_loading_says_so(studio: Studio, echo_modality: Any) -> None:
    from echo_modality import EchoOptions, EchoRequest

    final, _ = run(studio, EchoRequest(EchoOptions("broken", crash_on_load=True), WORDS))
    assert final.kind is EventKind.FAILED
    assert final.data.startswith("The echo engine stopped unexpectedly while loading Echo (broken) (signal 11).")
    final, _ = run(studio, echo())
    assert final.kind is EventKind.RESULT


def test_an_engine_that_ignores_cancel_is_ended_within_two_seconds(studio: Studio, echo_modality: Any) -> None:
    events: list[JobEvent] = []
    job = studio.submit(echo("hang"), listener=events.append)
    deadline = time.monotonic() + 30
    # The safety guard shows a word once the next one has begun: "one two" is out when the engine hangs.
    while sum(e.kind is EventKind.TOKEN for e in events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    hung_pid = engine_pid(studio)
    cancelled_at = time.monotonic()
    job.cancel()
    final = job.wait(10)
    waited = time.monotonic() - cancelled_at
    assert final is not None and final.kind is EventKind.CANCELLED
    assert 1.9 <= waited < 3.0, waited
    assert final.data.output.text == "one two three" and final.data.record.partial
    assert not psutil.pid_exists(hung_pid)  # ended and reaped
    final, _ = run(studio, echo())
    assert final.kind is EventKind.RESULT
    assert engine_pid(studio) != hung_pid
    assert_no_zombies()


def test_an_engine_that_stops_on_cancel_keeps_its_process(studio: Studio, echo_modality: Any) -> None:
    events: list[JobEvent] = []
    job = studio.submit(echo(delay_s=0.2), listener=events.append)
    while not any(e.kind is EventKind.TOKEN for e in events):
        time.sleep(0.01)
    pid = engine_pid(studio)
    started = time.monotonic()
    job.cancel()
    final = job.wait(5)
    assert time.monotonic() - started < 0.5
    assert final is not None and final.kind is EventKind.CANCELLED
    assert engine_pid(studio) == pid


def test_an_unexpected_python_error_in_the_engine_is_a_failed_job_not_a_crash(
    studio: Studio, echo_modality: Any
) -> None:
    run(studio, echo())
    pid = engine_pid(studio)
    final, _ = run(studio, echo("raise"))
    assert final.kind is EventKind.FAILED
    assert "ZeroDivisionError: the echo engine divided by zero" in final.data
    assert engine_pid(studio) == pid  # the process was fine: nothing was restarted


def test_models_stay_loaded_between_jobs_in_the_engine_process(studio: Studio, echo_modality: Any) -> None:
    run(studio, echo())
    run(studio, echo())
    ((_options, info),) = [(o, i) for o, i in studio.engines.loaded() if i.kind != "safety"]
    assert info.details["loads"] == 1 and info.details["pid"] == engine_pid(studio) != os.getpid()


def test_a_real_llama_cpp_reply_killed_mid_stream_keeps_the_partial_reply_in_its_conversation(
    studio: Studio, smol: ModelOptions
) -> None:
    convo = studio.conversations.create("crash", smol.path)
    studio.conversations.add_user_message(convo, "Write a very long story about dragons.")
    request = ChatRequest(
        smol,
        (Message("user", "Write a very long story about dragons."),),
        sampling=Sampling(max_tokens=1500, seed=3),
        conversation_id=convo,
    )
    events: list[JobEvent] = []
    job = studio.submit(request, listener=events.append)
    deadline = time.monotonic() + 60
    while sum(e.kind is EventKind.TOKEN for e in events) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(engine_pid(studio), signal.SIGSEGV)  # what a fault inside llama.cpp raises
    final = job.wait(30)
    assert final is not None and final.kind is EventKind.FAILED
    assert final.data.startswith("The text engine stopped unexpectedly while generating with Smollm2")
    assert final.data.endswith("(signal 11). Ember restarted it; your conversation is kept.")
    messages = studio.conversations.get(convo).messages
    assert [m.role for m in messages] == ["user", "assistant"] and messages[-1].partial
    shown = "".join(e.data for e in events if e.kind is EventKind.TOKEN)
    assert messages[-1].content.startswith(shown) and shown
    again = ChatRequest(smol, (Message("user", "Say hello."),), sampling=Sampling(temperature=0.0, max_tokens=8))
    final, _ = run(studio, again)
    assert final.kind is EventKind.RESULT


def test_no_inference_library_loads_in_the_studios_own_process(ember_home: Path, tiny_sd: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from engines.studio import Studio
        from engines.diffusion.requests import DiffusionOptions, ImageRequest
        from engines.models.embedded import SMOLLM2
        from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

        def main():
            studio = Studio()
            chat = ChatRequest(ModelOptions(str(SMOLLM2.path()), 1024), (Message("user", "Hi"),),
                               sampling=Sampling(temperature=0.0, max_tokens=4))
            image = ImageRequest(DiffusionOptions({str(tiny_sd)!r}), "a red cat", seed=1, steps=2, width=64, height=64)
            kinds = [studio.submit(r).wait(120).kind.value for r in (chat, image)]
            studio.close()
            loaded = sorted(m for m in ("llama_cpp", "onnxruntime", "tokenizers") if m in sys.modules)
            print(kinds, loaded)

        if __name__ == "__main__":
            main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['result', 'result'] []"


def test_closing_the_studio_ends_every_engine_process(ember_home: Path, echo_modality: Any) -> None:
    studio = Studio()
    run(studio, echo())
    pids = [h.pid for h in studio.engines.hosts() if h.pid is not None]
    assert pids
    assert studio.close(timeout_s=10)
    for pid in pids:
        assert not psutil.pid_exists(pid)
    assert_no_zombies()


def _shared_memory() -> set[str]:
    folder = Path("/dev/shm")
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_soak_crashes_cancels_and_real_replies_leave_no_zombie_and_no_shared_memory_behind(
    ember_home: Path, echo_modality: Any, smol: ModelOptions
) -> None:
    """40 jobs in a row and at once: normal, crashing, aborting, killed, hanging and cancelled, and real replies."""
    import random

    shm_before = _shared_memory()
    studio = Studio()
    rng = random.Random(7)
    plan = ["echo"] * 14 + ["segfault"] * 5 + ["abort"] * 3 + ["killed"] * 3 + ["raise"] * 3 + ["chat"] * 6
    plan += ["cancel-queued"] * 4 + ["hang"] * 2
    rng.shuffle(plan)
    expected = {
        "echo": EventKind.RESULT,
        "segfault": EventKind.FAILED,
        "abort": EventKind.FAILED,
        "killed": EventKind.FAILED,
        "raise": EventKind.FAILED,
        "chat": EventKind.RESULT,
        "cancel-queued": EventKind.CANCELLED,
        "hang": EventKind.CANCELLED,
    }
    greedy = Sampling(temperature=0.0, max_tokens=6, seed=1)
    try:
        jobs = []
        for what in plan:
            if what == "chat":
                chat = ChatRequest(smol, (Message("user", "Name a colour."),), sampling=greedy)
                jobs.append((what, studio.submit(chat)))
            elif what == "cancel-queued":
                job = studio.submit(echo(delay_s=0.05))
                job.cancel()  # queued behind the others, or just started: it ends cancelled either way
                jobs.append((what, job))
            elif what == "hang":
                job = studio.submit(echo("hang"))
                jobs.append((what, job))
            else:
                jobs.append((what, studio.submit(echo(what))))
        for what, job in jobs:
            if what == "hang":
                deadline = time.monotonic() + 120
                while not job.done and time.monotonic() < deadline:
                    if job.final_event is None and studio.engines.host("cpu").busy:
                        time.sleep(0.3)  # let it reach the native sleep, then cancel it
                        job.cancel()
                        break
                    time.sleep(0.05)
            final = job.wait(120)
            assert final is not None, f"{what} never ended"
            assert final.kind is expected[what], (what, final.kind, final.data)
        final, _ = run(studio, echo())
        assert final.kind is EventKind.RESULT
        assert_no_zombies()
        engines = [h.pid for h in studio.engines.hosts() if h.pid is not None]
        assert len(engines) <= len(studio.engines.hosts())
    finally:
        assert studio.close(timeout_s=10)
    assert_no_zombies()
    assert _shared_memory() <= shm_before, _shared_memory() - shm_before
