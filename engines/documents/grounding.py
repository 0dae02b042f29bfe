"""Passages into the chat: the numbered passages before the question, their citations, and what a click opens.

The passages go into the person's newest message, not the system prompt: the text engine keeps
that message whole when a long conversation is trimmed (it drops the oldest turns first), and
small models follow what is next to the question far better than a system prompt. The stored
conversation keeps the message as the person wrote it; only the request carries the passages,
so earlier turns' passages do not fill the context of later ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from engines.documents.search import Passage

# Budgets are counted in the embedder's word pieces; chat models' tokenizers differ (SmolLM2's
# gives 0.98-1.04 of MiniLM's on the project's docs), so each passage is counted at this much more.
TOKEN_MARGIN = 1.2
INSTRUCTION = (
    "Answer the question at the end using the numbered passages from the person's documents. "
    "Cite the passages you use by their numbers, like [1]. "
    "If the passages do not contain the answer, say that the documents do not say."
)
QUESTION = "Question: "
_CITED = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class Citation:
    """A numbered source of a reply: the file, where the passage is in it, and what to call it."""

    path: str
    page: int | None  # PDFs: the 1-based page where the passage starts
    start: int  # character offsets into the document's text (as engines/documents/extract.py reads it)
    end: int
    title: str
    number: int = 0  # [1], [2], ... in the prompt and in the reply
    line: int = 1  # text files: the 1-based line where the passage starts
    heading: str = ""

    @property
    def label(self) -> str:
        """How the chat names the source: "README.md, Safety filter > Layers, line 88" or "manual.pdf, page 3"."""
        parts = [Path(self.path).name]
        if self.heading:
            parts.append(self.heading)
        parts.append(f"page {self.page}" if self.page is not None else f"line {self.line}")
        return ", ".join(parts)


@dataclass(frozen=True)
class OpenTarget:
    """What the window opens for a citation: the file, at the page (PDF) or line (text), the passage selected.

    ``url`` is the file's URL, with ``#page=N`` for a PDF (what PDF viewers and browsers honour).
    """

    path: str
    page: int | None
    line: int
    start: int
    end: int
    url: str


@dataclass(frozen=True)
class GroundedPrompt:
    """The passages as the model reads them, and the citations they stand for."""

    context: str  # the text to put before the question: instruction, then the numbered passages
    question: str
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]  # what was put in, merged where passages overlapped

    @property
    def message(self) -> str:
        """The person's message as the model gets it: the passages, then the question."""
        if not self.citations:
            return self.question
        return f"{self.context}{QUESTION}{self.question}"


def passage_budget(context_tokens: int, max_tokens: int, used_tokens: int = 0) -> int:
    """How many tokens of passages a chat request can carry: half of what its context leaves, at most 1,600.

    ``used_tokens`` is what the rest of the prompt needs (system prompt, the question, the turns
    to keep). The other half stays for the conversation, which the engine trims from the oldest turn.
    """
    room = context_tokens - max_tokens - used_tokens
    return max(0, min(1600, room // 2))


def merge_overlapping(passages: Sequence[Passage]) -> list[Passage]:
    """Passages of one file that overlap or touch become one (in the better one's place, best first)."""
    merged: list[Passage] = []
    for passage in passages:
        for i, kept in enumerate(merged):
            if kept.path == passage.path and passage.start <= kept.end and kept.start <= passage.end:
                merged[i] = _union(kept, passage)
                break
        else:
            merged.append(passage)
    return merged


def _union(a: Passage, b: Passage) -> Passage:
    first, second = (a, b) if a.start <= b.start else (b, a)
    text = first.text + second.text[first.end - second.start :] if second.end > first.end else first.text
    return replace(
        a,
        text=text,
        start=first.start,
        end=max(first.end, second.end),
        page=first.page,
        line=first.line,
        heading=first.heading,
        tokens=a.tokens + b.tokens,  # an upper bound (the overlap is counted twice)
        found_by=tuple(dict.fromkeys(a.found_by + b.found_by)),
    )


def _source(passage: Passage) -> str:
    name = Path(passage.path).name
    where = [f'From "{name}"']
    if passage.heading:
        where.append(f'section "{passage.heading}"')
    if passage.page is not None:
        where.append(f"page {passage.page}")
    return ", ".join(where)


def prompt_with_passages(question: str, passages: Sequence[Passage], budget_tokens: int) -> GroundedPrompt:
    """Number the best passages that fit ``budget_tokens`` (best first) and write them before the question.

    Returns the context (the instruction to answer from the passages, cite them by number and
    say when they do not hold the answer; then ``[1] From "file", section ...`` and each
    passage), and one :class:`Citation` per number. With no passage that fits, the context is
    empty and the message is the question alone.
    """
    chosen: list[Passage] = []
    used = int(len(INSTRUCTION) / 4)
    for passage in merge_overlapping(passages):
        cost = int(passage.tokens * TOKEN_MARGIN) + 16  # + its source line
        if used + cost > budget_tokens:
            continue  # a shorter passage further down may still fit
        chosen.append(passage)
        used += cost
    if not chosen:
        return GroundedPrompt("", question, (), ())
    blocks = [INSTRUCTION, ""]
    citations = []
    for number, passage in enumerate(chosen, 1):
        blocks += [f"[{number}] {_source(passage)}:", passage.text.strip(), ""]
        citations.append(
            Citation(
                path=passage.path,
                page=passage.page,
                start=passage.start,
                end=passage.end,
                title=passage.title,
                number=number,
                line=passage.line,
                heading=passage.heading,
            )
        )
    return GroundedPrompt("\n".join(blocks) + "\n", question, tuple(citations), tuple(chosen))


def open_target(citation: Citation) -> OpenTarget:
    """Where a click on a citation goes: the file, its page or line, and the passage's offsets."""
    url = Path(citation.path).as_uri()
    if citation.page is not None:
        url += f"#page={citation.page}"
    return OpenTarget(citation.path, citation.page, citation.line, citation.start, citation.end, url)


def cited_numbers(reply: str, citations: Sequence[Citation]) -> list[int]:
    """The citation numbers a reply names ("as [2] says"), in order, only those that exist."""
    known = {c.number for c in citations}
    return list(dict.fromkeys(n for n in (int(m) for m in _CITED.findall(reply)) if n in known))
