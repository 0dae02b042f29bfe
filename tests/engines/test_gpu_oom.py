"""A GPU out of memory, through each engine's error path: a clear message, the job failed, the Studio alive and
serving the next job, nothing already saved lost.

There is no GPU here, so the failure is made at the library boundary inside the engine processes
(tests/tools/gpu_oom.py: a ``sitecustomize`` the engine processes import at start-up): onnxruntime's
``Session.run`` raises what onnxruntime-gpu raises when its arena or a CUDA call cannot allocate
(diffusion, upscale), and llama.cpp's C functions fail as its CUDA build does when cudaMalloc fails
(the model's weights, the context's KV cache, a compute buffer mid-reply), logging what llama.cpp
logs, so llama-cpp-python raises its own ValueError or RuntimeError. Ember's own code runs unchanged.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gpu_oom import GpuOom

from engines.diffusion.requests import DiffusionOptions, ImageRequest
from engines.jobs import EventKind, JobEvent
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling
from engines.upscale.models import converted_path, upscaler
from engines.upscale.requests import UpscaleOptions, UpscaleRequest

HI = (Message("user", "Say hello."),)
STORY = (Message("user", "Tell me a story about a lighthouse."),)
_PYTHON_ERROR = re.compile(r"\b(Traceback|[A-Z]\w*(Error|Exception))\b")


@pytest.fixture
def gpu_oom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GpuOom:
    """The GPU faults' control, in the environment the Studio's engine processes start with."""
    oom = GpuOom(tmp_path / "gpu-oom" / "control")
    for name, value in oom.environment().items():
        monkeypatch.setenv(name, value)
    return oom


@pytest.fixture
def oom_studio(gpu_oom: GpuOom, ember_home: Path) -> Iterator[Studio]:
    """A Studio whose engine processes carry the GPU faults (made after ``gpu_oom`` set their environment)."""
    before = set(threading.enumerate())
    studio = Studio()
    yield studio
    assert studio.close(timeout_s=10), "Studio threads did not stop"
    left = [t for t in threading.enumerate() if t not in before and t.name.startswith("ember")]
    assert not left, f"threads left behind: {left}"


def _saved(home: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in home.rglob("*") if p.suffix in (".png", ".wav")}


def _assert_out_of_memory(final: JobEvent | None, *advice: str) -> str:
    assert final is not None, "the job never ended"
    assert final.kind is EventKind.FAILED, (final.kind, final.data)
    message = final.data
    assert isinstance(message, str) and not _PYTHON_ERROR.search(message), message
    assert "memory" in message and "unexpected error" not in message and "damaged" not in message, message
    for words in advice:
        assert words in message, (words, message)
    return message


def _assert_nothing_saved_lost(studio: Studio, home: Path, files: dict[Path, str], records: set[str]) -> None:
    assert {p: h for p, h in _saved(home).items() if p in files} == files  # every file there, unchanged
    assert records <= {r.output_id for r in studio.records.recent(500)}
    assert not list(home.rglob("*.tmp"))


# -- onnxruntime: diffusion and upscale ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["ort-arena", "ort-cuda"])
def test_a_gpu_out_of_memory_in_the_unet_fails_the_image_plainly_and_the_next_one_is_made(
    oom_studio: Studio, gpu_oom: GpuOom, ember_home: Path, tiny_sd: Path, fault: str
) -> None:
    request = ImageRequest(DiffusionOptions(str(tiny_sd), device="cpu"), "a red apple", seed=1, steps=1, width=64,
                           height=64, preview=False)  # fmt: skip
    first = oom_studio.submit(request).wait(120)
    assert first is not None and first.kind is EventKind.RESULT, first
    files, records = _saved(ember_home), {r.output_id for r in oom_studio.records.recent(500)}
    assert files and records

    with gpu_oom.armed(fault, match="unet"):
        final = oom_studio.submit(request).wait(120)

    _assert_out_of_memory(final, "smaller image", "close other programs")
    assert gpu_oom.fired(), "the fault never reached the engine process"
    again = oom_studio.submit(request).wait(120)
    assert again is not None and again.kind is EventKind.RESULT, again
    _assert_nothing_saved_lost(oom_studio, ember_home, files, records)


@pytest.mark.parametrize("fault", ["ort-arena", "ort-cuda"])
def test_a_gpu_out_of_memory_on_an_upscale_tile_fails_the_upscale_plainly_and_the_next_one_is_made(
    oom_studio: Studio, gpu_oom: GpuOom, ember_home: Path, session_home: Path, fault: str
) -> None:
    graph = converted_path(upscaler("animevideo-x2"))
    options = UpscaleOptions("animevideo-x2", device="cpu", threads=1)
    image = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)

    def upscale() -> JobEvent | None:
        return oom_studio.submit(UpscaleRequest(options, image, scale=2, tile_size=32, overlap=8)).wait(120)

    first = upscale()
    assert first is not None and first.kind is EventKind.RESULT, first
    files, records = _saved(ember_home), {r.output_id for r in oom_studio.records.recent(500)}
    assert files and records

    with gpu_oom.armed(fault, match=graph.name, after=1):  # the second tile
        final = upscale()

    _assert_out_of_memory(final, "smaller tile size", "close other programs")
    assert gpu_oom.fired(), "the fault never reached the engine process"
    again = upscale()
    assert again is not None and again.kind is EventKind.RESULT, again
    _assert_nothing_saved_lost(oom_studio, ember_home, files, records)


# -- llama.cpp: the weights, the context, a reply ------------------------------------------------------------


def _chat(studio: Studio, options: ModelOptions, messages: tuple[Message, ...] = HI, max_tokens: int = 6,
          events: list[JobEvent] | None = None) -> JobEvent | None:  # fmt: skip
    request = ChatRequest(options, messages, sampling=Sampling(temperature=0.0, max_tokens=max_tokens))
    return studio.submit(request, listener=events.append if events is not None else None).wait(120)


def _first_reply(studio: Studio, home: Path, smollm2_path: str) -> tuple[dict[Path, str], set[str]]:
    """One reply and one piece of music saved first: what must survive the out-of-memory job."""
    from engines.music.requests import ComposeRequest

    reply = _chat(studio, ModelOptions(smollm2_path, context_tokens=512))
    assert reply is not None and reply.kind is EventKind.RESULT, reply
    music = studio.submit(ComposeRequest(bars=2, seed=1)).wait(120)
    assert music is not None and music.kind is EventKind.RESULT, music
    files, records = _saved(home), {r.output_id for r in studio.records.recent(500)}
    assert files and len(records) >= 2
    return files, records


def test_weights_that_do_not_fit_in_gpu_memory_fail_the_load_plainly_and_the_next_chat_works(
    oom_studio: Studio, gpu_oom: GpuOom, ember_home: Path, smollm2_path: str, tmp_path: Path
) -> None:
    files, records = _first_reply(oom_studio, ember_home, smollm2_path)
    other = tmp_path / "other-model.gguf"  # a model not loaded yet: its load is what fails
    shutil.copyfile(smollm2_path, other)

    with gpu_oom.armed("llama-model"):
        final = _chat(oom_studio, ModelOptions(str(other), context_tokens=512))

    message = _assert_out_of_memory(final, "GPU memory", "smaller model", "Close other programs")
    assert "2.1 GB" in message, message  # what llama.cpp said it tried to allocate
    assert gpu_oom.fired()
    again = _chat(oom_studio, ModelOptions(str(other), context_tokens=512))
    assert again is not None and again.kind is EventKind.RESULT, again
    _assert_nothing_saved_lost(oom_studio, ember_home, files, records)


def test_a_context_that_does_not_fit_in_gpu_memory_fails_plainly_and_says_to_lower_the_context(
    oom_studio: Studio, gpu_oom: GpuOom, ember_home: Path, smollm2_path: str
) -> None:
    files, records = _first_reply(oom_studio, ember_home, smollm2_path)

    with gpu_oom.armed("llama-context"):
        final = _chat(oom_studio, ModelOptions(smollm2_path, context_tokens=2048))

    message = _assert_out_of_memory(final, "GPU memory", "2,048-token context", "Lower the context length")
    assert gpu_oom.fired()
    again = _chat(oom_studio, ModelOptions(smollm2_path, context_tokens=2048))
    assert again is not None and again.kind is EventKind.RESULT, (again, message)
    _assert_nothing_saved_lost(oom_studio, ember_home, files, records)


def test_gpu_memory_running_out_in_the_middle_of_a_reply_fails_it_plainly_and_streams_nothing_twice(
    oom_studio: Studio, gpu_oom: GpuOom, ember_home: Path, smollm2_path: str
) -> None:
    options = ModelOptions(smollm2_path, context_tokens=512)
    files, records = _first_reply(oom_studio, ember_home, smollm2_path)
    events: list[JobEvent] = []

    # Once, after the prompt and a few tokens: a second run would succeed, so a retry would show.
    with gpu_oom.armed("llama-decode", after=4, times=1):
        final = _chat(oom_studio, options, STORY, max_tokens=40, events=events)

    _assert_out_of_memory(final, "ran out of", "Lower the context length")
    assert [e for e in events if e.kind is EventKind.TOKEN], "the reply failed before any token: not mid-reply"
    assert gpu_oom.fired() and len(gpu_oom.fired()) == 1
    again = _chat(oom_studio, options, STORY, max_tokens=12)
    assert again is not None and again.kind is EventKind.RESULT, again
    fresh = _chat(oom_studio, options, STORY, max_tokens=12)  # the cache the failure left is not reused wrongly
    assert fresh is not None and fresh.kind is EventKind.RESULT and fresh.data.output.text == again.data.output.text
    _assert_nothing_saved_lost(oom_studio, ember_home, files, records)
