"""Fixtures of the API tests: one Studio and server a module (on loopback), and clients of it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engines.api.server import ApiServer, ServerSettings
from engines.studio import Studio

CHAT_MODEL = "smollm2-135m-instruct"  # the embedded chat model, as /v1/models names it
BASE_MODEL = "gemma-3-270m"  # the embedded base model
API_KEY = "test-key-0123456789abcdef"
CONTEXT_TOKENS = 1024  # small, so a prompt longer than the context is quick to write


@pytest.fixture(scope="module")
def api_studio(tmp_path_factory: pytest.TempPathFactory, session_home: Path) -> Iterator[Studio]:
    """A Studio on a fresh home of its own for the module's tests (the model cache stays shared)."""
    home = tmp_path_factory.mktemp("ember-api")
    shared_cache = session_home / "cache"
    shared_cache.mkdir(exist_ok=True)
    (home / "cache").symlink_to(shared_cache, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMBER_HOME", str(home))
        studio = Studio()
        yield studio
        assert studio.close(timeout_s=10), "Studio threads did not stop"


@pytest.fixture(scope="module")
def api(api_studio: Studio) -> Iterator[ApiServer]:
    """The API on 127.0.0.1 (a free port), with a key, no rate limit and a 1024-token context."""
    settings = ServerSettings(port=0, api_key=API_KEY, rate_per_minute=0, context_tokens=CONTEXT_TOKENS)
    with ApiServer(api_studio, settings) as server:
        yield server


@pytest.fixture
def client(api: ApiServer) -> Any:
    """The real openai package's client of the server (no retries: a test sees each answer as it is)."""
    import openai

    return openai.OpenAI(base_url=api.url, api_key=API_KEY, max_retries=0, timeout=120)


class Terminals:
    """The terminal events of every job of a Studio, as they are delivered."""

    def __init__(self, studio: Studio) -> None:
        self.events: list[Any] = []
        self.changed = threading.Condition()
        self._unsubscribe = studio.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        if event.kind.terminal:
            with self.changed:
                self.events.append(event)
                self.changed.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> list[Any]:
        """Wait until ``count`` jobs in all have ended (or the time is up); returns their terminal events."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.events) >= count, timeout_s)
            return list(self.events)

    def close(self) -> None:
        self._unsubscribe()


@pytest.fixture
def terminals(api_studio: Studio) -> Iterator[Terminals]:
    """The terminal events of the jobs a test makes."""
    watch = Terminals(api_studio)
    yield watch
    watch.close()
