"""Answers that use the documents: the embedded SmolLM2-135M, through the Studio, with and without the passages.

Each note holds a made-up fact no model can know. With the passages in its message the model
says the fact; without them it cannot (it makes something up). SmolLM2-135M is a small model
that mostly repeats the best passage: on this machine it gave all 5 facts from the passages
(the gardener's Tuesday only by listing every sentence of its passage; with the README as the
distractor instead of the licences it missed that one) and none without them. It does not cite
by number ([1]) as told. The test asks for 3 of 5 (greedy decoding gives other words on another
CPU's kernels), the cat every time, and none without the documents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engines.documents.service import Documents, safety_screen
from engines.jobs import EventKind
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

ROOT = Path(__file__).resolve().parents[3]
GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=48, seed=1)
NOTES = {
    "lighthouse.md": "# The lighthouse\n\nThe lighthouse on Skerry Point was built in 1871 from granite.\n\n"
    "## Animals\n\nThe lighthouse keeper's cat is called Bramble. She sleeps by the lamp room stove.\n",
    "ferry.txt": "Timetable notes.\n\nThe ferry to Skerry Point leaves the harbour at 7:40 every morning.\n",
    "family.md": "# Family\n\nThe keeper's daughter, Morwenna, repaints the lighthouse tower every April.\n",
    "compressor.txt": "Maintenance.\n\nThe fog horn's compressor needs Vellmar 30 oil, changed every 200 hours.\n",
    "garden.txt": "The garden has three apple trees and a pond.\n\nThe gardener waters the roses every Tuesday.\n",
}
QUESTIONS = [
    ("What is the lighthouse keeper's cat called?", "lighthouse.md", "Bramble"),
    ("When does the ferry to Skerry Point leave?", "ferry.txt", "7:40"),
    ("Who repaints the lighthouse tower?", "family.md", "Morwenna"),
    ("Which oil does the fog horn's compressor need?", "compressor.txt", "Vellmar"),
    ("On which day does the gardener water the roses?", "garden.txt", "Tuesday"),
]


def reply(studio: Studio, request: ChatRequest) -> str:
    final = studio.submit(request).wait(180)
    assert final is not None and final.kind is EventKind.RESULT, final and final.data
    return final.data.output.text


def test_answers_use_the_facts_in_the_documents_and_cite_them(
    studio: Studio, smol: ModelOptions, tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    shutil.copy(ROOT / "resources" / "licenses" / "README.md", folder / "licences.md")  # passages to tell apart
    documents = Documents.for_studio(studio)  # vectors made in the Studio's "documents" engine process
    report = documents.index_folder(folder)
    assert report.indexed == 6 and not report.failed
    with_documents, without = 0, 0
    for question, source, fact in QUESTIONS:
        request = ChatRequest(smol, (Message("user", question),), sampling=GREEDY)
        grounded = documents.ground(request, screen=safety_screen(studio.safety))
        first = grounded.citations[0]
        assert Path(first.path).name == source and first.number == 1  # the best passage is the right one
        message = grounded.request.messages[-1].content
        assert f'[1] From "{source}"' in message and fact in message and message.endswith(question)
        answer = reply(studio, grounded.request)
        with_documents += fact in answer
        if source == "lighthouse.md":
            assert "Bramble" in answer, answer
        without += fact in reply(studio, request)
    assert with_documents >= 3, with_documents
    assert without == 0
