"""The GGUF text engine through the Studio, on the real embedded models."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from engines.jobs import EventKind, JobEvent
from engines.studio import Studio
from engines.text.chat_template import ChatTemplate, ChatTemplateError
from engines.text.gguf_header import read_gguf_header
from engines.text.requests import ChatRequest, CompletionRequest, Message, ModelOptions, Sampling

GREEDY = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=32, seed=1)


def run(studio: Studio, request: object) -> tuple[JobEvent, list[JobEvent]]:
    events: list[JobEvent] = []
    job = studio.submit(request, listener=events.append)
    final = job.wait(120)
    assert final is not None
    return final, events


def tokens_of(events: list[JobEvent]) -> str:
    return "".join(e.data for e in events if e.kind is EventKind.TOKEN)


def test_chat_streams_a_reply_with_the_models_own_template(studio: Studio, smol: ModelOptions) -> None:
    request = ChatRequest(smol, (Message("user", "What is the capital of France?"),), sampling=GREEDY)
    final, events = run(studio, request)
    assert final.kind is EventKind.RESULT, final.data
    delivered = final.data
    # The model reads exactly the prompt llama-cpp-python's own chat completion renders from the same
    # GGUF template (its Jinja2ChatFormatter), token for token. (Not its reply: replies are only the same
    # twice on one machine, and a reply evaluated in other batches may differ on another CPU.)
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from engines.text.cpu_backend import ready_llama_cpp

    header = read_gguf_header(smol.path)
    formatter = Jinja2ChatFormatter(
        header.chat_template, header.special_tokens["eos"], header.special_tokens.get("bos", "")
    )
    rendered = formatter(messages=[{"role": "user", "content": "What is the capital of France?"}])
    reference = ready_llama_cpp().Llama(smol.path, n_ctx=2048, n_threads=1, verbose=False, vocab_only=True)
    expected = reference.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)
    reference.close()
    assert studio.engines.call("cpu", smol, "prompt_tokens", request) == expected
    assert delivered.output.prompt_tokens == len(expected)
    assert tokens_of(events) == delivered.output.text  # the stream is exactly the delivered text
    assert sum(e.kind is EventKind.TOKEN for e in events) >= 3
    record = delivered.record
    assert record.provenance.backend == "CPU"
    assert len(record.provenance.model_sha256) == 64
    assert record.provenance.settings["temperature"] == 0.0
    assert record.timings["generated_tokens"] == delivered.output.generated_tokens
    assert studio.records.get(record.output_id) == record


def outcome(studio: Studio, request: object) -> tuple[EventKind, str, str]:
    """What a person sees of a job: how it ended, the text streamed, the text delivered ("" if none).

    Tests of reproducibility compare outcomes, never particular words: another CPU's kernels give
    other words, and the safety filter may stop one machine's reply; what must hold is "the same twice".
    """
    final, events = run(studio, request)
    delivered = final.data.output.text if final.kind is EventKind.RESULT else ""
    return final.kind, tokens_of(events), delivered


def story(smol: ModelOptions, seed: int, *messages: Message) -> ChatRequest:
    sampling = Sampling(temperature=1.0, max_tokens=24, seed=seed)
    return ChatRequest(smol, messages or (Message("user", "Tell me a story."),), sampling=sampling)


def test_the_same_seed_gives_the_same_reply_and_another_seed_another(studio: Studio, smol: ModelOptions) -> None:
    first = outcome(studio, story(smol, 11))
    assert first == outcome(studio, story(smol, 11))  # the second time the prompt is in the cache
    assert first != outcome(studio, story(smol, 12))


def test_the_same_request_gives_the_same_reply_after_other_work_and_in_a_fresh_engine(
    studio: Studio, smol: ModelOptions, ember_home: Path
) -> None:
    """First after loading, tenth, after another conversation, after Regenerate: the same reply (watermark on)."""
    turn1 = story(smol, 7, Message("user", "Tell me about owls."))
    reply1 = outcome(studio, turn1)
    follow = (Message("user", "Tell me about owls."), Message("assistant", reply1[2] or "Owls hunt at night."))
    turn2 = story(smol, 8, *follow, Message("user", "And where do they live?"))
    reply2 = outcome(studio, turn2)  # the cache now holds turn 1 and its reply, made reusable while idle
    studio.engines.settle("cpu")
    assert outcome(studio, turn2) == reply2  # Regenerate: the same request again
    for seed in (1, 2, 3):  # other conversations, other seeds, in between
        outcome(studio, story(smol, seed, Message("user", f"Name {seed} colours.")))
    assert outcome(studio, turn2) == reply2
    assert outcome(studio, turn1) == reply1
    # and a fresh engine process, where each is the first request after loading
    fresh = Studio()
    try:
        assert outcome(fresh, turn2) == reply2
        assert outcome(fresh, turn1) == reply1
    finally:
        fresh.close()
    final, _ = run(studio, turn2)
    if final.kind is EventKind.RESULT:  # sampled replies carry the text watermark: it did not change them
        assert final.data.output.watermark


def test_a_random_seed_is_chosen_and_recorded(studio: Studio, smol: ModelOptions) -> None:
    final, _ = run(studio, ChatRequest(smol, (Message("user", "Hi"),), sampling=Sampling(max_tokens=4)))
    assert isinstance(final.data.record.provenance.seed, int)


def test_stop_ends_generation_at_the_next_token_and_keeps_the_partial_reply(studio: Studio, smol: ModelOptions) -> None:
    request = ChatRequest(
        smol, (Message("user", "Write a very long story about dragons."),), sampling=Sampling(max_tokens=1500, seed=3)
    )
    events: list[JobEvent] = []
    job = studio.submit(request, listener=events.append)
    deadline = time.monotonic() + 60
    while sum(e.kind is EventKind.TOKEN for e in events) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped_at = time.monotonic()
    job.cancel()
    final = job.wait(5)
    assert time.monotonic() - stopped_at < 0.2
    assert final.kind is EventKind.CANCELLED
    partial = final.data
    assert partial.record.partial and partial.output.finish_reason == "cancelled"
    assert partial.output.text == tokens_of(events)


def test_continue_extends_the_last_assistant_message(studio: Studio, smol: ModelOptions) -> None:
    convo = (Message("user", "List three fruits."), Message("assistant", "1. Apple\n2."))
    final, _ = run(studio, ChatRequest(smol, convo, mode="continue", sampling=GREEDY))
    assert final.kind is EventKind.RESULT
    text = final.data.output.text
    assert text and not text.startswith("<|im_start|>")


def test_plain_completion_continues_a_base_model_text(studio: Studio, gemma_path: str) -> None:
    options = ModelOptions(gemma_path, context_tokens=1024)
    request = CompletionRequest(options, "The three primary colours are", sampling=GREEDY, stop=("\n\n",))
    final, events = run(studio, request)
    assert final.kind is EventKind.RESULT, final.data
    output = final.data.output
    assert output.text.strip() and "\n\n" not in output.text and output.finish_reason in ("stop", "length")
    assert output.generated_tokens >= 1 and final.data.record.provenance.settings["mode"] == "completion"
    assert tokens_of(events) == output.text
    assert outcome(studio, request) == (EventKind.RESULT, output.text, output.text)


def test_chatting_with_a_base_model_says_to_use_completion(studio: Studio, gemma_path: str) -> None:
    options = ModelOptions(gemma_path, context_tokens=1024)
    final, _ = run(studio, ChatRequest(options, (Message("user", "Hello"),), sampling=GREEDY))
    assert final.kind is EventKind.FAILED
    assert "without a chat template" in final.data and "Complete" in final.data


def test_a_long_conversation_drops_its_oldest_turns_with_a_visible_notice(studio: Studio, smollm2_path: str) -> None:
    options = ModelOptions(smollm2_path, context_tokens=512)
    filler = "Tell me about the weather in spring, in summer, in autumn and in winter. " * 6
    turns: list[Message] = []
    for i in range(8):
        turns += [Message("user", f"{i}: {filler}"), Message("assistant", f"Answer {i}: {filler}")]
    turns.append(Message("user", "Now say hello."))
    final, events = run(studio, ChatRequest(options, tuple(turns), sampling=Sampling(max_tokens=16, seed=1)))
    assert final.kind is EventKind.RESULT, final.data
    notices = [e.data for e in events if e.kind is EventKind.NOTICE]
    assert any("oldest" in n for n in notices), notices
    assert final.data.output.dropped_messages > 0


def test_a_message_longer_than_the_context_gets_a_clear_error(studio: Studio, smollm2_path: str) -> None:
    options = ModelOptions(smollm2_path, context_tokens=256)
    huge = "word " * 2000
    final, _ = run(studio, ChatRequest(options, (Message("user", huge),), sampling=Sampling(max_tokens=16)))
    assert final.kind is EventKind.FAILED
    assert "tokens" in final.data and "Shorten" in final.data


def test_error_policy_refuses_to_trim(studio: Studio, smollm2_path: str) -> None:
    options = ModelOptions(smollm2_path, context_tokens=256)
    turns = (Message("user", "a " * 200), Message("assistant", "b " * 200), Message("user", "hi"))
    request = ChatRequest(options, turns, overflow="error", sampling=Sampling(max_tokens=16))
    final, _ = run(studio, request)
    assert final.kind is EventKind.FAILED and "context" in final.data


def test_broken_model_files_fail_with_a_reason_a_person_understands(
    studio: Studio, smollm2_path: str, tmp_path: Path
) -> None:
    truncated = tmp_path / "cut.gguf"
    with open(smollm2_path, "rb") as f:
        truncated.write_bytes(f.read(5_000_000))
    zipped = tmp_path / "model.gguf"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    html = tmp_path / "page.gguf"
    html.write_text("<html>404 Not Found</html>")
    pickle = tmp_path / "weights.ckpt"
    pickle.write_bytes(b"\x80\x02}q\x00.")
    cases = {
        truncated: "incomplete",
        zipped: "ZIP",
        html: "text file",
        pickle: "pickle",
        tmp_path / "missing.gguf": "does not exist",
    }
    for path, words in cases.items():
        final, _ = run(studio, ChatRequest(ModelOptions(str(path)), (Message("user", "hi"),)))
        assert final.kind is EventKind.FAILED
        assert words in final.data, final.data
    # and the worker still serves good requests afterwards
    final, _ = run(studio, ChatRequest(ModelOptions(smollm2_path, 1024), (Message("user", "hi"),), sampling=GREEDY))
    assert final.kind is EventKind.RESULT


def test_an_unsupported_architecture_is_named_in_the_error(studio: Studio, smollm2_path: str, tmp_path: Path) -> None:
    data = Path(smollm2_path).read_bytes()
    odd = tmp_path / "odd.gguf"
    odd.write_bytes(data.replace(b"llama", b"zyxwv", 1))  # general.architecture is the first 'llama'
    assert read_gguf_header(odd).architecture == "zyxwv"
    final, _ = run(studio, ChatRequest(ModelOptions(str(odd), 1024), (Message("user", "hi"),)))
    assert final.kind is EventKind.FAILED
    assert "zyxwv" in final.data and "llama.cpp" in final.data


def test_the_header_reader_reads_metadata_without_the_weights(smollm2_path: str, gemma_path: str) -> None:
    smol = read_gguf_header(smollm2_path)
    assert smol.architecture == "llama" and smol.quantization == "Q4_1"
    assert smol.chat_template and smol.special_tokens["eos"] == "<|im_end|>"
    gemma = read_gguf_header(gemma_path)
    assert gemma.architecture == "gemma3" and gemma.chat_template is None


def test_chat_templates_run_sandboxed() -> None:
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}").render([Message("user", "x")])
    with pytest.raises(ChatTemplateError, match="refused"):
        ChatTemplate("{{ raise_exception('only user and assistant roles') }}").render([Message("user", "x")])
    with pytest.raises(ChatTemplateError, match="error"):
        ChatTemplate("{% for %}")


def test_continuation_prompt_ends_inside_the_assistant_turn() -> None:
    t = ChatTemplate("{% for m in messages %}<{{m.role}}>{{m.content}}</{{m.role}}>{% endfor %}")
    prompt = t.render_continuation([Message("user", "hi"), Message("assistant", "Hel")])
    assert prompt == "<user>hi</user><assistant>Hel"


def test_a_model_too_big_for_free_memory_is_refused_before_loading(smol: ModelOptions, ember_home: Path) -> None:
    from engines.errors import OutOfMemoryError
    from engines.registry import ModelRegistry
    from engines.text.llama import LlamaEngine

    registry = ModelRegistry(LlamaEngine, free_bytes=lambda: 300 * 2**20)
    with pytest.raises(OutOfMemoryError, match="GB"):
        with registry.use(smol):
            pass
    assert registry.loaded() == []


def test_loading_a_second_model_unloads_the_idle_one_when_memory_is_short(
    smol: ModelOptions, gemma_path: str, ember_home: Path
) -> None:
    from engines.registry import ModelRegistry
    from engines.text.llama import LlamaEngine

    gemma = ModelOptions(gemma_path, context_tokens=1024)

    # A machine with room for either model but not both (the registry keeps 512 MB of headroom).
    def free_bytes() -> int:
        return 1100 * 2**20 - sum(engine.memory_estimate() for _, engine in registry.loaded())

    registry = ModelRegistry(LlamaEngine, free_bytes=free_bytes)
    with registry.use(smol) as first:
        assert first.memory_estimate() > 0
    with registry.use(gemma):
        pass
    assert [k for k, _ in registry.loaded()] == [gemma]
    registry.unload_all()
    assert registry.loaded() == []


def test_log_probabilities_are_the_models_own_as_bare_llama_cpp_reports_them(
    studio: Studio, smol: ModelOptions
) -> None:
    from engines.text.cpu_backend import ready_llama_cpp

    prompt = "The three primary colours are"
    greedy = Sampling(temperature=0.0, repeat_penalty=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=6, seed=1)
    final, _ = run(studio, CompletionRequest(smol, prompt, greedy, logprobs=3))
    assert final.kind is EventKind.RESULT, final.data
    output = final.data.output
    scores = output.logprobs
    assert b"".join(score.raw for score in scores).decode() == output.text and len(scores) == 6
    for score in scores:  # greedy: each token is the likeliest, and the alternatives come likeliest first
        assert score.top[0] == (score.raw, score.logprob) and len(score.top) == 3
        assert [lp for _, lp in score.top] == sorted((lp for _, lp in score.top), reverse=True)
        assert score.logprob <= 0 and sum(np.exp(lp) for _, lp in score.top) <= 1 + 1e-6
    bare = ready_llama_cpp().Llama(smol.path, n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    try:
        reference = bare.create_completion(prompt, max_tokens=6, temperature=0.0, logprobs=3, repeat_penalty=1.0)
    finally:
        bare.close()
    expected = reference["choices"][0]["logprobs"]
    assert [score.token for score in scores] == expected["tokens"]
    assert np.allclose([score.logprob for score in scores], expected["token_logprobs"], atol=0.02)
    unasked, _ = run(studio, CompletionRequest(smol, prompt, greedy))
    assert unasked.data.output.logprobs == () and unasked.data.output.text == output.text
