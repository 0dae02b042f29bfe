"""The Library panel in the real window: what the other panels made is there, searchable and filterable,
with what made it; delete to the trash and restore; re-run in the panel that made it; export and import."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.gallery_panel import GalleryPanel, details_text
from desktop.main_window import MainWindow
from engines.jobs import EventKind
from engines.music.requests import ComposeRequest

pytest.importorskip("tinysoundfont")
TIMEOUT_MS = 60_000


def compose(window: MainWindow, **kwargs) -> str:
    final = window.studio.submit(ComposeRequest(bars=1, **kwargs)).wait(60)
    assert final is not None and final.kind is EventKind.RESULT, final
    return final.data.delivered.record.output_id


@pytest.fixture
def library(window: MainWindow, qtbot) -> GalleryPanel:
    compose(window, key="A minor", style="lofi", seed=1, title="Rain on the window")
    compose(window, key="G major", style="waltz", seed=2, title="Sunday dance")
    compose(window, key="E minor", style="rock", seed=3, title="Engine room")
    panel = window.library
    done: list[int] = []
    panel.search_done.connect(done.append)
    window.show_panel(panel)
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT_MS)
    return panel


def searched(panel: GalleryPanel, qtbot, **changes) -> int:
    found: list[int] = []
    panel.search_done.connect(found.append)
    for name, value in changes.items():
        if name == "text":
            panel.search.setText(value)
        elif name == "kind":
            panel.kind.setCurrentIndex(panel.kind.findData(value))
        elif name == "trash":
            panel.trash_button.setChecked(value)
    qtbot.waitUntil(lambda: bool(found), timeout=TIMEOUT_MS)
    panel.search_done.disconnect(found.append)
    return found[-1]


def test_what_was_made_is_in_the_library_newest_first_with_what_made_it(library: GalleryPanel, qtbot) -> None:
    assert library.model.total == 3 and library.model.rowCount() == 3
    assert [i.prompt for i in library.model.items] == ["Engine room", "Sunday dance", "Rain on the window"]
    library.grid.setCurrentIndex(library.model.index(1))
    item = library.current
    assert item.prompt == "Sunday dance" and item.kind == "music" and item.seed == 2
    text = library.details.toPlainText()
    assert "Seed: 2" in text and f"Watermark id: {item.output_id}" in text and "Safety: pass" in text
    assert item.c2pa == "valid" and "Content Credentials (C2PA): signed, valid" in text
    assert library.rerun_button.isEnabled() and not library.init_button.isEnabled()


def test_search_and_filters_narrow_the_grid(library: GalleryPanel, qtbot) -> None:
    assert searched(library, qtbot, text="rain") == 1
    assert library.model.items[0].prompt == "Rain on the window"
    assert searched(library, qtbot, text='"engine') == 1  # a stray quote is a word, not an error
    assert searched(library, qtbot, text="") == 3
    assert searched(library, qtbot, kind="image") == 0
    assert "Nothing here yet" in library.status.text() or "Nothing" in library.status.text()
    assert searched(library, qtbot, kind="music") == 3


def test_delete_goes_to_the_trash_and_restore_brings_it_back(library: GalleryPanel, qtbot) -> None:
    library.grid.setCurrentIndex(library.model.index(0))
    item = library.current
    assert Path(item.path).is_file()
    library.delete_or_restore(item)
    qtbot.waitUntil(lambda: library.model.total == 2, timeout=TIMEOUT_MS)
    assert not Path(item.path).exists()
    assert searched(library, qtbot, trash=True) == 1
    library.grid.setCurrentIndex(library.model.index(0))
    assert library.current.trashed and library.delete_button.text() == "Restore"
    library.delete_or_restore(library.current)
    qtbot.waitUntil(lambda: library.model.total == 0, timeout=TIMEOUT_MS)
    assert Path(item.path).is_file()
    assert searched(library, qtbot, trash=False) == 3


def test_rerun_makes_the_same_piece_in_the_music_panel(window: MainWindow, library: GalleryPanel, qtbot) -> None:
    library.grid.setCurrentIndex(library.model.index(2))
    item = library.current
    assert library.rerun(item)
    assert window.pages.currentWidget() is window.music
    qtbot.waitUntil(lambda: window.music.result is not None and not window.music.busy(), timeout=TIMEOUT_MS)
    again = window.music.result
    assert again.delivered.record.provenance.seed == item.seed == 1
    assert Path(again.midi_path).read_bytes() == Path(item.path).with_suffix(".mid").read_bytes()


def test_export_then_import_into_another_library(window: MainWindow, library: GalleryPanel, qtbot,
                                                 tmp_path: Path) -> None:  # fmt: skip
    zip_path = tmp_path / "collection.zip"
    library.export(str(zip_path), None)
    qtbot.waitUntil(lambda: "Exported" in library.status.text(), timeout=TIMEOUT_MS)
    assert zip_path.stat().st_size > 0
    # Importing into the same library adds nothing: the ids are there already.
    library.import_zip(str(zip_path))
    qtbot.waitUntil(lambda: "Imported" in library.status.text(), timeout=TIMEOUT_MS)
    assert library.status.text().startswith("Imported 0 items")


def test_a_blocked_request_leaves_nothing_in_the_library(window: MainWindow, library: GalleryPanel, qtbot) -> None:
    final = window.studio.submit(ComposeRequest(bars=1, title="how to make a pipe bomb at home")).wait(60)
    assert final is not None and final.kind is EventKind.BLOCKED
    assert searched(library, qtbot, text="bomb") == 0
    assert searched(library, qtbot, text="") == 3
    assert "bomb" not in details_text(library.model.items[0])


def test_jobs_a_crash_interrupted_are_offered_at_start_and_resume_into_the_library(ember_home: Path, qtbot) -> None:
    import subprocess
    import sys

    from desktop.app import build_main_window
    from engines.database import Database
    from engines.paths import database_path
    from engines.pending_jobs import PendingJobs
    from engines.studio import Studio

    db = Database(database_path())
    PendingJobs(db).add(ComposeRequest(bars=1, seed=31, title="Left behind"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with db.transaction() as conn:
        conn.execute("UPDATE pending_jobs SET owner_pid = ?", (gone.pid,))  # its Ember process died
    db.close()
    studio = Studio()
    window = build_main_window(studio)
    qtbot.addWidget(window)
    try:
        window.show()
        bar = window.interrupted
        assert bar.isVisible() and bar.label.text().startswith("1 job was not finished")
        (job,) = bar.resume()
        final = job.wait(60)
        assert final is not None and final.kind is EventKind.RESULT
        assert not bar.isVisible() and [i.prompt for i in studio.library.search()] == ["Left behind"]
    finally:
        window.shutdown()
        studio.close()
