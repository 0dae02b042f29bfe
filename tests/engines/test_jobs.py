"""The job queue under load: ordering, lanes, priorities, cancellation, failures, shutdown."""

from __future__ import annotations

import pickle
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from engines.errors import Cancelled, ContextOverflowError, EmberError, Failure, InvalidRequestError
from engines.jobs import EventKind, Job, JobEvent, JobQueue


@dataclass(frozen=True)
class CountRequest:
    """A request for the counting runner: emit ``tokens`` tokens, ``delay_s`` apart."""

    tokens: int = 3
    delay_s: float = 0.0
    lane: str = "cpu"
    fail: str = ""


def counting_runner(job: Job) -> str:
    req: CountRequest = job.request
    if req.fail == "ember":
        raise EmberError("This model file is damaged. Download it again.")
    if req.fail == "bug":
        raise ZeroDivisionError("division by zero")
    if req.fail == "overflow":
        raise ContextOverflowError("Your message needs 5,000 tokens, more than the 4,096-token context.")
    if req.fail == "schema":
        raise InvalidRequestError("The JSON schema for the reply cannot be used.", "json_schema")
    for i in range(req.tokens):
        if job.cancel_token.cancelled:
            raise Cancelled(None)
        job.emit(EventKind.TOKEN, str(i))
        if req.delay_s:
            time.sleep(req.delay_s)
    return "done"


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[int, list[JobEvent]] = defaultdict(list)

    def __call__(self, event: JobEvent) -> None:
        with self.lock:
            self.events[event.job_id].append(event)


def make_queue() -> tuple[JobQueue, Recorder]:
    q = JobQueue(counting_runner, route=lambda r: r.lane)
    rec = Recorder()
    q.subscribe(rec)
    return q, rec


def assert_well_formed(events: list[JobEvent]) -> None:
    kinds = [e.kind for e in events]
    assert [e.seq for e in events] == list(range(len(events))), "events out of order or duplicated"
    assert kinds[0] is EventKind.QUEUED
    assert sum(k.terminal for k in kinds) == 1 and kinds[-1].terminal, kinds
    if len(kinds) > 2:
        assert kinds[1] is EventKind.STARTED


def test_hundreds_of_jobs_with_random_cancels_end_exactly_once_in_order() -> None:
    rng = random.Random(7)
    before = set(threading.enumerate())
    q, rec = make_queue()
    jobs = [
        q.submit(
            CountRequest(
                tokens=rng.randint(0, 20), delay_s=rng.choice([0, 0, 0.0005]), lane=rng.choice(["cpu", "gpu"])
            ),
            priority=rng.randint(0, 3),
        )
        for _ in range(400)
    ]
    cancelled = rng.sample(jobs, 120)
    for job in cancelled:
        time.sleep(rng.random() * 0.002)
        job.cancel()
    for job in jobs:
        assert job.wait(30) is not None, f"job {job.id} never ended (deadlock?)"
    assert q.shutdown(5)
    assert not [t for t in threading.enumerate() if t not in before], "threads left behind"
    assert len(rec.events) == len(jobs)
    for job in jobs:
        events = rec.events[job.id]
        assert_well_formed(events)
        tokens = [e.data for e in events if e.kind is EventKind.TOKEN]
        assert tokens == [str(i) for i in range(len(tokens))], "a token was lost or duplicated"
        final = events[-1].kind
        if job not in cancelled:
            assert final is EventKind.RESULT
            assert len(tokens) == job.request.tokens
        else:
            assert final in (EventKind.RESULT, EventKind.CANCELLED)


def test_a_long_job_on_one_lane_does_not_hold_the_other() -> None:
    q, _ = make_queue()
    long = q.submit(CountRequest(tokens=1000, delay_s=0.01, lane="gpu"))
    quick = q.submit(CountRequest(tokens=3, lane="cpu"))
    assert quick.wait(2) is not None and quick.final_event.kind is EventKind.RESULT
    assert not long.done
    long.cancel()
    assert long.wait(2).kind is EventKind.CANCELLED
    assert q.shutdown()


def test_higher_priority_runs_first_and_equal_priority_in_order() -> None:
    q, rec = make_queue()
    gate = q.submit(CountRequest(tokens=20, delay_s=0.005))  # occupies the lane while the others queue
    low = [q.submit(CountRequest(tokens=1), priority=0) for _ in range(3)]
    high = q.submit(CountRequest(tokens=1), priority=5)
    for job in [gate, *low, high]:
        job.wait(5)
    starts = {
        job_id: next(e.time_s for e in events if e.kind is EventKind.STARTED) for job_id, events in rec.events.items()
    }
    order = sorted([high, *low], key=lambda j: starts[j.id])
    assert order == [high, *low]
    assert q.shutdown()


def test_cancelling_a_queued_job_ends_it_at_once_without_running() -> None:
    q, rec = make_queue()
    blocker = q.submit(CountRequest(tokens=1000, delay_s=0.01))
    waiting = q.submit(CountRequest(tokens=5))
    started = time.monotonic()
    waiting.cancel()
    assert waiting.wait(1).kind is EventKind.CANCELLED
    assert time.monotonic() - started < 0.2
    assert [e.kind for e in rec.events[waiting.id]] == [EventKind.QUEUED, EventKind.CANCELLED]
    blocker.cancel()
    assert q.shutdown()


def test_a_running_job_stops_within_200_ms_of_cancel() -> None:
    q, _ = make_queue()
    job = q.submit(CountRequest(tokens=10_000, delay_s=0.001))
    time.sleep(0.05)
    started = time.monotonic()
    job.cancel()
    assert job.wait(1).kind is EventKind.CANCELLED
    assert time.monotonic() - started < 0.2
    assert q.shutdown()


def test_an_engine_that_raises_fails_its_job_with_a_readable_message_and_the_worker_lives_on() -> None:
    q, _ = make_queue()
    foreseen = q.submit(CountRequest(fail="ember"))
    bug = q.submit(CountRequest(fail="bug"))
    after = q.submit(CountRequest(tokens=2))
    assert foreseen.wait(5).kind is EventKind.FAILED
    assert foreseen.final_event.data == "This model file is damaged. Download it again."
    assert bug.wait(5).kind is EventKind.FAILED
    message = bug.final_event.data
    assert "ZeroDivisionError" in message and "try again" in message
    assert after.wait(5).kind is EventKind.RESULT
    assert q.shutdown()


def test_a_failed_job_keeps_the_type_of_its_error_beside_the_message() -> None:
    q, _ = make_queue()
    jobs = {fail: q.submit(CountRequest(fail=fail)) for fail in ("ember", "bug", "overflow", "schema")}
    failures = {fail: job.wait(5).data for fail, job in jobs.items()}
    assert all(isinstance(f, Failure) and isinstance(f, str) for f in failures.values())
    assert {fail: f.code for fail, f in failures.items()} == {
        "ember": "error",
        "bug": "unexpected",
        "overflow": "context_length_exceeded",
        "schema": "invalid_request",
    }
    assert failures["overflow"] == "Your message needs 5,000 tokens, more than the 4,096-token context."
    assert failures["schema"].param == "json_schema" and failures["overflow"].param == ""
    # Both cross a process boundary whole: an engine's error, and the failure made of it.
    again = pickle.loads(pickle.dumps(failures["schema"]))
    assert (again, again.code, again.param) == (failures["schema"], "invalid_request", "json_schema")
    error = pickle.loads(pickle.dumps(InvalidRequestError("No grammar.", "tools")))
    assert (type(error), str(error), error.param, error.code) == (
        InvalidRequestError,
        "No grammar.",
        "tools",
        "invalid_request",
    )
    assert q.shutdown()


def test_a_failing_listener_does_not_stop_the_others() -> None:
    q, rec = make_queue()

    def broken(_event: JobEvent) -> None:
        raise RuntimeError("listener bug")

    q.subscribe(broken)
    job = q.submit(CountRequest(tokens=2))
    assert job.wait(5).kind is EventKind.RESULT
    assert [e.kind for e in rec.events[job.id]][-1] is EventKind.RESULT
    assert q.shutdown()


def test_shutdown_cancels_waiting_and_running_jobs_and_refuses_new_ones() -> None:
    before = set(threading.enumerate())
    q, _ = make_queue()
    running = q.submit(CountRequest(tokens=10_000, delay_s=0.001))
    waiting = [q.submit(CountRequest(tokens=1)) for _ in range(5)]
    time.sleep(0.02)
    assert q.shutdown(5)
    assert running.final_event.kind is EventKind.CANCELLED
    assert all(j.final_event.kind is EventKind.CANCELLED for j in waiting)
    assert not [t for t in threading.enumerate() if t not in before]
    try:
        q.submit(CountRequest())
    except RuntimeError as exc:
        assert "shut down" in str(exc)
    else:
        raise AssertionError("submit after shutdown was accepted")


def test_the_idle_callback_runs_once_the_last_jobs_events_are_delivered_and_never_while_work_waits() -> None:
    seen: list[str] = []
    q: JobQueue

    def on_idle() -> None:
        seen.append(f"idle (queue idle: {q.idle()})")

    q = JobQueue(counting_runner, route=lambda r: r.lane, on_idle=on_idle)
    q.subscribe(lambda e: seen.append(e.kind.value) if e.kind.terminal else None)
    try:
        jobs = [q.submit(CountRequest(tokens=3, delay_s=0.02, lane=lane)) for lane in ("cpu", "gpu", "cpu")]
        for job in jobs:
            assert job.wait(5) is not None
        deadline = time.monotonic() + 5
        while not any(s.startswith("idle") for s in seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        # Three results, then the idle call: none while the gpu lane or the second cpu job still ran.
        # (Two lanes ending at the same instant may both see the queue idle: a second call does no harm.)
        assert seen[:3] == ["result"] * 3 and seen[3:] and set(seen[3:]) == {"idle (queue idle: True)"}, seen
    finally:
        assert q.shutdown()
