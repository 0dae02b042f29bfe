"""A throwaway modality that lives in the tests alone: it proves that a new modality needs no other file.

Its engine "echoes" the request's text word by word as a stream, and on request dies the
ways native code dies (a null-pointer read, an abort, an out-of-memory kill), hangs
without checking its cancel token, or raises. It runs in the engine process like every
other engine, so the crashes are real crashes of that process.

Register it with ``engines.modalities.register(ECHO)``; ``main.py echo TEXT`` then runs it
(see tests/test_modality_registry.py).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engines.errors import Cancelled
from engines.modality import Command, Finished, Modality
from engines.pipeline import Delivered, Provenance
from engines.text.requests import TextOutput

Behaviour = Literal["echo", "segfault", "abort", "killed", "hang", "raise", "crash-on-load"]


@dataclass(frozen=True)
class EchoOptions:
    """Load options of the echo engine; ``crash_on_load`` makes loading die with a segfault."""

    name: str = "echo"
    device: str = "cpu"
    crash_on_load: bool = False


@dataclass(frozen=True)
class EchoRequest:
    """Say ``words`` back, one word a token, then do ``then`` ("echo": nothing more)."""

    model: EchoOptions
    words: str
    then: Behaviour = "echo"
    after_words: int = 3  # how many words are streamed before ``then`` happens
    delay_s: float = 0.0  # between words
    tags: tuple[str, ...] = field(default=(), compare=False)


def null_pointer_read() -> None:
    """A real segfault: what a bug in native code does."""
    ctypes.string_at(0)


class EchoEngine:
    kind = "echo"
    backend = "CPU"

    def __init__(self, options: EchoOptions) -> None:
        self.options = options
        self.name = f"Echo ({options.name})"
        self.loads = 0

    def memory_estimate(self) -> int:
        return 1024

    def details(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "loads": self.loads}

    def load(self) -> None:
        if self.options.crash_on_load:
            null_pointer_read()
        self.loads += 1

    def unload(self) -> None:
        pass

    def run(self, request: EchoRequest, progress: Any, cancel: Any) -> TextOutput:
        words = request.words.split()
        said: list[str] = []
        for i, word in enumerate(words):
            if i == request.after_words and request.then != "echo":
                self._misbehave(request.then)
            if cancel.cancelled:
                raise Cancelled(self._output(said, "cancelled"))
            chunk = word if not said else " " + word
            said.append(chunk)
            progress.token(chunk)
            if request.delay_s:
                time.sleep(request.delay_s)
        if request.then != "echo" and len(words) <= request.after_words:
            self._misbehave(request.then)
        return self._output(said, "stop")

    def _misbehave(self, how: Behaviour) -> None:
        if how == "segfault":
            null_pointer_read()
        elif how == "abort":
            os.abort()
        elif how == "killed":
            os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer sends
        elif how == "hang":
            libc = ctypes.CDLL(None)
            libc.sleep(600)  # native code that never looks at its cancel token
        elif how == "raise":
            raise ZeroDivisionError("the echo engine divided by zero")

    def _output(self, said: list[str], finish: str) -> TextOutput:
        return TextOutput("".join(said), finish, 0, len(said), 0, 0, 0.0, 0.0)  # type: ignore[arg-type]

    def provenance(self, request: EchoRequest, output: TextOutput) -> Provenance:
        return Provenance(self.name, "", "", self.backend, {"then": request.then})


def make_echo_engine(options: EchoOptions, context: Any) -> EchoEngine:
    return EchoEngine(options)


def _split(request: EchoRequest, ran: Any) -> list[Finished]:
    if ran.output.finish_reason == "cancelled" and not ran.output.text:
        return []
    return [(ran.output, ran.provenance, {"generated_tokens": ran.output.generated_tokens})]


def _salvage(request: EchoRequest, sessions: list[Any], info: Any) -> list[Finished]:
    text = sessions[0].received_text
    if not text:
        return []
    output = TextOutput(text, "interrupted", 0, sessions[0].chunks_received, 0, 0, 0.0, 0.0)
    return [(output, Provenance(info.name if info else "", "", "", "CPU", {}), {})]


def _sink(studio: Any, request: EchoRequest, delivered: list[Delivered], withheld: list[str]) -> Delivered:
    studio.echoed = [*getattr(studio, "echoed", []), delivered[0]]
    return delivered[0]


def _arguments(parser: Any) -> None:
    parser.add_argument("words", help="what to say back")


def _request(args: Any) -> EchoRequest:
    return EchoRequest(EchoOptions(), args.words)


def _result(args: Any, delivered: Delivered) -> int:
    print(f"echo: {delivered.output.text}")
    return 0


def _samples(models: Mapping[str, str]) -> tuple[Any, ...]:
    return (EchoRequest(EchoOptions(), "every word of this is checked"),)


ECHO = Modality(
    name="echo",
    title="echo engine",
    requests=(EchoRequest,),
    options=EchoOptions,
    make_engine=make_echo_engine,
    media="text",
    prompt_texts=lambda request: [request.words],
    split=_split,
    salvage=_salvage,
    sink=_sink,
    sample_requests=_samples,
    lost="what it had said is kept.",
    commands=(
        Command(
            name="echo",
            help="say the words back (a test modality)",
            description="The echo modality of Ember's tests.",
            arguments=_arguments,
            request=_request,
            result=_result,
        ),
    ),
)
