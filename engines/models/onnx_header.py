"""Reads what an ONNX file declares (inputs, outputs, operators, weight types) without loading its weights.

An ONNX file is one protobuf ``ModelProto``. This reader walks its wire format and skips every
weight's bytes (``raw_data`` and the typed data arrays) with a seek, so a 1.7 GB UNet is read in
milliseconds and nothing larger than a graph node is held in memory. It needs neither the
``onnx`` package (not a runtime dependency) nor an onnxruntime session (which would load the
weights). Field numbers are those of ``onnx/onnx.proto``.

It is also the check that an ONNX file a person adds is safe to give onnxruntime
(:func:`check_external_data`): every weight kept in an external-data file must be inside the
graph's own folder (no absolute path, no ``..``, no link out of it), a regular file (a named pipe
would block the reader), and long enough for what the weight declares; a weight stored in the
file must hold as many bytes as its shape declares (a 4 PiB shape over a few KB is refused here,
before onnxruntime tries to allocate it).
"""

from __future__ import annotations

import io
import stat
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from engines.errors import ModelFileError
from engines.units import human_bytes

# TensorProto.DataType
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL, FLOAT16, DOUBLE = range(1, 12)
BFLOAT16, UINT4, INT4 = 16, 21, 22
_PRECISION = {FLOAT: "fp32", DOUBLE: "fp64", FLOAT16: "fp16", BFLOAT16: "bf16", INT8: "int8", UINT8: "int8"}
_PRECISION.update({UINT4: "int4", INT4: "int4"})
_SMALL_MESSAGE_BYTES = 1 << 20  # messages below this are read whole and parsed in memory
_SMALL_CONSTANT_ELEMENTS = 16  # constants this small keep their values (Resize scales, shapes)
# Bytes per element of each fixed-size TensorProto.DataType (4-bit types: two elements a byte).
_ELEMENT_BYTES = {FLOAT: 4, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, INT32: 4, INT64: 8, BOOL: 1, FLOAT16: 2}
_ELEMENT_BYTES.update({DOUBLE: 8, 12: 4, 13: 8, 14: 8, 15: 16, BFLOAT16: 2, 17: 1, 18: 1, 19: 1, 20: 1})
_HALF_BYTE_TYPES = (UINT4, INT4, 23)


@dataclass(frozen=True)
class OnnxValue:
    """A graph input or output: its name, element type and shape (ints, dimension names, or None)."""

    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def dim(self, index: int) -> int | None:
        """Return dimension ``index`` when it is a fixed number, else None."""
        if self.shape is None or not -len(self.shape) <= index < len(self.shape):
            return None
        value = self.shape[index]
        return value if isinstance(value, int) and value > 0 else None


@dataclass(frozen=True)
class OnnxHeader:
    """What one ONNX file declares."""

    path: Path
    ir_version: int
    producer: str
    opsets: dict[str, int]
    inputs: tuple[OnnxValue, ...]
    outputs: tuple[OnnxValue, ...]
    operators: dict[str, int]  # "Conv" or "com.microsoft.NhwcConv" -> count
    weight_elements: dict[int, int]  # data type -> elements, over initializers and Constant nodes
    external_files: tuple[str, ...]
    metadata: dict[str, str]
    file_bytes: int
    depth_to_space_blocks: tuple[int, ...] = ()
    resize_scales: tuple[tuple[float, ...], ...] = ()
    nbits: int | None = None  # MatMulNBits' bit width, for weight-only quantised graphs
    external_bytes: int = 0
    conv_weight_shapes: tuple[tuple[int, ...], ...] = ()  # rank-4 initializers: (out, in, kh, kw)

    @property
    def parameter_count(self) -> int:
        return sum(n for t, n in self.weight_elements.items() if t in _PRECISION)

    @property
    def precision(self) -> str:
        """Return "fp32", "fp16", "bf16", "int8", "int4" (the type holding most weights) or "unknown"."""
        if self.nbits == 4 or "com.microsoft.MatMulNBits" in self.operators:
            return "int4"
        counts: Counter[str] = Counter()
        for elem_type, n in self.weight_elements.items():
            if elem_type in _PRECISION:
                counts[_PRECISION[elem_type]] += n
        if not counts:
            return "unknown"
        if counts.get("int8", 0) > 0 and counts["int8"] * 4 >= sum(counts.values()):
            return "int8"  # quantised graphs keep biases and scales in float
        return counts.most_common(1)[0][0]

    @property
    def weight_bytes(self) -> int:
        return self.file_bytes + self.external_bytes


@dataclass(frozen=True)
class ExternalWeight:
    """A weight whose bytes are in an external-data file: ``length`` bytes at ``offset`` of ``location``."""

    tensor: str
    location: str
    offset: int
    length: int | None  # None: to the end of what the tensor declares
    declared_bytes: int | None  # what its type and shape need (None for strings)

    @classmethod
    def of(cls, tensor: str, entries: dict[str, str], declared_bytes: int | None) -> ExternalWeight:
        def number(key: str) -> int | None:
            text = entries.get(key, "").strip()
            return int(text) if text.isdigit() else None

        return cls(tensor, entries.get("location", ""), number("offset") or 0, number("length"), declared_bytes)


def _leaves_folder(location: str) -> bool:
    """Whether ``location`` names a place outside the folder it is read from, on any system's rules."""
    for pure in (PurePosixPath(location), PureWindowsPath(location)):
        if pure.anchor or ".." in pure.parts:
            return True
    return False


def check_external_data(path: Path, weights: Iterable[ExternalWeight]) -> int:
    """Check that the external weights of the graph ``path`` are safe to read; return their files' bytes.

    Each must be inside the graph's folder: a relative location without ``..``, and where it is a
    link, one into that folder or into the folder the graph itself links to (a Hugging Face cache
    keeps both as links into its blobs). Each must be a regular file holding ``offset + length``
    bytes, with ``length`` what the weight declares. Only names and sizes are looked at: nothing is
    opened. Raises ModelFileError, with what to do, for the first weight that is not.
    """
    folder = path.parent
    allowed = {folder.resolve(), path.resolve().parent}
    sizes: dict[Path, int] = {}
    for weight in weights:
        location = weight.location
        if _leaves_folder(location):
            raise ModelFileError(
                f"'{path.name}' names weights outside its folder ('{location}'). Ember reads a model's weights "
                "only from inside the model's own folder, so it did not load it. Re-download the model from a "
                "source you trust."
            )
        if "\x00" in location:  # no file name holds one (the path functions raise ValueError on it)
            raise ModelFileError(
                f"'{path.name}' is damaged: the name of the file it keeps its weights in holds a NUL character. "
                "Re-download the model."
            )
        target = folder / location
        try:
            real = target.resolve(strict=True)
            info = real.stat()
        except FileNotFoundError:
            raise ModelFileError(
                f"'{path.name}' keeps its weights in '{location}', which is not beside it in {folder}. "
                "Re-download the model, or copy that file beside it."
            ) from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of links
            raise ModelFileError(
                f"Ember cannot read the weights of '{path.name}' in '{location}' ({exc}). Re-download the model."
            ) from None
        if not any(real.is_relative_to(place) for place in allowed):
            raise ModelFileError(
                f"'{path.name}' keeps its weights in '{location}', a link to '{real}' outside its folder. "
                "Ember reads a model's weights only from inside the model's own folder, so it did not load it. "
                "Re-download the model, or copy the weights file itself beside it."
            )
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(
                f"'{path.name}' keeps its weights in '{location}', which is not a file (a folder, a pipe or a "
                "device). Re-download the model."
            )
        declared, length = weight.declared_bytes, weight.length
        if declared is not None and length is not None and declared != length:
            raise ModelFileError(
                f"'{path.name}' is damaged: its weight '{weight.tensor}' declares {human_bytes(declared)} "
                f"({declared:,} bytes) but reads {length:,} from '{location}'. Re-download the model."
            )
        need = weight.offset + (length if length is not None else declared or 0)
        if need > info.st_size:
            raise ModelFileError(
                f"'{path.name}' needs {need:,} bytes of '{location}', which holds only {info.st_size:,}: that "
                "file is cut short or belongs to another model. Re-download the model."
            )
        sizes[real] = info.st_size
    return sum(sizes.values())


class _Truncated(Exception):
    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


class _Corrupt(Exception):
    pass


def read_onnx_header(path: Path | str) -> OnnxHeader:
    """Return the declarations of the ONNX file at ``path``, reading only its structure.

    Raises ModelFileError when the file is missing, is not an ONNX model, is cut short, holds a
    weight whose bytes are not what its shape declares, or keeps weights where
    :func:`check_external_data` refuses them (outside its folder, missing, short).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        f = path.open("rb", buffering=1 << 16)
    except FileNotFoundError:
        raise ModelFileError(f"The model file '{path}' does not exist. It may have been moved or deleted.") from None
    except OSError as exc:
        raise ModelFileError(f"Ember cannot read '{path}' ({exc.strerror or exc}).") from None
    if size == 0:
        f.close()
        raise ModelFileError(f"'{path.name}' is empty. Download the model again.")
    with f:
        builder = _Builder(path, size)
        try:
            builder.read_model(f)
        except _Truncated as exc:
            raise ModelFileError(
                f"'{path.name}' is incomplete: it is {size:,} bytes but its structure needs at least "
                f"{exc.needed:,}. The download or copy was probably cut short; download it again."
            ) from None
        except (_Corrupt, struct.error, UnicodeDecodeError, ValueError) as exc:
            raise ModelFileError(_not_onnx_message(path, str(exc))) from None
    return builder.header()


def _not_onnx_message(path: Path, detail: str) -> str:
    try:
        with path.open("rb") as f:
            start = f.read(4)
    except OSError:
        start = b""
    if start.startswith(b"GGUF"):
        return f"'{path.name}' is a GGUF model, not an ONNX graph. Open it as a text model."
    if start.startswith(b"PK\x03\x04"):
        return f"'{path.name}' is not an ONNX model: it is a ZIP archive (perhaps a PyTorch checkpoint)."
    if start[:1] in (b"{", b"<"):
        return (
            f"'{path.name}' is not an ONNX model: it is a text file "
            "(perhaps an error page saved instead of the model). Download it again."
        )
    shown = start.decode("latin-1").encode("unicode_escape").decode()
    return f"'{path.name}' is not an ONNX model Ember can read (it starts with '{shown}'; {detail})."


# -- protobuf wire format -----------------------------------------------------------------


def _varint_file(f: BinaryIO, end: int) -> int:
    result = shift = 0
    while True:
        b = f.read(1)
        if not b:
            raise _Truncated(f.tell() + 1)
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 70:
            raise _Corrupt("a number is longer than protobuf allows")


def _varint_mem(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt("a message ends inside a number")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise _Corrupt("a number is longer than protobuf allows")


def _fields_mem(buf: bytes):
    """Yield (field, wire type, value) for a message in memory; value is an int or bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint_mem(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint_mem(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint_mem(buf, pos)
            if pos + length > end:
                raise _Corrupt("a field is longer than its message")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > end:
                raise _Corrupt("a message ends inside a number")
            yield number, wire, buf[pos : pos + n]
            pos += n
        else:
            raise _Corrupt(f"unknown protobuf wire type {wire}")


def _string_entry(buf: bytes) -> tuple[str, str]:
    """The key and value of a StringStringEntryProto (fields of another wire type are not text: skipped)."""
    entry = {n: v for n, wire, v in _fields_mem(buf) if wire == 2}
    return entry.get(1, b"").decode("utf-8", "replace"), entry.get(2, b"").decode("utf-8", "replace")


def _fields_file(f: BinaryIO, end: int, file_size: int):
    """Yield (field, wire type, value) up to ``end``; for length-delimited fields value is the length.

    After each yield of a length-delimited field the stream is put at the field's end, whether
    or not the consumer read it: skipping a weight is one seek.
    """
    while f.tell() < end:
        key = _varint_file(f, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, _varint_file(f, end)
        elif wire == 2:
            length = _varint_file(f, end)
            start = f.tell()
            if start + length > end:
                raise _Truncated(start + length) if start + length > file_size else _Corrupt("a field overruns")
            yield number, wire, length
            f.seek(start + length)
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            data = f.read(n)
            if len(data) < n:
                raise _Truncated(f.tell() + n)
            yield number, wire, data
        else:
            raise _Corrupt(f"unknown protobuf wire type {wire}")


def _packed_varints(data: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint_mem(data, pos)
        values.append(value)
    return values


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# -- ONNX messages --------------------------------------------------------------------------


@dataclass
class _Tensor:
    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    external: dict[str, str] = field(default_factory=dict)
    values: tuple[float, ...] | None = None  # kept only for tiny float/int tensors
    raw_bytes: int | None = None  # the length of its raw_data, when it has one

    @property
    def elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= max(d, 0)
        return n

    @property
    def declared_bytes(self) -> int | None:
        """The bytes its type and shape need, or None for types without a fixed size (strings)."""
        if self.data_type in _HALF_BYTE_TYPES:
            return (self.elements + 1) // 2
        size = _ELEMENT_BYTES.get(self.data_type)
        return None if size is None else self.elements * size


def _tensor_from_fields(fields, read_bytes) -> _Tensor:
    """Build a tensor from an iterator of fields; ``read_bytes(value)`` returns a field's bytes."""
    tensor = _Tensor()
    raw: bytes | None = None
    floats: bytes | None = None
    ints: list[int] = []
    for number, wire, value in fields:
        if number == 1:  # dims
            if wire == 2:
                tensor.dims.extend(_signed64(v) for v in _packed_varints(read_bytes(value)))
            elif wire == 0:
                tensor.dims.append(_signed64(value))
        # A field of another wire type than its number's is skipped: a number is not text, text not a number.
        elif number == 2 and wire == 0:
            tensor.data_type = value
        elif number == 8 and wire == 2:
            tensor.name = read_bytes(value).decode("utf-8", "replace")
        elif number == 13 and wire == 2:  # external_data: StringStringEntryProto
            key, entry_value = _string_entry(read_bytes(value))
            tensor.external[key] = entry_value
        elif number in (9, 4, 7, 5) and wire == 2:
            length = value if isinstance(value, int) else len(value)
            if number == 9:
                tensor.raw_bytes = length
            if length > _SMALL_CONSTANT_ELEMENTS * 8:
                continue  # a weight: skipped (the stream seeks past it)
            data = read_bytes(value)
            if number == 9:
                raw = data
            elif number == 4:
                floats = data
            else:
                ints = [_signed64(v) for v in _packed_varints(data)]
    n = tensor.elements
    if 0 < n <= _SMALL_CONSTANT_ELEMENTS:
        if raw is not None and tensor.data_type == FLOAT and len(raw) == 4 * n:
            tensor.values = struct.unpack(f"<{n}f", raw)
        elif floats is not None and len(floats) == 4 * n:
            tensor.values = struct.unpack(f"<{n}f", floats)
        elif raw is not None and tensor.data_type == INT64 and len(raw) == 8 * n:
            tensor.values = tuple(float(v) for v in struct.unpack(f"<{n}q", raw))
        elif ints and len(ints) == n:
            tensor.values = tuple(float(v) for v in ints)
    return tensor


def _parse_value_info(buf: bytes) -> OnnxValue:
    name, elem_type, shape = "", 0, None
    for number, wire, value in _fields_mem(buf):
        if number == 1 and wire == 2:
            name = value.decode("utf-8", "replace")
        elif number == 2 and wire == 2:  # TypeProto
            for n2, w2, v2 in _fields_mem(value):
                if n2 != 1 or w2 != 2:  # only tensor_type
                    continue
                for n3, w3, v3 in _fields_mem(v2):
                    if n3 == 1 and w3 == 0:
                        elem_type = v3
                    elif n3 == 2 and w3 == 2:  # TensorShapeProto
                        dims: list[int | str | None] = []
                        for n4, w4, v4 in _fields_mem(v3):
                            if n4 != 1 or w4 != 2:
                                continue
                            dim: int | str | None = None
                            for n5, w5, v5 in _fields_mem(v4):
                                if n5 == 1 and w5 == 0:
                                    dim = _signed64(v5)
                                elif n5 == 2 and w5 == 2:
                                    dim = v5.decode("utf-8", "replace")
                            dims.append(dim)
                        shape = tuple(dims)
    return OnnxValue(name, elem_type, shape)


class _Builder:
    """Collects what the reader finds while it walks the file."""

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self.ir_version = 0
        self.producer = ""
        self.opsets: dict[str, int] = {}
        self.metadata: dict[str, str] = {}
        self.inputs: list[OnnxValue] = []
        self.outputs: list[OnnxValue] = []
        self.operators: Counter[str] = Counter()
        self.weight_elements: Counter[int] = Counter()
        self.initializer_names: set[str] = set()
        self.external: set[str] = set()
        self.constants: dict[str, tuple[float, ...]] = {}
        self.depth_to_space: list[int] = []
        self.resize_inputs: list[str] = []
        self.resize_scales: list[tuple[float, ...]] = []
        self.nbits: int | None = None
        self.conv_shapes: list[tuple[int, ...]] = []
        self.external_weights: list[ExternalWeight] = []
        self.misdeclared: tuple[str, int, int] | None = None  # (weight, declared bytes, stored bytes)
        self.saw_graph = False

    def read_model(self, f: io.BufferedReader) -> None:
        first = f.peek(1)[:1]
        if first and first[0] not in (0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72):
            raise _Corrupt("it does not start like an ONNX ModelProto")
        for number, wire, value in _fields_file(f, self.size, self.size):
            if number == 1 and wire == 0:
                self.ir_version = value
            elif number == 2 and wire == 2:
                self.producer = f.read(value).decode("utf-8", "replace")
            elif number == 7 and wire == 2:
                self.saw_graph = True
                self._read_graph(f, f.tell() + value)
            elif number == 8 and wire == 2:
                domain, version = "", 0
                for n2, _, v2 in _fields_mem(f.read(value)):
                    if n2 == 1 and isinstance(v2, bytes):
                        domain = v2.decode("utf-8", "replace")
                    elif n2 == 2 and isinstance(v2, int):
                        version = v2
                self.opsets[domain or "ai.onnx"] = version
            elif number == 14 and wire == 2:
                key, entry_value = _string_entry(f.read(value))
                self.metadata[key] = entry_value
        if not self.saw_graph or not self.ir_version:
            raise _Corrupt("it has no graph")

    def _read_graph(self, f: BinaryIO, end: int) -> None:
        for number, wire, value in _fields_file(f, end, self.size):
            if wire != 2:
                continue
            if number == 1:  # NodeProto
                if value <= _SMALL_MESSAGE_BYTES:
                    self._node(f.read(value))
                else:
                    self._large_node(f, f.tell() + value)
            elif number == 5:  # initializer TensorProto
                if value <= _SMALL_MESSAGE_BYTES:
                    data = f.read(value)
                    tensor = _tensor_from_fields(_fields_mem(data), lambda v: v)
                else:
                    start = f.tell()
                    tensor = _tensor_from_fields(_fields_file(f, start + value, self.size), f.read)
                self._weight(tensor)
            elif number == 11:
                self.inputs.append(_parse_value_info(f.read(value)))
            elif number == 12:
                self.outputs.append(_parse_value_info(f.read(value)))

    def _weight(self, tensor: _Tensor) -> None:
        self.initializer_names.add(tensor.name)
        if len(tensor.dims) == 4:
            self.conv_shapes.append(tuple(tensor.dims))
        self.weight_elements[tensor.data_type] += tensor.elements
        self._where_stored(tensor)
        if tensor.values is not None:
            self.constants[tensor.name] = tensor.values

    def _where_stored(self, tensor: _Tensor) -> None:
        """Note a weight kept in an external file, or the first one whose stored bytes are not what it declares."""
        location = tensor.external.get("location")
        if location:
            self.external.add(location)
            self.external_weights.append(ExternalWeight.of(tensor.name, tensor.external, tensor.declared_bytes))
            return
        declared = tensor.declared_bytes
        if tensor.raw_bytes is not None and declared is not None and declared != tensor.raw_bytes:
            self.misdeclared = self.misdeclared or (tensor.name, declared, tensor.raw_bytes)

    def _node(self, buf: bytes) -> None:
        op, domain = "", ""
        inputs: list[str] = []
        outputs: list[str] = []
        attributes: list[bytes] = []
        for number, wire, value in _fields_mem(buf):
            if wire != 2:  # every field of a node Ember reads is text or a message
                continue
            if number == 1:
                inputs.append(value.decode("utf-8", "replace"))
            elif number == 2:
                outputs.append(value.decode("utf-8", "replace"))
            elif number == 4:
                op = value.decode("utf-8", "replace")
            elif number == 7:
                domain = value.decode("utf-8", "replace")
            elif number == 5:
                attributes.append(value)
        qualified = f"{domain}.{op}" if domain and domain != "ai.onnx" else op
        self.operators[qualified] += 1
        for attribute in attributes:
            self._attribute(op, outputs, attribute)
        if op == "Resize" and len(inputs) >= 3:
            self.resize_inputs.append(inputs[2])
        elif op == "Upsample" and len(inputs) >= 2:
            self.resize_inputs.append(inputs[1])

    def _attribute(self, op: str, outputs: list[str], buf: bytes) -> None:
        name, ints, floats, tensor_bytes = "", None, [], None
        for number, wire, value in _fields_mem(buf):
            if number == 1 and wire == 2:
                name = value.decode("utf-8", "replace")
            elif number == 3 and wire == 0:
                ints = _signed64(value)
            elif number == 5 and wire == 2:
                tensor_bytes = value
            elif number == 7 and wire == 2:
                floats.extend(struct.unpack(f"<{len(value) // 4}f", value[: len(value) // 4 * 4]))
            elif number == 7 and wire == 5:
                floats.append(struct.unpack("<f", value)[0])
        if op == "DepthToSpace" and name == "blocksize" and ints:
            self.depth_to_space.append(ints)
        elif op == "Upsample" and name == "scales" and floats:
            self.resize_scales.append(tuple(floats))
        elif op == "MatMulNBits" and name == "bits" and ints:
            self.nbits = ints
        elif op == "Constant" and name == "value" and tensor_bytes is not None:
            tensor = _tensor_from_fields(_fields_mem(tensor_bytes), lambda v: v)
            tensor.name = outputs[0] if outputs else ""
            self.weight_elements[tensor.data_type] += tensor.elements
            self._where_stored(tensor)
            if tensor.values is not None:
                self.constants[tensor.name] = tensor.values

    def _large_node(self, f: BinaryIO, end: int) -> None:
        """A node too large to read whole: a Constant holding a weight. Count it, skip its bytes."""
        op = ""
        outputs: list[str] = []
        for number, wire, value in _fields_file(f, end, self.size):
            if number == 4 and wire == 2:
                op = f.read(value).decode("utf-8", "replace")
            elif number == 2 and wire == 2:
                outputs.append(f.read(value).decode("utf-8", "replace"))
            elif number == 5 and wire == 2:
                attr_end = f.tell() + value
                for n2, w2, v2 in _fields_file(f, attr_end, self.size):
                    if n2 == 5 and w2 == 2:
                        start = f.tell()
                        tensor = _tensor_from_fields(_fields_file(f, start + v2, self.size), f.read)
                        tensor.name = tensor.name or (outputs[0] if outputs else "")
                        self.weight_elements[tensor.data_type] += tensor.elements
                        self._where_stored(tensor)
        self.operators[op or "Constant"] += 1

    def header(self) -> OnnxHeader:
        inputs = tuple(v for v in self.inputs if v.name not in self.initializer_names)
        for name in self.resize_inputs:
            if self.constants.get(name):
                self.resize_scales.append(self.constants[name])
        if self.misdeclared is not None:
            name, declared, stored = self.misdeclared
            raise ModelFileError(
                f"'{self.path.name}' is damaged: its weight '{name}' declares {human_bytes(declared)} "
                f"({declared:,} bytes) but holds {stored:,}. Re-download the model."
            )
        external_bytes = check_external_data(self.path, self.external_weights)
        return OnnxHeader(
            path=self.path,
            ir_version=self.ir_version,
            producer=self.producer,
            opsets=dict(self.opsets),
            inputs=inputs,
            outputs=tuple(self.outputs),
            operators=dict(self.operators),
            weight_elements=dict(self.weight_elements),
            external_files=tuple(sorted(self.external)),
            metadata=dict(self.metadata),
            file_bytes=self.size,
            depth_to_space_blocks=tuple(self.depth_to_space),
            resize_scales=tuple(self.resize_scales),
            nbits=self.nbits,
            external_bytes=external_bytes,
            conv_weight_shapes=tuple(self.conv_shapes),
        )
