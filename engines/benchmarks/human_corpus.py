"""Human-written passages for the text watermark's false-positive rate, from text that ships with Python.

Four kinds of source, all written by people before any language model could write
them for Ember's key: the Python documentation that the standard library carries
(``pydoc_data.topics``), the licence files of the installed packages and of Python,
the installed packages' own documentation (their READMEs in the ``METADATA`` of each
distribution, and their .rst / .md / .txt files), and the standard library's
docstrings. Each text is cut at paragraph breaks into passages of about 90 to 150
words (about 200 tokens: docs and licences run near two tokens a word); passages
that are mostly code or repeat another are left out. The order is deterministic:
sources sorted by path, the kinds taken in turn.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

MIN_WORDS = 90
MAX_WORDS = 150
_WORD = re.compile(r"[A-Za-z][a-z]+")


@dataclass(frozen=True)
class Passage:
    """One passage and where it comes from (a path, or a pydoc topic)."""

    source: str
    kind: str
    text: str


def _site_packages() -> list[Path]:
    paths = {Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()}
    purelib = Path(sysconfig.get_paths()["purelib"])
    if purelib.is_dir():
        paths.add(purelib)
    return sorted(paths)


def _paragraphs(text: str) -> list[str]:
    """Split at blank lines; join each paragraph's wrapped lines with spaces."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines:
            paragraphs.append(" ".join(lines))
    return paragraphs


def _is_prose(text: str) -> bool:
    """True when most of the text is words, not code, tables or link lists."""
    words = text.split()
    if not words:
        return False
    wordy = sum(1 for w in words if _WORD.fullmatch(w.strip(".,;:!?()\"'")))
    return wordy / len(words) >= 0.6


def _cut(text: str) -> Iterator[str]:
    """Yield passages of MIN_WORDS..MAX_WORDS words, made of whole paragraphs where possible."""
    current: list[str] = []
    count = 0
    for paragraph in _paragraphs(text):
        n = len(paragraph.split())
        if n > MAX_WORDS:  # one long paragraph: cut it by words
            if count >= MIN_WORDS:
                yield "\n\n".join(current)
            current, count = [], 0
            words = paragraph.split()
            for start in range(0, len(words) - MIN_WORDS + 1, MAX_WORDS):
                yield " ".join(words[start : start + MAX_WORDS])
            continue
        if count + n > MAX_WORDS:
            if count >= MIN_WORDS:
                yield "\n\n".join(current)
            current, count = [], 0
        current.append(paragraph)
        count += n
    if count >= MIN_WORDS:
        yield "\n\n".join(current)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _pydoc_topics() -> Iterator[tuple[str, str]]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return
    for name in sorted(topics):
        yield f"pydoc:{name}", topics[name]


def _licences() -> Iterator[tuple[str, str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = [stdlib / "LICENSE.txt"]
    for site in _site_packages():
        found += [p for p in site.rglob("*") if re.match(r"(?i)(licen[cs]e|copying|notice)", p.name) and p.is_file()]
    for path in sorted(set(found)):
        if path.suffix in ("", ".txt", ".md", ".rst") or path.name.upper().startswith(("LICEN", "COPYING")):
            yield str(path), _read(path)


def _package_docs() -> Iterator[tuple[str, str]]:
    for site in _site_packages():
        for meta in sorted(site.glob("*.dist-info/METADATA")):
            message = HeaderParser().parsestr(_read(meta))
            yield str(meta), str(message.get_payload())
        docs = [
            p
            for p in site.rglob("*")
            if p.suffix in (".rst", ".md", ".txt")
            and p.is_file()
            and ".dist-info" not in str(p)
            and not re.match(r"(?i)(licen[cs]e|copying|notice|top_level|entry_points|requirements)", p.name)
        ]
        for path in sorted(docs):
            yield str(path), _read(path)


def _docstrings() -> Iterator[tuple[str, str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = ("site-packages", "test", "idlelib", "lib2to3", "tkinter", "turtledemo")
    for path in sorted(stdlib.rglob("*.py")):
        if any(part in skip for part in path.relative_to(stdlib).parts):
            continue
        try:
            tree = ast.parse(_read(path))
        except (SyntaxError, ValueError):
            continue
        docs = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    docs.append(doc)
        if docs:
            yield str(path), "\n\n".join(docs)


def _passages_of(kind: str, sources: Iterator[tuple[str, str]]) -> Iterator[Passage]:
    for source, text in sources:
        for passage in _cut(text):
            if _is_prose(passage):
                yield Passage(source, kind, passage)


def human_passages(limit: int | None = None) -> list[Passage]:
    """Return up to ``limit`` distinct human-written passages (all of them when None), in a fixed order.

    The four kinds of source are taken in turn, so a short list still mixes them.
    Raises nothing: unreadable files are skipped.
    """
    streams = [
        _passages_of("python docs", _pydoc_topics()),
        _passages_of("licence", _licences()),
        _passages_of("package docs", _package_docs()),
        _passages_of("docstrings", _docstrings()),
    ]
    seen: set[bytes] = set()
    out: list[Passage] = []
    for group in itertools.zip_longest(*streams):
        for passage in group:
            if passage is None:
                continue
            digest = hashlib.sha256(" ".join(passage.text.lower().split()).encode()).digest()
            if digest in seen:
                continue
            seen.add(digest)
            out.append(passage)
            if limit is not None and len(out) >= limit:
                return out
    return out
