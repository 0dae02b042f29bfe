"""Conversations persist across restarts and export to Markdown and JSON, atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.errors import EmberError
from engines.jobs import EventKind
from engines.studio import Studio
from engines.text.requests import ChatRequest, ModelOptions, Sampling


def reply(studio: Studio, convo: int, smol: ModelOptions, text: str) -> None:
    studio.conversations.add_user_message(convo, text)
    messages = studio.conversations.get(convo).as_messages()
    request = ChatRequest(smol, messages, sampling=Sampling(temperature=0.0, max_tokens=12, seed=1))
    final = studio.submit(request).wait(60)
    assert final.kind is EventKind.RESULT
    studio.conversations.add_reply(convo, final.data)


def test_conversations_survive_a_restart(ember_home: Path, smol: ModelOptions) -> None:
    first = Studio()
    convo = first.conversations.create("Greetings", smol.path, system_prompt="Be brief.")
    reply(first, convo, smol, "Hello!")
    assert first.close()
    second = Studio()
    try:
        [summary] = second.conversations.list()
        assert summary.title == "Greetings" and summary.message_count == 2
        loaded = second.conversations.get(convo)
        assert loaded.system_prompt == "Be brief."
        assert [m.role for m in loaded.messages] == ["user", "assistant"]
        assert loaded.messages[1].output_id and second.records.get(loaded.messages[1].output_id)
    finally:
        second.close()


def test_export_writes_markdown_and_json_with_every_message(studio: Studio, smol: ModelOptions, tmp_path: Path) -> None:
    convo = studio.conversations.create("Export me", smol.path)
    reply(studio, convo, smol, "Name a colour.")
    answer = studio.conversations.get(convo).messages[1].content
    md = studio.conversations.export_markdown(convo, tmp_path / "c.md").read_text()
    assert "# Export me" in md and "Name a colour." in md and answer in md
    data = json.loads(studio.conversations.export_json(convo, tmp_path / "c.json").read_text())
    assert data["format"] == "ember.conversation/1"
    assert [m["content"] for m in data["messages"]] == ["Name a colour.", answer]


def test_regenerate_removes_only_the_last_reply(studio: Studio, smol: ModelOptions) -> None:
    convo = studio.conversations.create("r", smol.path)
    reply(studio, convo, smol, "Hi")
    assert studio.conversations.remove_last_reply(convo)
    assert [m.role for m in studio.conversations.get(convo).messages] == ["user"]
    assert not studio.conversations.remove_last_reply(convo)


def test_an_export_to_a_folder_that_cannot_be_written_says_so(studio: Studio, tmp_path: Path) -> None:
    convo = studio.conversations.create("x", "m.gguf")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(EmberError, match="cannot write"):
        studio.conversations.export_markdown(convo, blocker / "c.md")


def test_an_export_to_a_full_disk_leaves_no_partial_file(studio: Studio, tmp_path: Path, monkeypatch) -> None:
    import engines.atomic as atomic

    convo = studio.conversations.create("x", "m.gguf")
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "c.md"
    target.write_text("old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(EmberError, match="No space left"):
        studio.conversations.export_markdown(convo, target)
    assert target.read_text() == "old"
    assert [p.name for p in folder.iterdir()] == ["c.md"]
