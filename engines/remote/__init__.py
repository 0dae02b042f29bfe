"""Remote engines: an OpenAI-compatible server (llama.cpp's, vLLM, Ollama, another Ember) as a text backend.

A remote model is addressed by a model path ``remote:<base URL>#<model id>``
(``remote:http://gpu-box:8080/v1#qwen2.5-7b``), so the Chat panel, the queue and the local API run
it as they run a GGUF file. Its text still streams through Ember's output pipeline (the safety stage
reads it as it arrives) and is recorded in the library; the record says where it was made, and that a
remote server cannot carry Ember's sampling watermark. Endpoints (a name, the base URL, an optional API
key, the models chosen) are kept in the Studio's settings (:mod:`engines.remote.endpoints`).
"""

from __future__ import annotations

PREFIX = "remote:"


def is_remote(path: str) -> bool:
    """Whether a model path names a model on a remote server."""
    return path.startswith(PREFIX)


def remote_path(base_url: str, model: str) -> str:
    """The model path of ``model`` at the server whose OpenAI API is at ``base_url`` (".../v1")."""
    return f"{PREFIX}{base_url.rstrip('/')}#{model}"


def split_path(path: str) -> tuple[str, str]:
    """(base URL, model id) of a remote model path; raises ValueError for another path."""
    if not is_remote(path) or "#" not in path:
        raise ValueError(f"'{path}' is not a remote model path (remote:<base URL>#<model>).")
    url, _, model = path[len(PREFIX) :].partition("#")
    if not url or not model:
        raise ValueError(f"'{path}' is not a remote model path (remote:<base URL>#<model>).")
    return url, model
