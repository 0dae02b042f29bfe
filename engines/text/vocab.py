"""A GGUF model's vocabulary alone (no weights): the tokenizer the verifier needs to find a text watermark.

It runs in an engine process like every other use of llama.cpp; the Studio calls its
``tokenize`` there (see ``Studio._text_tokenizers``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engines.errors import ModelFileError


@dataclass(frozen=True)
class VocabOptions:
    """The vocabulary of the GGUF file at ``path``."""

    path: str


class VocabEngine:
    """A GGUF file's tokenizer, loaded with llama.cpp's ``vocab_only``."""

    kind = "vocab"
    backend = "CPU"

    def __init__(self, options: VocabOptions) -> None:
        self.options = options
        self.name = os.path.basename(options.path)
        self._vocab: Any = None

    def memory_estimate(self) -> int:
        return 64 * 2**20

    def load(self) -> None:
        """Raises ModelFileError when llama.cpp cannot read the file's vocabulary."""
        if self._vocab is not None:
            return
        from engines.text.cpu_backend import ready_llama_cpp

        llama_cpp = ready_llama_cpp()
        try:
            self._vocab = llama_cpp.Llama(self.options.path, vocab_only=True, verbose=False)
        except ValueError as exc:
            raise ModelFileError(f"llama.cpp cannot read the vocabulary of '{self.options.path}' ({exc}).") from None

    def tokenize(self, text: str) -> list[int]:
        """The token ids of ``text`` (no BOS, special tokens as plain text), as the model read its own reply."""
        self.load()
        return self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def unload(self) -> None:
        if self._vocab is not None:
            self._vocab.close()
            self._vocab = None


def make_vocab_engine(options: VocabOptions, context: Any) -> VocabEngine:
    """The engine factory (in the engine process)."""
    return VocabEngine(options)


def vocab_tokenizer(path: str) -> Callable[[str], list[int]]:
    """A tokenizer for the GGUF file at ``path``, in this process (for benchmarks and tests).

    Raises ModelFileError when llama.cpp cannot read the file's vocabulary.
    """
    engine = VocabEngine(VocabOptions(path))
    engine.load()
    return engine.tokenize
