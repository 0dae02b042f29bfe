"""onnxruntime's errors in words for a person, and which of them mean the memory ran out.

onnxruntime raises its own exception types (``Fail``, ``RuntimeException``, ``InvalidProtobuf``,
all plain Exceptions) with texts such as "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero
status code returned while running Conv node. ... Status Message: .../bfc_arena.cc:376 void*
onnxruntime::BFCArena::AllocateRawInternal(...) Failed to allocate memory for requested buffer of
size 4294967296" (its arena, on the GPU or the CPU) or "... CUDA failure 2: out of memory ; GPU=0
; ... expr=cudaMalloc(...)" (a CUDA call). The diffusion, upscale and speech engines turn them
into an :class:`~engines.errors.EmberError` here, one way for all three.
"""

from __future__ import annotations

import re
from pathlib import Path

from engines.errors import EmberError, ModelFileError, OutOfMemoryError, names_gpu, says_out_of_memory
from engines.units import human_bytes

_REQUESTED = re.compile(r"buffer of size (\d+)")


def ort_reason(exc: BaseException) -> str:
    """onnxruntime's error in words for a person: without its "[ONNXRuntimeError] : 1 : FAIL :" prefix
    and the C++ source positions it names; the first line, at most 300 characters."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    text = re.sub(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", text.splitlines()[0])
    text = re.sub(r"Exception during initialization:\s*|\[\w*Error\]\s*", "", text)
    text = re.sub(r"\s*/?[\w/.-]*\.(cc|h|cpp):\d+\s+[\w:]+(\([^)]*\))?\s*", " ", text)
    return text.strip()[:300]


def is_out_of_memory(exc: BaseException | str) -> bool:
    """Whether an onnxruntime error (or its text) says an allocation failed, on the GPU or in RAM.

    The whole text is read: the arena's words often come on the line after "Status Message:".
    """
    return says_out_of_memory(str(exc))


def out_of_memory(exc: BaseException | str, doing: str, advice: str, *, on_gpu: bool = False) -> OutOfMemoryError:
    """The OutOfMemoryError a person reads for an allocation that failed while ``doing`` (e.g. "making this image").

    It says whether it was the GPU's memory (``on_gpu``, or the error names CUDA), how much was
    asked for when onnxruntime says, and then ``advice`` (what to do).
    """
    text = str(exc)
    where = "GPU memory" if on_gpu or names_gpu(text) else "memory"
    asked = _REQUESTED.search(text)
    size = f" (it needed {human_bytes(int(asked.group(1)), approximate=True)} more)" if asked else ""
    return OutOfMemoryError(f"There was not enough {where} free for {doing}{size}. {advice}")


def load_error(exc: BaseException, path: Path, what: str) -> EmberError:
    """The error a person reads when onnxruntime cannot open the graph ``path`` (``what``: "the voice", ...).

    OutOfMemoryError when it ran out of memory; ModelFileError (damaged, or weights it refused) otherwise.
    """
    detail = ort_reason(exc)
    if is_out_of_memory(exc):
        return out_of_memory(exc, f"loading {what}", "Close other models or programs and try again.")
    if "external data" in detail.lower():
        return ModelFileError(
            f"{what[:1].upper()}{what[1:]} ('{path}') names weights that are outside its folder, missing or "
            f"damaged ({detail}). Ember reads a model's weights only from inside its own folder, so it did not "
            "load it. Re-download or re-convert the model."
        )
    return ModelFileError(
        f"'{path}' is not a valid ONNX model (truncated?): {detail}. Re-download or re-convert the model."
    )
