"""Repair makes rows and files agree after a crash (or a person's hand in the outputs folder)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engines.library import Library, RepairReport
from tests.engines.library.conftest import Outputs


def test_a_consistent_library_is_left_as_it_is(library: Library, outputs: Outputs) -> None:
    library.add(*outputs.image(), kind="image")
    library.add(*outputs.music(), kind="music")
    assert library.repair() == RepairReport()


def test_a_file_written_before_a_crash_took_its_row_is_adopted_from_its_record(
    library: Library, outputs: Outputs
) -> None:
    image, image_path = outputs.image("a harbour at night", "rain")  # the file and record, no row
    piece, piece_path = outputs.music("Harbour lights")
    report = library.repair()
    assert report.adopted == 2 and report.trashed_orphans == 0
    item = library.get(image.record.output_id)
    assert item is not None and item.path == str(image_path)
    assert (item.kind, item.prompt, item.negative_prompt, item.width) == ("image", "a harbour at night", "rain", 64)
    music = library.get(piece.record.output_id)
    assert music is not None and music.kind == "music" and music.prompt == "Harbour lights"
    assert music.extra["midi"] == str(piece_path.with_suffix(".mid"))
    assert library.repair() == RepairReport()


def test_a_file_without_a_record_goes_to_the_trash_folder(library: Library, outputs: Outputs) -> None:
    _, path = outputs.image()
    stray = path.with_name("0123456789abcdef0123456789abcdef.png")
    stray.write_bytes(path.read_bytes())
    stray.with_suffix(".mid").write_bytes(b"MThd")
    report = library.repair()
    assert report.trashed_orphans == 2 and report.adopted == 1
    assert not stray.exists() and (library.trash_dir / path.parent.name / stray.name).exists()
    assert library.empty_trash() == 0  # no item was in the trash, but the stray files are gone now
    assert not any(library.trash_dir.rglob("0123456789abcdef*"))


def test_a_row_whose_file_is_gone_is_dropped(library: Library, outputs: Outputs) -> None:
    item = library.add(*outputs.image(), kind="image")
    Path(item.path).unlink()
    assert library.repair().dropped == 1
    assert library.get(item.output_id) is None and library.count() == 0


def test_a_crash_in_the_middle_of_trash_or_restore_is_finished_by_repair(library: Library, outputs: Outputs) -> None:
    piece = library.add(*outputs.music(), kind="music")
    wav, midi = Path(piece.path), Path(piece.extra["midi"])
    # trash() moved the WAV, then the process died: the MIDI and the row were not changed yet.
    (library.trash_dir / wav.parent.name).mkdir(parents=True)
    os.replace(wav, library.trash_dir / wav.parent.name / wav.name)
    assert library.repair().moved == 1
    trashed = library.get(piece.output_id)
    assert trashed is not None and trashed.trashed
    assert Path(trashed.path).exists() and Path(trashed.extra["midi"]).exists() and not midi.exists()
    # restore() moved both back and died before the row.
    os.replace(trashed.path, wav)
    os.replace(trashed.extra["midi"], midi)
    assert library.repair().moved == 1
    assert library.get(piece.output_id) == piece


def test_temporary_files_of_interrupted_writes_are_removed_once_they_are_old(
    library: Library, outputs: Outputs
) -> None:
    _, path = outputs.image()
    library.repair()
    temporary = path.parent / f".{'a' * 32}.png.k2j3h4.tmp"
    temporary.write_bytes(b"half a png")
    assert library.repair().temporary_removed == 0 and temporary.exists()  # perhaps another Ember writing now
    old = time.time() - 120
    os.utime(temporary, (old, old))
    assert library.repair().temporary_removed == 1 and not temporary.exists()


def test_files_that_are_not_embers_are_left_alone(library: Library, outputs: Outputs) -> None:
    _, path = outputs.image()
    library.repair()
    mine = [
        library.root / "holiday.jpg",
        path.parent / "notes.txt",
        path.parent / "IMG_0001.png",
        library.root / "2025-13-xx" / f"{'b' * 32}.png",
    ]
    for file in mine:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"the person's own")
    assert library.repair() == RepairReport()
    assert all(file.exists() for file in mine)


def test_repair_at_the_studios_start_adopts_what_a_crash_left(ember_home: Path) -> None:
    from engines.database import Database
    from engines.paths import database_path
    from engines.studio import Studio

    db = Database(database_path())
    Library(db)
    delivered, _ = Outputs(db).image("left by a crash")
    db.close()
    studio = Studio()
    try:
        assert studio.library_repaired.wait(10)
        item = studio.library.get(delivered.record.output_id)
        assert item is not None and item.prompt == "left by a crash"
    finally:
        studio.close()


def test_an_outputs_folder_that_cannot_be_made_does_not_keep_the_library_from_opening(
    ember_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engines.database import Database
    from engines.paths import database_path

    blocker = ember_home / "not-a-folder"
    blocker.write_text("a file where the outputs folder's parent should be")
    monkeypatch.setenv("EMBER_OUTPUTS", str(blocker / "outputs"))
    db = Database(database_path())
    try:
        library = Library(db)
        assert library.search() == [] and library.repair() == RepairReport()
    finally:
        db.close()
