"""Shared fixtures of the upscaler tests: a photograph, and the embedded x4 upscaler loaded once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engines.upscale.engine import UpscaleEngine
from engines.upscale.requests import UpscaleOptions


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph (scikit-image's astronaut), 96x112 RGB: small enough for a quick upscale."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[40:232:2, 120:344:2])


@pytest.fixture(scope="session")
def x4_engine(session_home: Path) -> Iterator[UpscaleEngine]:
    """Real-ESRGAN AnimeVideo v3 x4 (converted from the package's ncnn files on first use), on the CPU."""
    engine = UpscaleEngine(UpscaleOptions("animevideo-x4", device="cpu"))
    engine.load()
    yield engine
    engine.unload()
