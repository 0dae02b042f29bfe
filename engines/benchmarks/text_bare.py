"""The bare baseline for text: llama-cpp-python's own streaming completion, nothing else."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TextRun:
    """One generation, timed where its tokens arrive."""

    prompt_tokens: int
    generated_tokens: int
    first_token_s: float  # from the request to the first token
    generation_s: float  # from the first token to the last

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.first_token_s if self.first_token_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return (self.generated_tokens - 1) / self.generation_s if self.generation_s > 0 else 0.0


def open_bare(path: str, context_tokens: int, threads: int) -> Any:
    """Load the model with llama-cpp-python exactly as Ember does (same context, threads and CPU kernels)."""
    from engines.text.cpu_backend import ready_llama_cpp

    llama_cpp = ready_llama_cpp()

    return llama_cpp.Llama(
        path, n_ctx=context_tokens, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, verbose=False
    )


def run_bare(llm: Any, prompt_tokens: list[int], max_tokens: int) -> TextRun:
    """Stream a greedy completion with ``create_completion`` and time it; the prompt cache is cleared first."""
    llm.reset()
    count = 0
    start = time.perf_counter()
    first = last = start
    for chunk in llm.create_completion(prompt_tokens, max_tokens=max_tokens, temperature=0.0, stream=True):
        if not chunk["choices"][0]["text"]:
            continue  # the closing chunk only carries the finish reason
        now = time.perf_counter()
        if count == 0:
            first = now
        last = now
        count += 1
    return TextRun(len(prompt_tokens), count, first - start, last - first)
