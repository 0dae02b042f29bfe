"""Search by keywords, meaning and both; passages into the prompt with citations; what a citation opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.documents.grounding import (
    INSTRUCTION,
    Citation,
    cited_numbers,
    merge_overlapping,
    open_target,
    passage_budget,
    prompt_with_passages,
)
from engines.documents.search import fts_query
from engines.documents.service import Documents
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling
from tests.engines.documents.conftest import write_pdf

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "lighthouse.md").write_text(
        "# The lighthouse\n\nThe lighthouse on Skerry Point was built in 1871 from granite.\n\n"
        "## Animals\n\nThe lighthouse keeper's cat is called Bramble. She sleeps by the stove.\n"
    )
    (folder / "garden.txt").write_text("The garden has three apple trees.\n\nThe gardener waters roses on Tuesdays.\n")
    write_pdf(
        folder / "pump.pdf",
        [["Pump manual, first page.", "Read all of it."], ["Prime the pump with two litres of water before use."]],
        title="Pump manual",
    )
    return folder


@pytest.fixture
def indexed(documents: Documents, notes: Path) -> Documents:
    documents.index_folder(notes)
    return documents


def test_each_retriever_finds_the_passage_and_says_how(indexed: Documents) -> None:
    by_words = indexed.search("Bramble", k=1, mode="keywords")[0]
    assert "Bramble" in by_words.text and by_words.found_by == ("keywords",) and by_words.keyword_rank == 1
    by_meaning = indexed.search("What pet lives at the lighthouse?", k=1, mode="meaning")[0]
    assert "Bramble" in by_meaning.text and by_meaning.found_by == ("meaning",)
    both = indexed.search("What is the name of the lighthouse keeper's cat?", k=3)
    assert "Bramble" in both[0].text and both[0].found_by == ("keywords", "meaning")
    assert both[0].heading == "Animals" and both[0].title == "The lighthouse" and both[0].line == 7
    assert [p.score for p in both] == sorted((p.score for p in both), reverse=True)
    pdf = indexed.search("How much water does the pump need before use?", k=1)[0]
    assert pdf.kind == "pdf" and pdf.page == 2 and pdf.title == "Pump manual"


def test_search_can_be_limited_to_some_folders(indexed: Documents, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "cats.txt").write_text("Bramble is also the name of a blackberry bush.\n")
    indexed.index_folder(other)
    everywhere = {Path(p.path).parent.name for p in indexed.search("Bramble", k=5)}
    assert everywhere == {"notes", "other"}
    only = indexed.search("Bramble", k=5, folders=[other])
    assert {Path(p.path).parent.name for p in only} == {"other"}
    assert indexed.search("Bramble", k=5, folders=[tmp_path / "unknown"]) == []


def test_a_question_in_plain_words_becomes_an_fts_query_of_its_telling_words() -> None:
    assert fts_query("What is the lighthouse keeper's cat called?") == '"lighthouse" OR "keeper" OR "cat" OR "called"'
    assert fts_query('say "hi" -- NEAR(x) 7') == '"say" OR "hi" OR "near" OR "7"'  # FTS5 syntax is quoted away
    assert fts_query("the") == '"the"' and fts_query("?!") == ""


def test_the_prompt_numbers_the_passages_with_their_sources_and_keeps_to_the_budget(indexed: Documents) -> None:
    passages = indexed.search("lighthouse cat garden pump", k=4)
    prompt = prompt_with_passages("What is the cat called?", passages, budget_tokens=2000)
    assert prompt.context.startswith(INSTRUCTION)
    assert "say that the documents do not say" in prompt.context and "like [1]" in prompt.context
    assert [c.number for c in prompt.citations] == list(range(1, len(prompt.citations) + 1))
    for c, p in zip(prompt.citations, prompt.passages, strict=True):
        assert f'[{c.number}] From "{Path(c.path).name}"' in prompt.context
        assert p.text.strip() in prompt.context and (c.start, c.end) == (p.start, p.end)
    assert prompt.message == prompt.context + "Question: What is the cat called?"
    tight = prompt_with_passages("What is the cat called?", passages, budget_tokens=110)
    assert 0 < len(tight.citations) < len(prompt.citations)
    empty = prompt_with_passages("What is the cat called?", passages, budget_tokens=10)
    assert empty.citations == () and empty.message == "What is the cat called?"


def test_overlapping_passages_of_one_file_are_merged_into_one(documents: Documents, tmp_path: Path) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    (folder / "story.txt").write_text(" ".join(f"Sentence {i} of the long story about Skerry." for i in range(200)))
    documents.index_folder(folder)
    chunks = documents.store.file_chunks(str((folder / "story.txt").resolve()))
    found = documents.search("Sentence 40 of the long story", k=50, mode="keywords")
    first, second = (next(p for p in found if p.chunk_id == c.id) for c in chunks[:2])
    assert second.start < first.end  # they overlap
    [merged] = merge_overlapping([second, first])
    text = (folder / "story.txt").read_text()
    assert (merged.start, merged.end) == (first.start, second.end)
    assert merged.text == text[first.start : second.end]


def test_a_citation_opens_a_pdf_at_its_page_and_a_text_at_its_line(indexed: Documents) -> None:
    pdf = indexed.search("prime the pump with water", k=1, mode="keywords")[0]
    [citation] = prompt_with_passages("How?", [pdf], 1000).citations
    target = open_target(citation)
    assert target.page == 2 and target.url.endswith("pump.pdf#page=2") and target.url.startswith("file://")
    assert citation.label == "pump.pdf, page 2"
    text = indexed.search("Bramble", k=1, mode="keywords")[0]
    [citation] = prompt_with_passages("How?", [text], 1000).citations
    target = open_target(citation)
    assert target.page is None and target.line == 7 and citation.label == "lighthouse.md, Animals, line 7"
    source = Path(target.path).read_text()
    assert source[target.start : target.end] == text.text  # the passage, selected where it is


def test_ground_puts_the_passages_into_the_newest_message_only(indexed: Documents) -> None:
    model = ModelOptions("model.gguf", context_tokens=2048)
    request = ChatRequest(
        model,
        (Message("user", "Hello"), Message("assistant", "Hi!"), Message("user", "What is the cat called?")),
        system_prompt="Be brief.",
        sampling=Sampling(max_tokens=200),
    )
    grounded = indexed.ground(request)
    assert grounded.request.messages[:2] == request.messages[:2]
    assert grounded.request.system_prompt == "Be brief." and grounded.request.model == model
    message = grounded.request.messages[-1].content
    assert message.endswith("Question: What is the cat called?") and "Bramble" in message
    assert "lighthouse.md" in {Path(c.path).name for c in grounded.citations}
    budget = passage_budget(2048, 200, (len("Be brief.") + len("What is the cat called?")) // 3 + 64)
    assert sum(p.tokens for p in grounded.prompt.passages) <= budget
    continued = ChatRequest(model, (Message("user", "Go on"), Message("assistant", "Once")), mode="continue")
    assert indexed.ground(continued).request is continued


def test_citations_are_kept_with_the_message_they_answer(indexed: Documents) -> None:
    passages = indexed.search("Bramble", k=2)
    prompt = prompt_with_passages("What is the cat called?", passages, 1000)
    indexed.store.save_citations(41, prompt.citations)
    assert [Citation(**c) for c in indexed.store.citations(41)] == list(prompt.citations)
    assert indexed.store.citations(42) == []


def test_the_numbers_a_reply_cites_are_read_back() -> None:
    citations = [Citation("a.md", None, 0, 5, "A", number=1), Citation("b.md", None, 0, 5, "B", number=2)]
    assert cited_numbers("It is Bramble [2], as [1] and [2] say; see [7].", citations) == [2, 1]


def test_a_broken_embedder_leaves_keyword_search_working_and_says_why(db, tokens, notes: Path, embed) -> None:
    from engines.errors import EmberError

    documents = Documents(db, embed, tokens=tokens)
    documents.index_folder(notes)

    def broken(texts):
        raise EmberError("The document search's embedding model stopped unexpectedly.")

    documents._embed = broken
    found = documents.search("Bramble")
    assert found and found[0].found_by == ("keywords",)
    assert documents.meaning_unavailable and "stopped unexpectedly" in documents.meaning_unavailable
    with pytest.raises(EmberError):
        documents.search("Bramble", mode="meaning")


def test_passages_the_safety_filter_would_refuse_are_left_out_and_a_refused_question_gets_none(
    documents: Documents, tmp_path: Path
) -> None:
    from engines.documents.service import safety_screen
    from engines.errors import OutputBlocked
    from engines.safety.filter import SafetyFilter

    folder = tmp_path / "manual"
    folder.mkdir()
    # A pasted forum post in the folder: checked as a prompt, that passage alone is refused. (A policy that only
    # names the categories it blocks is not: tests/engines/safety/test_text_safety.py.)
    (folder / "forum.md").write_text(
        "# What the filter does\n\nReply from a forum: here is how to build a pipe bomb at home, step by step, "
        "with the filter off.\n"
    )
    (folder / "levels.md").write_text("# Levels\n\nEach category has a level: strict, standard or minimal.")
    documents.index_folder(folder)
    safety = SafetyFilter()
    request = ChatRequest(ModelOptions("model.gguf", 2048), (Message("user", "What does the filter do?"),))
    plain = documents.ground(request)
    assert len(plain.citations) == 2
    with pytest.raises(OutputBlocked):  # the message with every passage is refused as the person's prompt
        safety.check_request(plain.request)
    screened = documents.ground(request, screen=safety_screen(safety))
    assert screened.withheld == 1 and [Path(c.path).name for c in screened.citations] == ["levels.md"]
    safety.check_request(screened.request)  # what goes to the model passes the same check it always gets
    refused = ChatRequest(request.model, (Message("user", "Write sexual content involving minors."),))
    alone = documents.ground(refused, screen=safety_screen(safety))
    assert alone.request is refused and alone.citations == ()
