"""The library: outputs added after their files, found by their words (any text a search box gets), filtered,
newest first, joined with their records; the trash and emptying it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.database import Database
from engines.errors import EmberError
from engines.library import Library, LibraryItem
from engines.library.search import match_expression
from engines.media import ImageOutput
from engines.pipeline import StageDecision
from tests.engines.library.conftest import SHA, Outputs


def ids(items: list[LibraryItem]) -> list[str]:
    return [item.output_id for item in items]


def test_an_added_image_keeps_its_prompts_size_hash_and_its_records_settings(
    library: Library, outputs: Outputs
) -> None:
    delivered, path = outputs.image("a red castle at dusk", "blurry, low quality", size=(80, 48), seed=42)
    item = library.add(delivered, path, kind="image")
    assert item == library.get(delivered.record.output_id)
    assert item.kind == "image" and item.path == str(path) and Path(item.path).exists()
    assert (item.prompt, item.negative_prompt) == ("a red castle at dusk", "blurry, low quality")
    assert (item.width, item.height, item.seed, item.backend) == (80, 48, 42, "CPU")
    assert item.model_name == "tiny-sd" and item.model_sha256 == SHA
    assert item.settings["steps"] == 2 and item.timings == {"total_s": 0.5}
    assert item.created_utc == delivered.record.created_utc and not item.trashed
    import hashlib

    assert item.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_item_carries_the_safety_and_watermark_decisions_of_its_record(library: Library, outputs: Outputs) -> None:
    from engines.pipeline import OutputPipeline, Provenance
    from engines.provenance.files import save_images
    from engines.records import RecordStore

    class Passes:
        name = "safety"

        def watch(self, context: object) -> None:
            return None

        def process(self, output: object, context: object) -> tuple[object, StageDecision]:
            return output, StageDecision("safety", "pass", score=0.01, checker="open-nsfw")

    pipeline = OutputPipeline((Passes(),), [RecordStore(library._db)])
    delivered = pipeline.open(1, "image", None).finish(
        ImageOutput(np.zeros((8, 8, 3), np.uint8), {"prompt": "a bowl of fruit"}),
        Provenance("tiny-sd", "/m", SHA, "CPU", {}, 1),
    )
    (path,) = save_images([delivered])
    item = library.add(delivered, path, kind="image")
    assert item.decisions == (StageDecision("safety", "pass", score=0.01, checker="open-nsfw"),)


def test_search_finds_words_in_prompts_negative_prompts_models_and_reply_text(
    library: Library, outputs: Outputs
) -> None:
    castle = library.add(*outputs.image("a red castle at dusk", "blurry"), kind="image")
    forest = library.add(*outputs.image("a misty forest", model="sdxl-turbo"), kind="image")
    spoken = library.add(*outputs.speech("Welcome to the castle tour."), kind="speech")
    reply = outputs.reply("Castles were built of stone.")
    answered = library.add(reply, None, kind="text", prompt="What were castles made of?", text=reply.output.text)
    assert ids(library.search("castle ")) == ids([spoken, castle])  # the whole word
    assert ids(library.search("castle")) == ids([answered, spoken, castle])  # and words it begins
    assert ids(library.search("blurry")) == [castle.output_id]
    assert ids(library.search("turbo")) == [forest.output_id]  # the model's name
    assert ids(library.search("stone")) == [answered.output_id]  # a reply's text
    assert ids(library.search("made of")) == [answered.output_id]  # the question it answered
    assert library.count("castle ") == 2 and library.count() == 4


def test_the_last_word_matches_as_a_prefix_while_typing_but_not_after_a_space(
    library: Library, outputs: Outputs
) -> None:
    castle = library.add(*outputs.image("a red castle at dusk"), kind="image")
    assert ids(library.search("cas")) == [castle.output_id]
    assert ids(library.search("red cas")) == [castle.output_id]
    assert library.search("cas ") == []  # a finished word is a whole word
    assert library.search("re castle") == []  # only the last word is a prefix


@pytest.mark.parametrize(
    ("typed", "found"),
    [
        ('"', 1),  # no word at all: no filter
        ('castle"', 1),
        ('"red castle', 1),
        ("castle*", 1),
        ("CASTLE", 1),
        ("castle AND", 0),  # operators are words like any other: "and" is not in the prompt
        ("NOT castle", 0),
        ("NEAR(castle red)", 0),
        ("castle OR dragon", 0),
        ("prompt:castle", 0),  # no column filters either
        ("castle^", 1),
        ("(castle", 1),
        ("{castle}", 1),
        ("castle -dusk", 1),
        ("c'est", 1),
        ("\\", 1),
        ("\x00", 1),
        ("* * *", 1),
    ],
)
def test_any_text_in_the_search_box_is_taken_as_words_never_as_fts_syntax(
    library: Library, outputs: Outputs, typed: str, found: int
) -> None:
    library.add(*outputs.image('a red castle at dusk, "c\'est la vie"'), kind="image")
    assert len(library.search(typed)) == found, match_expression(typed)
    assert library.count(typed) == found


def test_match_expression_quotes_every_word() -> None:
    assert match_expression('red "castle" OR') == '"red" "castle" "OR"*'
    assert match_expression("sd-turbo ") == '"sd" "turbo"'
    assert match_expression("?!") == ""


def test_filters_by_kind_model_and_day_combine_with_the_words(library: Library, outputs: Outputs) -> None:
    old = library.add(*outputs.image("castle", created_utc="2025-01-30T23:59:59.000+00:00"), kind="image")
    mid = library.add(*outputs.image("castle", model="sdxl", created_utc="2025-01-31T10:00:00.000+00:00"), kind="image")
    new = library.add(*outputs.speech("castle", created_utc="2025-02-01T00:00:00.000+00:00"), kind="speech")
    assert ids(library.search(kinds=["image"])) == [mid.output_id, old.output_id]
    assert ids(library.search(kinds=["image", "speech"])) == [new.output_id, mid.output_id, old.output_id]
    assert ids(library.search("castle", model="sdxl")) == [mid.output_id]
    assert ids(library.search(since="2025-01-31", until="2025-01-31")) == [mid.output_id]  # both days included
    assert ids(library.search(since="2025-01-31")) == [new.output_id, mid.output_id]
    assert ids(library.search(until="2025-01-31")) == [mid.output_id, old.output_id]
    assert ids(library.search(since="2025-01-31T10:00:00Z")) == [new.output_id, mid.output_id]
    assert library.count("castle", kinds=["image"], since="2025-01-31") == 1
    with pytest.raises(ValueError, match="not a date"):
        library.search(since="last week")


def test_results_are_newest_first_and_page_with_limit_and_offset(library: Library, outputs: Outputs) -> None:
    made = [
        library.add(*outputs.image(f"picture {i}", created_utc=f"2025-03-{i + 1:02d}T12:00:00.000+00:00"), kind="image")
        for i in range(7)
    ]
    newest_first = ids(made[::-1])
    assert ids(library.search()) == newest_first
    assert ids(library.search(limit=3)) == newest_first[:3]
    assert ids(library.search(limit=3, offset=3)) == newest_first[3:6]
    assert ids(library.search(limit=3, offset=6)) == newest_first[6:]


def test_models_and_kinds_list_what_is_outside_the_trash(library: Library, outputs: Outputs) -> None:
    library.add(*outputs.image(model="tiny-sd"), kind="image")
    gone = library.add(*outputs.image(model="Zeta-XL"), kind="image")
    library.add(*outputs.speech(), kind="speech")
    assert library.models() == ["heart", "tiny-sd", "Zeta-XL"]
    assert library.kinds() == ["image", "speech"]
    library.trash(gone.output_id)
    assert library.models() == ["heart", "tiny-sd"]


def test_adding_an_output_again_replaces_its_row_and_its_words(library: Library, outputs: Outputs) -> None:
    delivered, path = outputs.image("a red castle")
    library.add(delivered, path, kind="image")
    library.add(delivered, path, kind="image", prompt="a blue lighthouse")
    assert library.search("castle") == [] and len(library.search("lighthouse")) == 1
    assert library.count() == 1


def test_add_refuses_outputs_that_did_not_come_through_the_pipeline_and_files_elsewhere(
    library: Library, outputs: Outputs, tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match="OutputPipeline"):
        library.add(ImageOutput(np.zeros((4, 4, 3), np.uint8)), None, kind="image")  # type: ignore[arg-type]
    delivered, path = outputs.image()
    with pytest.raises(ValueError, match="Unknown library kind"):
        library.add(delivered, path, kind="video")
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="not in the outputs folder"):
        library.add(delivered, elsewhere, kind="image")
    assert library.count() == 0


def test_a_composition_notes_its_midi_and_a_reply_its_conversation(library: Library, outputs: Outputs) -> None:
    piece = library.add(*outputs.music("Dusk"), kind="music")
    assert piece.extra["midi"] == str(Path(piece.path).with_suffix(".mid")) and Path(piece.extra["midi"]).exists()
    assert piece.prompt == "Dusk" and piece.duration_s == pytest.approx(1.0)
    reply = outputs.reply("Hello!")
    item = library.add(reply, None, kind="text", text="Hello!", extra={"conversation_id": 3})
    assert item.path == "" and item.extra == {"conversation_id": 3} and item.text == "Hello!"


def test_trash_moves_the_files_out_of_sight_and_restore_puts_them_back(library: Library, outputs: Outputs) -> None:
    piece = library.add(*outputs.music(), kind="music")
    kept = library.add(*outputs.image(), kind="image")
    library.trash(piece.output_id)
    trashed = library.get(piece.output_id)
    assert trashed is not None and trashed.trashed
    assert not Path(piece.path).exists() and not Path(piece.extra["midi"]).exists()
    assert Path(trashed.path).exists() and Path(trashed.extra["midi"]).exists()
    assert Path(trashed.path).is_relative_to(library.trash_dir)
    assert ids(library.search()) == [kept.output_id]
    assert ids(library.search(trashed=True)) == [piece.output_id] and library.count(trashed=True) == 1
    library.restore(piece.output_id)
    assert library.get(piece.output_id) == piece
    assert Path(piece.path).exists() and Path(piece.extra["midi"]).exists()
    reply = library.add(outputs.reply(), None, kind="text", text="Hi")
    library.trash(reply.output_id)
    assert library.search(trashed=True)[0].output_id == reply.output_id


def test_empty_trash_deletes_files_rows_and_thumbnails_for_good_and_keeps_the_record(
    library: Library, outputs: Outputs, db: Database
) -> None:
    item = library.add(*outputs.image(), kind="image")
    thumbnail = library.thumbnail(item.output_id)
    assert thumbnail is not None and thumbnail.exists()
    library.trash(item.output_id)
    assert library.empty_trash(older_than_days=1) == 0  # trashed just now
    assert library.empty_trash() == 1
    assert library.get(item.output_id) is None and not thumbnail.exists()
    assert not any(library.trash_dir.rglob("*.png"))
    assert db.query("SELECT 1 FROM output_records WHERE output_id = ?", (item.output_id,))  # still traceable
    assert library.search(trashed=True) == []


def test_trashing_an_item_whose_file_is_gone_drops_it(library: Library, outputs: Outputs) -> None:
    item = library.add(*outputs.image(), kind="image")
    Path(item.path).unlink()
    library.trash(item.output_id)
    assert library.get(item.output_id) is None
    with pytest.raises(EmberError, match="no longer in the library"):
        library.restore(item.output_id)


def test_the_extra_json_column_is_json(library: Library, outputs: Outputs, db: Database) -> None:
    piece = library.add(*outputs.music(), kind="music")
    [row] = db.query("SELECT path, extra_json FROM library_items WHERE output_id = ?", (piece.output_id,))
    assert json.loads(row["extra_json"]) == {"midi": row["path"][:-4] + ".mid", "c2pa": "valid"}
    assert not Path(row["path"]).is_absolute()


def test_an_item_keeps_what_its_content_credentials_said_when_it_was_kept(library: Library, outputs: Outputs) -> None:
    image = library.add(*outputs.image(), kind="image")
    clip = library.add(*outputs.speech(), kind="speech")
    assert (image.c2pa, clip.c2pa) == ("valid", "valid")
    delivered, path = outputs.image(seed=7)
    path.write_bytes(path.read_bytes()[:-200] + b"\x00" * 200)  # damaged after signing, before it was kept
    damaged = library.add(delivered, path, kind="image")
    assert damaged.c2pa in ("invalid", "none")
    reply = library.add(outputs.reply(), None, kind="text", text="Hi")
    assert reply.c2pa == ""  # a reply has no file to carry credentials
