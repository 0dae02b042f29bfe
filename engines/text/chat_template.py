"""Renders a model's own chat template (from its GGUF metadata) in a sandbox.

Templates are code that came with a downloaded file, so they run in Jinja's
immutable sandbox: no attribute access to Python internals, no mutation of the
messages, no file or network access.
"""

from __future__ import annotations

from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engines.errors import EmberError
from engines.text.requests import Message

_SENTINEL = "\u2063EMBER-CONTINUE\u2063"


class ChatTemplateError(EmberError):
    """The model's chat template could not be rendered."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"The model's chat template refused this conversation: {message}")


class ChatTemplate:
    """One model's chat template, compiled once."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(
                f"This model's chat template has an error (line {exc.lineno}: {exc.message}). "
                "Chat may still work as plain completion; or use another copy of the model."
            ) from None
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """Return the prompt text for ``messages``; raises ChatTemplateError if the template fails."""
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos,
                eos_token=self._eos,
            )
        except ChatTemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise ChatTemplateError(
                f"This model's chat template could not be rendered ({type(exc).__name__}: {exc})."
            ) from None

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
