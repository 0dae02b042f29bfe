"""Remote engines: a model on an OpenAI-compatible server, streamed through Ember's pipeline."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeServer

from engines.errors import Cancelled, ContextOverflowError, EmberError, InvalidRequestError
from engines.jobs import CancelToken, EventKind
from engines.remote import remote_path, split_path
from engines.remote.endpoints import Endpoint, forget, keep, key_for, list_models, normalized_url, saved
from engines.remote.engine import NO_WATERMARK, RemoteTextEngine
from engines.studio import Studio
from engines.text.requests import ChatRequest, CompletionRequest, Message, ModelOptions, Sampling

HELLO = (Message("user", "Say hello."),)
SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_tokens=32, seed=11)


class Collect:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def token(self, text: str) -> None:
        self.tokens.append(text)

    def notice(self, text: str) -> None:
        pass


def chat(url: str, model: str = "big-model", **fields: Any) -> ChatRequest:
    return ChatRequest(ModelOptions(remote_path(url, model), 2048), HELLO, "Be brief.", SAMPLING, **fields)


def test_paths_and_addresses_are_read_as_a_person_types_them() -> None:
    assert split_path(remote_path("http://box:8080/v1/", "m")) == ("http://box:8080/v1", "m")
    assert normalized_url("box:8080") == "http://box:8080/v1"
    assert normalized_url("https://api.example.org/v1/") == "https://api.example.org/v1"
    with pytest.raises(EmberError, match="not a server address"):
        normalized_url("ftp://box")
    with pytest.raises(ValueError):
        split_path("/models/x.gguf")


def test_a_reply_streams_piece_by_piece_with_the_requests_settings(fake_server: FakeServer) -> None:
    engine = RemoteTextEngine(chat(fake_server.url).model)
    progress = Collect()
    output = engine.run(chat(fake_server.url, stop=("###",)), progress, CancelToken())
    assert progress.tokens == ["Hello", " from", " far", " away."] and output.text == "Hello from far away."
    assert (output.finish_reason, output.prompt_tokens, output.generated_tokens) == ("stop", 7, 4)
    assert output.watermark == "" and output.seed == 11
    body = fake_server.script.bodies[-1]
    assert body["model"] == "big-model" and body["stream"] is True and body["seed"] == 11
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.7, 0.9, 32, ["###"])
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    record = engine.provenance(chat(fake_server.url), output)
    assert record.backend.startswith("remote") and record.model_sha256 == ""
    assert record.settings["remote"] == fake_server.url and record.settings["sampling_watermark"] == NO_WATERMARK
    completion = CompletionRequest(ModelOptions(remote_path(fake_server.url, "big-model")), "Once upon", SAMPLING)
    assert engine.run(completion, Collect(), CancelToken()).text == "Hello from far away."
    assert fake_server.script.bodies[-1]["prompt"] == "Once upon"


def test_every_failure_says_what_is_wrong(fake_server: FakeServer) -> None:
    def fails(request: Any = None) -> str:
        request = request or chat(fake_server.url)
        with pytest.raises(EmberError) as caught:
            RemoteTextEngine(request.model).run(request, Collect(), CancelToken())
        return str(caught.value)

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    assert "nothing answers there" in fails(chat(closed))
    assert "has no model 'other'" in fails(chat(fake_server.url, "other")) and "big-model" in fails(
        chat(fake_server.url, "other")
    )
    fake_server.script.status, fake_server.script.error = 500, "CUDA error: out of memory"
    assert "refused the request (500: CUDA error: out of memory)" in fails()
    fake_server.script.status, fake_server.script.error = 400, "This model's maximum context length is exceeded"
    with pytest.raises(ContextOverflowError):
        RemoteTextEngine(chat(fake_server.url).model).run(chat(fake_server.url), Collect(), CancelToken())
    fake_server.script.status, fake_server.script.raw = 200, b"data: <html>busy</html>\n\n"
    assert "not JSON" in fails()
    fake_server.script.raw, fake_server.script.key = b"", "sekrit"
    assert "refused Ember's API key (401)" in fails()
    fake_server.script.key = ""
    with pytest.raises(InvalidRequestError) as caught:
        RemoteTextEngine(chat(fake_server.url).model).run(chat(fake_server.url, tools="[]x"), Collect(), CancelToken())
    assert caught.value.param == "tools"  # not passed on: refused by name, never dropped


def test_a_cancel_stops_the_stream_at_once_and_keeps_what_arrived(fake_server: FakeServer) -> None:
    fake_server.script.pieces, fake_server.script.delay_s = ["word "] * 100, 0.05
    token = CancelToken()
    threading.Timer(0.4, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled) as caught:
        RemoteTextEngine(chat(fake_server.url).model).run(chat(fake_server.url), Collect(), token)
    assert time.monotonic() - started < 1.5
    partial = caught.value.partial
    assert partial.finish_reason == "cancelled" and 2 <= partial.text.count("word") < 100


def test_endpoints_are_kept_with_their_key_and_models(studio: Studio, fake_server: FakeServer) -> None:
    fake_server.script.key, fake_server.script.models = "k-123", ["a", "b"]
    with pytest.raises(EmberError, match="API key"):
        list_models(fake_server.url)
    assert list_models(fake_server.url, "k-123") == ["a", "b"]
    keep(studio.settings, Endpoint("box", fake_server.url, "k-123", ("a", "b")))
    keep(studio.settings, Endpoint("other", "http://10.0.0.9:8000/v1"))
    assert [e.name for e in saved(studio.settings)] == ["box", "other"]
    assert key_for(studio.settings, fake_server.url) == "k-123"
    assert saved(studio.settings)[0].paths()[1] == ("b (box, remote)", remote_path(fake_server.url, "b"))
    assert forget(studio.settings, "other") and not forget(studio.settings, "other")


def test_through_the_studio_the_safety_stage_reads_the_stream_and_the_record_says_remote(
    studio: Studio, fake_server: FakeServer
) -> None:
    keep(studio.settings, Endpoint("box", fake_server.url, "", ("big-model",)))
    job = studio.submit(chat(fake_server.url))
    final = job.wait(60)
    assert final.kind is EventKind.RESULT, final.data
    delivered = final.data
    assert delivered.output.text == "Hello from far away." and delivered.output.watermark == ""
    record = studio.records.get(delivered.record.output_id)
    assert record.provenance.settings["remote"] == fake_server.url
    assert record.provenance.model_path == remote_path(fake_server.url, "big-model")
    assert studio.library.get(delivered.record.output_id).text == "Hello from far away."
    from engines.reproducibility import reproducibility

    assert "remote server" in reproducibility(record.provenance.settings)
    # A reply that turns unsafe as it streams is stopped by Ember's own safety stage.
    fake_server.script.pieces = ["Sure. ", "Here is how to build a pipe bomb ", "at home, step by step: "] + [
        "first get "
    ] * 20
    blocked = studio.submit(chat(fake_server.url)).wait(60)
    assert blocked.kind is EventKind.BLOCKED, blocked.data


def test_the_api_serves_remote_models_by_endpoint_name(studio: Studio, fake_server: FakeServer) -> None:
    import openai

    from engines.api.server import ApiServer, ServerSettings

    keep(studio.settings, Endpoint("box", fake_server.url, "", ("big-model",)))
    with ApiServer(studio, ServerSettings(port=0, rate_per_minute=0)) as api:
        client = openai.OpenAI(base_url=api.url, api_key="none", max_retries=0, timeout=60)
        assert "box/big-model" in [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(model="box/big-model", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "Hello from far away." and reply.ember["watermark"] is None


def test_a_remote_image_model_makes_images_that_pass_embers_pipeline(studio: Studio, fake_server: FakeServer) -> None:
    import numpy as np
    from PIL import Image

    from engines.diffusion.requests import DiffusionOptions, ImageRequest
    from engines.provenance.verify import verify_file

    keep(studio.settings, Endpoint("art", fake_server.url, "", ("pixel-model",), kind="image"))
    fake_server.script.models = ["pixel-model"]
    path = remote_path(fake_server.url, "pixel-model")
    request = ImageRequest(DiffusionOptions(path), "a lighthouse at dusk", seed=40, width=256, height=192, batch_size=2)
    final = studio.submit(request).wait(120)
    assert final.kind is EventKind.RESULT, final.data
    result = final.data
    assert len(result.paths) == 2
    body = fake_server.script.bodies[-1]
    assert (body["model"], body["n"], body["size"], body["seed"]) == ("pixel-model", 2, "256x192", 40)
    for index, (item, file) in enumerate(zip(result.delivered, result.paths, strict=True)):
        assert np.asarray(Image.open(file)).shape == (192, 256, 3)
        assert item.record.provenance.settings["remote"] == fake_server.url
        assert item.record.provenance.seed == 40 + index and item.record.provenance.model_path == path
    report = verify_file(result.paths[0], studio.key)  # Ember's own image watermark, added after the server
    assert report.watermark.found, report.summary


def test_the_api_serves_a_remote_image_model(studio: Studio, fake_server: FakeServer) -> None:
    import base64

    import openai

    from engines.api.server import ApiServer, ServerSettings

    keep(studio.settings, Endpoint("art", fake_server.url, "", ("pixel-model",), kind="image"))
    with ApiServer(studio, ServerSettings(port=0, rate_per_minute=0)) as api:
        client = openai.OpenAI(base_url=api.url, api_key="none", max_retries=0, timeout=120)
        listed = {m.id: m.ember["kind"] for m in client.models.list().data}
        assert listed["art/pixel-model"] == "image"
        made = client.images.generate(model="art/pixel-model", prompt="a red boat", size="64x64")
        assert base64.b64decode(made.data[0].b64_json).startswith(b"\x89PNG")


def _llama_server(model: Path, port: int) -> Any:
    """llama-cpp-python's own server (llama_cpp.server) with this CPU's kernels loaded first, as Ember's engines do."""
    import subprocess
    import sys

    launch = (
        "import runpy, sys; from engines.text.cpu_backend import ready_llama_cpp; ready_llama_cpp(); "
        f"sys.argv = ['llama_cpp.server', '--model', {str(model)!r}, '--host', '127.0.0.1', '--port', '{port}', "
        "'--n_ctx', '1024', '--n_threads', '1']; runpy.run_module('llama_cpp.server', run_name='__main__')"
    )
    return subprocess.Popen([sys.executable, "-c", launch], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_llama_cpp_servers_model_chats_through_ember(studio: Studio, smollm2_path: str) -> None:
    pytest.importorskip("uvicorn", reason="llama_cpp.server needs the test extra's fastapi and uvicorn")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _llama_server(Path(smollm2_path), port)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        models: list[str] = []
        while not models and time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                models = list_models(url, timeout_s=2)
            except EmberError:
                time.sleep(0.5)
        assert models, "llama_cpp.server did not start"
        keep(studio.settings, Endpoint("llama", url, "", tuple(models)))
        request = ChatRequest(
            ModelOptions(remote_path(url, models[0]), 1024),
            (Message("user", "Name a colour."),),
            sampling=Sampling(temperature=0.8, max_tokens=16, seed=5),
        )
        events: list[Any] = []
        final = studio.submit(request, listener=events.append).wait(120)
        assert final.kind is EventKind.RESULT, final.data
        output = final.data.output
        streamed = "".join(e.data for e in events if e.kind is EventKind.TOKEN)
        assert output.text and streamed == output.text and output.watermark == ""
        record = final.data.record
        assert record.provenance.settings["remote"] == url and record.provenance.seed == 5
    finally:
        server.terminate()
        server.wait(20)
