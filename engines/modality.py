"""A modality (text, image, speech, ...) described once: what the Studio, the command line, the catalog,
the inspector, the fit estimate, the benchmarks and the enforcement test need to know of it.

Each modality is one package under engines/ that exports one frozen :class:`Modality`;
engines/modalities.py lists them. Nothing else names a modality: the Studio runs every one
through the same path (load with progress, one pipeline session per output, the engine,
each output finished by the pipeline, the delivered ones handed to the modality's sink).
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from engines.errors import EmberError

if TYPE_CHECKING:
    from engines.host.wire import EngineContext, EngineInfo, Ran
    from engines.jobs import JobEvent
    from engines.pipeline import Delivered, OutputSession, Provenance

Media = Literal["text", "image", "audio"]
Finished = tuple[Any, "Provenance", dict[str, float]]
"""One output as the engine made it, what made it, and its timings: what a session finishes."""


@dataclass(frozen=True)
class ModelKind:
    """A kind of model a modality runs, as the catalog, the inspector and the fit estimate know it.

    ``defaults`` are the keys a catalog entry of this kind may give under "defaults",
    ``required_defaults`` those it must give.

    ``estimate`` names the memory estimate of a model of this kind as "module:function": a
    function ``(info: ModelInfo, context_tokens, width, height) -> FitEstimate`` (see
    engines/models/fit.py). It is a name, imported when an estimate is first asked for, because
    the fit estimate reads this table: importing the function here would make a cycle. ""
    takes the fit estimate's generic one for a single ONNX graph.
    """

    kind: str  # "text", "guard", "diffusion", ...
    panel: str  # the panel that uses it ("Chat", "Images", "Settings/Safety")
    format: str  # "gguf", "onnx-diffusers", "onnx", "piper"
    defaults: frozenset[str] = frozenset()
    required_defaults: frozenset[str] = frozenset()
    estimate: str = ""  # "engines.models.fit:estimate_text_model"


@dataclass(frozen=True)
class Command:
    """A command of ``main.py``.

    Most submit a request: ``request(args)`` builds it (raises EmberError with a reason);
    ``on_event(args, event)`` shows progress as it happens (tokens to stdout, steps to stderr);
    ``result(args, data)`` prints the RESULT event's data and returns the exit status. The shared
    runner (engines/cli.py) says what a block (exit 3), a failure (1, its reason on one line) and
    a cancel (130, Ctrl+C) mean. A command that submits nothing gives ``run(args)`` instead.
    """

    name: str
    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    request: Callable[[argparse.Namespace], Any] | None = None
    result: Callable[[argparse.Namespace, Any], int] | None = None
    on_event: Callable[[argparse.Namespace, JobEvent], None] = lambda args, event: None
    run: Callable[[argparse.Namespace], int] | None = None


@dataclass(frozen=True)
class Bench:
    """A benchmark of ``main.py bench NAME``: its own arguments and the run that returns a Report."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]


@dataclass(frozen=True)
class Modality:
    """Everything Ember needs to know of one modality.

    Run path (engines/studio.py):
      - ``requests``: the request types it runs; ``options_of(request)`` their load options,
        whose type is ``options``; two requests with equal options share one loaded model.
      - ``make_engine(options, context)`` makes a not yet loaded engine. It runs in the engine
        process, so it must be a module-level function (it travels there by name).
      - ``media``: what each output is ("text" streams token by token through the safety guard).
      - ``prompt_texts(request)``: the texts a person wrote, checked as prompts before anything
        runs. Required: a modality without it cannot be registered (the check fails closed).
      - ``outputs(request)``: how many outputs a request makes (one pipeline session each).
      - ``split(request, ran)``: the finished outputs, one (output, provenance, timings) per session.
      - ``salvage(request, streamed, info)``: what to keep when the engine process ended
        mid-run (a partial reply), or None.
      - ``sink(studio, request, delivered, withheld)``: what the job ends with, after keeping the
        delivered outputs where they belong (conversation, files); ``withheld`` has the reasons of
        outputs the pipeline kept back. Runs on the worker thread.
      - ``lost``: what the message after a crash tells the person about their work.
    The rest: ``kinds`` of model files, ``commands`` of main.py, ``benches``, and
    ``sample_requests(models)`` for the enforcement test (``models`` maps a model kind, and
    "text-base" for a base model, to a path).
    """

    name: str
    title: str  # "text engine": how a message names it
    requests: tuple[type, ...]
    options: type
    make_engine: Callable[[Any, EngineContext], Any]
    media: Media
    prompt_texts: Callable[[Any], Sequence[str]]
    split: Callable[[Any, Ran], list[Finished]]
    sink: Callable[[Any, Any, list[Delivered], list[str]], Any]
    sample_requests: Callable[[Mapping[str, str]], tuple[Any, ...]]
    options_of: Callable[[Any], Any] = lambda request: request.model
    outputs: Callable[[Any], int] = lambda request: 1
    salvage: Callable[[Any, list[OutputSession], EngineInfo | None], list[Finished]] = lambda req, sessions, info: []
    lost: str = "try again."
    kinds: tuple[ModelKind, ...] = ()
    commands: tuple[Command, ...] = ()
    benches: tuple[Bench, ...] = field(default=())

    def __post_init__(self) -> None:
        if not callable(self.prompt_texts):
            raise EmberError(f"The {self.name} modality has no prompt_texts(request), so its prompts go unchecked.")
        if not self.requests:
            raise EmberError(f"The {self.name} modality runs no request type.")
        try:
            pickle.dumps(self.make_engine)
        except Exception as exc:
            raise EmberError(
                f"The {self.name} modality's make_engine must be a module-level function, "
                f"because it runs in the engine process ({exc})."
            ) from None

    def device_of(self, request: Any) -> str:
        """The device a request asks for ("auto", "cpu" or "gpu")."""
        return str(getattr(self.options_of(request), "device", "cpu"))
