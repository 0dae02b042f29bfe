"""Shared fixtures: the embedded models, an isolated Ember home, a Studio."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from engines.models.embedded import GEMMA3_270M, SMOLLM2
from engines.studio import Studio
from engines.text.requests import ModelOptions


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EMBER_HOME for the whole run, so the assembled Gemma file is made once."""
    home = tmp_path_factory.mktemp("ember-session")
    os.environ["EMBER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def smollm2_path(session_home: Path) -> str:
    """The embedded chat model (SmolLM2-135M-Instruct, GGUF Q4_1)."""
    return str(SMOLLM2.path())


@pytest.fixture(scope="session")
def gemma_path(session_home: Path) -> str:
    """The embedded base model without a chat template (Gemma 3 270M, Q4_K_M)."""
    return str(GEMMA3_270M.path())


@pytest.fixture
def ember_home(tmp_path: Path, session_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder for one test (the model cache stays shared)."""
    monkeypatch.setenv("EMBER_HOME", str(tmp_path))
    shared_cache = session_home / "cache"
    shared_cache.mkdir(exist_ok=True)
    cache = tmp_path / "cache"
    if not cache.exists():
        cache.symlink_to(shared_cache, target_is_directory=True)
    return tmp_path


@pytest.fixture
def studio(ember_home: Path) -> Iterator[Studio]:
    """A Studio on a fresh database; closed (and checked for leftover threads) afterwards."""
    before = set(threading.enumerate())
    s = Studio()
    yield s
    assert s.close(timeout_s=10), "Studio threads did not stop"
    left = [t for t in threading.enumerate() if t not in before and t.name.startswith("ember")]
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def smol(smollm2_path: str) -> ModelOptions:
    """Load options for the embedded chat model with a small context (fast to load)."""
    return ModelOptions(smollm2_path, context_tokens=2048)
