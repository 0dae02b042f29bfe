"""Shared fixtures: the embedded models, an isolated Ember home, a Studio."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class _PromptsOnly:
    """The safety filter's text layers for prompts only: replies pass unjudged (see ``replies_unjudged``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def check(self, text: str, role: str = "prompt", **options: Any) -> Any:
        return self._inner.check(text, role=role, **options) if role == "prompt" else []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def replies_unjudged(studio: Studio) -> Studio:
    """The Studio with replies passing the rule and classifier layers unjudged; prompts are still checked.

    For tests about something else (watermarks, Regenerate, Continue) whose replies are sampled
    stories: another CPU's kernels sample other words, and whether one machine's story trips the
    filter must not decide such a test. The safety stage still runs and records its decision.
    """
    studio.safety.text = _PromptsOnly(studio.safety.text)
    return studio


@pytest.fixture
def smol(smollm2_path: str) -> ModelOptions:
    """Load options for the embedded chat model with a small context (fast to load)."""
    return ModelOptions(smollm2_path, context_tokens=2048)


# --- Tiny random-weight diffusion pipelines (tests/tools/tiny_diffusion.py) -----------------------
# Built once per source version into ~/.cache/ember-tests/tiny-diffusion (or
# $EMBER_TINY_DIFFUSION_CACHE); tests that use them skip where torch/diffusers/optimum are missing.

import sys as _sys  # noqa: E402

_sys.path.insert(0, str(Path(__file__).parent / "tools"))


def _tiny_checkpoint(kind: str) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from tiny_diffusion import tiny_checkpoint

    return tiny_checkpoint(kind)


def _tiny_pipeline(kind: str) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("optimum.exporters.onnx")
    from tiny_diffusion import tiny_pipeline

    return tiny_pipeline(kind)


@pytest.fixture(scope="session")
def tiny_sd_checkpoint() -> Path:
    """A tiny SD 1.x-style diffusers checkpoint folder (safetensors, random weights, 64x64 images)."""
    return _tiny_checkpoint("sd")


@pytest.fixture(scope="session")
def tiny_turbo_checkpoint() -> Path:
    """A tiny SD-Turbo-style diffusers checkpoint folder ("trailing" Euler, pad token "!")."""
    return _tiny_checkpoint("turbo")


@pytest.fixture(scope="session")
def tiny_sdxl_checkpoint() -> Path:
    """A tiny SDXL-style diffusers checkpoint folder (two text encoders, text_time conditioning)."""
    return _tiny_checkpoint("sdxl")


@pytest.fixture(scope="session")
def tiny_sd() -> Path:
    """The ONNX folder (optimum's diffusers layout) of the tiny SD 1.x-style pipeline."""
    return _tiny_pipeline("sd")


@pytest.fixture(scope="session")
def tiny_turbo() -> Path:
    """The ONNX folder of the tiny SD-Turbo-style pipeline."""
    return _tiny_pipeline("turbo")


@pytest.fixture(scope="session")
def tiny_sdxl() -> Path:
    """The ONNX folder of the tiny SDXL-style pipeline."""
    return _tiny_pipeline("sdxl")


# -- a fake Hugging Face Hub on loopback, and a Hugging Face cache of the test's own ------------------


@pytest.fixture
def hub() -> Iterator[Any]:
    """A FakeHub (tests/tools/fake_hub.py) serving on 127.0.0.1; closed afterwards."""
    from fake_hub import FakeHub

    with FakeHub() as fake:
        yield fake


@pytest.fixture
def hf_cache(tmp_path: Path, hub: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Hugging Face cache of the test's own, pointed at the fake hub, with no stored token.

    huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE and the token path when it is
    imported, so its constants are set here too, and the endpoint and cache are passed explicitly.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import reset_sessions

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")  # the fake speaks plain HTTP
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # Code that takes huggingface_hub's default cache (the Studio's downloads, scan_cache_dir) sees it.
    # (Its ENDPOINT constant stays: hf_hub_url swaps an explicit endpoint in only for that prefix.)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True, raising=False)  # 0.32 and later
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    reset_sessions()
    yield cache
    reset_sessions()


# -- the throwaway modality of the tests (tests/tools/echo_modality) ---------------------------------


@pytest.fixture
def echo_modality() -> Iterator[Any]:
    """The echo modality, registered for one test (its engine can also crash in the ways native code does)."""
    from echo_modality import ECHO

    from engines.modalities import register

    unregister = register(ECHO)
    yield ECHO
    unregister()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which CPU the suite ran on (CI lands on Intel or AMD; a run's log should say which)."""
    from engines.hardware import cpu_name
    from engines.text.cpu_backend import cpu_flags

    flags = cpu_flags()
    amx = "yes" if "amx_tile" in flags else "no"
    return [f"cpu: {cpu_name()} ({os.cpu_count()} cores); AMX: {amx}; {' '.join(flags)}"]


def models_loaded(studio: Studio) -> list[Any]:
    """EngineInfo of the models loaded in the Studio's engine processes, the safety filter's own checkers left out
    (the meaning layer loads at the first prompt check)."""
    return [info for _, info in studio.registry.loaded() if info.kind != "safety"]


# --- The tiny random-weight MusicGen (tests/tools/tiny_musicgen.py), built once per source version -------


@pytest.fixture(scope="session")
def tiny_musicgen_checkpoint() -> Path:
    """The tiny MusicGen transformers checkpoint folder (safetensors, random weights, T5-style tokenizer)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_musicgen import tiny_musicgen_checkpoint as build

    return build()


@pytest.fixture(scope="session")
def tiny_musicgen_onnx(tiny_musicgen_checkpoint: Path) -> Path:
    """The optimum ONNX export of the tiny MusicGen (text_encoder.onnx, decoder_model.onnx, ...)."""
    pytest.importorskip("optimum.exporters.onnx")
    from tiny_musicgen import tiny_musicgen_onnx as build

    return build()
