"""No output reaches a person except through the OutputPipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engines.errors import OutputBlocked
from engines.jobs import EventKind, JobEvent
from engines.pipeline import Delivered, OutputContext, OutputRecord, Provenance, StageDecision, require_delivered
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling
from tests.conftest import models_loaded

SAMPLING = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=32, seed=1)


class WordGuard:
    """A stage that withholds streamed text from the first occurrence of a word on."""

    name = "word-guard"

    def __init__(self, word: str, hold: int = 0) -> None:
        self.word = word
        self.hold = hold

    def watch(self, context: OutputContext) -> Any:
        guard = self

        class Watcher:
            def release(self, text: str) -> int:
                if guard.word in text:
                    raise OutputBlocked(StageDecision(guard.name, "blocked", "test", 1.0, "word", "word seen"))
                return max(0, len(text) - guard.hold)

        return Watcher()

    def process(self, output: Any, context: OutputContext) -> tuple[Any, StageDecision]:
        if self.word in output.text:
            raise OutputBlocked(StageDecision(self.name, "blocked", "test", 1.0, "word", "word seen"))
        return output, StageDecision(self.name, "pass")


class Stamp:
    """A stage that changes the output, as the watermark stage will."""

    name = "stamp"

    def watch(self, context: OutputContext) -> None:
        return None

    def process(self, output: Any, context: OutputContext) -> tuple[Any, StageDecision]:
        from dataclasses import replace

        return replace(output, text=output.text + " [stamped]"), StageDecision(self.name, "modified")


def chat(studio: Studio, smol: ModelOptions) -> tuple[JobEvent, list[JobEvent]]:
    events: list[JobEvent] = []
    request = ChatRequest(smol, (Message("user", "What is the capital of France?"),), sampling=SAMPLING)
    final = studio.submit(request, listener=events.append).wait(60)
    assert final is not None
    return final, events


def test_delivered_outputs_can_only_be_made_by_the_pipeline() -> None:
    record = OutputRecord("x", "text", "", 0, Provenance("", "", "", "", {}), {}, (), False, True)
    with pytest.raises(TypeError, match="OutputPipeline"):
        Delivered("text", record)
    with pytest.raises(TypeError, match="OutputPipeline"):
        require_delivered("raw engine text")


def a_later_word(text: str) -> str:
    """A word from the second half of ``text``: what the test's guard will stop on."""
    words = [w.strip(".,;:!?\"'()") for w in text.split()]
    later = [w for w in words[len(words) // 2 :] if len(w) >= 4] or [w for w in words if w]
    assert later, f"the reply has no words: {text!r}"
    return max(later, key=len)


def test_a_stream_that_turns_unsafe_is_stopped_and_the_rest_withheld(
    studio: Studio, smol: ModelOptions, ember_home: Path
) -> None:
    final, events = chat(studio, smol)
    full = final.data.output.text
    # A word the model says later in its reply: greedy with one seed, the same reply comes again on
    # this machine (another CPU's kernels may say other words: only "the same twice" is relied on).
    word = a_later_word(full)
    studio.pipeline.add_stage(WordGuard(word))
    final, events = chat(studio, smol)
    assert final.kind is EventKind.BLOCKED
    assert final.data.stage == "word-guard" and final.data.reason == "word seen"
    shown = "".join(e.data for e in events if e.kind is EventKind.TOKEN)
    assert word not in shown and full.startswith(shown)
    assert not any(e.kind is EventKind.RESULT for e in events)
    blocked = [r for r in studio.records.recent() if not r.delivered]
    assert len(blocked) == 1 and blocked[0].decisions[0].action == "blocked"


def test_text_held_back_by_a_watcher_is_released_only_when_the_output_passes(
    studio: Studio, smol: ModelOptions
) -> None:
    studio.pipeline.add_stage(WordGuard("never-said", hold=10))
    final, events = chat(studio, smol)
    assert final.kind is EventKind.RESULT
    shown = "".join(e.data for e in events if e.kind is EventKind.TOKEN)
    assert shown == final.data.output.text


def test_stages_run_in_order_and_their_decisions_are_recorded(studio: Studio, smol: ModelOptions) -> None:
    studio.pipeline.add_stage(WordGuard("never-said"))
    studio.pipeline.add_stage(Stamp())
    final, _ = chat(studio, smol)
    delivered = final.data
    assert delivered.output.text.endswith(" [stamped]")
    assert [d.stage for d in delivered.record.decisions] == ["safety", "provenance", "word-guard", "stamp"]
    assert studio.records.get(delivered.record.output_id).decisions == delivered.record.decisions


def test_a_blocked_reply_never_reaches_the_window_the_store_or_the_disk(
    qtbot: Any, studio: Studio, smol: ModelOptions, ember_home: Path
) -> None:
    from desktop.bridge import EventBridge

    word = a_later_word(chat(studio, smol)[0].data.output.text)
    studio.pipeline.add_stage(WordGuard(word))
    bridge = EventBridge(studio)
    seen: list[JobEvent] = []
    bridge.event.connect(seen.append)
    convo = studio.conversations.create("t", smol.path)
    studio.conversations.add_user_message(convo, "What is the capital of France?")
    files_before = {p for p in ember_home.rglob("*") if p.is_file()}
    request = ChatRequest(
        smol, (Message("user", "What is the capital of France?"),), sampling=SAMPLING, conversation_id=convo
    )
    op = bridge.submit(request)  # the Studio would keep a delivered reply in the conversation
    qtbot.waitUntil(lambda: op.job.done and any(e.kind.terminal for e in seen), timeout=60_000)
    bridge.detach()
    assert [e.kind for e in seen][-1] is EventKind.BLOCKED
    assert word not in "".join(e.data for e in seen if e.kind is EventKind.TOKEN)
    assert [m.role for m in studio.conversations.get(convo).messages] == ["user"]
    new_files = {p for p in ember_home.rglob("*") if p.is_file()} - files_before
    assert all(p.name.startswith("ember.sqlite3") for p in new_files), new_files


def test_sinks_refuse_anything_that_did_not_come_out_of_the_pipeline(studio: Studio) -> None:
    convo = studio.conversations.create("t", "m.gguf")
    with pytest.raises(TypeError):
        studio.conversations.add_reply(convo, "raw text")  # type: ignore[arg-type]
    assert studio.conversations.get(convo).messages == ()


def test_a_request_refused_at_submission_ends_blocked_with_a_record(studio: Studio, smol: ModelOptions) -> None:
    def refuse(request: Any) -> None:
        raise OutputBlocked(StageDecision("safety", "blocked", "test", 1.0, "rules", "refused prompt"))

    studio.add_request_check(refuse)
    events: list[JobEvent] = []
    request = ChatRequest(smol, (Message("user", "anything"),), sampling=SAMPLING)
    final = studio.submit(request, listener=events.append).wait(5)
    assert final is not None and final.kind is EventKind.BLOCKED
    assert [e.kind for e in events] == [EventKind.QUEUED, EventKind.BLOCKED]
    assert not models_loaded(studio)  # no engine ran
    (record,) = studio.records.recent()
    assert not record.delivered and record.decisions[0].reason == "refused prompt"
