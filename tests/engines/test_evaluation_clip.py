"""The image-prompt score: a CLIP model from the catalog, scored like transformers' CLIPModel, in the evaluation.

The CLIP model is tests/tools/tiny_clip.py's: random weights in the layout of the transformers.js export the
catalog offers (Xenova/clip-vit-base-patch32), with its transformers checkpoint beside it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engines.errors import EmberError, ModelFileError
from engines.evaluation.clip import ClipEngine, ClipOptions, ClipRequest, clip_files, image_settings, prepare_image
from engines.models.catalog import default_catalog_path, download_request, load_catalog

REPO = "Xenova/clip-vit-base-patch32"
PROMPTS = ("a red cat", "a photo of the dog in a red hat, " * 12)  # the second is cut at 77 tokens


@pytest.fixture(scope="module")
def tiny_clip() -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_clip import tiny_clip as build

    return build()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Picture-like images (colour fields with grain): landscape, portrait, and one smaller than the crop."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(7)
    paths = []
    for name, (height, width) in (("wide", (200, 300)), ("tall", (320, 240)), ("small", (150, 180))):
        y, x = np.mgrid[0:height, 0:width]
        image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        path = folder / f"{name}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _transformers_cosines(folder: Path, pictures: list[Path], prompt: str) -> list[float]:
    import torch
    from tiny_clip import tiny_clip_checkpoint
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizerFast

    processor = CLIPImageProcessor.from_pretrained(str(folder))
    tokenizer = CLIPTokenizerFast.from_pretrained(str(folder))
    model = CLIPModel.from_pretrained(str(tiny_clip_checkpoint())).eval()
    text = tokenizer([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    images = [Image.open(p).convert("RGB") for p in pictures]
    pixels = processor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        out = model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=pixels)
    assert math.isclose(float(model.logit_scale.detach().exp()), 100.0, rel_tol=1e-5)
    return [float(v) / 100 for v in out.logits_per_image[:, 0]]


# -- the scorer ----------------------------------------------------------------------------------------


def test_the_scorer_prepares_images_and_prompts_as_transformers_does(tiny_clip: Path, pictures: list[Path]) -> None:
    from transformers import CLIPImageProcessor, CLIPTokenizerFast

    processor = CLIPImageProcessor.from_pretrained(str(tiny_clip))
    settings = image_settings(clip_files(tiny_clip).preprocessor)
    for path in pictures:
        with Image.open(path) as image:
            ours = prepare_image(image, settings)
            theirs = processor(images=image.convert("RGB"), return_tensors="np").pixel_values
        assert ours.shape == theirs.shape == (1, 3, 224, 224)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    engine = ClipEngine(ClipOptions(str(tiny_clip)))
    engine.load()
    tokenizer = CLIPTokenizerFast.from_pretrained(str(tiny_clip))
    for prompt in PROMPTS:
        ids, mask = engine.token_ids(prompt)
        theirs = tokenizer([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="np")
        assert ids.tolist() == theirs.input_ids.tolist() and mask.tolist() == theirs.attention_mask.tolist()
    assert int(mask.sum()) == 77  # the long prompt was cut, its end token kept
    assert ids[0, -1] == tokenizer.eos_token_id


def test_the_new_spelling_of_the_image_settings_reads_the_same(tiny_clip: Path, tmp_path: Path) -> None:
    new = tmp_path / "preprocessor_config.json"
    data = json.loads((tiny_clip / "preprocessor_config.json").read_text(encoding="utf-8"))
    data.update(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    new.write_text(json.dumps(data), encoding="utf-8")
    assert image_settings(new) == image_settings(tiny_clip / "preprocessor_config.json") == image_settings(None)


def test_the_score_matches_transformers_clip_model_on_the_same_weights(tiny_clip: Path, pictures: list[Path]) -> None:
    engine = ClipEngine(ClipOptions(str(tiny_clip)))
    for prompt in PROMPTS:
        scored = engine.score(ClipRequest(tuple(map(str, pictures)), prompt))
        expected = _transformers_cosines(tiny_clip, pictures, prompt)
        assert scored.cosines == pytest.approx(expected, abs=2e-5)
        assert scored.scores == pytest.approx([max(100 * c, 0.0) for c in expected], abs=2e-3)
    assert len(set(scored.cosines)) == 3  # three images, three scores


def test_a_text_tower_that_takes_an_attention_mask_scores_the_same(
    tiny_clip: Path, pictures: list[Path], tmp_path: Path
) -> None:
    from tiny_clip import copy_of, text_tower_with_mask

    masked = copy_of(tmp_path / "masked")
    shutil.copyfile(text_tower_with_mask(), masked / "onnx" / "text_model.onnx")
    engine = ClipEngine(ClipOptions(str(masked / "onnx" / "text_model.onnx")))  # opened by its text tower
    engine.load()
    assert {v.name for v in engine._text.get_inputs()} == {"input_ids", "attention_mask"}
    request = ClipRequest(tuple(map(str, pictures)), PROMPTS[0])
    plain = ClipEngine(ClipOptions(str(tiny_clip))).score(request)
    assert engine.score(request).cosines == pytest.approx(plain.cosines, abs=1e-5)


def test_the_quantised_file_names_of_transformers_js_are_found(tiny_clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "quantised"
    (folder / "onnx").mkdir(parents=True)
    for name in ("tokenizer.json", "preprocessor_config.json", "config.json"):
        shutil.copyfile(tiny_clip / name, folder / name)
    for tower in ("text_model", "vision_model"):
        shutil.copyfile(tiny_clip / "onnx" / f"{tower}.onnx", folder / "onnx" / f"{tower}_quantized.onnx")
    files = clip_files(folder)
    assert (files.text.name, files.vision.name, files.root) == (
        "text_model_quantized.onnx",
        "vision_model_quantized.onnx",
        folder,
    )
    assert clip_files(folder / "onnx" / "vision_model_quantized.onnx") == files


# -- broken files -------------------------------------------------------------------------------------------


def _broken(tiny_clip: Path, tmp_path: Path, change: str) -> Path:
    from tiny_clip import copy_of

    folder = copy_of(tmp_path / change)
    onnx = folder / "onnx"
    if change == "no image tower":
        (onnx / "vision_model.onnx").unlink()
    elif change == "no tokenizer":
        (folder / "tokenizer.json").unlink()
    elif change == "truncated":
        data = (onnx / "text_model.onnx").read_bytes()
        (onnx / "text_model.onnx").write_bytes(data[: len(data) // 2])
    elif change == "wrong graph":
        shutil.copyfile(onnx / "vision_model.onnx", onnx / "text_model.onnx")
    elif change == "damaged tokenizer":
        (folder / "tokenizer.json").write_text('{"model": ', encoding="utf-8")
    elif change == "damaged settings":
        (folder / "preprocessor_config.json").write_text("[1, 2", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("no image tower", r"has no image tower 'vision_model\.onnx'.*Download the model again"),
        ("no tokenizer", r"has no tokenizer\.json.*Download the model again"),
        ("truncated", r"'text_model\.onnx' is incomplete.*download it again"),
        ("wrong graph", r"'text_model\.onnx' is not a CLIP text tower: it takes pixel_values"),
        ("damaged tokenizer", r"tokenizer\.json .* cannot be read"),
        ("damaged settings", r"preprocessor_config\.json .* is damaged"),
    ],
)
def test_broken_model_files_are_refused_with_what_to_do(tiny_clip: Path, tmp_path: Path, change: str, words: str):
    folder = _broken(tiny_clip, tmp_path, change)
    with pytest.raises(ModelFileError, match=words):
        ClipEngine(ClipOptions(str(folder))).load()


def test_a_missing_model_and_a_foreign_file_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        clip_files(tmp_path / "nowhere")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(ModelFileError, match="is not a CLIP tower"):
        clip_files(tmp_path / "model.onnx")
    with pytest.raises(ModelFileError, match="holds no CLIP text tower"):
        clip_files(tmp_path)


def test_the_inspector_knows_a_clip_model_by_its_folder_or_text_tower(tiny_clip: Path) -> None:
    from engines.models.inspect import UnsupportedModel, inspect_model

    info = inspect_model(tiny_clip)
    assert (info.kind, info.format, info.path.name) == ("clip", "onnx", "text_model.onnx")
    towers = sum((tiny_clip / "onnx" / f).stat().st_size for f in ("text_model.onnx", "vision_model.onnx"))
    assert info.size_bytes == towers and info.details["vision_tower"].endswith("vision_model.onnx")
    assert inspect_model(tiny_clip / "onnx" / "text_model.onnx") == info
    with pytest.raises(UnsupportedModel, match=r"image tower of a CLIP model.*'text_model\.onnx' beside it"):
        inspect_model(tiny_clip / "onnx" / "vision_model.onnx")


# -- the catalog ---------------------------------------------------------------------------------------------


def _check(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str) -> None:
    """The parts of JSON Schema the catalog's schema uses (no validator ships with Ember)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if "oneOf" in schema:
        passed = 0
        for option in schema["oneOf"]:
            try:
                _check(value, option, defs, where)
                passed += 1
            except AssertionError:
                pass
        assert passed == 1, where
        return
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if schema.get("type") == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif "type" in schema:
        assert isinstance(value, kinds[schema["type"]]), where
    assert "enum" not in schema or value in schema["enum"], f"{where}: {value!r}"
    assert "const" not in schema or value == schema["const"], where
    if isinstance(value, str):
        assert len(value) >= schema.get("minLength", 0) and len(value) <= schema.get("maxLength", 10**9), where
        assert "pattern" not in schema or re.search(schema["pattern"], value), f"{where}: {value!r}"
        if "not" in schema:
            assert not re.search(schema["not"]["pattern"], value), where
    if isinstance(value, int) and "minimum" in schema:
        assert value >= schema["minimum"], where
    if isinstance(value, dict):
        assert set(schema.get("required", ())) <= set(value), f"{where}: missing"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(schema.get("properties", {})), f"{where}: extra {set(value)}"
        for key, item in value.items():
            _check(item, schema["properties"][key], defs, f"{where}.{key}")
    if isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0), where
        for index, item in enumerate(value):
            _check(item, schema["items"], defs, f"{where}[{index}]")


def test_the_catalog_offers_clip_and_its_entries_follow_the_schema() -> None:
    from engines.evaluation.image import CLIP_ENTRY

    raw = json.loads(default_catalog_path().read_text(encoding="utf-8"))
    schema = json.loads((default_catalog_path().parent / "catalog.schema.json").read_text(encoding="utf-8"))
    clip_raw = [e for e in raw["entries"] if e["kind"] == "clip"]
    assert len(clip_raw) == 2
    for entry in clip_raw:
        _check(entry, schema["$defs"]["entry"], schema["$defs"], entry["id"])
    entries = {e.id: e for e in load_catalog() if e.kind == "clip"}
    assert set(entries) == {"clip-vit-base-patch32-int8", "clip-vit-base-patch32-fp32"}
    small = entries["clip-vit-base-patch32-int8"]
    assert small.name == CLIP_ENTRY  # the name the "not measured" line tells a person to download
    assert (small.repo, small.panel, small.licence, small.gated, small.backends) == (
        REPO,
        "Evaluate",
        "MIT",
        False,
        ("cpu",),
    )
    for entry in entries.values():
        paths = [f.path for f in entry.files]
        assert entry.main_file.path == paths[0] and paths[0].startswith("onnx/text_model")
        assert paths[1] == paths[0].replace("text_model", "vision_model")
        assert {"tokenizer.json", "preprocessor_config.json"} <= set(paths)
        # The hub could not be reached when these were written: estimates, no hashes (the downloader
        # then treats sizes as a guide and checks the hub's own hashes).
        assert entry.expected_sizes() == {} and entry.expected_sha256() == {}
        assert download_request(entry).files == tuple(paths)
    licence = default_catalog_path().parent / "licenses" / "clip-vit-base-patch32-MIT.txt"
    assert "Copyright (c) 2021 OpenAI" in licence.read_text(encoding="utf-8")


# -- the evaluation --------------------------------------------------------------------------------------------


def _serve_clip(hub: Any, tiny_clip: Path, entry: Any) -> None:
    """The tiny model under the catalog entry's repository and file names, on the fake hub."""
    variant = entry.main_file.path[len("onnx/text_model") : -len(".onnx")]
    for path in (f.path for f in entry.files):
        source = tiny_clip / path.replace(variant, "") if path.startswith("onnx/") else tiny_clip / path
        hub.add_file(REPO, path, source.read_bytes())


def test_without_a_clip_model_the_alignment_is_not_measured_and_names_the_download(
    studio: Any, tiny_sd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engines.evaluation.image import ALIGNMENT, CLIP_SCORE, evaluate_image, find_clip_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # this machine's own cache left out
    assert find_clip_model(studio) is None
    result = evaluate_image(studio, str(tiny_sd), "a red cat", samples=2, steps=2, size=64)
    assert result.alignment == ALIGNMENT and CLIP_SCORE not in result.spread and result.clip_cosines == ()
    assert "prompt alignment: not measured" in result.table()
    assert "download 'CLIP ViT-B/32' in Models to measure it" in result.table()


def test_a_clip_model_downloaded_from_the_catalog_scores_every_image_in_an_engine_process(
    studio: Any, tiny_sd: Path, tiny_clip: Path, hub: Any, hf_cache: Path
) -> None:
    from engines.evaluation.image import CLIP_COSINE, CLIP_SCORE, evaluate_image, find_clip_model
    from engines.evaluation.sets import run_set
    from engines.jobs import EventKind
    from engines.models.library import ModelLibrary

    entry = next(e for e in load_catalog() if e.id == "clip-vit-base-patch32-int8")
    _serve_clip(hub, tiny_clip, entry)
    final = studio.download(download_request(entry)).wait(120)
    assert final is not None and final.kind is EventKind.RESULT, final and final.data
    # Found in the Hugging Face cache, as main.py models --download leaves it, and named by its entry.
    found = find_clip_model(studio)
    assert found is not None and found.name == "CLIP ViT-B/32"
    assert Path(found.path).name == "text_model_quantized.onnx"
    ModelLibrary(studio.db).record_download(
        final.data.paths[entry.main_file.path], catalog_id=entry.id, repo=entry.repo
    )  # as the Models panel records it
    assert find_clip_model(studio) == found

    result = evaluate_image(studio, str(tiny_sd), "a red cat", samples=3, steps=2, size=64)
    assert result.alignment.startswith("CLIP ViT-B/32 score: a proxy of prompt alignment")
    assert result.alignment_model == "CLIP ViT-B/32" and len(result.clip_cosines) == 3
    low, median, high = result.spread[CLIP_COSINE]
    assert -1.0 <= low <= median <= high <= 1.0
    assert result.spread[CLIP_SCORE] == pytest.approx(tuple(max(100 * c, 0.0) for c in (low, median, high)))
    direct = ClipEngine(ClipOptions(found.path)).score(ClipRequest(result.paths, "a red cat"))
    assert result.clip_cosines == pytest.approx(direct.cosines, abs=1e-6)  # the saved images, scored
    assert CLIP_SCORE in result.table() and "CLIP ViT-B/32 score" in result.table()
    # Loaded in the Studio's engine process (loaded() asks the engine processes), not in this one.
    assert [info.kind for options, info in studio.engines.loaded() if isinstance(options, ClipOptions)] == ["clip"]

    rows = run_set(studio, "image", str(tiny_sd), "cats", ["a red cat"], samples=2, steps=2, size=64).rows
    assert CLIP_SCORE in rows[0]["figures"] and rows[0]["extra"]["alignment"] == result.alignment


def test_a_broken_clip_model_leaves_the_alignment_unmeasured_with_the_reason(
    studio: Any, tiny_sd: Path, tiny_clip: Path, tmp_path: Path
) -> None:
    from engines.evaluation.image import CLIP_SCORE, evaluate_image

    folder = _broken(tiny_clip, tmp_path, "truncated")
    result = evaluate_image(studio, str(tiny_sd), "a red cat", samples=2, steps=2, size=64, clip=str(folder))
    assert CLIP_SCORE not in result.spread and len(result.paths) == 2  # the images are still measured
    assert result.alignment.startswith(f"not measured: the CLIP model 'CLIP ({folder.name})' could not score")
    assert "'text_model.onnx' is incomplete" in result.alignment


def test_the_scorer_says_which_image_it_cannot_read(tiny_clip: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"PNG? no")
    with pytest.raises(EmberError, match=r"not-an-image\.png' cannot be read"):
        ClipEngine(ClipOptions(str(tiny_clip))).score(ClipRequest((str(bad),), "a cat"))
