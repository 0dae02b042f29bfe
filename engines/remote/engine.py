"""The text engine for a model on a remote OpenAI-compatible server (chat and completion, streamed).

It runs in the engine process like the llama.cpp engine and streams each piece of text to the job's
progress, so the output pipeline's safety stage reads it as it arrives, as it reads local tokens.
Nothing of Ember's own sampling runs there: a remote reply carries no sampling watermark, and its
record says where it was made.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from engines.engine import Progress
from engines.errors import Cancelled, EmberError, InvalidRequestError
from engines.jobs import CancelToken
from engines.pipeline import Provenance
from engines.remote import split_path
from engines.remote.client import stream_events
from engines.text.requests import ChatRequest, CompletionRequest, ModelOptions, TextOutput

TIMEOUT_S = 120.0  # a remote server may load its model on the first request
NO_WATERMARK = "none: made by a remote server, which cannot carry Ember's sampling watermark"


class _RemoteModel:
    """What every remote engine has: the server's URL and the model's id (from its path), and no local memory."""

    def __init__(self, path: str) -> None:
        try:
            self.url, self.model = split_path(path)
        except ValueError as exc:
            raise EmberError(str(exc)) from None
        self.host = urlsplit(self.url).netloc
        self.backend = f"remote ({self.host})"
        self._api_key = ""

    @property
    def name(self) -> str:
        return f"{self.model} (remote, {self.host})"

    def memory_estimate(self) -> int:
        return 0  # it runs on the server

    def details(self) -> dict[str, Any]:
        return {"remote": self.url}


class RemoteTextEngine(_RemoteModel):
    """A model on a remote server, reached at its OpenAI API."""

    kind = "text"

    def __init__(self, options: ModelOptions) -> None:
        super().__init__(options.path)
        self.options = options
        self._loaded = False

    def details(self) -> dict[str, Any]:
        return {"context_tokens": self.options.context_tokens, "threads": 0, "remote": self.url}

    def load(self) -> None:
        """Check the server answers and lists the model; raises EmberError saying what is wrong."""
        if self._loaded:
            return
        self._api_key = _saved_key(self.url)
        from engines.remote.endpoints import list_models

        models = list_models(self.url, self._api_key)
        if self.model not in models:
            listed = ", ".join(models[:8]) or "none"
            raise EmberError(f"The remote server at {self.url} has no model '{self.model}' (it lists: {listed}).")
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False

    def provenance(self, request: ChatRequest | CompletionRequest, output: TextOutput) -> Provenance:
        from engines.text.record_settings import settings_of

        settings = settings_of(request, output.seed, self.options.context_tokens, 0, {"remote": self.url})
        settings["remote"] = self.url
        settings["sampling_watermark"] = NO_WATERMARK
        return Provenance(
            model_name=self.name,
            model_path=self.options.path,
            model_sha256="",
            backend=self.backend,
            settings=settings,
            seed=output.seed,
        )

    def run(self, request: ChatRequest | CompletionRequest, progress: Progress, cancel: CancelToken) -> TextOutput:
        """Stream the reply (or continuation) from the server to ``progress``; Cancelled with the partial output."""
        self.load()
        s = request.sampling
        seed = s.seed if s.seed is not None else secrets.randbelow(2**32)  # sent, so the record can say it
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "seed": seed,
            "stream": True,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.logprobs is not None:
            raise InvalidRequestError("Log-probabilities are not read from remote servers.", "logprobs")
        if request.json_schema:
            import json

            schema = json.loads(request.json_schema)
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
        if isinstance(request, ChatRequest):
            if request.tools:
                raise InvalidRequestError("Tools are not passed on to remote servers.", "tools")
            if request.mode == "continue":
                raise EmberError("A remote server cannot continue a reply; send a new message instead.")
            messages = [{"role": "system", "content": request.system_prompt}] if request.system_prompt.strip() else []
            messages += [{"role": m.role, "content": m.content} for m in request.messages]
            body["messages"] = messages
            path = "/chat/completions"
        else:
            body["prompt"] = request.prompt
            path = "/completions"
        return self._stream(path, body, seed, isinstance(request, ChatRequest), progress, cancel)

    def _stream(
        self, path: str, body: dict[str, Any], seed: int, chat: bool, progress: Progress, cancel: CancelToken
    ) -> TextOutput:
        started = time.perf_counter()
        first: float | None = None
        text: list[str] = []
        pieces = 0
        finish: str | None = None  # None until the server says the reply is complete
        usage: dict[str, Any] = {}
        undo: list[Any] = []

        def on_open(close: Any) -> None:
            undo.append(cancel.on_cancel(close))

        try:
            for event in stream_events(self.url, path, body, self._api_key, TIMEOUT_S, on_open):
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    if isinstance(piece, str) and piece:
                        if first is None:
                            first = time.perf_counter()
                        pieces += 1
                        text.append(piece)
                        progress.token(piece)
                    if choice.get("finish_reason"):
                        finish = "stop" if choice["finish_reason"] in ("stop", "eos") else "length"
                if cancel.cancelled:
                    break
        finally:
            for remove in undo:
                remove()
        if finish is None and not cancel.cancelled:
            # The connection ended with no finish_reason: the server stopped or crashed mid-reply. Passing
            # the part on as a whole reply would hide that (what arrived was streamed, and checked, already).
            raise EmberError(
                f"The remote server at {self.url} stopped sending in the middle of the reply (after {pieces} "
                "pieces). Check that it is still running, then send the message again."
            )
        ended = time.perf_counter()
        first = first or ended
        output = TextOutput(
            text="".join(text),
            finish_reason="cancelled" if cancel.cancelled else (finish or "length"),  # type: ignore[arg-type]
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            generated_tokens=int(usage.get("completion_tokens") or pieces),
            dropped_messages=0,
            seed=seed,
            prompt_s=first - started,
            generation_s=ended - first,
            watermark="",
        )
        if cancel.cancelled:
            raise Cancelled(output)
        return output


def _saved_key(url: str) -> str:
    """The API key Settings keeps for ``url`` (read from the Studio's database; "" when there is none)."""
    try:
        from engines.database import Database
        from engines.paths import database_path
        from engines.remote.endpoints import key_for
        from engines.settings import SettingsStore

        path = database_path()
        if not path.exists():
            return ""
        db = Database(path)
        try:
            return key_for(SettingsStore(db), url)
        finally:
            db.close()
    except Exception:  # no database to read: the server is asked without a key
        return ""


class RemoteImageEngine(_RemoteModel):
    """A text-to-image model on a remote server, reached at its OpenAI API (/images/generations, PNGs as base64).

    The images come back as pixels and pass Ember's own pipeline like local ones: the safety check, the
    image watermark and Content Credentials, the library. The record names the server.
    """

    kind = "image"

    def __init__(self, options: Any) -> None:
        super().__init__(options.folder)
        self.options = options

    def load(self) -> None:
        self._api_key = _saved_key(self.url)

    def unload(self) -> None:
        pass

    def provenance(self, request: Any, output: Any) -> Provenance:
        first = dict(output.parameters[0]) if output.parameters else {}
        settings = {**first, "batch_size": request.batch_size, "remote": self.url, "made_on": {"remote": self.url}}
        return Provenance(
            model_name=self.name,
            model_path=self.options.folder,
            model_sha256="",
            backend=self.backend,
            settings=settings,
            seed=first.get("seed"),
        )

    def run(self, request: Any, progress: Progress, cancel: CancelToken) -> Any:
        """Ask the server for ``request.batch_size`` images, decoded to pixels (the record gives each one's own size).

        Raises Cancelled as soon as the job is cancelled (the connection is closed, the server's work
        abandoned), EmberError for a failure or an answer without readable images.
        """
        import base64
        import io

        import numpy as np
        from PIL import Image

        from engines.diffusion.requests import GeneratedImages
        from engines.errors import IMAGE_DECODE_ERRORS
        from engines.remote.client import request_json

        self.load()
        if request.init_image is not None:
            raise InvalidRequestError("A remote server makes images from a prompt only, not from a start image.")
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "n": request.batch_size,
            "size": f"{request.width}x{request.height}",
            "response_format": "b64_json",
            "seed": seed,
        }
        for name, value in (("negative_prompt", request.negative_prompt), ("steps", request.steps),
                            ("guidance_scale", request.guidance_scale)):  # fmt: skip
            if value:
                body[name] = value  # not in OpenAI's own API; Ember's API and most local image servers read them
        cancel.raise_if_cancelled()
        started = time.perf_counter()
        undo: list[Any] = []
        try:
            answer = request_json(
                "POST", self.url, "/images/generations", body, self._api_key, TIMEOUT_S * 5,
                on_open=lambda close: undo.append(cancel.on_cancel(close)),
            )  # fmt: skip
        finally:
            for remove in undo:
                remove()
        cancel.raise_if_cancelled()
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not data:
            raise EmberError(f"The remote server at {self.url} answered without images.")
        images, parameters = [], []
        for index, item in enumerate(data[: request.batch_size]):
            try:
                raw = base64.b64decode(item["b64_json"])
                with Image.open(io.BytesIO(raw)) as picture:
                    pixels = np.asarray(picture.convert("RGB"))
            except (KeyError, TypeError, ValueError, *IMAGE_DECODE_ERRORS):
                raise EmberError(f"Image {index + 1} from the remote server at {self.url} cannot be read.") from None
            images.append(pixels)
            parameters.append({
                "prompt": request.prompt, "negative_prompt": request.negative_prompt, "seed": seed + index,
                "width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "model": self.model,
                "remote": self.url,
            })  # fmt: skip
            progress.step(index + 1, request.batch_size)
        return GeneratedImages(images, parameters, {"total_s": time.perf_counter() - started})
