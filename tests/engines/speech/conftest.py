"""The embedded voices, loaded once per module (each takes a second or two)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engines.speech.engine import SpeechEngine
from engines.speech.requests import SpeechOptions


@pytest.fixture(scope="module")
def heart() -> Iterator[SpeechEngine]:
    """The embedded hibari voice "heart", loaded."""
    engine = SpeechEngine(SpeechOptions("heart"))
    engine.load()
    yield engine
    engine.unload()


@pytest.fixture(scope="module")
def joe() -> Iterator[SpeechEngine]:
    """The embedded piper voice "joe", loaded."""
    engine = SpeechEngine(SpeechOptions("joe"))
    engine.load()
    yield engine
    engine.unload()
