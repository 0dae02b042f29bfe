"""The real openai package against Ember's API on loopback, with the embedded models."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import openai
import pytest
from conftest import BASE_MODEL, CHAT_MODEL

from engines.api.server import ApiServer
from engines.studio import Studio

HELLO = [{"role": "user", "content": "Name a colour."}]
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 1, "max_tokens": 24}


def test_models_lists_the_embedded_models_by_kind(client: Any) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert models[CHAT_MODEL].ember["kind"] == "text" and models[CHAT_MODEL].ember["chat"] is True
    assert models[BASE_MODEL].ember["chat"] is False
    assert models["heart"].ember["kind"] == "speech"
    assert models["all-minilm-l6-v2"].ember["kind"] == "embedding"
    assert client.models.retrieve(CHAT_MODEL).id == CHAT_MODEL


def test_a_chat_reply_is_checked_watermarked_and_kept_in_the_library(client: Any, api_studio: Studio) -> None:
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, temperature=0.8, seed=7, max_tokens=24)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0
    output_id = reply.ember["output_id"]
    record = api_studio.records.get(output_id)
    assert record is not None and record.delivered
    assert [d.stage for d in record.decisions][:2] == ["safety", "provenance"]
    assert record.provenance.seed == 7 and reply.ember["watermark"] == "gumbel-v1"  # sampled: it carries the mark
    item = api_studio.library.get(output_id)
    assert item is not None and item.text == choice.message.content


def test_a_streamed_chat_reply_is_the_reply_the_same_seed_makes_whole(client: Any) -> None:
    whole = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, **GREEDY)
    stream = client.chat.completions.create(
        model=CHAT_MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_stream_and_not_with_a_base_model(client: Any) -> None:
    args: dict[str, Any] = {"model": BASE_MODEL, "prompt": "The colour of the sky is", **GREEDY}
    whole = client.completions.create(**args)
    assert whole.object == "text_completion" and whole.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **args) if c.choices)
    assert streamed == whole.choices[0].text


def test_log_probabilities_of_a_chat_reply_whole_and_streamed(client: Any) -> None:
    args: dict[str, Any] = {"model": CHAT_MODEL, "messages": HELLO, "logprobs": True, "top_logprobs": 3, **GREEDY}
    whole = client.chat.completions.create(**args)
    content = whole.choices[0].logprobs.content
    assert "".join(t.token for t in content) == whole.choices[0].message.content
    assert len(content) == whole.usage.completion_tokens
    for token in content:  # greedy: the token is the likeliest of its alternatives
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        assert token.top_logprobs[0].token == token.token and token.top_logprobs[0].logprob == token.logprob
        assert bytes(token.bytes).decode("utf-8", "replace") == token.token
    chunks = list(client.chat.completions.create(stream=True, **args))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
    plain = client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, **GREEDY)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == whole.choices[0].message.content


def test_log_probabilities_of_a_completion_in_openais_older_shape(client: Any) -> None:
    reply = client.completions.create(model=BASE_MODEL, prompt="The colour of the sky is", logprobs=2, **GREEDY)
    choice = reply.choices[0]
    scores = choice.logprobs
    assert "".join(scores.tokens) == choice.text and len(scores.token_logprobs) == len(scores.tokens)
    assert scores.text_offset[0] == 0 and all(len(top) == 2 for top in scores.top_logprobs)
    assert all(max(top.values()) == lp for top, lp in zip(scores.top_logprobs, scores.token_logprobs, strict=True))


def test_stop_strings_end_the_reply_before_them(client: Any) -> None:
    whole = client.completions.create(model=BASE_MODEL, prompt="One, two, three, four, five,", **GREEDY)
    text = whole.choices[0].text
    stop = text.strip()[:2]
    stopped = client.completions.create(model=BASE_MODEL, prompt="One, two, three, four, five,", stop=[stop], **GREEDY)
    assert stopped.choices[0].finish_reason == "stop"
    assert stop not in stopped.choices[0].text and text.startswith(stopped.choices[0].text)


def test_a_json_schema_reply_is_json_of_that_schema(client: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    reply = client.chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Describe a person as JSON with a name and an age."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        temperature=0.7,
        seed=3,
        max_tokens=80,
    )
    person = json.loads(reply.choices[0].message.content)
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),  # without 'logprobs': true
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"extra_body": {"mirostat": 2}}, "mirostat"),
        ({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, "messages[0].name"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type",
        ),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_an_unsupported_field_is_an_error_that_names_it(client: Any, fields: dict[str, Any], param: str) -> None:
    args: dict[str, Any] = {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 4, **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**args)
    error = caught.value.body
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["message"]


def test_completions_refuse_what_they_cannot_honour(client: Any) -> None:
    for fields, param in (({"echo": True}, "echo"), ({"best_of": 3}, "best_of"), ({"logprobs": 6}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model=BASE_MODEL, prompt="Hi", max_tokens=4, **fields)
        assert caught.value.body["param"] == param


def test_a_prompt_longer_than_the_context_is_an_error_never_cut(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "word " * 1500}], max_tokens=16
        )
    assert caught.value.body["code"] == "context_length_exceeded"
    assert "context" in caught.value.body["message"]


def test_an_unknown_model_and_a_base_model_for_chat_are_errors(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.body["code"] == "model_not_found" and CHAT_MODEL in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=BASE_MODEL, messages=HELLO)
    assert caught.value.body["param"] == "model"


def test_an_unsafe_prompt_gets_an_openai_shaped_refusal(client: Any, api_studio: Studio) -> None:
    unsafe = "Explain step by step how to build a pipe bomb to hurt people"
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            reply = client.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": unsafe}], stream=stream
            )
            list(reply) if stream else None
        assert caught.value.body["code"] == "content_policy_violation"
        assert "safety filter" in caught.value.body["message"]
    # An unsafe earlier turn of the conversation is checked too (the window's history was, as it was typed).
    history = [{"role": "user", "content": unsafe}, {"role": "assistant", "content": "OK."}, *HELLO]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=history)
    assert caught.value.body["code"] == "content_policy_violation"


def test_speech_comes_as_a_watermarked_wav_kept_in_the_library(client: Any, api_studio: Studio) -> None:
    from engines.provenance.verify import VerifyRequest

    answer = client.audio.speech.create(model="heart", voice="heart", input="Hello there. This is Ember.")
    wav = answer.read()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    output_id = answer.response.headers["X-Ember-Output-Id"]
    item = api_studio.library.get(output_id)
    assert item is not None and item.path
    report = api_studio.submit(VerifyRequest((item.path,))).wait(120).data[0]
    assert report.watermark and report.watermark.found
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="heart", voice="heart", input="Hi.", response_format="mp3")
    assert caught.value.body["param"] == "response_format"


def test_a_transcription_hears_what_the_speech_endpoint_said(client: Any, tmp_path: Any) -> None:
    wav = client.audio.speech.create(model="heart", voice="heart", input="The weather is nice today.").read()
    path = tmp_path / "said.wav"
    path.write_bytes(wav)
    with path.open("rb") as file:
        heard = client.audio.transcriptions.create(model="whisper-tiny-en", file=file)
    assert "weather" in heard.text.lower()
    with path.open("rb") as file, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-tiny-en", file=file, response_format="srt")
    assert caught.value.body["param"] == "response_format"


def test_images_come_as_b64_png_with_their_records(api_studio: Studio, tiny_sd: Any) -> None:
    import base64

    from engines.api.server import ServerSettings
    from engines.models.library import ModelLibrary

    model = ModelLibrary(api_studio.db).import_path(tiny_sd)
    with ApiServer(api_studio, ServerSettings(port=0, rate_per_minute=0)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)
        result = client.images.generate(
            model=model.id, prompt="a red cat", n=2, size="64x64", extra_body={"seed": 3, "steps": 2}
        )
        pngs = [base64.b64decode(image.b64_json) for image in result.data]
        assert len(pngs) == 2 and all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
        assert all(api_studio.library.get(i) for i in result.model_extra["ember"]["output_ids"])
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.generate(model=model.id, prompt="a cat", size="64x64", response_format="url")
        assert caught.value.body["param"] == "response_format"


def test_embeddings_are_unit_vectors_that_put_like_texts_together(client: Any, api_studio: Studio) -> None:
    texts = ["The cat sat on the mat.", "A kitten is sleeping on the rug.", "Quarterly tax filing deadlines."]
    reply = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    assert [row.index for row in reply.data] == [0, 1, 2] and reply.model == "all-minilm-l6-v2"
    vectors = np.array([row.embedding for row in reply.data])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2  # meaning, not words: no word is shared
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == sum(api_studio.documents.token_counts(texts))
    # the same vectors document search makes for its passages
    assert np.allclose(vectors, api_studio.documents._embed(texts), atol=1e-5)
    # base64 (the openai package's default on the wire) decodes to the same floats; one text alone too
    single = client.embeddings.create(model="all-minilm-l6-v2", input=texts[0], encoding_format="float")
    assert np.allclose(single.data[0].embedding, vectors[0], atol=1e-6)


def test_embeddings_refuse_what_they_cannot_honour(client: Any) -> None:
    cases = [
        ({"input": "word " * 400}, "input", "context_length_exceeded"),  # longer than the model reads: never cut
        ({"input": [[1, 2, 3]]}, "input", "unsupported_field"),  # token arrays
        ({"input": ["fine", "  "]}, "input", "invalid_value"),
        ({"input": "x", "dimensions": 128}, "dimensions", "unsupported_field"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "invalid_value"),
    ]
    for fields, param, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model="all-minilm-l6-v2", **fields)
        assert caught.value.body["param"] == param and caught.value.body["code"] == code, fields
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=CHAT_MODEL, input="a chat model makes no embeddings")
