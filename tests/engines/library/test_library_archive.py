"""A whole library to a zip and into another installation: files byte for byte (their watermark, metadata and
Content Credentials intact), records and items with their ids; duplicates skipped; unsafe or foreign zips refused."""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.database import Database
from engines.errors import EmberError
from engines.library import Library
from engines.paths import database_path, outputs_dir
from engines.provenance.content_credentials import read_manifest
from engines.records import RecordStore
from tests.engines.library.conftest import Outputs


def home(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Database, Library]:
    """Switch to the Ember home at ``path`` and open its library."""
    monkeypatch.setenv("EMBER_HOME", str(path))
    db = Database(database_path())
    return db, Library(db)


def test_a_library_exported_in_one_home_imports_into_another_with_everything_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_a, here = home(tmp_path / "a", monkeypatch)
    outputs = Outputs(db_a)
    image = here.add(*outputs.image("a lighthouse in a storm", "calm sea"), kind="image")
    piece = here.add(*outputs.music("Storm"), kind="music")
    reply = outputs.reply("Keepers lived there.")
    answer = here.add(reply, None, kind="text", prompt="Who lived there?", text=reply.output.text, extra={"x": 1})
    thrown = here.add(*outputs.image("thrown away"), kind="image")
    here.trash(thrown.output_id)
    archive = here.export_zip(tmp_path / "exports" / "library.zip")
    assert archive == tmp_path / "exports" / "library.zip"
    assert [p.name for p in archive.parent.iterdir()] == ["library.zip"]  # no temporary file left
    records_a = {i: RecordStore(db_a).get(i) for i in (image.output_id, piece.output_id, answer.output_id)}
    db_a.close()

    db_b, there = home(tmp_path / "b", monkeypatch)
    assert outputs_dir() != Path(image.path).parents[1]
    assert there.import_zip(archive) == 3  # not what was in the trash
    for before in (image, piece, answer):
        after = there.get(before.output_id)
        assert after is not None
        same = {k: v for k, v in vars(after).items() if k not in ("path", "extra")}
        assert same == {k: v for k, v in vars(before).items() if k not in ("path", "extra")}
        assert RecordStore(db_b).get(before.output_id) == records_a[before.output_id]
    moved = there.get(image.output_id)
    assert moved is not None and Path(moved.path).is_relative_to(there.root)
    assert Path(moved.path).read_bytes() == Path(image.path).read_bytes()
    credentials = read_manifest(Path(moved.path))
    assert credentials.present and credentials.valid
    assert there.get(thrown.output_id) is None
    music = there.get(piece.output_id)
    assert music is not None and Path(music.extra["midi"]).read_bytes() == Path(piece.extra["midi"]).read_bytes()
    assert there.get(answer.output_id).extra == {"x": 1}  # type: ignore[union-attr]
    assert [i.output_id for i in there.search("storm")] == [piece.output_id, image.output_id]
    assert there.import_zip(archive) == 0  # everything is there already
    assert there.count() == 3
    assert there.repair().changed is False
    db_b.close()


def test_an_export_of_chosen_items_holds_those_and_their_records_only(library: Library, outputs: Outputs) -> None:
    chosen = library.add(*outputs.image("chosen"), kind="image")
    library.add(*outputs.image("not chosen"), kind="image")
    archive = library.export_zip(library.root.parent / "some.zip", [chosen.output_id])
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["format"] == "ember.library/1"
        assert [i["output_id"] for i in manifest["items"]] == [chosen.output_id]
        assert [r["output_id"] for r in manifest["records"]] == [chosen.output_id]
        assert manifest["records"][0]["settings"]["prompt"] == "chosen"
        assert sorted(z.namelist()) == [
            "files/" + Path(chosen.path).relative_to(library.root).as_posix(),
            "manifest.json",
        ]
    with pytest.raises(EmberError, match="no longer in the library"):
        library.export_zip(archive, [chosen.output_id, "f" * 32])
    with zipfile.ZipFile(archive) as z:  # the failed export left the earlier file as it was
        assert len(z.namelist()) == 2


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Library]:
    """Another installation's library: its own database, outputs folder and thumbnails."""
    db = Database(tmp_path / "elsewhere" / "ember.sqlite3")
    yield Library(db, tmp_path / "elsewhere" / "outputs", thumbnail_dir=tmp_path / "elsewhere" / "thumbnails")
    db.close()


def exported(library: Library, outputs: Outputs, tmp_path: Path) -> tuple[Path, dict]:
    library.add(*outputs.image("to be tampered with"), kind="image")
    archive = library.export_zip(tmp_path / "good.zip")
    with zipfile.ZipFile(archive) as z:
        return archive, {name: z.read(name) for name in z.namelist()}


def rewrite(path: Path, members: dict, extra: dict | None = None, links: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**members, **(extra or {})}.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "member",
    ["../evil.png", "files/../../evil.png", "/tmp/evil.png", "C:/evil.png", "files\\..\\evil.png", "files/a/../../x"],
)
def test_a_zip_with_a_path_outside_the_folder_is_refused_before_anything_is_written(
    library: Library, outputs: Outputs, tmp_path: Path, member: str, elsewhere: Library
) -> None:
    _, members = exported(library, outputs, tmp_path)
    bad = rewrite(tmp_path / "bad.zip", members, {member: b"gotcha"})
    with pytest.raises(EmberError, match="unsafe path"):
        elsewhere.import_zip(bad)
    assert not list(elsewhere.root.rglob("*.png")) and elsewhere.count() == 0
    assert not (tmp_path.parent / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_a_zip_with_a_link_is_refused(library: Library, outputs: Outputs, tmp_path: Path, elsewhere: Library) -> None:
    _, members = exported(library, outputs, tmp_path)
    with pytest.raises(EmberError, match="unsafe path"):
        elsewhere.import_zip(rewrite(tmp_path / "link.zip", members, links=("files/2025-01-01/link.png",)))


def test_an_item_whose_path_is_not_one_ember_writes_is_refused(
    library: Library, outputs: Outputs, tmp_path: Path, elsewhere: Library
) -> None:
    _, members = exported(library, outputs, tmp_path)
    manifest = json.loads(members["manifest.json"])
    manifest["items"][0]["path"] = "subfolder/../" + manifest["items"][0]["path"]
    members["manifest.json"] = json.dumps(manifest)
    with pytest.raises(EmberError, match="path Ember would not write"):
        elsewhere.import_zip(rewrite(tmp_path / "p.zip", members))


def test_zips_that_are_not_ember_exports_are_refused_with_what_is_wrong(
    library: Library, outputs: Outputs, tmp_path: Path, elsewhere: Library
) -> None:
    archive, members = exported(library, outputs, tmp_path)
    other = elsewhere
    not_zip = tmp_path / "photo.zip"
    not_zip.write_bytes(b"\x89PNG not a zip")
    with pytest.raises(EmberError, match="not a zip file"):
        other.import_zip(not_zip)
    with pytest.raises(EmberError, match="does not exist"):
        other.import_zip(tmp_path / "missing.zip")
    no_manifest = {k: v for k, v in members.items() if k != "manifest.json"}
    with pytest.raises(EmberError, match=r"no manifest\.json"):
        other.import_zip(rewrite(tmp_path / "n.zip", no_manifest))
    manifest = json.loads(members["manifest.json"])
    with pytest.raises(EmberError, match="format"):
        other.import_zip(
            rewrite(tmp_path / "f.zip", {**members, "manifest.json": json.dumps({**manifest, "format": "x"})})
        )
    with pytest.raises(EmberError, match="cannot be read"):
        other.import_zip(rewrite(tmp_path / "j.zip", {**members, "manifest.json": b"{not json"}))
    file_name = next(n for n in members if n.startswith("files/"))
    with pytest.raises(EmberError, match="SHA-256 differs"):
        other.import_zip(rewrite(tmp_path / "h.zip", {**members, file_name: b"another picture"}))
    without_file = {k: v for k, v in members.items() if k != file_name}
    with pytest.raises(EmberError, match="lacks its file"):
        other.import_zip(rewrite(tmp_path / "l.zip", without_file))
    no_record = {**manifest, "records": []}
    with pytest.raises(EmberError, match="no record"):
        other.import_zip(rewrite(tmp_path / "r.zip", {**members, "manifest.json": json.dumps(no_record)}))
    assert not list(other.root.rglob("*.png")) and other.count() == 0
    assert other.import_zip(archive) == 1  # the export itself was fine all along
