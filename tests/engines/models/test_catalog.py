"""The shipped model catalog follows its schema, and every way of breaking the schema is caught."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engines.modalities import model_kinds, register
from engines.modality import ModelKind
from engines.models import catalog as catalog_module
from engines.models.catalog import CatalogError, default_catalog_path, find_entry, load_catalog

# Bits per weight of each quantisation, as llama.cpp reports them for a typical model.
_GGUF_BITS = {"Q4_K_M": 4.85, "Q5_K_M": 5.69, "Q6_K": 6.56, "Q8_0": 8.5, "Q4_0": 4.5, "F16": 16.0}
_ONNX_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return json.loads(default_catalog_path().read_text(encoding="utf-8"))


def test_the_shipped_catalog_loads() -> None:
    entries = load_catalog()
    assert len(entries) >= 40
    assert len({e.id for e in entries}) == len(entries)


def test_every_kind_the_model_manager_serves_is_present() -> None:
    kinds = {e.kind for e in load_catalog()}
    assert {"text", "diffusion", "upscaler", "voice", "guard"} <= kinds


def test_each_chat_family_comes_in_q4_k_m_and_q8_0() -> None:
    quants: dict[str, set[str]] = defaultdict(set)
    for e in load_catalog():
        if e.kind in ("text", "guard"):
            quants[e.family].add(e.quantisation)
    for family in ("smollm2-135m-instruct", "qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "gemma-3-1b-it"):
        assert family in quants
    for family, found in quants.items():
        assert {"Q4_K_M", "Q8_0"} <= found, family


def test_sizes_are_plausible_for_the_parameter_count() -> None:
    for e in load_catalog():
        if e.format == "gguf":
            nominal = e.parameters * _GGUF_BITS[e.quantisation] / 8
            assert 0.8 <= e.size_bytes / nominal <= 1.8, (e.id, e.size_bytes, nominal)
        elif e.format in ("onnx", "piper", "onnx-diffusers"):
            nominal = e.parameters * _ONNX_BYTES[e.quantisation]
            assert 0.7 <= e.size_bytes / nominal <= 1.5, (e.id, e.size_bytes, nominal)


def test_needs_cover_at_least_the_weights() -> None:
    for e in load_catalog():
        assert e.ram_bytes >= e.main_file.size_bytes, e.id
        assert e.vram_bytes >= e.main_file.size_bytes * 0.9, e.id


def test_llama_and_gemma_are_gated_and_open_licences_are_not() -> None:
    for e in load_catalog():
        if e.licence.startswith(("LicenseRef-llama", "LicenseRef-gemma")):
            assert e.gated, e.id
        if e.licence in ("Apache-2.0", "MIT"):
            assert not e.gated, e.id


def test_the_downloader_gets_only_known_sizes_and_hashes() -> None:
    entry = find_entry(load_catalog(), "smollm2-135m-instruct-q8_0")
    path = "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert entry.expected_sizes() == {path: 144_811_360}
    assert entry.expected_sha256() == {path: "5a1395716f7913741cc51d98581b9b1228d80987a9f7d3664106742eb06bba83"}
    approx = find_entry(load_catalog(), "mistral-7b-instruct-v0.3-q4_k_m")
    assert approx.expected_sizes() == {} and approx.expected_sha256() == {}
    assert approx.main_file.expected_size_bytes is None


def test_a_folder_entry_fetches_what_its_patterns_match_in_the_repository() -> None:
    entry = find_entry(load_catalog(), "sdxl-turbo-onnx-cuda")
    listing = [
        "README.md",
        "model_index.json",
        "unet/model.onnx",
        "unet/model.onnx.data",
        "text_encoder_2/model.onnx",
        "vae_decoder/model.onnx",
        "tokenizer/vocab.json",
        "unet/diffusion_pytorch_model.bin",
        "images/sample.png",
    ]
    fetched = entry.files_to_fetch(listing)
    assert {"unet/model.onnx", "unet/model.onnx.data", "text_encoder_2/model.onnx", "vae_decoder/model.onnx"} <= set(
        fetched
    )
    assert not {"README.md", "images/sample.png", "unet/diffusion_pytorch_model.bin"} & set(fetched)
    assert fetched[: len(entry.files)] == tuple(f.path for f in entry.files) and len(set(fetched)) == len(fetched)
    gguf = find_entry(load_catalog(), "qwen2.5-7b-instruct-q4_k_m")
    assert gguf.files_to_fetch(["Qwen2.5-7B-Instruct-Q8_0.gguf"]) == ("Qwen2.5-7B-Instruct-Q4_K_M.gguf",)


def test_voices_ship_with_their_settings_file() -> None:
    for e in load_catalog():
        if e.kind == "voice":
            onnx = e.main_file.path
            assert onnx.endswith(".onnx") and any(f.path == onnx + ".json" for f in e.files)
            assert e.sample_rate_hz == 22050


def test_the_json_schema_names_the_same_fields_as_the_loader() -> None:
    schema = json.loads((default_catalog_path().parent / "catalog.schema.json").read_text(encoding="utf-8"))
    entry = schema["$defs"]["entry"]
    assert set(entry["required"]) == set(catalog_module._REQUIRED)
    assert set(entry["properties"]) == set(catalog_module._REQUIRED) | set(catalog_module._OPTIONAL)
    assert entry["properties"]["kind"]["enum"] == list(catalog_module.KINDS)


def test_the_json_schema_names_the_panels_and_formats_of_the_modalities_kinds() -> None:
    schema = json.loads((default_catalog_path().parent / "catalog.schema.json").read_text(encoding="utf-8"))
    properties = schema["$defs"]["entry"]["properties"]
    assert set(properties["panel"]["enum"]) == {k.panel for k in model_kinds()}
    assert set(properties["format"]["enum"]) == {k.format for k in model_kinds()}
    assert set(properties["defaults"]["properties"]) == {key for k in model_kinds() for key in k.defaults}


def test_a_kind_a_modality_registers_is_read_by_the_catalog_while_it_is_registered(
    shipped: dict[str, Any], tmp_path: Path
) -> None:
    from echo_modality import ECHO

    theremin = ModelKind("theremin", "Theremin", "onnx", frozenset({"sample_rate_hz"}), frozenset({"sample_rate_hz"}))
    entry = copy.deepcopy(next(e for e in shipped["entries"] if e["kind"] == "voice"))
    entry.update(id="tiny-theremin", kind="theremin", panel="Theremin", format="onnx")
    path = _write(tmp_path, {"schema": 1, "entries": [entry]})
    with pytest.raises(CatalogError, match="kind 'theremin' is not one of"):
        load_catalog(path)
    unregister = register(replace(ECHO, name="theremin", kinds=(theremin,), commands=()))
    try:
        assert catalog_module.PANELS["theremin"] == "Theremin" and catalog_module.FORMATS["theremin"] == "onnx"
        [loaded] = load_catalog(path)
        assert (loaded.kind, loaded.panel, loaded.sample_rate_hz) == ("theremin", "Theremin", 22050)
    finally:
        unregister()
    assert "theremin" not in catalog_module.KINDS


def test_an_upcoming_kind_gives_way_to_the_modality_that_lands_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from echo_modality import ECHO

    import engines.modalities as modalities_module

    upcoming = ModelKind("sketch", "Sketch", "onnx", frozenset({"width"}))
    monkeypatch.setattr(modalities_module, "UPCOMING_KINDS", (upcoming,))
    assert [k for k in model_kinds() if k.kind == "sketch"] == [upcoming]
    landed = replace(upcoming, estimate="engines.models.fit:estimate_onnx_graph")
    unregister = register(replace(ECHO, name="sketch", kinds=(landed,), commands=()))
    try:
        assert [k for k in model_kinds() if k.kind == "sketch"] == [landed]
    finally:
        unregister()
    monkeypatch.undo()
    assert [k.kind for k in model_kinds()] == list(catalog_module.KINDS)


# -- every failure mode is caught, naming the entry -------------------------------------------------


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _broken(shipped: dict[str, Any], change: Any) -> dict[str, Any]:
    doc = {"schema": 1, "entries": copy.deepcopy(shipped["entries"][:3])}
    change(doc["entries"][1])
    return doc


def _set(key: str, value: Any) -> Any:
    return lambda e: e.__setitem__(key, value)


def _file(key: str, value: Any) -> Any:
    return lambda e: e["files"][0].__setitem__(key, value)


BREAKAGES = {
    "unknown key": (_set("colour", "red"), "unknown key(s) colour"),
    "missing field": (lambda e: e.pop("licence_url"), "missing field(s) licence_url"),
    "bad kind": (_set("kind", "video"), "kind 'video' is not one of"),
    "wrong panel": (_set("panel", "Images"), "belongs to the Chat panel"),
    "zero size": (_file("size_bytes", 0), "must be a whole number above 0"),
    "negative size": (_file("size_bytes", -5), "must be a whole number above 0"),
    "size as text": (_file("size_bytes", "1 GB"), "must be a whole number above 0"),
    "short sha256": (_file("sha256", "ab" * 31), "must be 64 lowercase hex digits or null"),
    "upper-case sha256": (_file("sha256", "AB" * 32), "must be 64 lowercase hex digits or null"),
    "pickle .bin": (_file("path", "pytorch_model.bin"), "pickle-based file"),
    "pickle .ckpt": (_file("path", "model.ckpt"), "pickle-based file"),
    "pickle .pt": (_file("path", "model.pt"), "pickle-based file"),
    "pickle .pth": (_file("path", "model.pth"), "pickle-based file"),
    "path escapes": (_file("path", "../secret.gguf"), "is not a path inside the repository"),
    "no file": (_set("files", []), "'files' must be a non-empty list"),
    "plain http licence": (_set("licence_url", "http://example.com"), "https://"),
    "gated as text": (_set("gated", "yes"), "'gated' must be true or false"),
    "needs extra key": (_set("needs", {"ram_bytes": 1, "vram_bytes": 1, "disk": 1}), "exactly 'ram_bytes'"),
    "no context": (_set("defaults", {}), "'defaults' must give context_tokens"),
    "image size for text": (_set("defaults", {"context_tokens": 4096, "width": 512}), "does not use: width"),
    "unknown backend": (_set("backends", ["cpu", "tpu"]), "unknown backend(s) tpu"),
    "bad repo": (_set("repo", "not a repo"), "is not an 'owner/name'"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_entry_is_refused_by_name(shipped: dict[str, Any], tmp_path: Path, breakage: str) -> None:
    change, message = BREAKAGES[breakage]
    doc = _broken(shipped, change)
    name = shipped["entries"][1]["id"]
    with pytest.raises(CatalogError) as err:
        load_catalog(_write(tmp_path, doc))
    assert f"entry '{name}' (#2)" in str(err.value)
    assert message in str(err.value)


def test_a_repeated_id_is_refused(shipped: dict[str, Any], tmp_path: Path) -> None:
    doc = {"schema": 1, "entries": [shipped["entries"][0], shipped["entries"][0]]}
    with pytest.raises(CatalogError, match="repeats an id"):
        load_catalog(_write(tmp_path, doc))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schema": 1, "entries": [], "extra": 1}, "unknown top-level keys: extra"),
        ({"schema": 2, "entries": [{}]}, "Ember reads schema 1"),
        ({"schema": 1, "entries": []}, "has no entries"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_a_broken_catalog_file_is_refused(tmp_path: Path, doc: Any, message: str) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


def test_a_catalog_that_is_not_json_says_so(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="is not valid JSON"):
        load_catalog(path)
