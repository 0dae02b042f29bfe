"""The model library: import in place, remove safely, and discover what other apps already downloaded."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engines.database import Database
from engines.errors import EmberError, ModelFileError
from engines.models import library as library_module
from engines.models.library import ModelLibrary, model_id
from engines.paths import cache_dir, database_path

SMOL_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


@pytest.fixture
def db(ember_home: Path) -> Iterator[Database]:
    database = Database(database_path())
    yield database
    database.close()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home with no Hugging Face, LM Studio or GPT4All settings leaking in from the machine."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "EMBER_LMSTUDIO_DIRS", "EMBER_GPT4ALL_DIRS"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    return home


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and "sqlite3" not in p.name}


def test_import_records_the_file_where_it_is(db: Database, isolated: Path, smollm2_path: str, tmp_path: Path) -> None:
    link = tmp_path / "my models" / "smol.gguf"
    link.parent.mkdir()
    link.symlink_to(smollm2_path)
    home = Path(os.environ["EMBER_HOME"])
    before = _files_under(home / "data")
    library = ModelLibrary(db, home=isolated)
    model = library.import_path(link)
    assert model.path == str(link)  # the path as picked, not where the link points
    assert (model.source, model.kind, model.name) == ("imported", "text", "Smollm2 135M 8k Lc100K Mix1 Ep2")
    assert model.size_bytes == os.path.getsize(smollm2_path)
    assert _files_under(home / "data") == before  # nothing copied
    assert link.is_symlink() and os.path.realpath(link) == os.path.realpath(smollm2_path)
    again = ModelLibrary(db, home=isolated).installed()
    assert [(m.id, m.path, m.source) for m in again] == [(model.id, str(link), "imported")]


def test_import_refuses_what_inspection_rejects(db: Database, isolated: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"\x80\x04K\x01.")
    library = ModelLibrary(db, home=isolated)
    with pytest.raises(ModelFileError, match="can run code when loaded"):
        library.import_path(checkpoint)
    assert library.installed() == []


def test_removing_an_import_never_deletes_the_file(
    db: Database, isolated: Path, make_gguf: Callable[..., Path]
) -> None:
    path = make_gguf("mine.gguf")
    library = ModelLibrary(db, home=isolated)
    model = library.import_path(path)
    assert library.remove(model.id, delete_files=True) is False
    assert path.exists() and library.installed() == []
    with pytest.raises(EmberError, match="no imported model"):
        library.remove(model.id)
    with pytest.raises(EmberError, match="cannot be removed"):
        library.remove("embedded:smollm2-135m-instruct")


def test_a_download_in_embers_own_folder_can_be_deleted(
    db: Database, isolated: Path, make_gguf: Callable[..., Path]
) -> None:
    own = cache_dir() / "models" / "test-download"
    own.mkdir(parents=True, exist_ok=True)
    path = shutil.copy(make_gguf("dl.gguf"), own / "dl.gguf")
    library = ModelLibrary(db, home=isolated)
    model = library.record_download(path, catalog_id="smollm2-135m-instruct-q4_k_m", repo=SMOL_REPO)
    assert (model.source, model.catalog_id) == ("downloaded", "smollm2-135m-instruct-q4_k_m")
    assert library.remove(model.id, delete_files=True) is True
    assert not Path(path).exists()


# -- discovery ---------------------------------------------------------------------------------------


def _hf_repo(cache: Path, repo: str, files: dict[str, Path], revision: str = "a" * 40) -> Path:
    """Lay out ``files`` (repo path -> content) as huggingface_hub does: blobs, snapshot links, refs/main."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    for number, (rel, content) in enumerate(sorted(files.items())):
        blob = folder / "blobs" / f"{number:040x}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        if content.stat().st_size > 1_000_000:
            blob.symlink_to(content)  # the big real model: linked, not copied
        else:
            shutil.copyfile(content, blob)
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    return snapshot


def _diffusers_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def smol_copy(smollm2_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the embedded chat model: a real GGUF that is not the embedded file itself."""
    return Path(shutil.copy(smollm2_path, tmp_path_factory.mktemp("smol") / "smol.gguf"))


@pytest.fixture
def machine_with_models(
    isolated: Path,
    tmp_path: Path,
    smol_copy: Path,
    gemma_path: str,
    classifier_onnx: Path,
    make_gguf: Callable[..., Path],
    make_diffusers_folder: Callable[..., Path],
    piper_voice: Path,
) -> dict[str, Path]:
    """A home where the Hugging Face cache, LM Studio and GPT4All each hold models, and some bad files."""
    hf = isolated / ".cache" / "huggingface" / "hub"
    smol = _hf_repo(hf, SMOL_REPO, {SMOL_FILE: smol_copy})
    tiny_sd = make_diffusers_folder("tiny-sd")
    sd = _hf_repo(hf, "someone/tiny-sd-onnx", _diffusers_files(tiny_sd), revision="b" * 40)
    voice_json = piper_voice.with_name(piper_voice.name + ".json")
    voices = _hf_repo(
        hf,
        "rhasspy/piper-voices",
        {
            "en/en_US/test/medium/en_US-test-medium.onnx": piper_voice,
            "en/en_US/test/medium/en_US-test-medium.onnx.json": voice_json,
        },
        revision="c" * 40,
    )
    _hf_repo(hf, "someone/classifier", {"onnx/model.onnx": classifier_onnx}, revision="d" * 40)

    lms_downloads = tmp_path / "lmstudio-downloads"
    (isolated / ".lmstudio").mkdir()
    (isolated / ".lmstudio" / "settings.json").write_text(json.dumps({"downloadsFolder": str(lms_downloads)}))
    gemma_lms = lms_downloads / "google" / "gemma-3-270m-GGUF" / "gemma-3-270m-Q4_K_M.gguf"
    gemma_lms.parent.mkdir(parents=True)
    gemma_lms.symlink_to(gemma_path)
    old_lms = isolated / ".cache" / "lm-studio" / "models" / "someone" / "tiny-GGUF"
    old_lms.mkdir(parents=True)
    shutil.copy(make_gguf("chat.gguf", model_name="Tiny Chat"), old_lms / "tiny-chat.gguf")
    shutil.copy(make_gguf("mmproj.gguf", arch="clip"), old_lms / "mmproj-tiny-f16.gguf")

    gpt_models = tmp_path / "gpt4all-models"
    gpt_models.mkdir()
    ini = isolated / ".config" / "nomic.ai" / "GPT4All.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[General]\nmodelPath={gpt_models}\nfontSize=Small\n")
    shutil.copy(make_gguf("guard.gguf", model_name="Llama Guard 3 1B"), gpt_models / "Llama-Guard-3-1B.Q4_0.gguf")
    (gpt_models / "incomplete-Llama-3.2-3B.gguf").write_bytes(b"GGUF")
    default_gpt = isolated / ".local" / "share" / "nomic.ai" / "GPT4All"
    default_gpt.mkdir(parents=True)
    (default_gpt / "truncated.gguf").write_bytes(smol_copy.read_bytes()[: smol_copy.stat().st_size // 2])
    (default_gpt / "dangling.gguf").symlink_to(tmp_path / "nowhere.gguf")
    return {
        "smol": smol / SMOL_FILE,
        "sd": sd,
        "voice": voices / "en/en_US/test/medium/en_US-test-medium.onnx",
        "gemma": gemma_lms,
        "chat": old_lms / "tiny-chat.gguf",
        "guard": gpt_models / "Llama-Guard-3-1B.Q4_0.gguf",
        "truncated": default_gpt / "truncated.gguf",
        "dangling": default_gpt / "dangling.gguf",
    }


def test_discovery_finds_models_where_other_apps_keep_them(
    db: Database, isolated: Path, machine_with_models: dict[str, Path]
) -> None:
    library = ModelLibrary(db, home=isolated)
    models = {m.path: m for m in library.discover()}
    where = machine_with_models
    expect = {
        str(where["smol"]): ("huggingface", "text"),
        str(where["sd"]): ("huggingface", "diffusion"),
        str(where["voice"]): ("huggingface", "voice"),
        str(where["chat"]): ("lmstudio", "text"),
        str(where["guard"]): ("gpt4all", "guard"),
    }
    for path, (source, kind) in expect.items():
        assert path in models, path
        assert (models[path].source, models[path].kind) == (source, kind)
    smol = models[str(where["smol"])]
    assert (smol.repo, smol.catalog_id) == (SMOL_REPO, "smollm2-135m-instruct-q4_k_m")
    assert models[str(where["sd"])].repo == "someone/tiny-sd-onnx"
    # the embedded models come first
    assert [m.source for m in library.discover()][:2] == ["embedded", "embedded"]
    assert "embedded:smollm2-135m-instruct" in models
    # never listed: projectors, GPT4All's partial downloads, a classifier, and LM Studio's link to the
    # embedded Gemma (the same file, listed once, as embedded)
    assert not any("mmproj" in p or "incomplete-" in p or "classifier" in p for p in models)
    assert str(where["gemma"]) not in models
    # reported, not raised: a truncated file and a link to nowhere
    problems = {p.path: p for p in library.problems}
    assert "is incomplete" in problems[str(where["truncated"])].reason
    assert "cannot read" in problems[str(where["dangling"])].reason
    assert problems[str(where["dangling"])].source == "gpt4all"
    assert not any("mmproj" in p or "classifier" in p for p in problems)


def test_a_second_scan_reads_nothing_that_did_not_change(
    db: Database, isolated: Path, machine_with_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ModelLibrary(db, home=isolated).discover()
    inspected: list[Path] = []
    real_inspect = library_module.inspect_model

    def counting(path: Path) -> object:
        inspected.append(Path(path))
        return real_inspect(path)

    monkeypatch.setattr(library_module, "inspect_model", counting)
    again = ModelLibrary(db, home=isolated)
    assert [m.id for m in again.discover()] == [m.id for m in first]
    assert inspected == []
    assert str(machine_with_models["truncated"]) in {p.path for p in again.problems}  # remembered too
    changed = machine_with_models["chat"]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    again.discover()
    assert inspected == [changed]


def test_the_hugging_face_cache_follows_hf_home(
    db: Database, isolated: Path, smollm2_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hf_repo(tmp_path / "elsewhere" / "hub", SMOL_REPO, {SMOL_FILE: Path(smollm2_path)})
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
    library = ModelLibrary(db, home=isolated, include_embedded=False)
    assert library.hf_cache_dir() == tmp_path / "elsewhere" / "hub"
    assert [m.source for m in library.discover()] == ["huggingface"]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert ModelLibrary(db, home=isolated, include_embedded=False).discover() == []


def test_roots_can_be_given_by_environment(
    db: Database, isolated: Path, tmp_path: Path, make_gguf: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    lms, gpt = tmp_path / "lms", tmp_path / "gpt"
    (lms / "pub" / "repo").mkdir(parents=True)
    gpt.mkdir()
    shutil.copy(make_gguf("a.gguf"), lms / "pub" / "repo" / "a.gguf")
    shutil.copy(make_gguf("b.gguf"), gpt / "b.gguf")
    monkeypatch.setenv("EMBER_LMSTUDIO_DIRS", str(lms))
    monkeypatch.setenv("EMBER_GPT4ALL_DIRS", str(gpt))
    library = ModelLibrary(db, home=isolated, include_embedded=False)
    assert {(Path(m.path).name, m.source) for m in library.discover()} == {
        ("a.gguf", "lmstudio"),
        ("b.gguf", "gpt4all"),
    }


def test_a_model_found_twice_is_listed_once_under_its_record(
    db: Database, isolated: Path, machine_with_models: dict[str, Path]
) -> None:
    library = ModelLibrary(db, home=isolated)
    imported = library.import_path(machine_with_models["chat"])
    listed = [m for m in library.discover() if m.name == "Tiny Chat"]
    assert [(m.id, m.source) for m in listed] == [(imported.id, "imported")]
    assert library.get(imported.id).path == str(machine_with_models["chat"])
    with pytest.raises(EmberError, match="only found it in the Hugging Face cache"):
        library.remove(model_id(str(machine_with_models["smol"])))


def test_an_imported_file_that_went_away_is_reported(
    db: Database, isolated: Path, make_gguf: Callable[..., Path]
) -> None:
    path = make_gguf("gone.gguf")
    library = ModelLibrary(db, home=isolated, include_embedded=False)
    library.import_path(path)
    path.unlink()
    assert library.discover() == []
    assert "is no longer there" in library.problems[0].reason
    assert library.installed()[0].path == str(path)  # kept: the drive may come back


def test_embedded_models_are_listed_by_their_engine_path(db: Database, isolated: Path, gemma_path: str) -> None:
    embedded = [m for m in ModelLibrary(db, home=isolated).discover() if m.source == "embedded"]
    assert [m.path for m in embedded] == ["embedded:smollm2-135m-instruct", "embedded:gemma-3-270m"]
    gemma = embedded[1]
    assert gemma.info.architecture == "gemma3"
    assert os.path.realpath(gemma.info.path) == os.path.realpath(gemma_path)


def test_an_embedded_model_in_parts_is_described_from_its_parts_before_it_is_put_together(
    db: Database, isolated: Path, gemma_path: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from engines.text.gguf_header import read_gguf_header

    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "fresh-home"))  # no assembled Gemma in this cache
    [gemma] = [m for m in ModelLibrary(db, home=isolated).discover() if m.path == "embedded:gemma-3-270m"]
    assert not gemma.info.path.exists()  # nothing was written to describe it
    whole = read_gguf_header(gemma_path)
    assert gemma.info.quantisation == whole.quantization == "Q4_K_M"
    assert gemma.info.parameter_count == whole.parameter_count > 200_000_000
    assert gemma.info.context_length == whole.context_length and gemma.info.architecture == "gemma3"
    assert gemma.size_bytes == os.path.getsize(gemma_path)
