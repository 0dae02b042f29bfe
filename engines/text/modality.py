"""The text modality: chat and completion with GGUF models (engines/text/llama.py), described once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engines.host.wire import EngineContext, EngineInfo, Ran
from engines.modality import Finished, Modality, ModelKind
from engines.pipeline import Delivered, OutputSession, Provenance
from engines.text.commands import BENCH, CHAT, KERNELS_BENCH
from engines.text.record_settings import kernels_of, settings_of
from engines.text.requests import ChatRequest, CompletionRequest, Message, ModelOptions, Sampling, TextOutput


def make_engine(options: ModelOptions, context: EngineContext) -> Any:
    """A (not yet loaded) llama.cpp engine, or a remote server's (engines/remote); in the engine process.

    Raises ModelFileError for a bad file.
    """
    from engines.remote import is_remote

    if is_remote(options.path):
        from engines.remote.engine import RemoteTextEngine

        return RemoteTextEngine(options)
    from engines.text.llama import LlamaEngine

    return LlamaEngine(options, watermark_key=context.text_watermark_key)


def prompt_texts(request: ChatRequest | CompletionRequest) -> list[str]:
    """Chat: the newest user message and the system prompt. Completion: the text to continue."""
    if isinstance(request, CompletionRequest):
        return [request.prompt]
    texts = [m.content for m in request.messages if m.role == "user"][-1:]
    if request.system_prompt.strip():
        texts.append(request.system_prompt)
    return texts


def output_timings(output: TextOutput) -> dict[str, float]:
    return {
        "prompt_s": output.prompt_s,
        "generation_s": output.generation_s,
        "prompt_tokens": output.prompt_tokens,
        "generated_tokens": output.generated_tokens,
        "tokens_per_s": output.tokens_per_s,
    }


def _split(request: Any, ran: Ran) -> list[Finished]:
    assert ran.provenance is not None
    return [(ran.output, ran.provenance, output_timings(ran.output))]


def _salvage(request: Any, sessions: list[OutputSession], info: EngineInfo | None) -> list[Finished]:
    """The reply as far as it had arrived when the engine process ended (kept as a partial reply)."""
    session = sessions[0]
    if not session.received_text:
        return []
    seed = request.sampling.seed
    output = TextOutput(
        text=session.received_text,
        finish_reason="interrupted",
        prompt_tokens=0,
        generated_tokens=session.chunks_received,
        dropped_messages=0,
        seed=seed if seed is not None else -1,
        prompt_s=0.0,
        generation_s=0.0,
    )
    from engines.reproducibility import made_on

    details = info.details if info else {}
    backend = info.backend if info else ""
    made = made_on(backend, kernels_of(str(details.get("cpu_variant", ""))))
    context_tokens, threads = int(details.get("context_tokens", 0)), int(details.get("threads", 0))
    provenance = Provenance(
        model_name=info.name if info else "",
        model_path=request.model.path,
        model_sha256=str(details.get("sha256", "")),
        backend=backend,
        settings=settings_of(request, seed, context_tokens, threads, made),
        seed=seed,
    )
    return [(output, provenance, output_timings(output))]


def _sink(studio: Any, request: Any, delivered: list[Delivered], withheld: list[str]) -> Delivered:
    """Keep the reply in its conversation and in the library (on the worker thread); the job ends with the
    Delivered reply."""
    (reply,) = delivered
    conversation_id = getattr(request, "conversation_id", None)
    mode = getattr(request, "mode", "completion")
    if conversation_id is not None:
        if mode == "continue":
            studio.conversations.extend_reply(conversation_id, reply)
        else:
            studio.conversations.add_reply(conversation_id, reply)
    asked = prompt_texts(request)
    studio.library.add(
        reply,
        None,
        kind="text",
        prompt=asked[0] if asked else "",
        text=reply.output.text,
        extra={"conversation_id": conversation_id, "mode": mode},
    )
    return reply


def _samples(models: Mapping[str, str]) -> tuple[Any, ...]:
    greedy = Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=24, seed=1)
    return (
        ChatRequest(ModelOptions(models["text"], 2048), (Message("user", "Name a colour."),), sampling=greedy),
        CompletionRequest(ModelOptions(models["text-base"], 1024), "The colour of the sky is", greedy),
    )


TEXT = Modality(
    name="text",
    title="text engine",
    requests=(ChatRequest, CompletionRequest),
    options=ModelOptions,
    make_engine=make_engine,
    media="text",
    prompt_texts=prompt_texts,
    split=_split,
    salvage=_salvage,
    sink=_sink,
    sample_requests=_samples,
    lost="your conversation is kept.",
    commands=(CHAT,),
    benches=(BENCH, KERNELS_BENCH),
    kinds=(
        ModelKind(
            "text",
            "Chat",
            "gguf",
            frozenset({"context_tokens"}),
            frozenset({"context_tokens"}),
            estimate="engines.models.fit:estimate_text_model",
        ),
        ModelKind(
            "guard",
            "Settings/Safety",
            "gguf",
            frozenset({"context_tokens"}),
            frozenset({"context_tokens"}),
            estimate="engines.models.fit:estimate_text_model",
        ),
    ),
)
