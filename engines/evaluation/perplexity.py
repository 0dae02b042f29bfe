"""The reference model that scores texts' perplexity for ``evaluate``: llama.cpp, in an engine process.

Like every use of llama.cpp it runs in an engine process (the Studio calls ``perplexity`` there), never
in the window's. The model loads with ``logits_all`` so that one evaluation of a text gives the
logits at every position.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from engines.errors import ModelFileError


@dataclass(frozen=True)
class PerplexityOptions:
    """The GGUF file that scores, and the longest text (tokens) it reads."""

    path: str
    context_tokens: int = 2048


class PerplexityEngine:
    """Perplexity of texts under a GGUF model (whole vocabulary, temperature 1)."""

    kind = "perplexity"
    backend = "CPU"

    def __init__(self, options: PerplexityOptions) -> None:
        self.options = options
        self.name = os.path.basename(options.path)
        self._llm: Any = None

    def memory_estimate(self) -> int:
        size = os.path.getsize(self.options.path) if os.path.exists(self.options.path) else 0
        return size + self.options.context_tokens * 256 * 1024  # the weights, and every position's logits

    def load(self) -> None:
        """Raises ModelFileError when llama.cpp cannot load the file."""
        if self._llm is not None:
            return
        from engines.text.cpu_backend import ready_llama_cpp

        llama_cpp = ready_llama_cpp()  # the CPU kernels Ember chose for this machine
        try:
            self._llm = llama_cpp.Llama(
                self.options.path, n_ctx=self.options.context_tokens, logits_all=True, n_gpu_layers=0, verbose=False
            )
        except ValueError as exc:
            raise ModelFileError(f"llama.cpp cannot load '{self.options.path}' to score texts ({exc}).") from None

    def perplexity(self, texts: list[str]) -> list[float]:
        """The perplexity of each text (NaN for a text of fewer than two tokens), cut at the context."""
        import numpy as np

        self.load()
        llm, out = self._llm, []
        for text in texts:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)[: self.options.context_tokens]
            if len(tokens) < 2:
                out.append(math.nan)
                continue
            llm.reset()
            llm.eval(tokens)
            logits = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)
            top = logits.max(axis=1, keepdims=True)
            log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
            chosen = log_probs[np.arange(len(tokens) - 1), tokens[1:]]
            out.append(float(math.exp(-chosen.mean())))
        return out

    def unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None


def make_perplexity_engine(options: PerplexityOptions, context: Any) -> PerplexityEngine:
    """The engine factory (in the engine process)."""
    return PerplexityEngine(options)
