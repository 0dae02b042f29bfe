"""Hostile GGUF files: malformed variants of a real model, to prove that no model file takes Ember down.

Each variant starts from a real GGUF (the embedded SmolLM2-135M, GGUF v3, llama, Q4_1), parsed
here into its parts (the GGUF spec: magic, version, tensor and key/value counts, typed key/value
pairs, tensor infos, alignment, data section), changes one thing and writes the file again. The
data section is laid out again after every change, as the declared types and shapes of the
tensors need it, so a variant is wrong in only the way it says: a file whose one layer lacks
``attn_q`` is otherwise whole, and llama.cpp gets as far as noticing that tensor is missing.

Use from tests (after ``sys.path.insert(0, "tests/tools")``)::

    from hostile_gguf import write_variants
    for hostile in write_variants(SMOLLM2.path(), folder):
        ...  # hostile.name, hostile.path, hostile.what

or as a script: ``python tests/tools/hostile_gguf.py OUTDIR [--only NAME,...]`` writes them all
and, for each, prints what Ember's own header reader says and what happens when bare
llama-cpp-python loads it in a child process and evaluates a 4-token prompt (ok, the Python
exception, the signal that killed it, or a timeout).
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gguf

ROOT = Path(__file__).resolve().parents[2]

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# GGUF metadata value types (the GGUF spec, gguf_type)
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR_FORMATS = {
    UINT8: "B",
    INT8: "b",
    UINT16: "H",
    INT16: "h",
    UINT32: "I",
    INT32: "i",
    FLOAT32: "f",
    BOOL: "?",
    UINT64: "Q",
    INT64: "q",
    FLOAT64: "d",
}
F32, I32 = int(gguf.GGMLQuantizationType.F32), int(gguf.GGMLQuantizationType.I32)
# (elements per block, bytes per block) by ggml type id, for laying the data section out
_BLOCKS = {int(kind): sizes for kind, sizes in gguf.GGML_QUANT_SIZES.items()}
# A declared size beyond this is not laid out (the variant is about the absurd size itself).
_MAX_LAID_OUT_BYTES = 1 << 32


# -- the parts of a GGUF file ----------------------------------------------------------------------


@dataclass(frozen=True)
class LyingString:
    """A string whose length field claims ``claimed`` bytes while only ``text`` follows it."""

    text: str
    claimed: int


@dataclass(frozen=True)
class Value:
    """One typed metadata value: a scalar, a string, or an array of ``item_type`` items."""

    vtype: int
    data: Any
    item_type: int | None = None
    # The value's bytes as read, so that unchanged values (a 49k-token vocabulary) are written back as they were.
    raw: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Tensor:
    """One entry of the tensor table, and where its data comes from in the source file."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    source_offset: int  # absolute position of its data in the source file
    source_bytes: int
    # The offset the table claims, relative to the data section; None: where the data is written.
    offset: int | None = None
    # Bytes written for it; None: what its type and dims need (the source's bytes when that is unknown).
    payload_bytes: int | None = None
    # A pattern repeated over the payload instead of the source's data (NaN weights).
    fill: bytes | None = None


@dataclass
class GGUFModel:
    """A parsed GGUF file that a variant changes before it is written again."""

    source: Path
    version: int
    kvs: list[tuple[str, Value]]
    tensors: list[Tensor]
    # Counts the header claims; None: the real numbers of pairs and tensors.
    kv_count: int | None = None
    tensor_count: int | None = None

    def copy(self) -> GGUFModel:
        """Return a copy whose lists can be changed without touching this one (the parts are immutable)."""
        return replace(self, kvs=list(self.kvs), tensors=list(self.tensors))

    def get(self, key: str) -> Value:
        """Return the value of ``key``; raises KeyError when the file has none."""
        for name, value in self.kvs:
            if name == key:
                return value
        raise KeyError(key)

    def set(self, key: str, value: Value) -> None:
        """Replace the value of ``key`` where it stands, or append the pair."""
        for i, (name, _) in enumerate(self.kvs):
            if name == key:
                self.kvs[i] = (key, value)
                return
        self.kvs.append((key, value))

    def index(self, tensor_name: str) -> int:
        """Return the position of the tensor named ``tensor_name`` in the table; raises KeyError."""
        for i, tensor in enumerate(self.tensors):
            if tensor.name == tensor_name:
                return i
        raise KeyError(tensor_name)

    def change_tensor(self, tensor_name: str, **changes: Any) -> None:
        """Replace fields of the tensor named ``tensor_name`` (see :class:`Tensor`)."""
        i = self.index(tensor_name)
        self.tensors[i] = replace(self.tensors[i], **changes)

    @property
    def alignment(self) -> Any:
        """The ``general.alignment`` value as the file states it (32 when it states none)."""
        try:
            return self.get("general.alignment").data
        except KeyError:
            return DEFAULT_ALIGNMENT


def declared_bytes(tensor: Tensor) -> int | None:
    """Return the bytes a tensor's type and dims need, or None where they cannot be laid out."""
    block = _BLOCKS.get(tensor.ggml_type)
    if block is None or any(d < 0 for d in tensor.dims):
        return None
    elements = math.prod(tensor.dims)
    block_elements, block_bytes = block
    if elements % block_elements:
        return None
    size = elements // block_elements * block_bytes
    return size if size <= _MAX_LAID_OUT_BYTES else None


class _Cursor:
    def __init__(self, data: Any) -> None:
        self.data, self.pos = data, 0

    def unpack(self, fmt: str) -> Any:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.unpack("Q")
        text = bytes(self.data[self.pos : self.pos + length]).decode("utf-8", "surrogateescape")
        self.pos += length
        return text

    def value(self, vtype: int) -> Value:
        start = self.pos
        if vtype in _SCALAR_FORMATS:
            data, item_type = self.unpack(_SCALAR_FORMATS[vtype]), None
        elif vtype == STRING:
            data, item_type = self.string(), None
        elif vtype == ARRAY:
            item_type, count = self.unpack("IQ")
            if item_type in _SCALAR_FORMATS:
                data = list(self.unpack(f"{count}{_SCALAR_FORMATS[item_type]}")) if count else []
            elif item_type == STRING:
                data = [self.string() for _ in range(count)]
            else:
                data = [self.value(item_type) for _ in range(count)]
        else:
            raise ValueError(f"unknown GGUF value type {vtype} at byte {start}")
        return Value(vtype, data, item_type, raw=bytes(self.data[start : self.pos]))


def parse_gguf(path: Path | str) -> GGUFModel:
    """Return the parts of the (well-formed) GGUF file at ``path``.

    Raises ValueError when it is not a GGUF file of version 2 or 3.
    """
    path = Path(path)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        cursor = _Cursor(data)
        if bytes(data[:4]) != MAGIC:
            raise ValueError(f"{path} is not a GGUF file")
        cursor.pos = 4
        version, tensor_count, kv_count = cursor.unpack("IQQ")
        if version not in (2, 3):
            raise ValueError(f"{path} is GGUF version {version}")
        kvs = []
        for _ in range(kv_count):
            key = cursor.string()
            kvs.append((key, cursor.value(cursor.unpack("I"))))
        infos = []
        for _ in range(tensor_count):
            name = cursor.string()
            n_dims = cursor.unpack("I")
            dims = tuple(cursor.unpack(f"{n_dims}Q")) if n_dims > 1 else (cursor.unpack("Q"),)
            ggml_type, offset = cursor.unpack("IQ")
            infos.append((name, dims, ggml_type, offset))
        model = GGUFModel(path, version, kvs, [])
        alignment = model.alignment
        data_start = -(-cursor.pos // alignment) * alignment
    for name, dims, ggml_type, offset in infos:
        size = declared_bytes(Tensor(name, dims, ggml_type, 0, 0))
        if size is None:
            raise ValueError(f"{path}: tensor {name} has a type this tool cannot size ({ggml_type})")
        model.tensors.append(Tensor(name, dims, ggml_type, data_start + offset, size))
    return model


# -- writing ---------------------------------------------------------------------------------------


def _encode_string(text: str | LyingString) -> bytes:
    if isinstance(text, LyingString):
        data = text.text.encode("utf-8", "surrogateescape")
        return struct.pack("<Q", text.claimed) + data
    data = text.encode("utf-8", "surrogateescape")
    return struct.pack("<Q", len(data)) + data


def _encode_value(value: Value) -> bytes:
    if value.raw is not None:
        return value.raw
    if value.vtype in _SCALAR_FORMATS:
        return struct.pack("<" + _SCALAR_FORMATS[value.vtype], value.data)
    if value.vtype == STRING:
        return _encode_string(value.data)
    if value.vtype == ARRAY:
        assert value.item_type is not None
        head = struct.pack("<IQ", value.item_type, len(value.data))
        if value.item_type in _SCALAR_FORMATS:
            return head + struct.pack(f"<{len(value.data)}{_SCALAR_FORMATS[value.item_type]}", *value.data)
        if value.item_type == STRING:
            return head + b"".join(_encode_string(item) for item in value.data)
        return head + b"".join(_encode_value(item) for item in value.data)
    return b""  # an unknown type id has no payload this tool could know of


def _layout_alignment(model: GGUFModel) -> int:
    alignment = model.alignment
    # A variant with a bad alignment is about that value; its data is still laid out at something usable.
    return alignment if isinstance(alignment, int) and alignment > 0 else DEFAULT_ALIGNMENT


def _align(position: int, alignment: int) -> int:
    return -(-position // alignment) * alignment


def write_gguf(model: GGUFModel, path: Path | str) -> int:
    """Write ``model`` as a GGUF file at ``path``, copying tensor data from its source; return its size in bytes."""
    alignment = _layout_alignment(model)
    placed: list[tuple[Tensor, int, int]] = []  # (tensor, where its data is written, bytes written)
    position = 0
    for tensor in model.tensors:
        position = _align(position, alignment)
        size = tensor.payload_bytes
        if size is None:
            size = declared_bytes(tensor)
        if size is None:
            size = tensor.source_bytes
        placed.append((tensor, position, size))
        position += size
    header = bytearray(MAGIC)
    kv_count = len(model.kvs) if model.kv_count is None else model.kv_count
    tensor_count = len(model.tensors) if model.tensor_count is None else model.tensor_count
    header += struct.pack("<IQQ", model.version, tensor_count, kv_count)
    for key, value in model.kvs:
        header += _encode_string(key) + struct.pack("<I", value.vtype) + _encode_value(value)
    for tensor, written_at, _ in placed:
        header += _encode_string(tensor.name) + struct.pack(f"<I{len(tensor.dims)}Q", len(tensor.dims), *tensor.dims)
        header += struct.pack("<IQ", tensor.ggml_type, written_at if tensor.offset is None else tensor.offset)
    data_start = _align(len(header), alignment)
    header += b"\0" * (data_start - len(header))
    path = Path(path)
    with path.open("wb") as out, model.source.open("rb") as source:
        out.write(header)
        for tensor, written_at, size in placed:
            out.write(b"\0" * (data_start + written_at - out.tell()))
            if tensor.fill is not None:
                repeats = -(-size // len(tensor.fill))
                out.write((tensor.fill * repeats)[:size])
                continue
            source.seek(tensor.source_offset)
            data = source.read(min(size, tensor.source_bytes))
            out.write(data + b"\0" * (size - len(data)))
        return out.tell()


# -- the variants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of breaking a model file: ``change`` edits a copy of the parsed model in place."""

    name: str
    what: str
    change: Callable[[GGUFModel], None]


@dataclass(frozen=True)
class HostileFile:
    """A written variant: its name, its file and what is wrong with it."""

    name: str
    path: Path
    what: str


def _arch(model: GGUFModel) -> str:
    return str(model.get("general.architecture").data)


def _set_arch(model: GGUFModel, key: str, value: Value) -> None:
    model.set(f"{_arch(model)}.{key}", value)


def _last_layer(model: GGUFModel) -> int:
    return int(model.get(f"{_arch(model)}.block_count").data) - 1


def _offset_past_end(model: GGUFModel) -> None:
    last = model.tensors[-1]
    data_bytes = sum(t.source_bytes for t in model.tensors)
    model.change_tensor(last.name, offset=_align(data_bytes + (1 << 20), DEFAULT_ALIGNMENT))


def _offsets_overlap(model: GGUFModel) -> None:
    # blk.0.attn_q's data is said to start where token_embd's does (offset 0).
    model.change_tensor("blk.0.attn_q.weight", offset=0)


def _dim_zero(model: GGUFModel) -> None:
    model.change_tensor("blk.0.attn_q.weight", dims=(model.tensors[model.index("blk.0.attn_q.weight")].dims[0], 0))


def _dims_overflow(model: GGUFModel) -> None:
    # 2^32 x 2^32 elements: the product (2^64) overflows the int64 that ggml counts elements in.
    model.change_tensor("blk.0.attn_q.weight", dims=(1 << 32, 1 << 32))


def _too_many_dims(model: GGUFModel) -> None:
    tensor = model.tensors[model.index("blk.0.attn_norm.weight")]
    model.change_tensor(tensor.name, dims=(*tensor.dims, 1, 1, 1, 1))


def _unknown_type(model: GGUFModel) -> None:
    model.change_tensor("blk.0.attn_q.weight", ggml_type=99, payload_bytes=None)


def _type_size_mismatch(model: GGUFModel) -> None:
    # Declared F32 (4 bytes an element) over Q8_0 data (34 bytes per 32): the table and the data disagree.
    embd = model.tensors[model.index("token_embd.weight")]
    model.change_tensor(embd.name, ggml_type=F32, payload_bytes=embd.source_bytes)


def _norm_as_i32(model: GGUFModel) -> None:
    # Same size as the F32 it replaces, so the file is consistent; but a norm weight of integers is nonsense.
    model.change_tensor("blk.0.attn_norm.weight", ggml_type=I32)


def _duplicate_tensor_name(model: GGUFModel) -> None:
    model.change_tensor("blk.0.attn_k.weight", name="blk.0.attn_q.weight")


def _missing_attn_q(model: GGUFModel) -> None:
    del model.tensors[model.index("blk.7.attn_q.weight")]


def _token_embd_wrong_shape(model: GGUFModel) -> None:
    embd = model.tensors[model.index("token_embd.weight")]
    model.change_tensor(embd.name, dims=(embd.dims[0] - 64, embd.dims[1]))


def _block_count_too_large(model: GGUFModel) -> None:
    _set_arch(model, "block_count", Value(UINT32, _last_layer(model) + 2))


def _head_count_zero(model: GGUFModel) -> None:
    _set_arch(model, "attention.head_count", Value(UINT32, 0))


def _head_count_not_dividing(model: GGUFModel) -> None:
    embed = int(model.get(f"{_arch(model)}.embedding_length").data)
    heads = next(h for h in range(7, embed) if embed % h)  # 7 for an embedding of 576
    _set_arch(model, "attention.head_count", Value(UINT32, heads))
    _set_arch(model, "attention.head_count_kv", Value(UINT32, heads))


def _head_count_kv_zero(model: GGUFModel) -> None:
    _set_arch(model, "attention.head_count_kv", Value(UINT32, 0))


def _shorten_vocab(model: GGUFModel, keep: int) -> None:
    tokens = model.get("tokenizer.ggml.tokens")
    types = model.get("tokenizer.ggml.token_type")
    model.set("tokenizer.ggml.tokens", Value(ARRAY, tokens.data[:keep], STRING))
    model.set("tokenizer.ggml.token_type", Value(ARRAY, types.data[:keep], types.item_type))


def _vocab_shorter_than_embedding(model: GGUFModel) -> None:
    _shorten_vocab(model, 1000)


def _vocab_empty(model: GGUFModel) -> None:
    _shorten_vocab(model, 0)


def _token_types_short(model: GGUFModel) -> None:
    types = model.get("tokenizer.ggml.token_type")
    model.set("tokenizer.ggml.token_type", Value(ARRAY, types.data[:100], types.item_type))


def _tokens_not_strings(model: GGUFModel) -> None:
    count = len(model.get("tokenizer.ggml.tokens").data)
    model.set("tokenizer.ggml.tokens", Value(ARRAY, list(range(count)), INT32))


def _merges_garbage(model: GGUFModel) -> None:
    merges = list(model.get("tokenizer.ggml.merges").data)
    # empty, no separator, only the separator, invalid UTF-8, and a pair of tokens the vocabulary lacks
    merges[:5] = ["", "nospace", " ", b"\xff\xfe \xc0\x80".decode("utf-8", "surrogateescape"), "\u2603\u2603 \u2603"]
    model.set("tokenizer.ggml.merges", Value(ARRAY, merges, STRING))


def _special_ids_out_of_range(model: GGUFModel) -> None:
    model.set("tokenizer.ggml.bos_token_id", Value(UINT32, 1_000_000))
    model.set("tokenizer.ggml.eos_token_id", Value(UINT32, 2**32 - 1))
    model.set("tokenizer.ggml.padding_token_id", Value(UINT32, len(model.get("tokenizer.ggml.tokens").data)))


def _string_past_end(model: GGUFModel) -> None:
    model.set("general.name", Value(STRING, LyingString("SmolLM2", 1 << 40)))


def _kv_count_too_large(model: GGUFModel) -> None:
    # The reader takes the tensor table for three more key/value pairs.
    model.kv_count = len(model.kvs) + 3


def _alignment_zero(model: GGUFModel) -> None:
    model.set("general.alignment", Value(UINT32, 0))


def _alignment_not_power_of_two(model: GGUFModel) -> None:
    model.set("general.alignment", Value(UINT32, 48))


# C0 7F is a NaN as f16, and C0 7F C0 7F one as f32: at any even offset, every float field of a block is NaN.
_NAN = b"\xc0\x7f"


def _nan_weights(model: GGUFModel) -> None:
    # A valid file with garbage weights: the embedding (tied to the output) is NaN, so every logit is.
    # (NaN in a norm is not enough: the quantised matmuls that follow turn NaN activations into zeros.)
    model.change_tensor("token_embd.weight", fill=_NAN)


def _context_length_zero(model: GGUFModel) -> None:
    _set_arch(model, "context_length", Value(UINT32, 0))


def _context_length_text(model: GGUFModel) -> None:
    value = model.get(f"{_arch(model)}.context_length").data  # "8k" for 8192: the way a person writes it
    _set_arch(model, "context_length", Value(STRING, f"{int(value) // 1024}k"))


VARIANTS: tuple[Variant, ...] = (
    Variant("offset_past_end", "the last tensor's data offset lies 1 MiB past the end of the file", _offset_past_end),
    Variant("offsets_overlap", "blk.0.attn_q's data offset is token_embd's (0): the two overlap", _offsets_overlap),
    Variant("dim_zero", "blk.0.attn_q has a dimension of 0", _dim_zero),
    Variant("dims_overflow", "blk.0.attn_q is 2^32 x 2^32: its element count overflows int64", _dims_overflow),
    Variant("too_many_dims", "blk.0.attn_norm has 5 dimensions (ggml has at most 4)", _too_many_dims),
    Variant("unknown_type", "blk.0.attn_q has ggml type 99, which does not exist", _unknown_type),
    Variant("type_size_mismatch", "token_embd is declared F32 but holds Q8_0-sized data", _type_size_mismatch),
    Variant("norm_as_i32", "blk.0.attn_norm is declared I32 (same size as its F32 data)", _norm_as_i32),
    Variant(
        "duplicate_tensor_name", "two tensors are named blk.0.attn_q.weight (attn_k renamed)", _duplicate_tensor_name
    ),
    Variant("missing_attn_q", "blk.7.attn_q.weight is missing (its data taken out too)", _missing_attn_q),
    Variant("token_embd_wrong_shape", "token_embd is 512 x 49152 instead of 576 x 49152", _token_embd_wrong_shape),
    Variant("block_count_too_large", "block_count is 31 but only 30 layers are present", _block_count_too_large),
    Variant("head_count_zero", "attention.head_count is 0", _head_count_zero),
    Variant(
        "head_count_not_dividing", "head_count (and head_count_kv) 7 does not divide 576", _head_count_not_dividing
    ),
    Variant("head_count_kv_zero", "attention.head_count_kv is 0", _head_count_kv_zero),
    Variant(
        "vocab_shorter_than_embedding",
        "tokenizer.ggml.tokens (and token_type) hold 1000 tokens; token_embd has 49152 rows",
        _vocab_shorter_than_embedding,
    ),
    Variant("vocab_empty", "tokenizer.ggml.tokens and token_type are empty arrays", _vocab_empty),
    Variant("token_types_short", "tokenizer.ggml.token_type has 100 entries for 49152 tokens", _token_types_short),
    Variant("tokens_not_strings", "tokenizer.ggml.tokens is an array of INT32, not of strings", _tokens_not_strings),
    Variant("merges_garbage", "the first 5 BPE merges are '', 'nospace', ' ', invalid UTF-8, unknown", _merges_garbage),
    Variant(
        "special_ids_out_of_range",
        "bos is 1000000, eos 2^32-1, padding 49152 (the vocabulary has 49152 tokens)",
        _special_ids_out_of_range,
    ),
    Variant("string_past_end", "general.name's length field claims 2^40 bytes", _string_past_end),
    Variant("kv_count_too_large", "kv_count claims 3 more key/value pairs than there are", _kv_count_too_large),
    Variant("alignment_zero", "general.alignment is 0", _alignment_zero),
    Variant("alignment_not_power_of_two", "general.alignment is 48 (data laid out at 48)", _alignment_not_power_of_two),
    Variant("nan_weights", "valid file, but every float in token_embd (tied to the output) is NaN", _nan_weights),
    Variant("context_length_zero", "llama.context_length is 0", _context_length_zero),
    Variant("context_length_text", "llama.context_length is the string '8k', not an integer", _context_length_text),
)


def write_variants(source: Path | str, folder: Path | str, names: Iterable[str] | None = None) -> list[HostileFile]:
    """Write the hostile variants of the GGUF at ``source`` into ``folder``; return them in VARIANTS order.

    ``names`` picks some by name (all when None). Raises KeyError for a name that is not a variant,
    ValueError when ``source`` is not a GGUF file this tool can parse.
    """
    wanted = None if names is None else set(names)
    unknown = (wanted or set()) - {v.name for v in VARIANTS}
    if unknown:
        raise KeyError(f"no such variants: {sorted(unknown)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    original = parse_gguf(source)
    written = []
    for variant in VARIANTS:
        if wanted is not None and variant.name not in wanted:
            continue
        model = original.copy()
        variant.change(model)
        path = folder / f"{variant.name}.gguf"
        write_gguf(model, path)
        written.append(HostileFile(variant.name, path, variant.what))
    return written


# -- script mode: what Ember's reader and bare llama.cpp make of each ------------------------------

# Runs in a child process: load with bare llama-cpp-python, evaluate 4 tokens, print one JSON line.
_CHILD = r"""
import json, logging, math, sys
errors = []
class Keep(logging.Handler):
    def emit(self, record):
        errors.append(record.getMessage())
logging.getLogger("engines.llama_cpp").addHandler(Keep(level=logging.ERROR))
logging.getLogger("engines.llama_cpp").setLevel(logging.ERROR)
from engines.text.cpu_backend import ready_llama_cpp
llama_cpp = ready_llama_cpp()
try:
    llm = llama_cpp.Llama(sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
    tokens = (llm.tokenize(b"The cat sat on the mat", add_bos=False, special=False) + [1, 2, 3, 4])[:4]
    llm.eval(tokens)
    # llm.scores stays empty without logits_all (llama-cpp-python samples inside llama.cpp): ask the context.
    logits = llama_cpp.llama_get_logits(llm.ctx)
    values = [float(logits[i]) for i in range(llm.n_vocab())]
    if not all(math.isfinite(x) for x in values):
        note = " (some logits are not finite)"
    elif min(values) == max(values):
        note = f" (every logit is {values[0]}: garbage weights)"
    else:
        note = ""
    print(json.dumps({"outcome": "ok" + note}))
except Exception as exc:
    detail = errors[0] if errors else ""  # the first error says why; the last only that loading failed
    print(json.dumps({"outcome": f"{type(exc).__name__}: {exc}", "log": detail}))
"""


def ember_verdict(path: Path) -> str:
    """Return what Ember's header reader says of ``path``: accepted, refused (its message) or CRASHED."""
    from engines.errors import ModelFileError
    from engines.text.gguf_header import read_gguf_header

    try:
        read_gguf_header(path)
    except ModelFileError as exc:
        return f"refused: {exc}"
    except Exception as exc:  # what this tool is looking for: the reader itself failing
        return f"CRASHED: {type(exc).__name__}: {exc}"
    return "accepted"


def llama_outcome(path: Path, timeout_s: float = 90.0) -> str:
    """Load ``path`` with bare llama-cpp-python in a child process and return what happened, in one line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # On an abort ggml attaches gdb for a backtrace (a second of noise on stderr); the abort is the same without.
    env["GGML_NO_BACKTRACE"] = "1"
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout_s:.0f} s"
    if done.returncode < 0:
        number = -done.returncode
        name = signal.Signals(number).name if number in signal.valid_signals() else "?"
        said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        # ggml says why it aborts as "file.cpp:135: what went wrong" (GGML_ASSERT and GGML_ABORT).
        why = [line for line in said if re.search(r"\.(c|cpp|h|m):\d+: ", line)] or said[-1:]
        return f"killed by signal {number} ({name})" + (f": {why[0]}" if why else "")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return f"exit status {done.returncode}: {done.stderr.strip().splitlines()[-1:] or ''}"
    result = json.loads(lines[-1])
    return result["outcome"] + (f" [llama.cpp: {result['log']}]" if result.get("log") else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Write every variant to OUTDIR and print Ember's and llama.cpp's verdict on each; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--source", type=Path, help="the GGUF to start from (default: the embedded SmolLM2)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.source is None:
        from engines.models.embedded import SMOLLM2

        args.source = SMOLLM2.path()
    names = [n for n in args.only.split(",") if n] or None
    started = time.monotonic()
    hostile = write_variants(args.source, args.outdir, names)
    print(f"wrote {len(hostile)} variants of {args.source.name} in {time.monotonic() - started:.1f} s\n")
    for item in hostile:
        began = time.monotonic()
        verdict = ember_verdict(item.path)
        outcome = llama_outcome(item.path)
        print(f"{item.name}: {item.what}")
        print(f"    Ember's reader: {verdict}")
        print(f"    llama.cpp:      {outcome}  ({time.monotonic() - began:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
