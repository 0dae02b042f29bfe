"""The models the API serves (``/v1/models``) and how a request's ``model`` names one.

Text models are those the model library finds (embedded, imported, downloaded, in other tools'
folders); an embedded one is named by its short id ("smollm2-135m-instruct"), any other by its
library id. Image models are the library's diffusion folders, speech models its voices ("heart",
"joe", downloaded piper voices), transcription models the embedded Whisper ("whisper-tiny-en"), the
embedding model document search's MiniLM ("all-minilm-l6-v2").
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from engines.api.errors import ApiError

log = logging.getLogger(__name__)

# What each endpoint runs: a model of another kind is refused with a message that says so.
CHAT, IMAGE, SPEECH, TRANSCRIPTION, EMBEDDING = "text", "image", "speech", "transcription", "embedding"
EMBEDDING_ID = "all-minilm-l6-v2"  # document search's embedding model (int8 ONNX), 384 dimensions
_REFRESH_S = 10.0  # an unknown name looks again at most this often (a model imported meanwhile)


@dataclass(frozen=True)
class ServedModel:
    """One model as the API lists it. ``path`` is what the engines load; ``chat`` whether it has a chat template."""

    id: str
    kind: str  # CHAT, IMAGE, SPEECH, TRANSCRIPTION or EMBEDDING
    path: str
    name: str
    chat: bool = False
    context_tokens: int | None = None
    created_s: int = 0

    def as_json(self) -> dict[str, Any]:
        """The entry of ``/v1/models`` (OpenAI's fields, and Ember's own under "ember")."""
        extra: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.kind == CHAT:
            extra.update(chat=self.chat, context_tokens=self.context_tokens)
        return {"id": self.id, "object": "model", "created": self.created_s, "owned_by": "ember", "ember": extra}


class ServedModels:
    """The list, found once and looked at again when a request names a model it does not have."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._models: dict[str, ServedModel] = {}
        self._found_s = 0.0

    def all(self) -> list[ServedModel]:
        """Every served model (found now if never found yet)."""
        with self._lock:
            if not self._found_s:
                self._find()
            return list(self._models.values())

    def get(self, name: Any, kind: str, endpoint: str) -> ServedModel:
        """The model ``name`` names, for an endpoint that runs ``kind``.

        Raises ApiError 400 for a missing name, 404 for an unknown one or one of another kind.
        """
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "Give the model to use in 'model' (GET /v1/models lists them).", param="model")
        with self._lock:
            model = self._models.get(name)
            if model is None and time.monotonic() - self._found_s > _REFRESH_S:
                self._find()
                model = self._models.get(name)
        if model is None:
            ids = ", ".join(m.id for m in self.all() if m.kind == kind) or "none is installed"
            raise ApiError(
                404,
                f"There is no model '{name}' here for {endpoint}. Models for it: {ids}.",
                param="model",
                code="model_not_found",
            )
        if model.kind != kind:
            raise ApiError(
                404,
                f"'{name}' is a {model.kind} model; {endpoint} needs a {kind} model (GET /v1/models lists them).",
                param="model",
                code="model_not_found",
            )
        return model

    def _find(self) -> None:
        models: list[ServedModel] = []
        models += _library_models(self._db)
        models += _voices()
        models += _whisper()
        models += _embedding()
        models += _remote(self._db)
        self._models = {m.id: m for m in models}
        self._found_s = time.monotonic()


def _library_models(db: Any) -> list[ServedModel]:
    from engines.models.embedded import EMBEDDED_PREFIX
    from engines.models.library import ModelLibrary

    library = ModelLibrary(db)
    served = []
    for model in library.discover():
        kind = {"text": CHAT, "diffusion": IMAGE}.get(model.kind)
        if kind is None:
            continue
        short = model.id[len(EMBEDDED_PREFIX) :] if model.id.startswith(EMBEDDED_PREFIX) else model.id
        served.append(
            ServedModel(
                id=short,
                kind=kind,
                path=model.path,
                name=model.name,
                chat=bool(model.info.chat_template and model.info.chat_template.strip()),
                context_tokens=model.info.context_length,
                created_s=int(model.added_at or 0),
            )
        )
    for problem in library.problems:
        log.info("The API does not serve %s: %s", problem.path, problem.reason)
    return served


def _remote(db: Any) -> list[ServedModel]:
    """The models chosen on remote servers in Settings, as "<endpoint>/<model>" (served through Ember's pipeline).

    A text server's models chat; an image server's make images.
    """
    from engines.remote import remote_path
    from engines.remote.endpoints import saved
    from engines.settings import SettingsStore

    return [
        ServedModel(
            f"{e.name}/{model}",
            IMAGE if e.kind == "image" else CHAT,
            remote_path(e.url, model),
            f"{model} at {e.url}",
            chat=e.kind == "text",
        )
        for e in saved(SettingsStore(db))
        for model in e.models
    ]


def _voices() -> list[ServedModel]:
    from engines.speech.voices import available_voices

    return [ServedModel(v.id, SPEECH, v.id, v.name) for v in available_voices()]


def _whisper() -> list[ServedModel]:
    from engines.models.embedded import WHISPER_TINY_EN

    if not WHISPER_TINY_EN.installed:
        return []
    return [ServedModel(WHISPER_TINY_EN.id, TRANSCRIPTION, str(WHISPER_TINY_EN.path()), WHISPER_TINY_EN.name)]


def _embedding() -> list[ServedModel]:
    from engines.errors import ModelFileError
    from engines.safety.semantic import embedded_files

    try:
        model, _ = embedded_files()
    except ModelFileError as exc:
        log.info("The API serves no embeddings: %s", exc)
        return []
    return [ServedModel(EMBEDDING_ID, EMBEDDING, str(model), "all-MiniLM-L6-v2 (int8, 384 dimensions)")]
