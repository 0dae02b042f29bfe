"""One rule says what a diffusers ONNX folder is (engines/diffusion/folder.py): the engine, the inspector
and the library's scan accept and refuse the same folders, OnnxStack's exports (no model_index.json) included."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engines.database import Database
from engines.diffusion.convert import inspect_checkpoint
from engines.diffusion.engine import DiffusionEngine
from engines.diffusion.folder import (
    diffusion_roots,
    is_diffusion_folder,
    layout_problem,
    missing_parts,
    text_encoders,
)
from engines.diffusion.pipeline import read_model_folder
from engines.diffusion.requests import DiffusionOptions, ImageRequest
from engines.errors import ModelFileError
from engines.jobs import CancelToken
from engines.models.inspect import inspect_model
from engines.models.library import ModelLibrary
from engines.paths import database_path


@pytest.fixture
def onnxstack_sd(tiny_sd: Path, tmp_path: Path) -> Path:
    """The tiny SD pipeline's ONNX folder as OnnxStack lays it out: the same components, no model_index.json."""
    folder = tmp_path / "models" / "tiny-sd-onnxstack"
    shutil.copytree(tiny_sd, folder, ignore=shutil.ignore_patterns("model_index.json"))
    return folder


@pytest.fixture
def db(ember_home: Path) -> Iterator[Database]:
    database = Database(database_path())
    yield database
    database.close()


class _Quiet:
    def token(self, text: str) -> None:
        raise AssertionError("an image engine streams no text")

    def step(self, done: int, total: int) -> None:
        pass

    def notice(self, message: str) -> None:
        pass

    def preview(self, image: object, index: int = 0) -> None:
        pass

    def wants_preview(self) -> bool:
        return False


def test_an_onnxstack_folder_is_read_and_run_by_the_engine(onnxstack_sd: Path, ember_home: Path) -> None:
    assert is_diffusion_folder(onnxstack_sd) and layout_problem(onnxstack_sd) == ""
    model = read_model_folder(onnxstack_sd)
    assert model.encoders == (("tokenizer", "text_encoder"),) and not model.xl and model.model_index == {}
    options = DiffusionOptions(str(onnxstack_sd), device="cpu", threads=1)
    engine = DiffusionEngine(options)
    try:
        request = ImageRequest(options, "a red cat", seed=1, steps=1, width=64, height=64)
        out = engine.run(request, _Quiet(), CancelToken())
    finally:
        engine.unload()
    assert out.images[0].shape == (64, 64, 3)


def test_an_onnxstack_folder_is_inspected_and_found_as_a_diffusion_model(
    onnxstack_sd: Path, db: Database, tmp_path: Path
) -> None:
    info = inspect_model(onnxstack_sd)
    assert (info.kind, info.format) == ("diffusion", "onnx-diffusers")
    home = tmp_path / "home"
    home.mkdir()
    library = ModelLibrary(db, home=home, lmstudio_dirs=[onnxstack_sd.parent], gpt4all_dirs=[], include_embedded=False)
    found = {m.path: m for m in library.discover()}
    assert str(onnxstack_sd) in found and found[str(onnxstack_sd)].kind == "diffusion"
    assert library.problems == []
    assert library.import_path(onnxstack_sd).kind == "diffusion"


def test_a_listing_shows_the_same_folders_as_the_disk(onnxstack_sd: Path, tiny_sd: Path) -> None:
    names = [p.relative_to(onnxstack_sd).as_posix() for p in onnxstack_sd.rglob("*") if p.is_file()]
    assert diffusion_roots(names) == {""}
    nested = [f"sd/onnx/{n}" for n in names] + ["sd/README.md", "other/model.onnx"]
    assert diffusion_roots(nested) == {"sd/onnx"}
    assert diffusion_roots(["model_index.json", "unet/diffusion_pytorch_model.safetensors"]) == {""}
    assert diffusion_roots(["unet.onnx", "vae_decoder/model.onnx"]) == set()
    assert is_diffusion_folder(tiny_sd) and not is_diffusion_folder(onnxstack_sd / "unet")


def test_what_is_not_a_diffusers_onnx_folder_is_refused_alike(tmp_path: Path, tiny_sd_checkpoint: Path) -> None:
    empty = tmp_path / "photos"
    empty.mkdir()
    refusals = {
        str(tmp_path / "nowhere"): "is not a folder",
        str(empty): r"not a diffusers ONNX folder: it has no model_index\.json and no unet/model\.onnx",
        str(tiny_sd_checkpoint): "diffusers checkpoint for PyTorch, not an ONNX model",
    }
    for folder, reason in refusals.items():
        assert re.search(reason, layout_problem(folder))
        with pytest.raises(ModelFileError, match=reason):
            read_model_folder(folder)
    with pytest.raises(ModelFileError, match=r"has no model_index\.json and no unet/model\.onnx"):
        inspect_model(empty)
    with pytest.raises(ModelFileError, match="PyTorch format"):
        inspect_model(tiny_sd_checkpoint)


def _touch(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return folder


_COMMON = ("unet/model.onnx", "vae_decoder/model.onnx", "scheduler/scheduler_config.json")


@pytest.mark.parametrize(
    ("files", "index", "encoders", "missing"),
    [
        (
            (*_COMMON, "text_encoder/model.onnx", "tokenizer/vocab.json", "tokenizer/merges.txt"),
            {},
            [("text_encoder", "tokenizer")],
            [],
        ),
        ((*_COMMON, "text_encoder/model.onnx", "tokenizer/tokenizer.json"), {}, [("text_encoder", "tokenizer")], []),
        (
            (*_COMMON, "text_encoder/model.onnx", "tokenizer/tokenizer.json"),
            {"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]},
            [("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")],
            ["text_encoder_2/model.onnx", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt"],
        ),
        (  # an SDXL refiner: the second encoder only
            (*_COMMON, "text_encoder_2/model.onnx", "tokenizer_2/tokenizer.json"),
            {"text_encoder": [None, None], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]},
            [("text_encoder_2", "tokenizer_2")],
            [],
        ),
        (
            ("unet/model.onnx",),
            {},
            [("text_encoder", "tokenizer")],
            [
                "vae_decoder/model.onnx",
                "text_encoder/model.onnx",
                "tokenizer/vocab.json",
                "tokenizer/merges.txt",
                "scheduler/scheduler_config.json",
            ],
        ),
    ],
)
def test_the_parts_a_folder_needs_follow_its_index_and_its_folders(
    tmp_path: Path, files: tuple[str, ...], index: dict, encoders: list, missing: list
) -> None:
    folder = _touch(tmp_path / "model", *files)
    assert text_encoders(folder, index) == encoders
    assert missing_parts(folder, index) == missing


def test_an_incomplete_folder_is_refused_by_the_engine_and_the_inspector_for_the_same_parts(
    onnxstack_sd: Path,
) -> None:
    (onnxstack_sd / "tokenizer" / "merges.txt").unlink()
    (onnxstack_sd / "model_index.json").write_text(json.dumps({"_class_name": "ORTStableDiffusionPipeline"}))
    assert missing_parts(onnxstack_sd, {}) == ["tokenizer/merges.txt"]
    with pytest.raises(ModelFileError, match=r"incomplete: it has no tokenizer/merges\.txt\."):
        read_model_folder(onnxstack_sd)
    with pytest.raises(ModelFileError, match=r"incomplete: tokenizer/merges\.txt is missing"):
        inspect_model(onnxstack_sd)


def test_the_converter_sends_an_onnxstack_folder_back_as_already_onnx(onnxstack_sd: Path) -> None:
    with pytest.raises(ModelFileError, match="already in the ONNX layout; Ember can open it as it is"):
        inspect_checkpoint(onnxstack_sd)
