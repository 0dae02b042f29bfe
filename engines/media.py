"""Raw image and audio outputs as engines hand them to the OutputPipeline.

One output is one image (a batch of four is four outputs, each with its own id,
record and watermark) or one audio clip. Text outputs are
:class:`engines.text.requests.TextOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class ImageOutput:
    """One image: ``pixels`` is HxWx3 uint8 RGB.

    ``parameters`` holds what made it (prompt, negative_prompt, steps, sampler,
    guidance, seed, width, height, model ...), written into the file's metadata.
    ``blurred`` is set by the safety stage when the policy blurs instead of withholding.
    """

    pixels: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)
    index: int = 0
    blurred: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class AudioOutput:
    """One clip: ``samples`` is mono float32 in [-1, 1] at ``sample_rate`` Hz; ``text`` is what was spoken."""

    samples: np.ndarray
    sample_rate: int
    text: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
