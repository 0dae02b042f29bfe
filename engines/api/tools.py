"""Function calling through the API: a request's tools, the grammar of a forced call, and the calls in a reply.

The model's own chat template describes the functions to it (a template that never reads ``tools``
cannot, and the request is refused). What the model writes back is read in the shapes the common
templates teach: Hermes, Qwen and SmolLM3's ``<tool_call>{...}</tool_call>``, Mistral's
``[TOOL_CALLS] [...]``, Llama 3's ``<|python_tag|>{...}`` and a reply that is only a call's JSON
object (Llama 3.1's JSON calls, and every forced call: ``tool_choice`` "required" or a named
function makes the reply a call by a grammar, so it is always one).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.api.errors import ApiError, invalid, unsupported

MAX_TOOLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Where a call begins in a reply, by template family.
MARKERS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>")
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass(frozen=True)
class Tools:
    """The functions a request offers, and how the model may use them.

    ``choice`` is "auto" (the model decides), "required" (it must call one) or a function's name
    (it must call that one); ``schema`` is the JSON Schema of a forced call ("" with "auto").
    """

    json: str
    names: tuple[str, ...]
    choice: str
    parallel: bool
    schema: str

    @property
    def forced(self) -> bool:
        return self.choice != "auto"


def _function(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise invalid(
            where, f"'{where}' must be {{'type': 'function', 'function': {{'name': ..., 'parameters': ...}}}}."
        )
    for key in tool:
        if key not in ("type", "function"):
            raise unsupported(f"{where}.{key}")
    function = tool["function"]
    for key in function:
        if key not in ("name", "description", "parameters", "strict"):
            raise unsupported(f"{where}.function.{key}")
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid(f"{where}.function.name", "A function's name is 1-64 letters, digits, '_' or '-'.")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise invalid(f"{where}.function.parameters", "'parameters' must be a JSON Schema object.")
    if not isinstance(function.get("description", ""), str):
        raise invalid(f"{where}.function.description", "'description' must be a string.")
    if function.get("strict") is False:
        raise unsupported(f"{where}.function.strict", "a forced call always follows the parameters strictly")
    return {"type": "function", "function": {**function, "parameters": parameters}}


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": function["parameters"]},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def read_tools(body: Any, *, has_schema: bool) -> Tools | None:
    """The request's ``tools``, ``tool_choice`` and ``parallel_tool_calls``; None when it offers no function.

    Raises ApiError naming the field at fault. ``has_schema``: the body asks for a JSON reply
    (``response_format``), which a forced call cannot honour beside its own grammar.
    """
    given = body.get("tools")
    choice = body.get("tool_choice")
    parallel = body.flag("parallel_tool_calls", True)
    for old in ("functions", "function_call"):
        body.only(old, (None, [], "none"), "the older 'functions' fields: give 'tools' and 'tool_choice' instead")
    if given in (None, []):
        if choice not in (None, "none"):
            raise invalid("tool_choice", "'tool_choice' needs 'tools' to choose from.")
        return None
    if not isinstance(given, list) or len(given) > MAX_TOOLS:
        raise invalid("tools", f"'tools' must be a list of at most {MAX_TOOLS} functions.")
    functions = [_function(tool, f"tools[{i}]") for i, tool in enumerate(given)]
    names = tuple(f["function"]["name"] for f in functions)
    if len(set(names)) < len(names):
        raise invalid("tools", "Two functions in 'tools' have the same name.")
    if choice == "none":
        return None  # the model writes a message: it is not told of the functions
    if choice in (None, "auto", "required"):
        picked = choice or "auto"
    elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        picked = choice["function"].get("name")
        if picked not in names:
            raise invalid("tool_choice", f"'tool_choice' names '{picked}', which is not in 'tools'.")
    else:
        raise invalid("tool_choice", "'tool_choice' must be none, auto, required or {'type': 'function', ...}.")
    schema = ""
    if picked != "auto":
        if has_schema:
            raise invalid("tool_choice", "A forced call is JSON of its own; give 'response_format' or the call.")
        chosen = [f["function"] for f in functions if picked == "required" or f["function"]["name"] == picked]
        options = [_call_schema(f) for f in chosen]
        schema = json.dumps(options[0] if len(options) == 1 else {"anyOf": options})
    return Tools(json.dumps(functions), names, picked, parallel, schema)


@functools.lru_cache(maxsize=64)
def _template_uses_tools(path: str, mtime_ns: int, size: int) -> bool:
    from engines.text.chat_template import ChatTemplate
    from engines.text.gguf_header import read_gguf_header

    source = read_gguf_header(path).chat_template
    return bool(source) and ChatTemplate(source).uses_tools


def check_model_takes_tools(model: Any) -> None:
    """Raise ApiError (400, param "tools") unless the model's chat template describes functions to it."""
    path = Path(model.path)
    try:
        stat = path.stat()
        takes = path.is_file() and _template_uses_tools(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError):
        takes = False
    except Exception:  # a template that does not compile: the chat itself will say so
        takes = False
    if not takes:
        raise ApiError(
            400,
            f"The chat template of '{model.id}' does not describe functions to the model, so it cannot call "
            "tools. Use a model whose template supports tools (Qwen 2.5 and 3, Llama 3.1 and later, Mistral, "
            "Hermes, SmolLM3, ...), or send the request without 'tools'.",
            param="tools",
            code="unsupported_field",
        )


# -- the calls in a reply -------------------------------------------------------------------------
def _as_call(value: Any, names: tuple[str, ...]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # {"type": "function", "function": {...}}
        value = value["function"]
    name = value.get("name")
    arguments = value.get("arguments", value.get("parameters", {}))
    if name not in names:
        return None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


def _calls_of(text: str, names: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """The calls a JSON text holds (one object, or a list of them); None when it is not only calls."""
    fenced = _FENCE.match(text.strip())
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return None
    values = value if isinstance(value, list) else [value]
    calls = [_as_call(v, names) for v in values]
    return calls if calls and all(calls) else None  # type: ignore[return-value]


def calls_in(text: str, tools: Tools) -> tuple[str | None, list[dict[str, Any]]]:
    """The message's content and the calls in a reply, as OpenAI's ``tool_calls``; ([], text) when it calls nothing.

    The content is what the model wrote before its first call (None when nothing). Without
    ``parallel`` only the first call is kept.
    """
    calls: list[dict[str, Any]] = []
    content: str | None = text
    if "<tool_call>" in text:
        head = text[: text.index("<tool_call>")]
        for block in _BLOCK.findall(text):
            calls += _calls_of(block, tools.names) or []
        content = head.strip() or None
    else:
        for marker in ("[TOOL_CALLS]", "<|python_tag|>"):
            if marker in text:
                head, _, rest = text.partition(marker)
                calls = _calls_of(rest.strip(), tools.names) or []
                content = head.strip() or None
                break
        else:
            calls = (_calls_of(text, tools.names) or []) if text.strip()[:1] in ("{", "[", "`") else []
            content = None if calls else text
    if not calls:
        return text, []
    return content, calls if tools.parallel else calls[:1]


class ToolStream:
    """Streams a reply's text while it cannot be a call, and holds back what may be one.

    ``feed`` takes the text the pipeline releases and returns what may be sent now; held text is
    read by :func:`calls_in` once the reply has ended. A forced call is held whole.
    """

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self.text = ""
        self.sent = 0

    def feed(self, piece: str) -> str:
        self.text += piece
        if self.tools.forced:
            return ""
        held = self._hold_from()
        ready = self.text[self.sent : held]
        self.sent = max(self.sent, held)
        return ready

    def _hold_from(self) -> int:
        """Where the text may start a call: a marker, the start of one at its end, or a leading JSON value."""
        text = self.text
        if not self.sent and (not text.strip() or text.lstrip()[:1] in ("{", "[", "`")):
            return 0
        found = [text.find(m) for m in MARKERS if m in text]
        if found:
            return min(found)
        for marker in MARKERS:  # the end may be the first characters of a marker
            for size in range(min(len(marker) - 1, len(text)), 0, -1):
                if text.endswith(marker[:size]):
                    return len(text) - size
        return len(text)

    def rest(self) -> tuple[str, list[dict[str, Any]]]:
        """At the end: the content not yet sent, and the calls (none: all of the held text is content)."""
        _, calls = calls_in(self.text, self.tools)
        if not calls:
            return self.text[self.sent :], []
        found = [self.text.find(m) for m in MARKERS if m in self.text]
        head = self.text[self.sent : min(found)].rstrip() if found else ""
        return head, calls
