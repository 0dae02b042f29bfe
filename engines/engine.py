"""The protocol every engine follows, and what it reports while it runs."""

from __future__ import annotations

from typing import Any, Protocol

from engines.jobs import CancelToken
from engines.pipeline import Provenance


class Progress(Protocol):
    """What an engine tells the world while it runs; every call goes through the pipeline."""

    def token(self, text: str) -> None:
        """Streamed text, shown only as far as the pipeline's stream watchers allow."""

    def step(self, done: int, total: int) -> None:
        """Progress of a job made of steps (denoising steps, tiles)."""

    def notice(self, message: str) -> None:
        """Something the person should know (a trimmed conversation, a CPU fallback)."""

    def preview(self, image: Any, index: int = 0) -> None:
        """A live preview of output ``index`` (an HxWx3 uint8 array), shown only if the pipeline allows it."""

    def wants_preview(self) -> bool:
        """Whether anyone shows previews now; an engine skips making them when not."""


class Engine(Protocol):
    """One loaded model. The registry loads it lazily in a worker and keeps it."""

    kind: str
    backend: str

    def memory_estimate(self) -> int:
        """Return the bytes of RAM (or VRAM) the loaded model and its buffers need."""

    def load(self) -> None:
        """Load the model; raises EmberError with a reason a person understands."""

    def run(self, request: Any, progress: Progress, cancel: CancelToken) -> Any:
        """Run one request and return its raw output; raises Cancelled when cancelled."""

    def provenance(self, request: Any, output: Any) -> Provenance:
        """Return what made ``output``: model, file hash, backend, settings, seed."""

    def unload(self) -> None:
        """Free the model's memory."""
