"""Which build this is: a checkout says so; an installed bundle reads the variant its freeze wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engines.build_info import VARIANT_FILE, build_info


def test_a_checkout_says_it_runs_from_source() -> None:
    info = build_info()
    assert not info.installed and info.variant == "source"
    assert info.describe().startswith("from source") and sys.prefix in info.describe()


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    app = tmp_path / "ember"
    internal = app / "_internal"
    internal.mkdir(parents=True)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(internal), raising=False)
    monkeypatch.setattr(sys, "executable", str(app / "ember"))
    monkeypatch.delenv("EMBER_HOME", raising=False)
    return app


@pytest.mark.parametrize(("variant", "words"), [("cpu", "CPU build"), ("cuda", "CUDA build"), ("metal", "Metal build")])
def test_an_installed_bundle_reports_its_variant(bundle: Path, variant: str, words: str) -> None:
    (bundle / "_internal" / VARIANT_FILE).write_text(json.dumps({"variant": variant}), encoding="utf-8")
    info = build_info()
    assert info.installed and info.variant == variant and info.location == str(bundle.resolve())
    assert info.describe() == f"installed {words}, {bundle.resolve()}"


def test_a_portable_bundle_says_its_data_is_beside_it(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bundle / "_internal" / VARIANT_FILE).write_text(json.dumps({"variant": "cpu"}), encoding="utf-8")
    (bundle / "portable").touch()
    monkeypatch.setenv("EMBER_HOME", str(bundle.resolve() / "data"))  # what the runtime hook sets
    assert build_info().portable and "portable" in build_info().describe()


def test_a_bundle_without_the_variant_file_says_unknown(bundle: Path) -> None:
    (bundle / "_internal" / VARIANT_FILE).write_text("{not json", encoding="utf-8")
    assert build_info().variant == "unknown"
