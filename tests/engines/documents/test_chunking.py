"""Reading documents and cutting them into passages: exact offsets, headings, pages, sizes the embedder reads whole."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from engines.documents.chunking import MAX_TOKENS, chunk_document
from engines.documents.embedding import Tokens
from engines.documents.extract import UnreadableDocument, extract
from engines.documents.store import embedding_input
from tests.engines.documents.conftest import encrypt_pdf, write_pdf

ROOT = Path(__file__).resolve().parents[3]


def test_every_passage_is_an_exact_slice_of_the_text_at_its_line(tokens: Tokens) -> None:
    doc = extract(ROOT / "README.md")
    chunks = chunk_document(doc, tokens.count, tokens.split)
    assert len(chunks) > 50
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert doc.text.count("\n", 0, c.start) + 1 == c.line
        assert c.text == c.text.strip()
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # Everything but headings and blank lines is in some passage.
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    left = "".join(ch for ch, hit in zip(doc.text, covered, strict=True) if not hit)
    assert all(line.startswith("#") or not line.strip() for line in left.splitlines())


def test_no_passage_is_longer_than_the_embedder_reads(tokens: Tokens) -> None:
    doc = extract(ROOT / "README.md")
    chunks = chunk_document(doc, tokens.count, tokens.split)
    assert max(c.tokens for c in chunks) <= MAX_TOKENS
    assert all(c.tokens == tokens.count(c.text) for c in chunks)
    for c in chunks:  # with its title and heading line, and [CLS]/[SEP], within MiniLM's 256 word pieces
        assert tokens.count(embedding_input(doc.title, c.heading, c.text)) + 2 <= 256
    sizes = sorted(c.tokens for c in chunks)
    assert sizes[len(sizes) // 2] >= 150  # the median passage is a useful size, not a sentence


def test_a_long_section_is_cut_with_overlap_and_never_repeats_a_whole_passage(tokens: Tokens, tmp_path: Path) -> None:
    sentences = [f"Sentence number {i} tells about the {i}th lighthouse on the coast of Skerry." for i in range(120)]
    path = tmp_path / "long.txt"
    path.write_text(" ".join(sentences))
    doc = extract(path)
    chunks = chunk_document(doc, tokens.count, tokens.split)
    assert len(chunks) >= 5
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end < b.end  # the next passage begins inside this one: an overlap
        assert tokens.count(doc.text[b.start : a.end]) <= 40
        assert a.text.endswith("Skerry.") and b.text.startswith("Sentence")  # cut between sentences


def test_one_endless_line_is_cut_by_tokens(tokens: Tokens, tmp_path: Path) -> None:
    path = tmp_path / "table.txt"
    path.write_text(",".join(f"cell{i}" for i in range(2000)))
    doc = extract(path)
    chunks = chunk_document(doc, tokens.count, tokens.split)
    assert len(chunks) > 5 and max(c.tokens for c in chunks) <= MAX_TOKENS
    assert "".join(c.text for c in chunks) == doc.text  # cut without loss (no overlap inside a unit)


def test_markdown_headings_make_the_heading_path_and_code_stays_whole(tokens: Tokens, tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "# Guide\n\nIntro text.\n\n## Setup\n\nInstall it.\n\n### On Linux\n\nRun this:\n\n"
        "```sh\nmake\n\nmake install\n```\n\n## Use\n\nStart it.\n"
    )
    doc = extract(path)
    assert doc.title == "Guide"
    chunks = chunk_document(doc, tokens.count, tokens.split)
    assert [(c.heading, c.text) for c in chunks] == [
        ("", "Intro text."),
        ("Setup", "Install it."),
        ("Setup > On Linux", "Run this:\n\n```sh\nmake\n\nmake install\n```"),
        ("Use", "Start it."),
    ]
    assert [c.line for c in chunks] == [3, 7, 11, 21]


def test_underlined_markdown_headings_are_headings_and_not_passages(tokens: Tokens, tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(
        "Field notes\n===========\n\nIntro text.\n\nThe pump\n--------\n\nIt needs oil.\n\n"
        "### Winter\n\nDrain it.\n\nA rule follows.\n\n---\n\nThe end.\n"
    )
    doc = extract(path)
    assert doc.title == "Field notes"
    chunks = chunk_document(doc, tokens.count, tokens.split)
    # A "---" after a blank line is a thematic break, not an underline: it stays in the text.
    assert [(c.heading, c.text) for c in chunks][:3] == [
        ("", "Intro text."),
        ("The pump", "It needs oil."),
        ("The pump > Winter", "Drain it.\n\nA rule follows.\n\n---\n\nThe end."),
    ]


def test_pdf_passages_keep_their_page_and_never_span_two(tokens: Tokens, tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "manual.pdf",
        [["Page one says hello."], ["Page two says the pump needs oil.", "Second line."], ["Page three."]],
        title="Pump manual",
    )
    doc = extract(path)
    assert doc.kind == "pdf" and doc.title == "Pump manual"
    chunks = chunk_document(doc, tokens.count, tokens.split)
    assert [(c.page, c.text) for c in chunks] == [
        (1, "Page one says hello."),
        (2, "Page two says the pump needs oil.\nSecond line."),
        (3, "Page three."),
    ]
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)


def test_an_encrypted_pdf_opens_without_a_password_only_when_it_has_none(tmp_path: Path) -> None:
    plain = write_pdf(tmp_path / "plain.pdf", [["Secret plans for the garden."]])
    opens = encrypt_pdf(plain, tmp_path / "no-print.pdf", user_password="")
    assert "garden" in extract(opens).text
    locked = encrypt_pdf(plain, tmp_path / "locked.pdf", user_password="hunter2")
    with pytest.raises(UnreadableDocument, match="protected with a password"):
        extract(locked)


def test_files_that_are_not_documents_get_a_reason(tmp_path: Path) -> None:
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(UnreadableDocument, match="not text"):
        extract(binary)
    damaged = tmp_path / "cut.pdf"
    damaged.write_bytes(b"%PDF-1.7\n")
    with pytest.raises(UnreadableDocument, match="damaged"):
        extract(damaged)


def test_text_in_other_encodings_is_read(tmp_path: Path) -> None:
    windows = tmp_path / "windows.txt"
    windows.write_bytes("Caf\xe9 cr\xe8me \u2013 notes\r\nsecond line\r\n".encode("cp1252"))
    assert extract(windows).text == "Café crème – notes\nsecond line\n"
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("Grüße aus Köln", encoding="utf-16")
    assert extract(utf16).text == "Grüße aus Köln"
