"""The fake OpenAI-compatible server (tests/tools/fake_openai.py) as a fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai import FakeServer


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()
