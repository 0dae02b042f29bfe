"""Errors written for the person who reads them."""

from __future__ import annotations

import re
import struct

# What Pillow raises for a damaged or hostile image, besides the OSError (and UnidentifiedImageError)
# it documents. ``bench fuzz`` found SyntaxError (a broken PNG chunk met while decoding) and
# NotImplementedError (an unknown DDS pixel format) passing every image loader; the others are what
# Pillow's plugins raise for a file that lies about itself (struct.error, EOFError, IndexError,
# KeyError, TypeError, ValueError, ZeroDivisionError). Catch them around opening and decoding a
# file only, and say the file cannot be read.
IMAGE_DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    NotImplementedError,
    ZeroDivisionError,
)


class EmberError(Exception):
    """An error whose message is meant for a person: what happened, and what to do.

    Engines raise it for every failure they can foresee (a corrupt model file, a
    prompt longer than the context, a model that does not fit in memory). The job
    queue shows its message as it is, and ends the job with a :class:`Failure` that
    keeps the error's ``code``, so that a program (the local API) can tell kinds of
    failure apart without reading the words.
    """

    code = "error"


class ModelFileError(EmberError):
    """A model file that cannot be used: missing, truncated, corrupt or unsupported."""

    code = "model_file"


class ContextOverflowError(EmberError):
    """A request that cannot fit in the model's context window."""

    code = "context_length_exceeded"


class OutOfMemoryError(EmberError):
    """A model or request that does not fit in the memory this machine has free."""

    code = "out_of_memory"


class InvalidRequestError(EmberError):
    """A request the engine cannot honour as asked (a JSON schema it cannot turn into a grammar, ...).

    ``param`` names the request's field at fault ("json_schema", "tools"), or is "".
    """

    code = "invalid_request"

    def __init__(self, message: str, param: str = "") -> None:
        super().__init__(message)
        self.param = param

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses the engine process boundary whole
        return (type(self), (str(self), self.param))


class UnexpectedError(EmberError):
    """A failure nobody foresaw, worded by :func:`describe_unexpected` (a bug to report)."""

    code = "unexpected"


class Failure(str):
    """The data of a failed job: the message a person reads (it *is* the string), and the error's ``code``.

    ``code`` is :attr:`EmberError.code` of what the engine raised ("context_length_exceeded",
    "out_of_memory", "model_file", "invalid_request", "engine_crashed", "unexpected", "error");
    ``param`` is :attr:`InvalidRequestError.param` or "".
    """

    code: str
    param: str

    def __new__(cls, message: str, code: str = "error", param: str = "") -> Failure:
        made = super().__new__(cls, message)
        made.code = code
        made.param = param
        return made

    @classmethod
    def of(cls, exc: EmberError) -> Failure:
        """The failure of a job that raised ``exc``."""
        return cls(str(exc), exc.code, getattr(exc, "param", "") or "")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (Failure, (str(self), self.code, self.param))


# How native libraries say an allocation failed: onnxruntime's arena ("Failed to allocate memory for
# requested buffer"), CUDA ("CUDA failure 2: out of memory", "cudaMalloc failed"), cuBLAS and cuDNN
# ("..._STATUS_ALLOC_FAILED"), llama.cpp's log ("unable to allocate CUDA0 buffer", "failed to allocate
# buffer for kv cache"), C++ ("std::bad_alloc").
_OUT_OF_MEMORY = re.compile(
    r"out of memory|failed to allocate|alloc(ation)?[ _]failed|bad_alloc|insufficient memory"
    r"|cudaErrorMemoryAllocation|unable to allocate",
    re.IGNORECASE,
)
_GPU = re.compile(r"cuda|\bgpu\b|cublas|cudnn|tensorrt|directml|\bdml\b|metal|vulkan|on device \d", re.IGNORECASE)


def says_out_of_memory(text: str) -> bool:
    """Whether a native library's error text (onnxruntime, CUDA, llama.cpp's log) says an allocation failed."""
    return bool(_OUT_OF_MEMORY.search(text))


def names_gpu(text: str) -> bool:
    """Whether a native library's error text is about a GPU (CUDA, Metal, Vulkan, DirectML and their libraries)."""
    return bool(_GPU.search(text))


class Cancelled(Exception):
    """Raised inside an engine when its job was cancelled; the queue ends the job as cancelled.

    ``partial`` holds what was delivered before the stop (through the output
    pipeline), or None.
    """

    def __init__(self, partial: object = None) -> None:
        super().__init__("cancelled")
        self.partial = partial

    def __reduce__(self) -> tuple[type, tuple[object]]:  # crosses the engine process boundary whole
        return (Cancelled, (self.partial,))


class OutputBlocked(Exception):
    """Raised by the output pipeline when a stage withholds an output.

    ``decision`` says which stage, which category and why, without the content.
    """

    def __init__(self, decision: object) -> None:
        super().__init__(str(decision))
        self.decision = decision

    def __reduce__(self) -> tuple[type, tuple[object]]:
        return (OutputBlocked, (self.decision,))


def describe_unexpected(exc: BaseException, what: str) -> str:
    """Return a one-paragraph message for an error nobody foresaw.

    It names the component and the error so that a bug report is useful, and tells
    the person that the app itself is fine and what to try.
    """
    return describe_failure(type(exc).__name__, str(exc), what)


def describe_failure(name: str, message: str, what: str) -> str:
    """The message of :func:`describe_unexpected` for an error known by its type's name and its message."""
    detail = message.strip().splitlines()[0] if message.strip() else ""
    summary = f"{name}: {detail}" if detail else name
    return (
        f"The {what} stopped with an unexpected error ({summary}). "
        "Nothing else was affected; try again, and if it happens again please report it."
    )


class EngineCrashed(EmberError):
    """The engine process ended in the middle of a job: a crash in native code, an abort, or killed for memory.

    ``exit_code`` is the process's (negative: the signal that ended it), ``phase`` "loading" or
    "running", ``model`` the model's name as far as it is known. The Studio words the message
    the person reads; ``str()`` is a plain default.
    """

    code = "engine_crashed"

    def __init__(self, what: str, exit_code: int | None, phase: str, model: str) -> None:
        self.what = what
        self.exit_code = exit_code
        self.phase = phase
        self.model = model
        doing = "loading" if phase == "loading" else "generating with"
        super().__init__(
            f"The {what} stopped unexpectedly while {doing} {model or 'the model'} ({describe_exit(exit_code)}). "
            "Ember restarted it."
        )

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (EngineCrashed, (self.what, self.exit_code, self.phase, self.model))


class EngineRestarted(EmberError):
    """The job's engine process crashed and Ember restarted it: what the person reads of an :class:`EngineCrashed`."""

    code = EngineCrashed.code


_WINDOWS_CODES = {
    0xC0000005: "an access violation",
    0xC00000FD: "a stack overflow",
    0xC0000409: "a buffer overrun",
    0xC000001D: "an illegal instruction",
    0xC0000017: "out of memory",
}


def describe_exit(exit_code: int | None) -> str:
    """Say how a process ended, for a person: "signal 11", "signal 9: ... memory ...", "exit status 3"."""
    import signal

    if exit_code is None:
        return "it stopped answering"
    if exit_code < 0:
        number = -exit_code
        if number == getattr(signal, "SIGKILL", 9):
            return f"signal {number}: the system ended it, most likely because memory ran out"
        return f"signal {number}"
    windows = _WINDOWS_CODES.get(exit_code & 0xFFFFFFFF)
    if windows:
        return f"{windows}, 0x{exit_code & 0xFFFFFFFF:08X}"
    return f"exit status {exit_code}"
