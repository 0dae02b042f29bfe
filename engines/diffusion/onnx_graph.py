"""One ONNX graph of a diffusion model folder (a text encoder, the UNet, a VAE half) and its session.

The session is made on first use and can be dropped again to free memory. Inputs are cast to
the dtypes the graph declares (fp16 and int8 exports differ from fp32 ones in their inputs,
the timestep's dtype for one) and floating outputs come back as float32, so the pipeline
works in float32 whatever the file holds.

On CUDA, :meth:`OnnxGraph.bind` keeps inputs that stay the same for a whole run (the text
embeddings) on the GPU with onnxruntime's IO binding, so each step uploads only the latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EmberError, ModelFileError
from engines.models.onnx_header import read_onnx_header
from engines.ort_errors import is_out_of_memory, load_error, ort_reason, out_of_memory

_DTYPES: dict[str, type] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def graph_files_bytes(path: Path) -> int:
    """Return the bytes of ``path`` and of the external-data files beside it (0 where missing)."""
    folder = path.parent
    if not folder.is_dir():
        return 0
    total = 0
    for item in folder.iterdir():
        # optimum writes large graphs as model.onnx + model.onnx_data (or weights.pb); configs are small.
        if item.is_file() and item.suffix not in (".json", ".txt"):
            total += item.stat().st_size
    return total


class OnnxGraph:
    """One ``model.onnx`` of a model folder, run with onnxruntime.

    ``providers`` lists onnxruntime execution providers in order of preference; the one
    actually used is ``provider`` once loaded (onnxruntime falls back to the CPU when the CUDA
    libraries are missing, and this notices).
    """

    def __init__(self, name: str, path: Path, providers: list[str], threads: int) -> None:
        self.name = name
        self.path = path
        self.providers = providers
        self.threads = threads
        self.provider = ""
        self._session: Any = None
        self._inputs: dict[str, tuple[type, list[Any]]] = {}
        self._outputs: list[str] = []
        self._binding: Any = None
        self._bound: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def file_bytes(self) -> int:
        return graph_files_bytes(self.path)

    def load(self) -> None:
        """Make the onnxruntime session.

        Raises ModelFileError for a missing or damaged file, or one whose weights are outside its
        folder, missing or short (checked before onnxruntime opens anything); OutOfMemoryError when
        it does not fit.
        """
        if self._session is not None:
            return
        if not self.path.is_file():
            raise ModelFileError(
                f"The model folder has no {self.name} graph ('{self.path}' is missing). "
                "Re-download or re-convert the model."
            )
        try:
            read_onnx_header(self.path)
        except ModelFileError as exc:
            raise ModelFileError(f"The {self.name} of this model cannot be used: {exc}") from None
        import onnxruntime as ort  # heavy: imported in the worker, never at start-up

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = set(ort.get_available_providers())
        providers = [p for p in self.providers if p in available] or [CPU]
        try:
            try:
                session = ort.InferenceSession(str(self.path), options, providers=providers)
            except Exception:
                if providers == [CPU]:
                    raise
                # The GPU could not take the graph (out of memory, a missing CUDA library): the
                # CPU can still run it, and the engine tells the person it fell back.
                session = ort.InferenceSession(str(self.path), options, providers=[CPU])
        except Exception as exc:  # onnxruntime raises its own exception types, all plain Exceptions
            raise load_error(exc, self.path, f"the {self.name} of this model") from None
        self._session = session
        self.provider = session.get_providers()[0]
        self._inputs = {i.name: (_DTYPES.get(i.type, np.float32), list(i.shape)) for i in session.get_inputs()}
        self._outputs = [o.name for o in session.get_outputs()]

    def unload(self) -> None:
        """Drop the session (and anything bound on the device)."""
        self.unbind()
        self._session = None

    # -- what the graph reads and writes ------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        self.load()
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        self.load()
        return list(self._outputs)

    def has_input(self, name: str) -> bool:
        self.load()
        return name in self._inputs

    def input_dtype(self, name: str) -> type:
        self.load()
        return self._inputs[name][0]

    def input_shape(self, name: str) -> list[Any]:
        """The declared shape: ints for fixed sizes, strings for named (dynamic) ones."""
        self.load()
        return self._inputs[name][1]

    def _cast(self, name: str, value: Any) -> np.ndarray:
        dtype = self._inputs[name][0]
        array = np.asarray(value)
        return array if array.dtype == dtype else array.astype(dtype)

    @staticmethod
    def _float32(array: np.ndarray) -> np.ndarray:
        return array.astype(np.float32) if array.dtype in (np.float16, np.float64) else array

    # -- running ------------------------------------------------------------------------
    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (cast to the graph's dtypes); return every output, floats as float32.

        Raises OutOfMemoryError when onnxruntime cannot allocate, EmberError for other failures.
        """
        self.load()
        cast = {name: self._cast(name, value) for name, value in feeds.items() if name in self._inputs}
        try:
            values = self._session.run(None, cast)
        except Exception as exc:
            raise self._run_error(exc) from None
        return {name: self._float32(v) for name, v in zip(self._outputs, values, strict=True)}

    def bind(self, constants: dict[str, Any]) -> None:
        """Keep ``constants`` (inputs that are the same at every step) on the device for :meth:`run_bound`.

        Used on CUDA, where uploading the text embeddings at every step would cost more than the
        step's small graphs; outputs stay on the device until :meth:`run_bound` copies them back.
        """
        import onnxruntime as ort

        self.load()
        self.unbind()
        device = "cuda" if self.provider == CUDA else "cpu"
        binding = self._session.io_binding()
        for name, value in constants.items():
            if name not in self._inputs:
                continue
            # np.require keeps 0-d arrays 0-d (np.ascontiguousarray would make the scalar timestep 1-d).
            contiguous = np.require(self._cast(name, value), requirements="C")
            on_device = ort.OrtValue.ortvalue_from_numpy(contiguous, device, 0)
            self._bound[name] = on_device  # the binding holds a pointer only: keep the value alive
            binding.bind_ortvalue_input(name, on_device)
        for name in self._outputs:
            binding.bind_output(name, device)
        self._binding = binding

    def run_bound(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run with the inputs from :meth:`bind` plus ``feeds`` (uploaded now); return outputs as in :meth:`run`."""
        if self._binding is None:
            raise EmberError(f"Internal error: the {self.name} has no bound inputs.")
        for name, value in feeds.items():
            if name in self._inputs:
                self._binding.bind_cpu_input(name, np.require(self._cast(name, value), requirements="C"))
        try:
            self._session.run_with_iobinding(self._binding)
            values = self._binding.copy_outputs_to_cpu()
        except Exception as exc:
            raise self._run_error(exc) from None
        return {name: self._float32(v) for name, v in zip(self._outputs, values, strict=True)}

    def unbind(self) -> None:
        """Free what :meth:`bind` put on the device."""
        if self._binding is not None:
            self._binding.clear_binding_inputs()
            self._binding.clear_binding_outputs()
        self._binding = None
        self._bound.clear()

    def _run_error(self, exc: Exception) -> EmberError:
        if is_out_of_memory(exc):
            return out_of_memory(
                exc,
                f"the {self.name} to make this image",
                "Make a smaller image, or fewer at once, or close other programs (on the GPU: other models "
                "and games too). Images already saved are kept.",
                on_gpu=self.provider == CUDA,
            )
        return EmberError(f"The {self.name} of this model failed to run ({ort_reason(exc)}). The model may be damaged.")
