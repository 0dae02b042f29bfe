"""Renders a model's own chat template (from its GGUF metadata) in a sandbox.

Templates are code that came with a downloaded file, so they run in Jinja's
immutable sandbox: no attribute access to Python internals, no mutation of the
messages, no file or network access. The sandbox alone still lets a template spend
the machine: nested loops over ``range`` (each up to 100,000 steps), a string
multiplied a billion times, a power with a huge exponent, a macro that calls itself.
So a render also has budgets: :data:`MAX_LOOP_STEPS` steps of ``range`` in all;
:data:`MAX_PROMPT_CHARS` characters of output, and of any text or list that ``*``, a
call, a filter or a namespace assignment makes or is given; no width or count argument
above that (``'a'|center(10**9)``); exponents below :data:`MAX_EXPONENT`; a recursion
depth. Past one of them the template is refused with a message, as an unrenderable one
is. ``lipsum`` (a text generator, and the usual first step of template-injection payloads)
is not offered.
"""

from __future__ import annotations

import functools
import operator
import re
import threading
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace

from engines.errors import EmberError
from engines.text.requests import Message

_SENTINEL = "\u2063EMBER-CONTINUE\u2063"
MAX_LOOP_STEPS = 1_000_000  # a real template loops over the messages: a few hundred steps
MAX_PROMPT_CHARS = 4_000_000  # 1M tokens of context at 4 characters each
MAX_EXPONENT = 4096
_BUDGET = threading.local()  # the render in progress on this thread: the range steps it has left


class ChatTemplateError(EmberError):
    """The model's chat template could not be rendered."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"The model's chat template refused this conversation: {message}")


_HOSTILE = "The file may be hostile: use another copy of the model, or chat with it as plain completion."


def _over_budget(what: str) -> ChatTemplateError:
    return ChatTemplateError(
        f"This model's chat template tried to {what}, which no prompt needs, so Ember stopped it. {_HOSTILE}"
    )


def _budgeted_range(*args: int) -> range:
    steps = range(*args)
    left = getattr(_BUDGET, "steps", MAX_LOOP_STEPS) - len(steps)
    if left < 0:
        raise _over_budget(f"loop more than {MAX_LOOP_STEPS:,} times")
    _BUDGET.steps = left
    return steps


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def _too_big(value: Any) -> bool:
    """Whether a value is a text or list longer than any prompt, or a number that asks for one (a width)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) > MAX_PROMPT_CHARS
    return _size(value) > MAX_PROMPT_CHARS


def _checked(result: Any, what: str) -> Any:
    if _size(result) > MAX_PROMPT_CHARS:
        raise _over_budget(f"make {what} of {_size(result):,} items")
    return result


def _multiply(left: Any, right: Any) -> Any:
    count = right if isinstance(right, int) else left if isinstance(left, int) else None
    sequence = left if count is right else right
    if count is not None and _size(sequence) * count > MAX_PROMPT_CHARS:
        raise _over_budget(f"make a text or list of {_size(sequence) * count:,} items")
    return operator.mul(left, right)


def _add(left: Any, right: Any) -> Any:
    if _size(left) + _size(right) > MAX_PROMPT_CHARS:
        raise _over_budget(f"make a text or list of {_size(left) + _size(right):,} items")
    return operator.add(left, right)


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise _over_budget(f"raise a number to the power {exponent:,}")
    if isinstance(base, int) and isinstance(exponent, int) and base.bit_length() * abs(exponent) > 1_000_000:
        raise _over_budget("compute a number of more than a million bits")
    return operator.pow(base, exponent)


_WIDE_FORMAT = re.compile(r"%[-+ #0]*(?:\d{7,}|\*|\.\d{7,}|\.\*)")


def _format(left: Any, right: Any) -> Any:
    if isinstance(left, str) and _WIDE_FORMAT.search(left):
        values = right if isinstance(right, tuple) else (right,)
        if re.search(r"\d{7,}", left) or any(_too_big(v) for v in values):
            raise _over_budget("format a text wider than any prompt")
    return operator.mod(left, right)


_BINOPS = {"*": _multiply, "+": _add, "**": _power, "%": _format}


class _BudgetedNamespace(Namespace):
    """``namespace()`` whose attributes cannot hold more than a prompt (doubling a text in a loop)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if _too_big(value) and not isinstance(value, int):
            raise _over_budget(f"keep a text or list of {_size(value):,} items")
        super().__setitem__(name, value)


def _budgeted_filter(function: Any) -> Any:
    @functools.wraps(function)  # keeps the jinja_pass_arg marker of filters that take the context
    def filtered(*args: Any, **kwargs: Any) -> Any:
        # The filtered value itself may be anything; its width and count arguments may not ask for a huge text.
        if any(_too_big(a) for a in args[1:]) or any(_too_big(v) for v in kwargs.values()):
            raise _over_budget(f"use the {function.__name__.removeprefix('do_')} filter on a huge size")
        return _checked(function(*args, **kwargs), "a text or list")

    return filtered


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with the budgets above on ``range``, operators, calls and filters."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _budgeted_filter(f) for name, f in self.filters.items()}
        self.globals.pop("lipsum", None)
        self.globals["range"] = _budgeted_range
        self.globals["namespace"] = _BudgetedNamespace

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name in _BINOPS:
            return _BINOPS[operator_name](left, right)
        return super().call_binop(context, operator_name, left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # Methods and macros: no huge argument (a macro that doubles a text as it recurses), no huge result.
        if any(_too_big(a) for a in args) or any(_too_big(v) for v in kwargs.values()):
            raise _over_budget("call a function with a huge text, list or size")
        return _checked(super().call(__context, __obj, *args, **kwargs), "a text or list")


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    """Hugging Face's ``tojson``, which templates are written for: plain JSON text.

    Jinja's own returns markup, and ``'<tool_call>' + (x | tojson)`` then escapes the text before it.
    """
    import json

    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def uses_tools(env: jinja2.Environment, source: str) -> bool:
    """Whether a chat template reads the ``tools`` variable: it describes functions a model may call."""
    from jinja2 import meta

    try:
        return "tools" in meta.find_undeclared_variables(env.parse(source))
    except jinja2.TemplateSyntaxError:
        return False


def _message_dict(message: Message) -> dict[str, Any]:
    """A message as chat templates read it: Hugging Face's shape, with a call's arguments as an object."""
    import json

    made: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            try:
                arguments = json.loads(call.arguments)
            except ValueError:
                arguments = call.arguments
            function = {"name": call.name, "arguments": arguments}
            calls.append({"id": call.id, "type": "function", "function": function})
        made["tool_calls"] = calls
    if message.tool_call_id:
        made["tool_call_id"] = message.tool_call_id
    return made


class ChatTemplate:
    """One model's chat template, compiled once."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        env = _BudgetedSandbox(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
        env.filters["tojson"] = _budgeted_filter(_tojson)
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(
                f"This model's chat template has an error (line {exc.lineno}: {exc.message}). "
                "Chat may still work as plain completion; or use another copy of the model."
            ) from None
        self._bos = bos_token
        self._eos = eos_token
        self.uses_tools = uses_tools(env, source)

    def render(
        self, messages: list[Message], add_generation_prompt: bool = True, tools: list[dict[str, Any]] | None = None
    ) -> str:
        """Return the prompt text for ``messages`` (and the functions in ``tools``, OpenAI's list, when given).

        Raises ChatTemplateError if the template fails.
        """
        _BUDGET.steps = MAX_LOOP_STEPS
        parts: list[str] = []
        length = 0
        extra = {"tools": tools} if tools else {}
        try:
            for part in self._template.generate(
                messages=[_message_dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos,
                eos_token=self._eos,
                **extra,
            ):
                length += len(part)
                if length > MAX_PROMPT_CHARS:
                    raise _over_budget(f"write a prompt of more than {MAX_PROMPT_CHARS:,} characters")
                parts.append(part)
        except ChatTemplateError:
            raise
        except SecurityError as exc:
            raise ChatTemplateError(
                f"This model's chat template tried to reach Python's internals ({exc}), which no chat template "
                f"needs, so Ember did not run it. {_HOSTILE}"
            ) from None
        except RecursionError:
            raise _over_budget("call itself without end") from None
        except MemoryError:
            raise _over_budget("take more memory than this machine has") from None
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, OverflowError, ArithmeticError,
                AttributeError) as exc:  # fmt: skip
            raise ChatTemplateError(
                f"This model's chat template could not be rendered ({type(exc).__name__}: {exc})."
            ) from None
        finally:
            _BUDGET.steps = MAX_LOOP_STEPS
        return "".join(parts)

    def render_continuation(self, messages: list[Message]) -> str:
        """Return the prompt that makes the model continue the last (assistant) message.

        The template is rendered with a marker at the end of that message and cut at
        the marker, so whatever the template adds after a finished turn is left out.
        """
        if not messages or messages[-1].role != "assistant":
            raise ChatTemplateError("There is no assistant message to continue.")
        last = messages[-1]
        marked = [*messages[:-1], Message("assistant", last.content + _SENTINEL)]
        text = self.render(marked, add_generation_prompt=False)
        cut = text.find(_SENTINEL)
        if cut < 0:
            raise ChatTemplateError("This model's chat template drops assistant messages, so they cannot be continued.")
        return text[:cut]
