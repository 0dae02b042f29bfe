"""The window's API server: turned on and off from Settings, its choices kept, closed before the Studio.

``main.py serve`` runs the API on its own; in the window the same :class:`~engines.api.server.ApiServer`
serves the window's Studio (one queue for both), on a thread, while Settings says so. The choice is kept
in the Studio's settings and taken up again at the next start. Serving to other computers needs a key:
Settings makes one (:func:`new_key`) and the server refuses to start without it.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

from engines.api.server import DEFAULT_PORT, ApiServer, ServerSettings
from engines.errors import EmberError

SETTING = "api.server"  # {"enabled", "port", "network", "key"}
NETWORK_HOST = "0.0.0.0"


@dataclass(frozen=True)
class ApiChoice:
    """What Settings shows: on or off, the port, whether other computers may connect, and the key they send."""

    enabled: bool = False
    port: int = DEFAULT_PORT
    network: bool = False
    key: str = ""

    def server_settings(self) -> ServerSettings:
        return ServerSettings(host=NETWORK_HOST if self.network else "127.0.0.1", port=self.port, api_key=self.key)

    def as_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "port": self.port, "network": self.network, "key": self.key}

    @classmethod
    def from_json(cls, value: Any) -> ApiChoice:
        """The kept choice; anything unreadable gives the default (off)."""
        if not isinstance(value, dict):
            return cls()
        port = value.get("port")
        return cls(
            enabled=value.get("enabled") is True,
            port=port if isinstance(port, int) and 1 <= port <= 65535 else DEFAULT_PORT,
            network=value.get("network") is True,
            key=value.get("key") if isinstance(value.get("key"), str) else "",
        )


def new_key() -> str:
    """A fresh API key (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


class ApiService:
    """Starts, stops and restarts the API for ``studio`` as the kept choice changes. Thread-safe."""

    def __init__(self, studio: Any) -> None:
        self.studio = studio
        self._lock = threading.Lock()
        self._server: ApiServer | None = None
        self.choice = ApiChoice.from_json(studio.settings.get(SETTING))
        self.error: str | None = None  # why the chosen server does not run

    @property
    def url(self) -> str | None:
        """The base URL while serving, else None."""
        server = self._server
        return server.url if server is not None else None

    def start_saved(self) -> None:
        """Serve as the kept choice says (at the window's start)."""
        self.apply(self.choice, save=False)

    def apply(self, choice: ApiChoice, *, save: bool = True) -> bool:
        """Serve as ``choice`` says (stopping what ran before); keep it. Returns whether it serves as asked.

        A choice the server refuses (other computers without a key, a port in use) is kept all the same,
        with the reason in :attr:`error`, so that the person sees what to change.
        """
        with self._lock:
            self._stop()
            self.choice = choice
            self.error = None
            if save:
                self.studio.settings.set(SETTING, choice.as_json())
            if not choice.enabled:
                return True
            if choice.network and not choice.key:
                self.error = "Other computers may use the API only with a key: make one first."
                return False
            try:
                self._server = ApiServer(self.studio, choice.server_settings()).start()
            except EmberError as exc:
                self.error = str(exc)
                return False
            return True

    def close(self) -> None:
        """Stop serving (before the Studio closes); the kept choice stays."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
