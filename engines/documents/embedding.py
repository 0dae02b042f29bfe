"""The embedding model and tokenizer of document search: the safety filter's MiniLM, reused.

The model is :class:`engines.safety.semantic.Embedder` (all-MiniLM-L6-v2, quantized once per
machine, mean-pooled unit vectors), the same files and the same quantized copy the safety
filter's meaning layer uses. In the Studio it runs in an engine process of its own,
:data:`EMBEDDING_LANE` ("documents"), through the factory the Studio already has for
:class:`~engines.safety.semantic.SemanticOptions`: onnxruntime stays out of the Studio's process,
and indexing a large folder never holds the "safety" process, which checks every prompt at
submission (on the window's thread). Tests and scripts may embed in-process
(:func:`local_embed`): the vectors are the same.

Only the tokenizer runs in the process that indexes (to cut passages at token counts); it is
the Rust ``tokenizers`` library on ``tokenizer.json``, loaded on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from engines.safety.semantic import Embed, SemanticOptions

EMBEDDING_LANE = "documents"
DIMENSIONS = 384
# One thread: the engine process shares the machine with the text engine and the window; indexing
# runs in the background and must not slow a reply that streams meanwhile.
OPTIONS = SemanticOptions(threads=1)


def engine_embed(pool: Any, options: SemanticOptions = OPTIONS) -> Embed:
    """Embed texts in ``pool``'s "documents" engine process; raises EmberError when it fails."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        return pool.call(EMBEDDING_LANE, options, "embed", list(texts), what="document search's embedding model")

    return embed


def local_embed(options: SemanticOptions = OPTIONS) -> Embed:
    """Embed texts in this process (tests, scripts); the model loads on the first call."""
    from engines.safety.semantic import Embedder

    return Embedder(options).embed


def embedding_model_id() -> str:
    """Names the vectors' model (the packaged file's hash): vectors of another model are made again.

    Raises ModelFileError when the model package is missing.
    """
    from engines.models.hashes import file_sha256
    from engines.safety.semantic import embedded_files

    model, _ = embedded_files()
    return f"all-MiniLM-L6-v2-dynamic-int8:{file_sha256(model)[:16]}"


class Tokens:
    """Counts and cuts text in the embedder's word pieces (no special tokens, no truncation)."""

    def __init__(self) -> None:
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _ready(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                from tokenizers import Tokenizer

                from engines.safety.semantic import embedded_files

                _, path = embedded_files()
                tokenizer = Tokenizer.from_file(str(path))
                tokenizer.no_truncation()  # the file truncates at 128; counting must see everything
                tokenizer.no_padding()
                self._tokenizer = tokenizer
            return self._tokenizer

    def count(self, text: str) -> int:
        """How many word pieces ``text`` is, without [CLS] and [SEP]."""
        return len(self._ready().encode(text, add_special_tokens=False).ids)

    def split(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Character spans of ``text`` of at most ``max_tokens`` word pieces each, cut between tokens."""
        offsets = self._ready().encode(text, add_special_tokens=False).offsets
        spans = []
        for i in range(0, len(offsets), max_tokens):
            window = offsets[i : i + max_tokens]
            start = window[0][0] if i else 0
            end = offsets[i + max_tokens][0] if i + max_tokens < len(offsets) else len(text)
            spans.append((start, end))
        return spans
