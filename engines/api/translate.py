"""OpenAI request bodies into Ember requests, and Ember's delivered outputs into OpenAI responses.

Every field a body may hold is read here, once. A field Ember does not support, or a value of one
it supports only in part, is refused with an error that names it: nothing is silently ignored
(``n`` > 1, ``echo``, penalties, ...). Sampling means what OpenAI's says:
``temperature`` and ``top_p`` alone (Ember's own ``top_k``, ``min_p`` and ``repeat_penalty`` are
off unless the body sets them, as llama.cpp's server names them). A prompt longer than the
context is an error, never cut.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from engines.api.errors import ApiError, invalid, unsupported
from engines.api.models import ServedModel
from engines.api.tools import Tools, calls_in, check_model_takes_tools, read_tools

CHAT_MAX_TOKENS = 512  # when the body gives none (OpenAI's own chat default is "until the context is full")
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
COMPLETION_MAX_LOGPROBS = 5  # the most alternatives /v1/completions reports a token (OpenAI's limit)
MAX_STOPS = 4
_SEED_END = 2**32
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class Body:
    """A JSON body read field by field; :meth:`finish` refuses every field nobody read."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
        self._data = data
        self._read: set[str] = set()

    def get(self, name: str) -> Any:
        self._read.add(name)
        return self._data.get(name)

    def has(self, name: str) -> bool:
        return self._data.get(name) is not None

    def finish(self) -> None:
        """Raise ApiError (unsupported_field) for the first field that no reader took."""
        for name in self._data:
            if name not in self._read:
                raise unsupported(name, "Ember does not know this field, so it cannot honour it.")

    # -- typed readers -----------------------------------------------------------------------
    def number(self, name: str, default: float, low: float, high: float, *, low_open: bool = False) -> float:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise invalid(name, f"'{name}' must be a number.")
        if value < low or value > high or (low_open and value == low):
            above = "above" if low_open else "at least"
            raise invalid(name, f"'{name}' must be {above} {low:g} and at most {high:g}; it is {value:g}.")
        return float(value)

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(name, f"'{name}' must be a whole number.")
        if not low <= value <= high:
            raise invalid(name, f"'{name}' must be from {low} to {high}; it is {value}.")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise invalid(name, f"'{name}' must be true or false.")
        return value

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise invalid(name, f"'{name}' must be a string.")
        return value

    def only(self, name: str, allowed: tuple[Any, ...], why: str) -> None:
        """Accept ``name`` only absent or with one of the ``allowed`` values (those that change nothing)."""
        value = self.get(name)
        if value is not None and value not in allowed:
            raise unsupported(name, why)


@dataclass(frozen=True)
class TextCall:
    """A text request as the server runs it: the Ember request, and how to answer."""

    request: Any
    model: ServedModel
    stream: bool
    include_usage: bool
    client: str  # the body's "user", for the queue's fairness between clients
    history: tuple[str, ...]  # texts of the conversation the Studio's prompt check does not read
    tools: Tools | None = None  # the functions the model may call (chat only)


def _sampling(body: Body, max_tokens_default: int, context_tokens: int) -> Any:
    from engines.text.requests import Sampling

    temperature = body.number("temperature", 1.0, 0.0, 2.0)
    top_p = body.number("top_p", 1.0, 0.0, 1.0, low_open=True)
    given = body.integer("max_tokens", None, 1, context_tokens)
    newer = body.integer("max_completion_tokens", None, 1, context_tokens)
    if given is not None and newer is not None and given != newer:
        raise invalid("max_completion_tokens", "'max_tokens' and 'max_completion_tokens' differ; give one of them.")
    max_tokens = newer or given or min(max_tokens_default, context_tokens // 2)
    seed = body.integer("seed", None, 0, _SEED_END - 1)
    top_k = body.integer("top_k", 0, 0, 1000)
    min_p = body.number("min_p", 0.0, 0.0, 0.999)
    repeat_penalty = body.number("repeat_penalty", 1.0, 0.5, 2.0)
    for penalty in ("frequency_penalty", "presence_penalty"):
        body.only(penalty, (0, 0.0), "only 0 (no penalty); 'repeat_penalty' is the penalty Ember has")
    body.only("logit_bias", ({},), "biasing tokens is not supported")
    body.only("n", (1,), "one choice a request; send the request again (with another seed) for more")
    return Sampling(
        temperature=temperature,
        top_p=top_p,
        top_k=top_k or 0,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        seed=seed,
        max_tokens=max_tokens or 1,
    )


def _stops(body: Body) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise invalid("stop", "'stop' must be a non-empty string or a list of them.")
    if len(stops) > MAX_STOPS:
        raise invalid("stop", f"'stop' may hold at most {MAX_STOPS} strings.")
    return tuple(stops)


def _stream(body: Body) -> tuple[bool, bool]:
    stream = body.flag("stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise invalid("stream_options", "'stream_options' is only for streamed requests ('stream': true).")
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise unsupported("stream_options", "only 'include_usage' is supported")
    usage = options.get("include_usage", False)
    if not isinstance(usage, bool):
        raise invalid("stream_options.include_usage", "'include_usage' must be true or false.")
    return stream, usage


def _client(body: Body) -> str:
    user = body.string("user", "")
    return (user or "")[:200]


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise unsupported(f"{where}[{j}].type", f"only text parts are supported, not '{kind}'")
            if set(part) - {"type", "text"}:
                raise unsupported(f"{where}[{j}].{sorted(set(part) - {'type', 'text'})[0]}")
            parts.append(part["text"])
        return "".join(parts)
    raise invalid(where, f"'{where}' must be a string or a list of text parts.")


def _messages(body: Body) -> tuple[str, list[Any]]:
    """The leading system (and developer) messages as one system prompt, and the conversation after them."""
    from engines.text.requests import Message

    value = body.get("messages")
    if not isinstance(value, list) or not value:
        raise invalid("messages", "'messages' must be a non-empty list of {role, content} objects.")
    system: list[str] = []
    convo: list[Message] = []
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise invalid(where, f"'{where}' must be an object with 'role' and 'content'.")
        role = item.get("role")
        if role == "function":
            raise unsupported(f"{where}.role", "'function' messages are the older API's: send 'tool' messages")
        if role not in _ROLES and role != "tool":
            raise invalid(f"{where}.role", f"'{where}.role' must be system, developer, user, assistant or tool.")
        allowed = {"tool": ("role", "content", "tool_call_id"), "assistant": ("role", "content", "tool_calls")}
        for key in item:
            if key not in allowed.get(role, ("role", "content")):
                raise unsupported(f"{where}.{key}")
        calls = _tool_calls(item.get("tool_calls"), f"{where}.tool_calls") if role == "assistant" else ()
        if calls and item.get("content") is None:
            content = ""
        else:
            content = _content(item.get("content"), f"{where}.content")
        if role == "tool":
            answers = item.get("tool_call_id")
            if not isinstance(answers, str) or not answers:
                raise invalid(f"{where}.tool_call_id", "A 'tool' message names the call it answers in 'tool_call_id'.")
            convo.append(Message("tool", content, tool_call_id=answers))
        elif _ROLES[role] == "system" and not convo:
            system.append(content)
        else:
            convo.append(Message(_ROLES[role], content, tool_calls=calls))
    if not convo or convo[-1].role not in ("user", "tool") or not any(m.role == "user" for m in convo):
        raise invalid("messages", "The last message must be the user's (or a tool's answer): Ember replies to it.")
    return "\n\n".join(system), convo


def _tool_calls(value: Any, where: str) -> tuple[Any, ...]:
    """An assistant message's ``tool_calls`` as Ember's ToolCall."""
    from engines.text.requests import ToolCall

    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(where, f"'{where}' must be a list of calls.")
    calls = []
    for j, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid(
                f"{where}[{j}]", "A call is {'id': ..., 'type': 'function', 'function': {'name', 'arguments'}}."
            )
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            raise invalid(f"{where}[{j}].function.arguments", "A call's 'arguments' are JSON text.")
        calls.append(ToolCall(str(call.get("id") or f"call_{j}"), function["name"], arguments))
    return tuple(calls)


def _json_schema(body: Body) -> str:
    """The JSON Schema the reply must follow ("" for plain text), from ``response_format``."""
    value = body.get("response_format")
    if value is None:
        return ""
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("response_format", "'response_format.type' must be text, json_object or json_schema.")
    kind = value["type"]
    allowed = {"type", "json_schema"} if kind == "json_schema" else {"type"}
    for key in value:
        if key not in allowed:
            raise unsupported(f"response_format.{key}")
    if kind == "text":
        return ""
    if kind == "json_object":
        return json.dumps({"type": "object"})
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise invalid("response_format.json_schema", "'json_schema' must hold a 'schema' object.")
    for key in spec:
        if key not in ("name", "schema", "strict", "description"):
            raise unsupported(f"response_format.json_schema.{key}")
    if spec.get("strict") is False:
        raise unsupported("response_format.json_schema.strict", "a reply always follows the schema strictly")
    return json.dumps(spec["schema"])


def _chat_logprobs(body: Body) -> int | None:
    """How many alternatives a chat reply reports beside each token's log-probability; None: no log-probabilities."""
    from engines.text.requests import MAX_TOP_LOGPROBS

    wanted = body.flag("logprobs")
    top = body.integer("top_logprobs", None, 0, MAX_TOP_LOGPROBS)
    if top is not None and not wanted:
        raise invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true.")
    return (top or 0) if wanted else None


def _options(model: ServedModel, context_tokens: int) -> Any:
    from engines.text.requests import ModelOptions

    trained = model.context_tokens or context_tokens
    return ModelOptions(model.path, context_tokens=min(context_tokens, trained))


def chat_call(data: Any, models: Any, context_tokens: int) -> TextCall:
    """The chat completion a body asks for; raises ApiError naming the first field Ember cannot honour."""
    from engines.api.models import CHAT
    from engines.text.requests import ChatRequest

    body = Body(data)
    model = models.get(body.get("model"), CHAT, "/v1/chat/completions")
    if not model.chat:
        raise ApiError(
            400,
            f"'{model.id}' is a base model without a chat template, so it cannot chat; use /v1/completions with it.",
            param="model",
            code="model_not_chat",
        )
    options = _options(model, context_tokens)
    system, convo = _messages(body)
    sampling = _sampling(body, CHAT_MAX_TOKENS, options.context_tokens)
    stops = _stops(body)
    stream, usage = _stream(body)
    schema = _json_schema(body)
    tools = read_tools(body, has_schema=bool(schema))
    if tools is not None or any(m.role == "tool" or m.tool_calls for m in convo):
        check_model_takes_tools(model)
    logprobs = _chat_logprobs(body)
    client = _client(body)
    body.finish()
    request = ChatRequest(
        options,
        tuple(convo),
        system,
        sampling,
        overflow="error",
        stop=stops,
        json_schema=tools.schema if tools is not None and tools.forced else schema,
        logprobs=logprobs,
        tools=tools.json if tools is not None else "",
    )
    # The Studio checks the newest user message and the system prompt; the rest of a conversation an API
    # client sends was never checked in Ember (the window's history was, as it was typed): earlier messages,
    # what tools answered, and the arguments of calls the client says the model made.
    newest = max(i for i, m in enumerate(convo) if m.role == "user")
    earlier = [m.content for i, m in enumerate(convo) if i != newest and m.content.strip()]
    earlier += [call.arguments for m in convo for call in m.tool_calls]
    return TextCall(request, model, stream, usage, client, tuple(earlier), tools)


def completion_call(data: Any, models: Any, context_tokens: int) -> TextCall:
    """The text completion a body asks for; raises ApiError naming the first field Ember cannot honour."""
    from engines.api.models import CHAT
    from engines.text.requests import CompletionRequest

    body = Body(data)
    model = models.get(body.get("model"), CHAT, "/v1/completions")
    options = _options(model, context_tokens)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise unsupported("prompt", "one prompt (a string) a request; token lists and batches are not supported")
    if not isinstance(prompt, str) or not prompt:
        raise invalid("prompt", "'prompt' must be a non-empty string.")
    sampling = _sampling(body, COMPLETION_MAX_TOKENS, options.context_tokens)
    stops = _stops(body)
    stream, usage = _stream(body)
    logprobs = body.integer("logprobs", None, 0, COMPLETION_MAX_LOGPROBS)
    body.only("echo", (False,), "the prompt is not repeated in the reply")
    body.only("suffix", ("",), "inserting between a prompt and a suffix is not supported")
    body.only("best_of", (1,), "one candidate a request")
    client = _client(body)
    body.finish()
    request = CompletionRequest(options, prompt, sampling, stops, overflow="error", logprobs=logprobs)
    return TextCall(request, model, stream, usage, client, ())


# -- responses ------------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now_s() -> int:
    return int(time.time())


def usage_of(delivered: Any) -> dict[str, int]:
    timings = delivered.record.timings
    prompt, made = int(timings.get("prompt_tokens", 0)), int(timings.get("generated_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": made, "total_tokens": prompt + made}


def ember_of(delivered: Any) -> dict[str, Any]:
    """What Ember adds to a response: the output's library record and its watermark."""
    record = delivered.record
    return {
        "output_id": record.output_id,
        "seed": record.provenance.seed,
        "watermark": getattr(delivered.output, "watermark", "") or None,
    }


def chat_response(call: TextCall, delivered: Any, response_id: str, created_s: int) -> dict[str, Any]:
    """The ``chat.completion`` object of a delivered reply."""
    output = delivered.output
    message: dict[str, Any] = {"role": "assistant", "content": output.text, "refusal": None}
    finish = output.finish_reason
    if call.tools is not None:
        content, calls = calls_in(output.text, call.tools)
        if calls:
            message.update(content=content, tool_calls=calls)
            finish = "tool_calls"
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created_s,
        "model": call.model.id,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs_of(call, output),
                "finish_reason": finish,
            }
        ],
        "usage": usage_of(delivered),
        "ember": ember_of(delivered),
    }


def completion_response(call: TextCall, delivered: Any, response_id: str, created_s: int) -> dict[str, Any]:
    """The ``text_completion`` object of a delivered continuation."""
    output = delivered.output
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created_s,
        "model": call.model.id,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "text": output.text,
                "logprobs": logprobs_of(call, output),
                "finish_reason": output.finish_reason,
            }
        ],
        "usage": usage_of(delivered),
        "ember": ember_of(delivered),
    }


def logprobs_of(call: TextCall, output: Any) -> dict[str, Any] | None:
    """The ``logprobs`` of a choice: chat's ``{"content": [...]}``, or the completions' token lists; None unasked."""
    if call.request.logprobs is None:
        return None
    scores = output.logprobs
    if hasattr(call.request, "prompt"):  # /v1/completions: OpenAI's older shape
        offsets, at = [], 0
        for score in scores:
            offsets.append(at)
            at += len(score.token)
        return {
            "tokens": [score.token for score in scores],
            "token_logprobs": [score.logprob for score in scores],
            "top_logprobs": [{raw.decode("utf-8", "replace"): lp for raw, lp in score.top} for score in scores],
            "text_offset": offsets,
        }

    def entry(raw: bytes, logprob: float) -> dict[str, Any]:
        return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}

    content = [
        {**entry(score.raw, score.logprob), "top_logprobs": [entry(raw, lp) for raw, lp in score.top]}
        for score in scores
    ]
    return {"content": content, "refusal": None}


def chunk(
    call: TextCall,
    response_id: str,
    created_s: int,
    *,
    text: str | None = None,
    finish: str | None = None,
    first: bool = False,
    logprobs: dict[str, Any] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One streamed chunk: new text, or the end (``finish``), as chat or completion chunks.

    A streamed reply's log-probabilities (``logprobs``) come whole in its last chunk: the text released as
    it streams is what the safety stage lets through, in pieces that need not follow token bounds.
    """
    chat = not hasattr(call.request, "prompt")
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if text:
            delta["content"] = text
        if tool_calls:
            delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(tool_calls)]
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
    return {
        "id": response_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created_s,
        "model": call.model.id,
        "system_fingerprint": None,
        "choices": [choice],
    }
