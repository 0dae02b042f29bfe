"""Requests and results of the text engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings, with llama.cpp's meaning for each."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None  # None: a fresh random seed, recorded with the output
    max_tokens: int = 512

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.temperature <= 5.0, "temperature must be between 0 and 5"),
            (0.0 < self.top_p <= 1.0, "top-p must be above 0 and at most 1"),
            (self.top_k >= 0, "top-k must be 0 (off) or more"),
            (0.0 <= self.min_p < 1.0, "min-p must be from 0 to below 1"),
            (0.5 <= self.repeat_penalty <= 2.0, "repeat penalty must be between 0.5 and 2"),
            (self.max_tokens >= 1, "max tokens must be at least 1"),
            (self.seed is None or 0 <= self.seed < 2**32, "the seed must be from 0 to 4294967295"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid sampling setting: {message}.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ToolCall:
    """A function the model asked to call: the call's id, the function's name, its arguments as JSON text."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True)
class Message:
    """One turn of a conversation. An assistant turn may hold ``tool_calls``; a "tool" turn answers ``tool_call_id``."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class ModelOptions:
    """How a GGUF model is loaded; two requests with equal options share one loaded model."""

    path: str
    context_tokens: int = 4096
    threads: int | None = None  # None: chosen from the free cores
    device: Literal["auto", "cpu", "gpu"] = "auto"


@dataclass(frozen=True)
class ChatRequest:
    """Reply to a conversation, or continue its last assistant message (``mode="continue"``).

    With ``overflow="drop_oldest"`` a conversation longer than the context loses its
    oldest turns, and the job says so with a notice; with ``"error"`` it fails instead.
    """

    kind: ClassVar[str] = "text"

    model: ModelOptions
    messages: tuple[Message, ...]
    system_prompt: str = ""
    sampling: Sampling = field(default_factory=Sampling)
    mode: Literal["reply", "continue"] = "reply"
    overflow: Literal["drop_oldest", "error"] = "drop_oldest"
    # The reply ends before the first of these strings (which is not part of it).
    stop: tuple[str, ...] = ()
    # A JSON Schema (as JSON text) the reply must be a JSON value of, enforced by a grammar; "" for none.
    json_schema: str = ""
    # The stored conversation the reply belongs to: the Studio keeps the delivered reply there (never the panel).
    conversation_id: int | None = field(default=None, compare=False)
    # Report each reply token's log-probability and this many likeliest alternatives (0-20); None: not reported.
    logprobs: int | None = None
    # The functions the model may call, as JSON text of OpenAI's "tools" list, for the chat template; "" for none.
    tools: str = ""


@dataclass(frozen=True)
class CompletionRequest:
    """Continue a plain text (base models without a chat template)."""

    kind: ClassVar[str] = "text"

    model: ModelOptions
    prompt: str
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    overflow: Literal["drop_oldest", "error"] = "drop_oldest"
    conversation_id: int | None = field(default=None, compare=False)
    json_schema: str = ""  # as ChatRequest.json_schema
    logprobs: int | None = None  # as ChatRequest.logprobs


MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One token of a reply as the model saw it: its bytes, ln P under the model, and the likeliest alternatives.

    ``logprob`` is the model's own log-probability (a log-softmax of its logits), before temperature,
    top-k/top-p and the watermark's choice, as llama.cpp's server and OpenAI report it. ``top`` holds
    (bytes, logprob) of the likeliest tokens at that step, likeliest first.
    """

    raw: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()

    @property
    def token(self) -> str:
        return self.raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class TextOutput:
    """What the text engine made, before the pipeline: the text and how it was made."""

    text: str
    # "interrupted": the engine process ended mid-reply; the text is what had arrived.
    finish_reason: Literal["stop", "length", "cancelled", "interrupted"]
    prompt_tokens: int
    generated_tokens: int
    dropped_messages: int
    seed: int
    prompt_s: float
    generation_s: float
    watermark: str = ""  # the text watermark's scheme ("gumbel-v1"); "" when unmarked (greedy, or no key)
    # The reply's tokens with their log-probabilities, when the request asked (``logprobs``); () otherwise.
    logprobs: tuple[TokenLogprob, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        """Generation speed, excluding the first token (which waits for the prompt)."""
        if self.generated_tokens < 2 or self.generation_s <= 0:
            return 0.0
        return (self.generated_tokens - 1) / self.generation_s


def is_base_model(chat_template: str | None) -> bool:
    """Whether a model without a chat template (a base model) must continue text instead of chatting."""
    return chat_template is None or not chat_template.strip()


def completion_prompt(messages: tuple[Message, ...] | list[Message]) -> str:
    """Return a conversation as one plain text for a base model.

    Each reply of a base model continues the text before it, so replies are joined
    without a break; the person's messages start a new paragraph.
    """
    text = ""
    for message in messages:
        if message.role == "assistant":
            text += message.content
        else:
            text += ("\n\n" if text else "") + message.content
    return text


def text_request(
    options: ModelOptions,
    messages: tuple[Message, ...],
    *,
    sampling: Sampling,
    base_model: bool = False,
    system_prompt: str = "",
    mode: Literal["reply", "continue"] = "reply",
    conversation_id: int | None = None,
) -> ChatRequest | CompletionRequest:
    """The request for a conversation: a chat reply, or, for a base model (:func:`is_base_model`), a continuation."""
    if base_model:
        return CompletionRequest(options, completion_prompt(messages), sampling, conversation_id=conversation_id)
    return ChatRequest(options, tuple(messages), system_prompt, sampling, mode=mode, conversation_id=conversation_id)
