"""What a job's PROGRESS and PREVIEW events carry: one small frozen dataclass per kind of news.

Panels, the command line and benchmarks tell them apart with ``isinstance``; nobody parses a
dict keyed by a "stage" string. Downloads report :class:`engines.models.downloads.DownloadProgress`.
TOKEN events carry the released text itself (a ``str``), NOTICE events a sentence for the person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Loading:
    """The engine started to load ``model`` (the first job that uses it, or after it was unloaded)."""

    model: str


@dataclass(frozen=True)
class Checking:
    """The guard model is judging the prompt, before the engine runs."""

    what: str = "prompt"


@dataclass(frozen=True)
class Running:
    """``model`` is loaded and runs the request on ``backend`` ("CPU", "CUDA", "Metal")."""

    model: str
    backend: str


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` steps (denoising steps, tiles, files); ``eta_s`` None until one step is done."""

    done: int
    total: int
    elapsed_s: float = 0.0
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True, eq=False)
class Preview:
    """A live preview of output ``index`` of the job (HxWx3 uint8), as the pipeline lets it be shown."""

    index: int
    image: Any
