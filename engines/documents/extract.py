"""A document file's text: plain text and Markdown as they are, PDF page by page (pypdf, BSD-3-Clause).

Offsets everywhere in engines/documents count characters of the text returned here (newlines
normalised to ``\\n``), so a citation can point back into it: the line of a text file, the page
of a PDF. A file that cannot be read raises :class:`UnreadableDocument` with a sentence for the
person; the indexer records it for that file and goes on with the rest.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from engines.errors import EmberError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown"})
PDF_SUFFIXES = frozenset({".pdf"})
SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES
# Beyond these a file is more likely a log or a data dump than a document; it would also hold the
# indexer for minutes on one file.
MAX_TEXT_BYTES = 32 * 2**20
MAX_PDF_BYTES = 256 * 2**20
PAGE_BREAK = "\n\n"  # between the pages of a PDF in its text


class UnreadableDocument(EmberError):
    """A file the indexer cannot read: encrypted, damaged, binary, empty, too large. The message says which."""


@dataclass(frozen=True)
class Extracted:
    """A document's text, its title, and where each PDF page starts in the text (empty for text files)."""

    text: str
    title: str
    kind: str  # "text", "markdown" or "pdf"
    page_starts: tuple[int, ...] = ()  # page_starts[i]: offset of page i + 1

    def page_at(self, offset: int) -> int | None:
        """The 1-based page that holds character ``offset`` (None for text files)."""
        if not self.page_starts:
            return None
        import bisect

        return max(1, bisect.bisect_right(self.page_starts, offset))


def is_document(path: Path) -> bool:
    """Whether the indexer reads ``path`` (by its suffix; hidden files are left out)."""
    return path.suffix.lower() in SUFFIXES and not path.name.startswith(".")


def extract(path: Path) -> Extracted:
    """Return the text of a .txt, .md or .pdf file.

    Raises UnreadableDocument (what is wrong with this file, for the person) and OSError when the
    file cannot be opened at all (gone, no permission).
    """
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if suffix in PDF_SUFFIXES:
        if size > MAX_PDF_BYTES:
            raise UnreadableDocument(f"This PDF is {size / 2**20:.0f} MB; Ember indexes PDFs up to 256 MB.")
        return _pdf(path)
    if size > MAX_TEXT_BYTES:
        raise UnreadableDocument(
            f"This text file is {size / 2**20:.0f} MB; Ember indexes text files up to 32 MB (is it a log or data?)."
        )
    return _text(path, path.read_bytes())


def _text(path: Path, data: bytes) -> Extracted:
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableDocument(
            f"'{path.name}' is not text (it holds binary data, starting {data[:4]!r}); "
            "rename it if it is not a document, or save it as plain text."
        )
    text = _decode(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise UnreadableDocument(f"'{path.name}' is empty.")
    kind = "markdown" if path.suffix.lower() in (".md", ".markdown") else "text"
    return Extracted(text, _title(text, path) if kind == "markdown" else path.stem, kind)


def _decode(data: bytes) -> str:
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec, "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8: most likely a Windows text file. cp1252 leaves five bytes undefined; they become U+FFFD.
        return data.decode("cp1252", "replace")


_SETEXT_TITLE = re.compile(r"^ {0,3}=+[ \t]*$")


def _title(text: str, path: Path) -> str:
    """A Markdown file's first top-level heading ("# Title", or "Title" underlined with "==="), or the file's name."""
    lines = text.splitlines()[:50]
    for i, line in enumerate(lines):
        if line.startswith("# "):
            return line[2:].strip() or path.stem
        if i and lines[i - 1].strip() and _SETEXT_TITLE.match(line):
            return lines[i - 1].strip()
    return path.stem


def _pdf(path: Path) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            # Many PDFs are encrypted with an empty password only to restrict printing: those open.
            try:
                opened = reader.decrypt("")
            except (NotImplementedError, PdfReadError) as exc:
                raise UnreadableDocument(f"This PDF is encrypted in a way Ember cannot open ({exc}).") from None
            if not opened:
                raise UnreadableDocument(
                    "This PDF is protected with a password, so Ember cannot read it. "
                    "Save a copy without the password and add that instead."
                )
        pages: list[str] = []
        for page in reader.pages:
            try:
                pages.append(page.extract_text() or "")
            except Exception as exc:  # pypdf raises many types on odd pages; one bad page must not lose the rest
                log.warning("Page %d of %s has no readable text: %s", len(pages) + 1, path, exc)
                pages.append("")
        title = ""
        try:
            title = str((reader.metadata or {}).get("/Title") or "").strip()
        except Exception:  # broken metadata: the file name will do
            title = ""
    except UnreadableDocument:
        raise
    except FileNotDecryptedError:
        raise UnreadableDocument("This PDF is protected with a password, so Ember cannot read it.") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UnreadableDocument(f"This PDF is damaged or not a PDF ({type(exc).__name__}: {exc}).") from None
    if not any(p.strip() for p in pages):
        raise UnreadableDocument(
            f"This PDF has no text to read ({len(pages)} pages of pictures: a scan?). "
            "Ember does not read text in images; a PDF with a text layer works."
        )
    starts, parts, offset = [], [], 0
    for text in pages:
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
        starts.append(offset)
        parts.append(text)
        offset += len(text) + len(PAGE_BREAK)
    return Extracted(PAGE_BREAK.join(parts), title or path.stem, "pdf", tuple(starts))
