"""Conversations: kept in SQLite, exported to Markdown and JSON.

Replies enter the store only as :class:`Delivered` outputs of the pipeline.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engines.atomic import write_atomic
from engines.database import Database
from engines.errors import EmberError
from engines.pipeline import Delivered, require_delivered
from engines.text.requests import Message

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model_path TEXT NOT NULL,
        system_prompt TEXT NOT NULL DEFAULT '',
        settings_json TEXT NOT NULL DEFAULT '{}',
        created_utc TEXT NOT NULL,
        updated_utc TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_utc TEXT NOT NULL,
        output_id TEXT,
        partial INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id)",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: str
    content: str
    created_utc: str
    output_id: str | None
    partial: bool


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    model_path: str
    updated_utc: str
    message_count: int


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model_path: str
    system_prompt: str
    settings: dict[str, Any]
    created_utc: str
    updated_utc: str
    messages: tuple[StoredMessage, ...]

    def as_messages(self) -> tuple[Message, ...]:
        """The turns as engine messages (system prompt excluded)."""
        return tuple(Message(m.role, m.content) for m in self.messages)  # type: ignore[arg-type]


class ConversationStore:
    """Conversations and their messages; every change is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def create(
        self, title: str, model_path: str, system_prompt: str = "", settings: dict[str, Any] | None = None
    ) -> int:
        """Create a conversation and return its id."""
        now = _now()
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, model_path, system_prompt, settings_json, created_utc, updated_utc)"
                " VALUES (?,?,?,?,?,?)",
                (title, model_path, system_prompt, json.dumps(settings or {}), now, now),
            )
            return int(cur.lastrowid)

    def list(self) -> list[ConversationSummary]:
        """Return every conversation, the most recently changed first."""
        rows = self._db.query(
            "SELECT c.id, c.title, c.model_path, c.updated_utc, COUNT(m.id) AS n FROM conversations c "
            "LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id ORDER BY c.updated_utc DESC, c.id DESC"
        )
        return [ConversationSummary(r["id"], r["title"], r["model_path"], r["updated_utc"], r["n"]) for r in rows]

    def get(self, conversation_id: int) -> Conversation:
        """Return the conversation with its messages; raises EmberError if it does not exist."""
        rows = self._db.query("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        if not rows:
            raise EmberError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        c = rows[0]
        messages = self._db.query("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return Conversation(
            id=c["id"],
            title=c["title"],
            model_path=c["model_path"],
            system_prompt=c["system_prompt"],
            settings=json.loads(c["settings_json"]),
            created_utc=c["created_utc"],
            updated_utc=c["updated_utc"],
            messages=tuple(
                StoredMessage(m["id"], m["role"], m["content"], m["created_utc"], m["output_id"], bool(m["partial"]))
                for m in messages
            ),
        )

    def update(
        self,
        conversation_id: int,
        *,
        title: str | None = None,
        model_path: str | None = None,
        system_prompt: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Change the given fields of a conversation."""
        fields = {"title": title, "model_path": model_path, "system_prompt": system_prompt}
        sets = [(k, v) for k, v in fields.items() if v is not None]
        if settings is not None:
            sets.append(("settings_json", json.dumps(settings)))
        if not sets:
            return
        with self._db.transaction() as conn:
            conn.execute(
                f"UPDATE conversations SET {', '.join(k + ' = ?' for k, _ in sets)}, updated_utc = ? WHERE id = ?",
                (*[v for _, v in sets], _now(), conversation_id),
            )

    def delete(self, conversation_id: int) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def add_user_message(self, conversation_id: int, content: str) -> int:
        """Append the person's message and return its id."""
        return self._append(conversation_id, "user", content, None, False)

    def add_reply(self, conversation_id: int, delivered: Delivered) -> int:
        """Append a reply that came out of the pipeline; anything else raises TypeError."""
        delivered = require_delivered(delivered)
        return self._append(
            conversation_id, "assistant", delivered.output.text, delivered.record.output_id, delivered.record.partial
        )

    def extend_reply(self, conversation_id: int, delivered: Delivered) -> int:
        """Append a continuation to the last assistant message (or add one); returns its id."""
        delivered = require_delivered(delivered)
        convo = self.get(conversation_id)
        last = convo.messages[-1] if convo.messages else None
        if last is None or last.role != "assistant":
            return self.add_reply(conversation_id, delivered)
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE messages SET content = ?, output_id = ?, partial = ? WHERE id = ?",
                (
                    last.content + delivered.output.text,
                    delivered.record.output_id,
                    int(delivered.record.partial),
                    last.id,
                ),
            )
            conn.execute("UPDATE conversations SET updated_utc = ? WHERE id = ?", (_now(), conversation_id))
        return last.id

    def find_reply(self, text: str) -> str | None:
        """Return the output id of the stored reply that contains ``text`` (a copied reply or part of one)."""
        snippet = text.strip()[:400]
        if len(snippet) < 20:
            return None
        rows = self._db.query(
            "SELECT output_id FROM messages WHERE role = 'assistant' AND output_id IS NOT NULL "
            "AND instr(content, ?) > 0 ORDER BY id DESC LIMIT 1",
            (snippet,),
        )
        return rows[0]["output_id"] if rows else None

    def remove_last_reply(self, conversation_id: int) -> bool:
        """Delete the last message if it is the assistant's (before regenerating); returns whether it did."""
        convo = self.get(conversation_id)
        if not convo.messages or convo.messages[-1].role != "assistant":
            return False
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM messages WHERE id = ?", (convo.messages[-1].id,))
        return True

    def delete_message(self, message_id: int) -> None:
        """Delete one message by its id (e.g. a prompt the safety filter refused); a missing id is a no-op."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def _append(self, conversation_id: int, role: str, content: str, output_id: str | None, partial: bool) -> int:
        now = _now()
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, created_utc, output_id, partial)"
                " VALUES (?,?,?,?,?,?)",
                (conversation_id, role, content, now, output_id, int(partial)),
            )
            conn.execute("UPDATE conversations SET updated_utc = ? WHERE id = ?", (now, conversation_id))
            return int(cur.lastrowid)

    # -- export -----------------------------------------------------------------------------
    def export_markdown(self, conversation_id: int, path: Path | str) -> Path:
        """Write the conversation as Markdown (atomically) and return the path."""
        convo = self.get(conversation_id)
        lines = [f"# {convo.title}", "", f"*Model: {Path(convo.model_path).name} · {convo.created_utc}*", ""]
        if convo.system_prompt:
            lines += ["**System:**", "", convo.system_prompt, ""]
        names = {"user": "You", "assistant": "Assistant"}
        for m in convo.messages:
            suffix = " *(stopped)*" if m.partial else ""
            lines += [f"## {names.get(m.role, m.role)}{suffix}", "", m.content, ""]
        lines += ["---", "*Written with Ember. Assistant replies were generated by a language model.*", ""]
        return write_atomic(path, "\n".join(lines))

    def export_json(self, conversation_id: int, path: Path | str) -> Path:
        """Write the conversation as JSON (atomically) and return the path."""
        convo = self.get(conversation_id)
        data = asdict(convo)
        data["format"] = "ember.conversation/1"
        return write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
