"""`bench provenance` (text part): text watermark schemes compared on the embedded chat model.

Every scheme samples through Ember's own text engine (llama.cpp's sampler chain with
the scheme as its last step, so top-k / top-p / min-p / temperature mean the same for
all), from the same prompts and seeds, interleaved so that drift in the machine's
speed touches all alike. For each scheme the report gives:

- the share of replies detected at p < 3e-5 (z >= 4), and after 10% and 25% of their
  words are replaced by random words;
- false positives on human-written passages (``human_corpus``);
- the perplexity of its replies under the unmarked model (temperature 1, whole
  vocabulary), beside the unmarked replies';
- generation tokens/s beside unmarked generation in the same run.

Schemes: "none"; Kirchenbauer et al. 2023's green list (gamma 0.25, delta 2.0 on the
logits before temperature, previous token as context); SynthID-Text's tournament
(Dathathri et al. 2024; 30 layers of Bernoulli g-values, vectorised as in its reference
implementation); and Ember's Gumbel-max (``engines.provenance.text_mark``).
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from statistics import NormalDist
from typing import Any

import numpy as np

from engines.benchmarks import Figure, Report, median
from engines.benchmarks.human_corpus import human_passages
from engines.jobs import CancelToken
from engines.models.embedded import DEFAULT_TEXT_MODEL
from engines.provenance import text_mark as tm
from engines.text.llama import LlamaEngine
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling
from engines.text.vocab import vocab_tokenizer

# Each asks for a long reply: the goal is about 200-token outputs, and a reply that ends sooner says less.
PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how rain forms, step by step, for a curious ten-year-old.",
    "Write a letter to a friend describing your summer holiday by the sea.",
    "What are the benefits of regular exercise? Give a detailed answer.",
    "Describe a busy market in a small town on a Saturday morning.",
    "Write a blog post about learning to bake bread at home.",
    "Explain the difference between weather and climate with examples.",
    "Tell me the story of a cat who wants to become a sailor.",
    "Write a product description for a handmade wooden chess set.",
    "Describe, in several paragraphs and in plain words, how a bill becomes a law.",
    "Write a speech for a school's end-of-year celebration.",
    "Explain why the sky is blue and why sunsets are red.",
    "Write a diary entry of an astronaut on her first day in space.",
    "Give advice to someone starting their first job in an office.",
    "Describe the life cycle of a butterfly in detail.",
    "Write a review of an imaginary restaurant that serves only soup.",
    "Explain how a computer stores numbers and text.",
    "Tell a fairy tale about a princess who builds bridges.",
    "Write a travel guide entry for a mountain village in winter.",
    "Describe the history of the bicycle in a few paragraphs.",
    "Write an essay about why libraries matter.",
    "Explain how plants make food from sunlight.",
    "Write a story about two friends lost in a forest at night.",
    "Describe what a day in the life of a farmer looks like.",
    "Write instructions for planting a vegetable garden.",
    "Explain what causes the seasons on Earth.",
    "Write a mystery story that begins with a missing key.",
    "Describe the ocean to someone who has never seen it.",
    "Write a persuasive paragraph about reducing plastic waste.",
    "Tell the story of a robot that learns to paint.",
)

# Sizes: (replies per scheme for quality and detection, human passages, replies per scheme for speed,
# Regenerate pairs). "full" takes about 4 minutes on one free core, "quick" about 20 s.
SIZES = {"quick": (2, 300, 1, 1), "full": (36, 2000, 6, 8)}


# -- the schemes compared ----------------------------------------------------------------------
class GreenListChooser:
    """Kirchenbauer et al.: add delta to the logits of a keyed 'green' quarter of the vocabulary, then sample."""

    scheme = "green-list"

    def __init__(self, key: bytes, seed: int, gamma: float = 0.25, delta: float = 2.0, temperature: float = 1.0):
        self.key = tm.subkey(key, "green-list")
        self.gamma, self.bias = gamma, delta / temperature  # delta applies before temperature
        self.rng = np.random.default_rng(seed)
        self.previous: int | None = None
        self.failures = 0

    def choose(self, ids: np.ndarray, logits: np.ndarray) -> int:
        if self.previous is not None:
            green = tm.uniforms(tm.token_hash(tm.context_seed(self.key, (self.previous,)), ids)) < self.gamma
            logits = logits + self.bias * green
        index = int(self.rng.choice(len(ids), p=tm.softmax(logits)))
        self.previous = int(ids[index])
        return index


def detect_green_list(tokens: Sequence[int], key: bytes, gamma: float = 0.25) -> tm.TextMarkResult:
    """The green-list z-test over distinct (previous token, token) pairs."""
    contexts, picked = tm.distinct_pairs(tokens, 1)
    n = len(picked)
    if n == 0:
        return tm.TextMarkResult("too short to tell", 0.0, 0.0, 1.0, 0, len(tokens))
    sub = tm.subkey(key, "green-list")
    seeds = np.array([tm.context_seed(sub, c) for c in contexts.tolist()], dtype=np.uint64)
    green = int((tm.uniforms(tm.token_hash(seeds, picked)) < gamma).sum())
    z = (green - gamma * n) / math.sqrt(n * gamma * (1 - gamma))
    p = NormalDist().cdf(-z)
    return tm.TextMarkResult(tm.verdict_of(n, p), green / n, z, p, n, len(tokens))


class TournamentChooser:
    """SynthID-Text's tournament: the winner's distribution after `layers` knock-out rounds, sampled with the seed."""

    scheme = "tournament"

    def __init__(self, key: bytes, seed: int, layers: int = 30, context_tokens: int = tm.CONTEXT_TOKENS):
        self.key = tm.subkey(key, "tournament")
        self.layers = layers
        self.state = tm.ReplyState(seed, context_tokens)
        self.failures = 0

    def choose(self, ids: np.ndarray, logits: np.ndarray) -> int:
        probs = tm.softmax(logits)
        context = self.state.fresh_context()
        if context is not None:
            bits = tm.token_hash(tm.context_seed(self.key, context), ids)
            for layer in range(self.layers):
                g = ((bits >> np.uint64(layer)) & np.uint64(1)).astype(np.float64)
                probs = probs * (1.0 + g - float(probs @ g))  # two draws a match; the higher g wins
            probs = np.maximum(probs, 0.0)  # rounding can leave -1e-17 where a token lost every match
            probs = probs / probs.sum()
        index = self.state.free(probs)
        self.state.tokens.append(int(ids[index]))
        return index


def detect_tournament(tokens: Sequence[int], key: bytes, layers: int = 30) -> tm.TextMarkResult:
    """Mean g-value over distinct pairs and layers; each g is a fair coin in unmarked text."""
    contexts, picked = tm.distinct_pairs(tokens, tm.CONTEXT_TOKENS, per_context=True)
    n = len(picked)
    if n == 0:
        return tm.TextMarkResult("too short to tell", 0.0, 0.0, 1.0, 0, len(tokens))
    sub = tm.subkey(key, "tournament")
    seeds = np.array([tm.context_seed(sub, c) for c in contexts.tolist()], dtype=np.uint64)
    bits = tm.token_hash(seeds, picked)
    ones = sum(int(((bits >> np.uint64(layer)) & np.uint64(1)).sum()) for layer in range(layers))
    trials = n * layers
    z = (ones - trials / 2) / math.sqrt(trials / 4)
    p = NormalDist().cdf(-z)
    return tm.TextMarkResult(tm.verdict_of(n, p), ones / trials, z, p, n, len(tokens))


@dataclass(frozen=True)
class Scheme:
    name: str
    chooser: Callable[[bytes, int], Any] | None  # None: unmarked
    detect: Callable[[Sequence[int], bytes], tm.TextMarkResult]


def schemes(temperature: float) -> list[Scheme]:
    return [
        Scheme("none", None, tm.detect_tokens),
        Scheme("green-list", partial(GreenListChooser, temperature=temperature), detect_green_list),
        Scheme("tournament", TournamentChooser, detect_tournament),
        Scheme(tm.SCHEME, tm.GumbelChooser, tm.detect_tokens),
    ]


# -- measuring ------------------------------------------------------------------------------------
class _Quiet:
    def token(self, text: str) -> None:
        pass

    def step(self, done: int, total: int) -> None:
        pass

    def notice(self, message: str) -> None:
        pass


class FreeChooser:
    """No watermark: a plain draw from the candidates, as llama.cpp's own last step makes it."""

    scheme = "none"

    def __init__(self, key: bytes, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.failures = 0

    def choose(self, ids: np.ndarray, logits: np.ndarray) -> int:
        return int(self.rng.choice(len(ids), p=tm.softmax(logits)))


class ScoredChooser:
    """Wraps a chooser and adds up -ln p(chosen token) under the model itself (temperature 1, whole vocabulary)."""

    def __init__(self, inner: Any, llm: Any) -> None:
        import llama_cpp

        self.inner, self.scheme, self.failures = inner, inner.scheme, 0
        self._logits = lambda: np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),)
        )
        self.nll = 0.0
        self.tokens = 0

    def choose(self, ids: np.ndarray, logits: np.ndarray) -> int:
        index = self.inner.choose(ids, logits)
        raw = self._logits().astype(np.float64)
        top = raw.max()
        self.nll += float(np.log(np.exp(raw - top).sum()) + top - raw[ids[index]])
        self.tokens += 1
        return index


def replace_words(text: str, fraction: float, pool: Sequence[str], seed: int) -> str:
    """Return ``text`` with ``fraction`` of its words replaced by random words from ``pool``."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(spans)), round(fraction * len(spans))))
    out, last = [], 0
    for i in chosen:
        start, end = spans[i]
        out += [text[last:start], rng.choice(pool)]
        last = end
    return "".join(out) + text[last:]


@dataclass
class _Replies:
    texts: list[str]
    full_length: list[bool]  # ran to max tokens: the "200-token outputs" of the goal
    nll: float = 0.0
    tokens: int = 0
    speeds: list[float] | None = None


def compare_schemes(size: str = "full", max_tokens: int = 200, threads: int = 1, key: bytes | None = None) -> Report:
    """Generate with each scheme and measure detection, false positives, perplexity, speed and robustness.

    ``size`` is "quick" (about 20 s) or "full" (about 4 minutes on one free core).
    Quality and detection come from one set of replies, in which each token's
    log-likelihood under the model is added up as it is chosen ("none" draws with a
    plain chooser there); speed from a second, smaller set on the untouched paths
    (llama.cpp's own sampler for "none"). Returns a Report whose figures are named
    "<scheme>: <what>". Raises ModelFileError when the embedded model is not installed.
    """
    outputs, passage_count, speed_outputs, regenerations = SIZES[size]
    key = key or bytes(range(32))
    sampling = Sampling(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1, max_tokens=max_tokens)
    path = str(DEFAULT_TEXT_MODEL.path())
    options = ModelOptions(path, context_tokens=1024, threads=threads, device="cpu")
    engine = LlamaEngine(options, watermark_key=key)
    tokenize = vocab_tokenizer(path)
    compared = schemes(sampling.temperature)
    started = time.perf_counter()
    engine.load()

    def request(i: int) -> ChatRequest:
        seeded = Sampling(**{**sampling.as_dict(), "seed": 1000 + i})
        return ChatRequest(options, (Message("user", PROMPTS[i % len(PROMPTS)]),), sampling=seeded)

    replies = {s.name: _Replies([], [], speeds=[]) for s in compared}
    for i in range(outputs):  # quality and detection
        for scheme in compared:
            scored: list[ScoredChooser] = []

            def make(
                k: bytes, seed: int, inner: Any = scheme.chooser or FreeChooser, scored: list = scored
            ) -> ScoredChooser:
                scored.append(ScoredChooser(inner(k, seed), engine._llm))
                return scored[-1]

            engine.watermark_key, engine.watermark_chooser = key, make
            out = engine.run(request(i), _Quiet(), CancelToken())
            got = replies[scheme.name]
            got.texts.append(out.text)
            got.full_length.append(out.generated_tokens >= max_tokens)
            got.nll, got.tokens = got.nll + scored[0].nll, got.tokens + scored[0].tokens
    quality_s = time.perf_counter() - started
    for i in range(speed_outputs):  # speed, on the paths as they ship
        for scheme in compared:
            engine.watermark_key = key if scheme.chooser else None
            engine.watermark_chooser = scheme.chooser
            replies[scheme.name].speeds.append(engine.run(request(outputs + i), _Quiet(), CancelToken()).tokens_per_s)
    # Regenerate: seeds KEY_COUNT apart share a Gumbel key, the worst case for getting the same reply again.
    engine.watermark_key, engine.watermark_chooser = key, None
    same = 0
    for i in range(regenerations):
        pair = [
            engine.run(
                ChatRequest(
                    options,
                    (Message("user", PROMPTS[i % len(PROMPTS)]),),
                    sampling=Sampling(**{**sampling.as_dict(), "seed": seed, "max_tokens": 60}),
                ),
                _Quiet(),
                CancelToken(),
            ).text
            for seed in (2000 + i, 2000 + i + tm.KEY_COUNT)
        ]
        same += pair[0] == pair[1]
    engine.unload()
    speed_s = time.perf_counter() - started - quality_s

    passages = [p.text for p in human_passages(passage_count)]
    passage_tokens = [tokenize(p) for p in passages]
    pool = sorted({w.lower() for p in passages[:200] for w in re.findall(r"[A-Za-z]{3,12}", p)})
    report = Report(
        "text watermark",
        conditions={
            "model": DEFAULT_TEXT_MODEL.name,
            "threads": threads,
            "sampling": f"temperature {sampling.temperature}, top-k {sampling.top_k}, top-p {sampling.top_p}, "
            f"min-p {sampling.min_p}, repeat penalty {sampling.repeat_penalty}, max {max_tokens} tokens",
            "replies per scheme": f"{outputs} for quality and detection, {speed_outputs} for speed",
            "human passages": f"{len(passages)} (median {median([len(t) for t in passage_tokens]):.0f} tokens)",
            "detected": f"p < 3e-5 (z >= 4), among the replies that ran to {max_tokens} tokens",
            "perplexity": "of the chosen tokens under the model at temperature 1, whole vocabulary",
            "schemes": "green-list: gamma 0.25, delta 2.0, previous token, on the truncated candidates; "
            f"tournament: 30 layers, {tm.CONTEXT_TOKENS} tokens; "
            f"{tm.SCHEME}: Gumbel-max, {tm.CONTEXT_TOKENS} tokens, {tm.KEY_COUNT} keys",
        },
    )
    base = replies["none"]
    base_ppl = math.exp(base.nll / max(base.tokens, 1))
    base_speed = median(base.speeds or [])
    for scheme in compared:
        got, name = replies[scheme.name], scheme.name

        def found(texts: list[str], scheme: Scheme = scheme) -> list[tm.TextMarkResult]:
            return [scheme.detect(tokenize(t), key) for t in texts]

        full = [t for t, whole in zip(got.texts, got.full_length, strict=True) if whole]
        results = found(full)
        hits = sum(r.verdict == "watermarked" for r in results)
        short = [r for r, whole in zip(found(got.texts), got.full_length, strict=True) if not whole]
        fp = sum(scheme.detect(t, key).verdict == "watermarked" for t in passage_tokens)
        z = median([r.z for r in results])
        report.figures += [
            Figure(
                f"{name}: detected ({hits}/{len(full)}, z~{z:.1f})",
                100.0 * hits / max(len(full), 1),
                "%",
                None,
                ">= 95%" if scheme.chooser else "0%",
            ),
            Figure(f"{name}: false positives ({fp}/{len(passages)})", 100.0 * fp / len(passages), "%", None, "<= 0.1%"),
        ]
        if scheme.chooser is not None:
            for fraction in (0.10, 0.25):
                edited = [replace_words(t, fraction, pool, seed=j) for j, t in enumerate(full)]
                hit = sum(r.verdict == "watermarked" for r in found(edited))
                report.figures.append(
                    Figure(
                        f"{name}: detected, {fraction:.0%} replaced",
                        100.0 * hit / max(len(full), 1),
                        "%",
                        None,
                        "report",
                    )
                )
        ppl = math.exp(got.nll / max(got.tokens, 1))
        speed = median(got.speeds or [])
        report.figures += [
            Figure(
                f"{name}: perplexity",
                ppl,
                "ppl",
                base_ppl if scheme.chooser else None,
                "ratio <= 1.10" if scheme.chooser else "",
            ),
            Figure(
                f"{name}: generation speed",
                speed,
                "tok/s",
                base_speed if scheme.chooser else None,
                "ratio >= 0.95" if scheme.chooser else "",
            ),
        ]
        if scheme.chooser is tm.GumbelChooser:
            report.figures.append(
                Figure(
                    f"{name}: same reply, seeds sharing a key ({same}/{regenerations})",
                    100.0 * same / max(regenerations, 1),
                    "%",
                    None,
                    "0%",
                )
            )
        report.conditions[f"{name}: shorter replies"] = (
            f"{len(short)}, of which detected {sum(r.verdict == 'watermarked' for r in short)}, "
            f"too short to tell {sum(r.verdict == 'too short to tell' for r in short)}"
        )
    report.conditions["seconds (quality / speed / all)"] = (
        f"{quality_s:.0f} / {speed_s:.0f} / {time.perf_counter() - started:.0f}"
    )
    return report
