"""GPU out-of-memory faults inside Ember's engine processes, for the tests (tests/tools/gpu_oom.py arms them).

Python imports this module at start-up in every process whose PYTHONPATH holds this folder. With
EMBER_GPU_OOM naming a control file, it wraps, at the library boundary and as soon as those
modules are imported, onnxruntime's ``Session.run`` and ``Session.run_with_iobinding`` and the
llama.cpp C functions llama-cpp-python calls: ``llama_model_load_from_file``,
``llama_init_from_model`` and ``llama_decode`` (and ``llama_log_set``, to learn where llama.cpp's
log goes). Nothing of Ember is touched.

While the control file names a fault (JSON: ``{"fault": NAME, "match": TEXT, "after": N, "times":
M}``), the wrapped call in an engine process of the cpu or gpu lane fails as the CUDA builds fail
when cudaMalloc fails:

- ``ort-arena``: onnxruntime's arena cannot grow: RuntimeException, its text as onnxruntime 1.19
  writes it (the reason on the line after "Status Message:");
- ``ort-cuda``: a CUDA call runs out of memory: Fail, "CUDA failure 2: out of memory";
- ``llama-model``: the weights do not fit: llama.cpp logs why and returns NULL, and
  llama-cpp-python raises ValueError "Failed to load model from file: ...";
- ``llama-context``: the KV cache does not fit: NULL, ValueError "Failed to create llama_context";
- ``llama-decode``: a compute buffer does not fit mid-generation: llama_decode returns -2
  (GGML_STATUS_ALLOC_FAILED), and llama-cpp-python raises RuntimeError "llama_decode returned -2".

``match`` (onnxruntime faults) limits the fault to sessions whose model path contains it;
``after`` lets that many matching calls through first; ``times`` (if given) fires it that many
times only. Each fault fired is written as one line (pid and fault) to CONTROL.fired, so a test
knows the injection reached the engine process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys

_CONTROL = os.environ.get("EMBER_GPU_OOM", "")
_LANES = ("ember-engine-cpu", "ember-engine-gpu")

_ARENA = (
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
    "Name:'/conv_in/Conv' Status Message: \n/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 "
    "void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, "
    "onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 4294967296\n"
)
_CUDA = (
    "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:121 "
    "std::conditional_t<THRW, void, onnxruntime::common::Status> onnxruntime::CudaCall(ERRTYPE, const char*, "
    "const char*, SUCCTYPE, const char*, const char*, int) [with ERRTYPE = cudaError; bool THRW = true] "
    "/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:114 onnxruntime::CudaCall CUDA failure 2: "
    "out of memory ; GPU=0 ; hostname=ember-test ; file=/onnxruntime_src/onnxruntime/core/providers/cuda/"
    "cuda_allocator.cc ; line=47 ; expr=cudaMalloc((void**)&p, size);"
)
_CUDA_MALLOC = (
    "ggml_backend_cuda_buffer_type_alloc_buffer: allocating {mib:.2f} MiB on device 0: cudaMalloc failed: out of memory"
)
_LLAMA_LOGS = {
    "llama-model": (
        _CUDA_MALLOC.format(mib=2048),
        "alloc_tensor_range: failed to allocate CUDA0 buffer of size 2147483648",
        "llama_model_load: error loading model: unable to allocate CUDA0 buffer",
        "llama_model_load_from_file_impl: failed to load model",
    ),
    "llama-context": (
        _CUDA_MALLOC.format(mib=4096),
        "alloc_tensor_range: failed to allocate CUDA0 buffer of size 4294967296",
        "llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache",
    ),
    "llama-decode": (
        _CUDA_MALLOC.format(mib=1024),
        "ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size 1073741824",
        "process_ubatch: failed to allocate graph",
        "llama_decode: failed to decode, ret = -2",
    ),
}

_state = {"control": None, "calls": 0, "fired": 0}


def _armed(prefix: str, path: str = "") -> str | None:
    """The fault to raise now for a call of kind ``prefix`` on ``path``, or None (counts the calls it lets by)."""
    if not _CONTROL:
        return None
    process = sys.modules.get("multiprocessing")
    if process is None or process.current_process().name not in _LANES:
        return None
    try:
        with open(_CONTROL, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    if text != _state["control"]:  # a new fault: count its calls from zero
        _state.update(control=text, calls=0, fired=0)
    try:
        control = json.loads(text) if text.strip() else {}
    except ValueError:
        return None
    fault = str(control.get("fault", ""))
    if not fault.startswith(prefix) or str(control.get("match", "")) not in path:
        return None
    _state["calls"] += 1
    if _state["calls"] <= int(control.get("after", 0)):
        return None
    if control.get("times") is not None and _state["fired"] >= int(control["times"]):
        return None
    _state["fired"] += 1
    with open(_CONTROL + ".fired", "a", encoding="utf-8") as fired:
        fired.write(f"{os.getpid()} {fault}\n")
    return fault


def _wrap_onnxruntime(module: object) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, RuntimeException

    session = module.Session
    run, run_bound = session.run, session.run_with_iobinding

    def fail_if_armed(self: object) -> None:
        fault = _armed("ort-", str(getattr(self, "_model_path", "") or ""))
        if fault == "ort-arena":
            raise RuntimeException(_ARENA)
        if fault == "ort-cuda":
            raise Fail(_CUDA)

    def run_or_fail(self: object, *args: object, **kwargs: object) -> object:
        fail_if_armed(self)
        return run(self, *args, **kwargs)

    def run_bound_or_fail(self: object, *args: object, **kwargs: object) -> object:
        fail_if_armed(self)
        return run_bound(self, *args, **kwargs)

    session.run = run_or_fail
    session.run_with_iobinding = run_bound_or_fail


def _wrap_llama(module: object) -> None:
    load, init, decode, log_set = (
        module.llama_model_load_from_file,
        module.llama_init_from_model,
        module.llama_decode,
        module.llama_log_set,
    )
    callbacks: list[object] = []

    def llama_log_set(callback: object, user_data: object) -> object:
        callbacks[:] = [callback]
        return log_set(callback, user_data)

    def log(fault: str) -> None:
        for line in _LLAMA_LOGS[fault]:
            if callbacks:
                callbacks[-1](4, (line + "\n").encode(), None)  # GGML_LOG_LEVEL_ERROR

    def llama_model_load_from_file(path: bytes, params: object) -> object:
        if _armed("llama-model") == "llama-model":
            log("llama-model")
            return None
        return load(path, params)

    def llama_init_from_model(model: object, params: object) -> object:
        if _armed("llama-context") == "llama-context":
            log("llama-context")
            return None
        return init(model, params)

    def llama_decode(ctx: object, batch: object) -> int:
        if _armed("llama-decode") == "llama-decode":
            log("llama-decode")
            return -2
        return decode(ctx, batch)

    module.llama_log_set = llama_log_set
    module.llama_model_load_from_file = llama_model_load_from_file
    module.llama_init_from_model = llama_init_from_model
    module.llama_decode = llama_decode


_WRAPPERS = {
    "onnxruntime.capi.onnxruntime_inference_collection": _wrap_onnxruntime,
    "llama_cpp.llama_cpp": _wrap_llama,
}


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Finds the modules to wrap as the file-system finder does, and wraps their loader's exec_module."""

    def find_spec(self, name: str, path: object, target: object = None) -> object:
        wrap = _WRAPPERS.get(name)
        if wrap is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: object) -> None:
            execute(module)
            wrap(module)

        spec.loader.exec_module = exec_module
        return spec


if _CONTROL:
    sys.meta_path.insert(0, _WrapOnImport())
