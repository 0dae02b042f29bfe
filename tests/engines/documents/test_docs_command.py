"""``main.py docs``: add, search, list, remove and ask, as the command line runs them (DOCS_COMMAND)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from engines.cli import run
from engines.documents.commands import DOCS_COMMAND
from engines.errors import EmberError


def docs(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ember docs")
    DOCS_COMMAND.arguments(parser)
    return run(DOCS_COMMAND, parser.parse_args(list(argv)))


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "lighthouse.md").write_text("# Lighthouse\n\nThe lighthouse keeper's cat is called Bramble.\n")
    (folder / "garden.txt").write_text("The gardener waters the roses every Tuesday.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n")
    return folder


def test_add_search_list_and_remove(ember_home: Path, notes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docs("add", str(notes), "--quiet") == 0
    out, err = capsys.readouterr()
    assert "3 files; 2 indexed" in out and "2 passages" in out
    assert "could not index" in err and "broken.pdf" in err and "damaged" in err

    assert docs("add", str(notes), "--quiet", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["unchanged"] == 3 and again["chunks_embedded"] == 0

    assert docs("search", "What is the cat called?", "--json", "-k", "1") == 0
    [found] = json.loads(capsys.readouterr().out)
    assert Path(found["path"]).name == "lighthouse.md" and "Bramble" in found["text"]
    assert found["found_by"] == ["keywords", "meaning"] and found["line"] == 3

    assert docs("search", "roses", "--mode", "keywords") == 0
    out = capsys.readouterr().out
    assert out.startswith("1. ") and "garden.txt" in out and "Tuesday" in out

    assert docs("list", "--json") == 0
    [folder] = json.loads(capsys.readouterr().out)
    assert folder["path"] == str(notes.resolve()) and folder["files"] == 3 and folder["files_failed"] == 1
    assert [Path(e["path"]).name for e in folder["errors"]] == ["broken.pdf"]

    assert docs("remove", str(notes)) == 0
    capsys.readouterr()
    assert docs("search", "Bramble", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(EmberError, match="not one of the document folders"):
        docs("remove", str(notes))


def test_adding_something_that_is_no_folder_fails_with_a_reason(ember_home: Path, tmp_path: Path) -> None:
    with pytest.raises(EmberError, match="is not a folder"):
        docs("add", str(tmp_path / "missing"))


def test_ask_answers_from_the_documents_with_their_sources(
    ember_home: Path, notes: Path, smollm2_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert docs("add", str(notes), "--quiet") == 0
    capsys.readouterr()
    code = docs(
        "ask", "What is the lighthouse keeper's cat called?", "--json", "--temperature", "0", "--seed", "1",
        "--max-tokens", "32", "--context", "2048",
    )  # fmt: skip
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert "Bramble" in answer["reply"] and answer["output_id"]
    assert Path(answer["citations"][0]["path"]).name == "lighthouse.md" and answer["citations"][0]["number"] == 1
