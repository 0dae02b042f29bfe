"""The OutputPipeline: the one road from an engine's raw output to a person.

Every output an engine makes passes through here before it reaches a panel, the
library, a file or stdout. Stages run in order (safety first, then watermark and
provenance); each may pass, change or withhold the output, and each decision is
kept with the output's record. Streamed text is shown only as far as every stage's
stream watcher has released it.

Only the pipeline makes :class:`Delivered` objects, and every sink (the
conversation store, file writers, the CLI's stdout, the window's bridge) takes
nothing else.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from engines.errors import OutputBlocked


@dataclass(frozen=True)
class StageDecision:
    """What one stage decided about one output; never holds the content itself."""

    stage: str
    action: str  # "pass", "modified", "blocked", "withheld"
    category: str = ""
    score: float | None = None
    checker: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Provenance:
    """What made an output: filled in by the engine that ran the job."""

    model_name: str
    model_path: str
    model_sha256: str
    backend: str
    settings: dict[str, Any]
    seed: int | None = None


@dataclass(frozen=True)
class OutputRecord:
    """The record kept for every output, delivered or blocked."""

    output_id: str
    kind: str
    created_utc: str
    job_id: int
    provenance: Provenance
    timings: dict[str, float]
    decisions: tuple[StageDecision, ...]
    partial: bool
    delivered: bool


@dataclass(frozen=True)
class OutputContext:
    """What a stage knows about the output in front of it.

    ``output_id`` is fixed when the output's session opens, so a watermark can carry
    it; ``provenance`` is known only once the engine has finished (None while streaming).
    """

    output_id: str
    job_id: int
    kind: str  # "text", "image", "audio"
    request: Any
    created_utc: str
    provenance: Provenance | None = None

    def mark_id(self, bits: int = 32) -> int:
        """The first ``bits`` bits of the output id: what a watermark carries to find the record again."""
        return mark_of(self.output_id, bits)


def mark_of(output_id: str, bits: int = 32) -> int:
    """Return the first ``bits`` bits of a (128-bit, hex) output id."""
    return int(output_id, 16) >> (128 - bits)


def new_output_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


_SEAL = object()


@dataclass(frozen=True)
class Delivered:
    """An output that passed every stage of the pipeline, with its record.

    Constructing one anywhere but in :class:`OutputPipeline` raises TypeError.
    """

    output: Any
    record: OutputRecord
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("Only the OutputPipeline makes Delivered outputs.")


def require_delivered(item: object) -> Delivered:
    """Return ``item`` if it came out of the pipeline; raise TypeError otherwise.

    Every sink calls this before it shows or writes anything.
    """
    if not isinstance(item, Delivered) or item._seal is not _SEAL:
        raise TypeError(
            f"Refusing to show or save {type(item).__name__}: only outputs from the OutputPipeline may reach the user."
        )
    return item


@runtime_checkable
class StreamWatcher(Protocol):
    """Watches one text stream as it grows."""

    def release(self, text: str) -> int:
        """Return how many leading characters of ``text`` (all generated so far) may be shown.

        Raise :class:`OutputBlocked` to stop the stream; what was not yet released is withheld.
        """


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline. ``name`` appears in every record it touches."""

    name: str

    def watch(self, context: OutputContext) -> StreamWatcher | None:
        """Return a watcher for a streamed output, or None to see only the finished output."""

    def process(self, output: Any, context: OutputContext) -> tuple[Any, StageDecision]:
        """Return the output (unchanged or changed) and the decision; raise OutputBlocked to withhold it."""


PreviewHook = Callable[[Any, OutputContext], Any]
"""A stage's optional ``preview(image, context)``: the preview to show (perhaps changed), or None to hide it."""


RecordSink = Callable[[OutputRecord], None]


class OutputSession:
    """One output on its way through the pipeline (one job)."""

    def __init__(
        self,
        pipeline: OutputPipeline,
        job_id: int,
        kind: str,
        request: Any,
        on_text: Callable[[str], None] | None,
    ) -> None:
        self._pipeline = pipeline
        self._stages = pipeline.stages
        self.context = OutputContext(new_output_id(), job_id, kind, request, utc_now())
        self._on_text = on_text
        self._watchers = [w for w in (stage.watch(self.context) for stage in self._stages) if w is not None]
        self._text: list[str] = []
        self._length = 0
        self._chunks = 0
        self._released = 0
        self.started_s = time.monotonic()

    @property
    def released_text(self) -> str:
        """The streamed text shown so far."""
        return self._whole()[: self._released]

    @property
    def received_text(self) -> str:
        """All streamed text fed so far, shown or still held back by a watcher."""
        return self._whole()

    @property
    def chunks_received(self) -> int:
        """How many chunks (tokens) have been fed."""
        return self._chunks

    def _whole(self) -> str:
        if len(self._text) > 1:
            self._text = ["".join(self._text)]
        return self._text[0] if self._text else ""

    def feed(self, chunk: str) -> None:
        """Add streamed text; shows (through ``on_text``) whatever every watcher releases.

        Raises OutputBlocked when a watcher stops the stream; a record of the block is kept.
        """
        if not chunk:
            return
        self._text.append(chunk)
        self._length += len(chunk)
        self._chunks += 1
        if not self._watchers:
            self._released = self._length
            if self._on_text:
                self._on_text(chunk)
            return
        text = self._whole()
        try:
            allowed = min(w.release(text) for w in self._watchers)
        except OutputBlocked as blocked:
            self._pipeline._record_blocked(self, blocked)
            raise
        if allowed > self._released:
            new = text[self._released : allowed]
            self._released = allowed
            if self._on_text:
                self._on_text(new)

    def preview(self, image: Any) -> Any:
        """Return a live preview as it may be shown (every stage with a ``preview`` hook sees it), or None."""
        for stage in self._stages:
            hook: PreviewHook | None = getattr(stage, "preview", None)
            if hook is None:
                continue
            image = hook(image, self.context)
            if image is None:
                return None
        return image

    def finish(
        self,
        output: Any,
        provenance: Provenance,
        timings: dict[str, float] | None = None,
        *,
        partial: bool = False,
    ) -> Delivered:
        """Run every stage on the finished output and return it sealed with its record.

        For a stream, text released now (that watchers held back) is sent through
        ``on_text`` too. Raises OutputBlocked when a stage withholds the output.
        """
        decisions: list[StageDecision] = []
        self.context = replace(self.context, provenance=provenance)
        for stage in self._stages:
            try:
                output, decision = stage.process(output, self.context)
            except OutputBlocked as blocked:
                self._pipeline._record_blocked(self, blocked, provenance, tuple(decisions))
                raise
            decisions.append(decision)
        if self._on_text and self._length > self._released:
            rest = self._whole()[self._released :]
            self._released = self._length
            self._on_text(rest)
        record = OutputRecord(
            output_id=self.context.output_id,
            kind=self.context.kind,
            created_utc=self.context.created_utc,
            job_id=self.context.job_id,
            provenance=provenance,
            timings=dict(timings or {}),
            decisions=tuple(decisions),
            partial=partial,
            delivered=True,
        )
        self._pipeline._keep(record)
        return Delivered(output, record, _SEAL)


class OutputPipeline:
    """Stages in order, and the sinks that keep every record."""

    def __init__(self, stages: Sequence[Stage] = (), record_sinks: Sequence[RecordSink] = ()) -> None:
        self._stages = tuple(stages)
        self._record_sinks = list(record_sinks)
        self._lock = threading.Lock()

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    def add_stage(self, stage: Stage) -> None:
        """Append a stage; sessions opened afterwards use it."""
        with self._lock:
            self._stages = (*self._stages, stage)

    def add_record_sink(self, sink: RecordSink) -> None:
        with self._lock:
            self._record_sinks.append(sink)

    def open(
        self,
        job_id: int,
        kind: str,
        request: Any,
        on_text: Callable[[str], None] | None = None,
    ) -> OutputSession:
        """Start one output's way through the pipeline."""
        return OutputSession(self, job_id, kind, request, on_text)

    def _keep(self, record: OutputRecord) -> None:
        for sink in list(self._record_sinks):
            sink(record)

    def _record_blocked(
        self,
        session: OutputSession,
        blocked: OutputBlocked,
        provenance: Provenance | None = None,
        earlier: tuple[StageDecision, ...] = (),
    ) -> None:
        decision = blocked.decision
        decisions = earlier + ((decision,) if isinstance(decision, StageDecision) else ())
        context = session.context
        self.record_refusal(
            context.job_id,
            context.kind,
            decisions,
            provenance=provenance,
            timings={"total_s": time.monotonic() - session.started_s},
            output_id=context.output_id,
        )

    def record_refusal(
        self,
        job_id: int,
        kind: str,
        decisions: tuple[StageDecision, ...],
        *,
        provenance: Provenance | None = None,
        timings: dict[str, float] | None = None,
        output_id: str | None = None,
    ) -> OutputRecord:
        """Keep the record of an output that was withheld (or a request refused before it ran)."""
        record = OutputRecord(
            output_id=output_id or new_output_id(),
            kind=kind,
            created_utc=utc_now(),
            job_id=job_id,
            provenance=provenance or Provenance("", "", "", "", {}),
            timings=dict(timings or {}),
            decisions=decisions,
            partial=True,
            delivered=False,
        )
        self._keep(record)
        return record
