"""The remote servers a person added, kept in the Studio's settings, and how to ask one for its models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from engines.errors import EmberError
from engines.remote import remote_path

SETTING = "remote_endpoints"


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server: a name, its API's base URL (".../v1"), its key, the models chosen there.

    ``kind`` is what Ember uses its models for: "text" (chat and completion) or "image" (text to image).
    """

    name: str
    url: str
    api_key: str = ""
    models: tuple[str, ...] = ()
    kind: str = "text"

    def paths(self) -> list[tuple[str, str]]:
        """(display name, model path) of each chosen model."""
        return [(f"{model} ({self.name}, remote)", remote_path(self.url, model)) for model in self.models]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "api_key": self.api_key,
            "models": list(self.models),
            "kind": self.kind,
        }


def normalized_url(url: str) -> str:
    """The base URL of an OpenAI API as a person may type it ("localhost:8080" -> "http://localhost:8080/v1").

    Raises EmberError for one that is not an http(s) address.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EmberError(f"'{url}' is not a server address; give one like http://192.168.1.20:8080/v1.")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def saved(settings: Any) -> list[Endpoint]:
    """The endpoints kept in ``settings`` (a SettingsStore); entries that cannot be read are left out."""
    found = []
    for entry in settings.get(SETTING) or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("url"), str):
            models = tuple(m for m in entry.get("models") or [] if isinstance(m, str))
            key = entry.get("api_key") if isinstance(entry.get("api_key"), str) else ""
            kind = "image" if entry.get("kind") == "image" else "text"
            found.append(Endpoint(entry["name"], entry["url"], key, models, kind))
    return found


def keep(settings: Any, endpoint: Endpoint) -> None:
    """Add ``endpoint``, or replace the one of the same name."""
    others = [e for e in saved(settings) if e.name != endpoint.name]
    settings.set(SETTING, [e.as_json() for e in [*others, endpoint]])


def forget(settings: Any, name: str) -> bool:
    """Remove the endpoint called ``name``; returns whether there was one."""
    endpoints = saved(settings)
    left = [e for e in endpoints if e.name != name]
    settings.set(SETTING, [e.as_json() for e in left])
    return len(left) < len(endpoints)


def remote_models(settings: Any, kind: str) -> list[tuple[str, str]]:
    """(display name, model path) of every model of ``kind`` ("text" or "image") on the kept servers."""
    return [entry for endpoint in saved(settings) if endpoint.kind == kind for entry in endpoint.paths()]


def key_for(settings: Any, url: str) -> str:
    """The API key kept for the server at ``url`` ("" when none is)."""
    return next((e.api_key for e in saved(settings) if e.url == url.rstrip("/")), "")


def list_models(url: str, api_key: str = "", timeout_s: float = 10.0) -> list[str]:
    """The model ids the server at ``url`` lists (GET /models). Raises EmberError saying why it could not."""
    from engines.remote.client import request_json

    answer = request_json("GET", url, "/models", None, api_key, timeout_s)
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise EmberError(
            f"The server at {url} answered /models without a list of models ({json.dumps(answer)[:120]}); "
            "it may not be an OpenAI-compatible API."
        )
    return [str(m["id"]) for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
