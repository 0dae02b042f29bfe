"""Evaluate a text model on one prompt: N samples through the Studio, their diversity, a quality proxy, speed.

The samples go through the same queue, safety filter and watermark as the window's replies (and are
kept in the library, like every output). Diversity: distinct-1, distinct-2 and self-BLEU over the
samples. Quality proxy: the perplexity of each reply under a reference model (the embedded model by
default), scored by llama.cpp in the Studio's engine process: the lower, the more the reference model
finds the text likely; it says nothing of truth or usefulness. Speed: the engine's generation tokens/s
and the time to the first token, as min, median and max over the samples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from engines.errors import EmberError
from engines.evaluation import metrics
from engines.evaluation.runs import finished, spread, table


@dataclass(frozen=True)
class TextEvaluation:
    """What :func:`evaluate_text` measured (``spread`` holds (min, median, max) of each per-sample figure)."""

    model: str
    prompt: str
    samples: tuple[str, ...]
    distinct_1: float
    distinct_2: float
    self_bleu: float
    reference_model: str
    perplexity: tuple[float, ...]
    spread: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def table(self) -> str:
        """A small table in the style of the benches."""
        heading = [
            f"evaluate text: {self.model} on {len(self.samples)} samples of one prompt",
            f"  prompt: {self.prompt[:80]}",
            f"  perplexity under: {self.reference_model}",
        ]
        single = {
            "distinct-1 (diversity)": self.distinct_1,
            "distinct-2 (diversity)": self.distinct_2,
            "self-BLEU (lower: more diverse)": self.self_bleu,
        }
        return table(heading, single, self.spread)


def file_of(model_path: str) -> str:
    """The GGUF file of ``model_path``: itself, or the file of an embedded model named ``embedded:<id>``."""
    from engines.models.embedded import EMBEDDED_PREFIX, EMBEDDED_TEXT_MODELS

    if model_path.startswith(EMBEDDED_PREFIX):
        wanted = model_path[len(EMBEDDED_PREFIX) :]
        for model in EMBEDDED_TEXT_MODELS:
            if model.id == wanted:
                return str(model.path())
        raise EmberError(f"There is no embedded model '{wanted}'.")
    return model_path


def reference_perplexity(studio: Any, model_path: str, texts: list[str], context_tokens: int = 2048) -> list[float]:
    """Perplexity of each text under the GGUF model at ``model_path`` (whole vocabulary, temperature 1),
    scored in the Studio's "cpu" engine process (llama.cpp never loads in the caller's process)."""
    from engines.evaluation.perplexity import PerplexityOptions

    options = PerplexityOptions(file_of(model_path), context_tokens)
    return studio.engines.call("cpu", options, "perplexity", list(texts), what="the reference model")


def evaluate_text(
    studio: Any,
    model_path: str,
    prompt: str,
    *,
    samples: int = 8,
    max_tokens: int = 96,
    temperature: float = 0.8,
    reference_path: str | None = None,
    context_tokens: int = 2048,
) -> TextEvaluation:
    """Generate ``samples`` replies to ``prompt`` (seeds 1..N) and measure them. Raises EmberError when a
    sample fails or is blocked (the reason is the job's)."""
    from engines.jobs import EventKind
    from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

    if samples < 2:
        raise EmberError("Evaluating diversity needs at least two samples.")
    options = ModelOptions(model_path, context_tokens=context_tokens)
    texts: list[str] = []
    speed: list[float] = []
    first: list[float] = []
    for seed in range(1, samples + 1):
        sampling = Sampling(temperature=temperature, seed=seed, max_tokens=max_tokens)
        request = ChatRequest(options, (Message("user", prompt),), sampling=sampling)
        started = time.monotonic()
        arrived: list[float] = []

        def listen(event: Any, arrived: list[float] = arrived, started: float = started) -> None:
            if event.kind is EventKind.TOKEN and not arrived:
                arrived.append(time.monotonic() - started)

        output = finished(studio, request, f"Sample {seed}", listen).output
        texts.append(output.text)
        speed.append(output.tokens_per_s)
        if arrived:
            first.append(arrived[0] * 1000)
    reference = reference_path or model_path
    perplexity = reference_perplexity(studio, reference, texts, context_tokens)
    spreads = {"perplexity (reference model)": spread([p for p in perplexity if not math.isnan(p)] or [math.nan])}
    spreads["generation tokens/s"] = spread(speed)
    if first:
        spreads["time to first token (ms; max: load)"] = spread(first)
    from pathlib import Path

    return TextEvaluation(
        model=Path(file_of(model_path)).name,
        prompt=prompt,
        samples=tuple(texts),
        distinct_1=metrics.distinct_n(texts, 1),
        distinct_2=metrics.distinct_n(texts, 2),
        self_bleu=metrics.self_bleu(texts),
        reference_model=Path(file_of(reference)).name,
        perplexity=tuple(perplexity),
        spread=spreads,
    )
