"""llama.cpp's log, routed into Python logging at its real levels (logger ``engines.llama_cpp``)."""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

# ggml's log levels (ggml.h); llama-cpp-python 0.3.36's own table predates them and prints
# every warning to stderr as if it were an error.
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_llama_log = logging.getLogger("engines.llama_cpp")
_log_router: Any = None
_log_lock = threading.Lock()


_errors: list[str] = []  # llama.cpp's first error line since last_error() was asked


def last_error() -> str:
    """llama.cpp's first logged error since the last call ("" if none), e.g. why a model did not load."""
    with _log_lock:
        first = _errors[0] if _errors else ""
        _errors.clear()
    for prefix in ("llama_model_load: error loading model: ", "llama_model_load: "):
        if first.startswith(prefix):
            return first[len(prefix) :]
    return first


def route_llama_log(llama_cpp: Any) -> None:
    """Send llama.cpp's log to Python logging (logger ``engines.llama_cpp``) at its real levels."""
    global _log_router
    with _log_lock:
        if _log_router is not None:
            return
        last = [logging.DEBUG]

        @llama_cpp.llama_log_callback
        def router(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
            mapped = last[0] if level == 5 else _GGML_LEVELS.get(level, logging.DEBUG)
            last[0] = mapped
            message = text.decode("utf-8", "replace").rstrip()
            if message:
                _llama_log.log(mapped, "%s", message)
                if mapped >= logging.ERROR and not _errors:
                    _errors.append(message)

        llama_cpp.llama_log_set(router, ctypes.c_void_p(0))
        _log_router = router  # the C side keeps only a pointer: keep the callback alive
