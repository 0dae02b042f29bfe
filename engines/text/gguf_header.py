"""Reads a GGUF file's header: checks it is whole and returns the metadata Ember needs.

It reads only the key/value metadata and the tensor table (not the weights), so it
takes milliseconds, and it can tell a truncated download from a file that is not a
GGUF model at all before llama.cpp is asked to load it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engines.errors import ModelFileError

_MAGIC = b"GGUF"
# GGUF value types
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = range(13)
_SCALARS = {
    _UINT8: "<B",
    _INT8: "<b",
    _UINT16: "<H",
    _INT16: "<h",
    _UINT32: "<I",
    _INT32: "<i",
    _FLOAT32: "<f",
    _BOOL: "<?",
    _UINT64: "<Q",
    _INT64: "<q",
    _FLOAT64: "<d",
}
# Bytes per block and elements per block of ggml tensor types (ggml.h), for the size check.
_GGML_BLOCK = {
    0: (4, 1),
    1: (2, 1),
    2: (18, 32),
    3: (20, 32),
    6: (22, 32),
    7: (24, 32),
    8: (34, 32),
    9: (36, 32),
    10: (84, 256),
    11: (110, 256),
    12: (144, 256),
    13: (176, 256),
    14: (210, 256),
    15: (292, 256),
    16: (66, 256),
    17: (74, 256),
    18: (98, 256),
    19: (50, 256),
    20: (18, 32),
    21: (110, 256),
    22: (82, 256),
    23: (136, 256),
    24: (1, 1),
    25: (2, 1),
    26: (4, 1),
    27: (8, 1),
    28: (8, 1),
    29: (56, 256),
    30: (2, 1),
    34: (54, 256),
    35: (66, 256),
    39: (17, 32),
}
# Arrays we keep whole; every other array is skipped (the vocabulary can hold 250k strings).
_KEEP_ARRAYS = {"general.languages", "general.tags"}
# Arrays of arrays are allowed; real files nest one or two deep. A file nested 1,000 deep would
# exhaust Python's recursion limit (a RecursionError, not a message), so deeper is refused as damaged.
_MAX_ARRAY_DEPTH = 16
# Quantisation names by general.file_type (llama.h, enum llama_ftype).
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}


@dataclass(frozen=True)
class GGUFHeader:
    """What the header of one GGUF file says."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensor_count: int
    file_bytes: int
    data_bytes: int
    special_tokens: dict[str, str] = field(default_factory=dict)
    # Elements per ggml tensor type id (from the tensor table); their sum is the parameter count.
    tensor_elements: dict[int, int] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(self.tensor_elements.values())

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def chat_template(self) -> str | None:
        template = self.metadata.get("tokenizer.chat_template")
        return template if isinstance(template, str) and template.strip() else None

    @property
    def license(self) -> str:
        return str(self.metadata.get("general.license", ""))

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        return _FILE_TYPES.get(file_type, f"type {file_type}") if file_type is not None else "unknown"

    def arch_value(self, key: str, default: Any = None) -> Any:
        """Return ``{architecture}.{key}`` from the metadata, e.g. ``context_length``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def context_length(self) -> int:
        return int(self.arch_value("context_length", 2048))

    @property
    def block_count(self) -> int:
        return int(self.arch_value("block_count", 0))

    def kv_cache_bytes(self, n_ctx: int, bytes_per_value: int = 2) -> int:
        """Estimate the K and V cache for ``n_ctx`` tokens at f16 (llama.cpp's default)."""
        layers = self.block_count
        embed = int(self.arch_value("embedding_length", 0))
        heads = int(self.arch_value("attention.head_count", 1) or 1)
        kv_heads = self.arch_value("attention.head_count_kv", heads)
        if isinstance(kv_heads, list):
            kv_heads = max(kv_heads) if kv_heads else heads
        head_k = int(self.arch_value("attention.key_length", embed // heads if heads else 0))
        head_v = int(self.arch_value("attention.value_length", head_k))
        return n_ctx * layers * int(kv_heads) * (head_k + head_v) * bytes_per_value


class _Reader:
    def __init__(self, f: BinaryIO, path: Path, size: int) -> None:
        self.f, self.path, self.size = f, path, size

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise _truncated(self.path, self.size, self.f.tell() + (n - len(data)))
        return data

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.scalar(_UINT64)
        if length > self.size:
            raise _corrupt(self.path, "a text field claims to be longer than the file")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.scalar(_UINT64)
        if length > self.size:
            raise _corrupt(self.path, "a text field claims to be longer than the file")
        self.f.seek(length, 1)

    def value(self, kind: int, keep: bool, depth: int = 0) -> Any:
        if kind in _SCALARS:
            return self.scalar(kind)
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            if depth >= _MAX_ARRAY_DEPTH:
                raise _corrupt(self.path, f"its arrays are nested more than {_MAX_ARRAY_DEPTH} deep")
            item_kind = self.scalar(_UINT32)
            count = self.scalar(_UINT64)
            if count > self.size:
                raise _corrupt(self.path, "an array claims more items than the file has bytes")
            if keep:
                return [self.value(item_kind, True, depth + 1) for _ in range(count)]
            if item_kind in _SCALARS:
                self.f.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
            elif item_kind == _STRING:
                for _ in range(count):
                    self.skip_string()
            else:
                for _ in range(count):
                    self.value(item_kind, False, depth + 1)
            return count
        raise _corrupt(self.path, f"unknown metadata type {kind}")


# The model dimensions Ember computes with: a file that stores text there is damaged, not a model.
_NUMBERS = (
    "context_length",
    "block_count",
    "embedding_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
)
# No disk holds a model this big: a header that claims more is damaged, not a cut-short download.
_ABSURD_BYTES = 2**50


def _truncated(path: Path, size: int, needed: int) -> ModelFileError:
    if needed > _ABSURD_BYTES:
        return _corrupt(path, f"its header claims {needed:,} bytes of weights, more than any disk holds")
    return ModelFileError(
        f"'{path.name}' is incomplete: it is {size:,} bytes but its header says it needs at least "
        f"{needed:,}. The download or copy was probably cut short; download it again."
    )


def _corrupt(path: Path, what: str) -> ModelFileError:
    return ModelFileError(f"'{path.name}' is damaged ({what}). Download the model again or pick another file.")


class _Joined(io.RawIOBase):
    """Files read one after another as one (a model shipped in parts, before it is put together)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._paths = list(paths)
        self._sizes = [p.stat().st_size for p in self._paths]
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: sum(self._sizes)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        start, wanted = self._position, len(buffer)
        for path, size in zip(self._paths, self._sizes, strict=True):
            if start < size:
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read(wanted)
                buffer[: len(data)] = data
                self._position += len(data)
                return len(data)
            start -= size
        return 0


def read_gguf_header(path: Path | str, *, parts: Sequence[Path] | None = None) -> GGUFHeader:
    """Return the header of the GGUF file at ``path``.

    ``parts``: the file is not there yet but ships as these pieces, to be joined in this order
    (the header is read across them; ``path`` names the file in messages).
    Raises ModelFileError, with a reason a person understands, when the file is
    missing, not a GGUF model, of an unsupported GGUF version, damaged or truncated.
    """
    path = Path(path)
    try:
        if parts is not None:
            joined = _Joined(parts)
            size, f = sum(joined._sizes), io.BufferedReader(joined, 1 << 16)
        else:
            size = path.stat().st_size
            f = path.open("rb")
    except FileNotFoundError:
        raise ModelFileError(f"The model file '{path}' does not exist. It may have been moved or deleted.") from None
    except OSError as exc:
        raise ModelFileError(f"Ember cannot read '{path}' ({exc.strerror or exc}).") from None
    if path.suffix.lower() in {".ckpt", ".pt", ".pth", ".bin", ".pkl"}:
        f.close()
        raise ModelFileError(
            f"'{path.name}' is a pickle-based file, which can run code when opened, so Ember refuses it. "
            "Use a GGUF version of the model."
        )
    with f:
        magic = f.read(4)
        if magic != _MAGIC:
            raise ModelFileError(_not_gguf_message(path, magic))
        reader = _Reader(f, path, size)
        version = reader.scalar(_UINT32)
        if version not in (2, 3):
            raise ModelFileError(
                f"'{path.name}' is GGUF version {version}; Ember reads versions 2 and 3. "
                "Convert it again with a current llama.cpp."
            )
        tensor_count = reader.scalar(_UINT64)
        kv_count = reader.scalar(_UINT64)
        metadata: dict[str, Any] = {}
        token_ids: dict[str, int] = {}
        tokens_offset = None
        for _ in range(kv_count):
            key = reader.string()
            kind = reader.scalar(_UINT32)
            if key == "tokenizer.ggml.tokens" and kind == _ARRAY:
                tokens_offset = f.tell()
            metadata[key] = reader.value(kind, keep=key in _KEEP_ARRAYS)
            if key.startswith("tokenizer.ggml.") and key.endswith("_token_id"):
                token_ids[key[len("tokenizer.ggml.") : -len("_token_id")]] = metadata[key]
        alignment = metadata.get("general.alignment", 32)
        whole = isinstance(alignment, int) and not isinstance(alignment, bool)
        if not whole or alignment <= 0 or alignment & (alignment - 1):
            raise _corrupt(path, f"its data alignment is {alignment!r}, not a power of two")
        for number in _NUMBERS:
            value = metadata.get(f"{metadata.get('general.architecture', '')}.{number}")
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool)):
                if not (isinstance(value, list) and all(isinstance(v, int) for v in value)):
                    raise _corrupt(path, f"its {number} is {value!r}, not a number")
        data_bytes = 0
        tensor_elements: dict[int, int] = {}
        for _ in range(tensor_count):
            reader.skip_string()
            n_dims = reader.scalar(_UINT32)
            if n_dims > 8:
                raise _corrupt(path, "a tensor has more than 8 dimensions")
            dims = struct.unpack(f"<{n_dims}Q", reader.take(8 * n_dims))
            ggml_type = reader.scalar(_UINT32)
            offset = reader.scalar(_UINT64)
            elements = 1
            for d in dims:
                elements *= d
            tensor_elements[ggml_type] = tensor_elements.get(ggml_type, 0) + elements
            block_bytes, block_elems = _GGML_BLOCK.get(ggml_type, (0, 1))
            data_bytes = max(data_bytes, offset + elements * block_bytes // block_elems)
        data_start = -(-f.tell() // alignment) * alignment
        if data_start + data_bytes > size:
            raise _truncated(path, size, data_start + data_bytes)
        special = _special_tokens(reader, tokens_offset, token_ids)
    return GGUFHeader(path, version, metadata, tensor_count, size, data_bytes, special, tensor_elements)


def _special_tokens(reader: _Reader, tokens_offset: int | None, ids: dict[str, int]) -> dict[str, str]:
    """Return e.g. {"bos": "<|im_start|>", "eos": "<|im_end|>"} by reading only as far as needed."""
    if tokens_offset is None or not ids:
        return {}
    wanted = {v: k for k, v in ids.items() if isinstance(v, int)}
    if not wanted:
        return {}
    reader.f.seek(tokens_offset)
    item_kind = reader.scalar(_UINT32)
    count = reader.scalar(_UINT64)
    if item_kind != _STRING:
        return {}
    found: dict[str, str] = {}
    last = max(wanted)
    for index in range(min(count, last + 1)):
        if index in wanted:
            text = reader.string()
            for name, token_id in ids.items():
                if token_id == index:
                    found[name] = text
        else:
            reader.skip_string()
    return found


def _not_gguf_message(path: Path, magic: bytes) -> str:
    known = {b"PK\x03\x04": "a ZIP archive (perhaps a PyTorch checkpoint)", b"\x80\x02": "a Python pickle"}
    for prefix, what in known.items():
        if magic.startswith(prefix):
            return f"'{path.name}' is not a GGUF model: it is {what}. Pick a .gguf file."
    if magic.startswith(b"{") or magic.startswith(b"<"):
        return (
            f"'{path.name}' is not a GGUF model: it is a text file "
            "(perhaps an error page saved instead of the model). Pick a .gguf file."
        )
    if not magic:
        return f"'{path.name}' is empty. Download the model again."
    shown = magic.decode("latin-1").encode("unicode_escape").decode()
    return f"This file is not a GGUF model (it starts with '{shown}'). Pick a .gguf file."
