"""The statistical text watermark on the real embedded chat model (SmolLM2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from engines.benchmarks.human_corpus import human_passages
from engines.jobs import CancelToken
from engines.provenance.keys import key_from_secret
from engines.provenance.text_mark import SCHEME, detect_text
from engines.text.llama import LlamaEngine
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling, TextOutput
from engines.text.vocab import vocab_tokenizer

KEY = key_from_secret(b"\x01" * 32).derive("text-watermark")
OTHER_KEY = key_from_secret(b"\x02" * 32).derive("text-watermark")
STORY = "Write a short story about a lighthouse keeper who finds a message in a bottle."


class Stream:
    def __init__(self) -> None:
        self.chunks: list[str] = []

    def token(self, text: str) -> None:
        self.chunks.append(text)

    def step(self, done: int, total: int) -> None:
        pass

    def notice(self, message: str) -> None:
        pass


@pytest.fixture(scope="module")
def marked(smollm2_path: str) -> Iterator[LlamaEngine]:
    """SmolLM2 with this installation's watermark key."""
    engine = LlamaEngine(ModelOptions(smollm2_path, context_tokens=2048, threads=1), watermark_key=KEY)
    engine.load()
    yield engine
    engine.unload()


@pytest.fixture(scope="module")
def tokenize(smollm2_path: str) -> Callable[[str], list[int]]:
    return vocab_tokenizer(smollm2_path)


def reply(engine: LlamaEngine, sampling: Sampling, prompt: str = STORY) -> tuple[TextOutput, Stream]:
    stream = Stream()
    request = ChatRequest(engine.options, (Message("user", prompt),), sampling=sampling)
    return engine.run(request, stream, CancelToken()), stream


@pytest.fixture(scope="module")
def story(marked: LlamaEngine) -> tuple[TextOutput, Stream]:
    return reply(marked, Sampling(max_tokens=200, seed=7))


def test_watermarked_reply_is_detected(story: tuple[TextOutput, Stream], tokenize: Callable) -> None:
    output, stream = story
    assert output.watermark == SCHEME
    assert "".join(stream.chunks) == output.text  # the stream is exactly the delivered text
    result = detect_text(output.text, KEY, tokenize)
    assert result.verdict == "watermarked", result
    assert result.z >= 4 and result.p_value < 3e-5
    assert result.tokens_scored >= 100


def test_human_text_is_not_detected(tokenize: Callable) -> None:
    passages = human_passages(100)
    assert len(passages) == 100
    results = [detect_text(p.text, KEY, tokenize) for p in passages]
    assert sum(r.verdict == "watermarked" for r in results) == 0
    assert sum(r.verdict == "not watermarked" for r in results) >= 90  # long enough to judge


def test_short_text_is_too_short_to_tell(story: tuple[TextOutput, Stream], tokenize: Callable) -> None:
    opening = " ".join(story[0].text.split()[:30])
    result = detect_text(opening, KEY, tokenize)
    assert result.verdict == "too short to tell"
    assert result.tokens_scored < 100


def test_other_installation_key_does_not_detect(story: tuple[TextOutput, Stream], tokenize: Callable) -> None:
    result = detect_text(story[0].text, OTHER_KEY, tokenize)
    assert result.verdict == "not watermarked", result
    assert result.p_value > 1e-3


def test_regenerate_with_another_seed_gives_another_reply(marked: LlamaEngine, tokenize: Callable) -> None:
    first = reply(marked, Sampling(max_tokens=40, seed=1))[0]
    again = reply(marked, Sampling(max_tokens=40, seed=1))[0]
    other = reply(marked, Sampling(max_tokens=40, seed=2))[0]
    assert first.text == again.text  # a seed still reproduces its reply
    assert other.text != first.text
    assert other.watermark == first.watermark == SCHEME


def test_greedy_is_unchanged(marked: LlamaEngine, smollm2_path: str) -> None:
    greedy = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=32, seed=1)
    with_key = reply(marked, greedy)[0]
    plain_engine = LlamaEngine(ModelOptions(smollm2_path, context_tokens=2048, threads=1))
    try:
        plain = reply(plain_engine, greedy)[0]
    finally:
        plain_engine.unload()
    assert with_key.text == plain.text
    assert with_key.watermark == "" and plain.watermark == ""
