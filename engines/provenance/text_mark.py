"""The statistical text watermark: Gumbel-max sampling keyed by the installation and the context.

While sampling, each candidate token that survives llama.cpp's own top-k / top-p /
min-p / temperature steps gets a pseudo-random number ``u`` in (0, 1) from a keyed
hash of the previous ``CONTEXT_TOKENS`` tokens and the candidate; the token with the
largest ``u ** (1 / p)`` is chosen (Aaronson's scheme). Over the choice of key that is
an exact sample from the model's distribution ``p``, so the text reads as unmarked
text does; but the chosen tokens have large ``u``, which the key holder can test:
``-ln(1 - u)`` is Exp(1)-distributed in text the key did not choose, and larger in
text it did.

Gumbel-max is deterministic given the context, so that Regenerate still gives another
reply, the request's seed picks one of ``KEY_COUNT`` keys (the detector tries all and
corrects its p-value for having tried 32: about a factor 32), the first ``CONTEXT_TOKENS`` tokens (whose
context lies in the prompt, which the detector never sees) are sampled freely with the
seed, and so is every token whose context already occurred in the reply (which also
stops a repeated phrase from forcing the same continuation again).

The detector re-tokenizes the text with the model's tokenizer, scores each context's
first occurrence only (so repeated (context, token) pairs count once, and a repeated
context, which the sampler left unmarked, not at all), and reports the exact Gamma
tail of the sum, corrected for trying KEY_COUNT keys.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, Protocol

import numpy as np

SCHEME = "gumbel-v1"
CONTEXT_TOKENS = 2  # previous tokens that key each choice: fewer survive editing better, more repeat less
KEY_COUNT = 32  # keys the seed chooses among (Regenerate varies); the detector pays a factor 32 in p
MIN_TOKENS = 100  # below this many scored tokens the detector says "too short to tell"
THRESHOLD_P = 3e-5  # p below this (z >= 4) is "watermarked"

Verdict = Literal["watermarked", "not watermarked", "too short to tell"]

_log = logging.getLogger(__name__)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


@dataclass(frozen=True)
class TextMarkResult:
    """What the detector found: ``p_value`` is the chance that unmarked text scores as high."""

    verdict: Verdict
    score: float  # mean per-token score: 1.0 expected for unmarked text, higher when marked
    z: float  # the normal quantile of p_value (z >= 4 is p < 3e-5)
    p_value: float
    tokens_scored: int  # tokens whose context occurs for the first time
    tokens_total: int


# -- keyed hashing ------------------------------------------------------------------------
def subkey(key: bytes, label: str) -> bytes:
    """Return the 32-byte key for one use of ``key`` (one scheme, one key index)."""
    return hashlib.blake2b(label.encode("utf-8"), key=key, digest_size=32).digest()


def context_seed(key: bytes, context: Sequence[int]) -> int:
    """Return the 64-bit secret seed of one context (the previous tokens)."""
    data = struct.pack(f"<{len(context)}i", *context)
    return int.from_bytes(hashlib.blake2b(data, key=key, digest_size=8).digest(), "little")


def token_hash(seeds: np.ndarray | int, tokens: np.ndarray) -> np.ndarray:
    """Return 64 mixed bits per token (splitmix64's finaliser of seed ^ token * golden), as uint64."""
    with np.errstate(over="ignore"):
        x = np.uint64(seeds) if isinstance(seeds, int) else seeds.astype(np.uint64)
        x = x ^ (tokens.astype(np.uint64) * _GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def indexed_seeds(seeds: np.ndarray | int, index: int) -> np.ndarray:
    """Return the seeds of key number ``index`` (of KEY_COUNT) from the contexts' secret seeds."""
    return token_hash(seeds, np.uint64(0x5EED0000 + index))


def uniforms(bits: np.ndarray) -> np.ndarray:
    """Return numbers in the open interval (0, 1) from 64-bit hashes."""
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


# -- the sampling side ----------------------------------------------------------------------
class Chooser(Protocol):
    """The last step of a sampler chain: picks one of the candidates that survived truncation."""

    scheme: str  # recorded with the output ("gumbel-v1")
    failures: int  # tokens the chooser failed on (they were taken greedily instead)

    def choose(self, ids: np.ndarray, logits: np.ndarray) -> int:
        """Return the index (into ``ids``) of the chosen candidate; ``logits`` are after temperature."""


def softmax(logits: np.ndarray) -> np.ndarray:
    finite = np.isfinite(logits)
    z = np.where(finite, logits - logits[finite].max(), -np.inf)
    e = np.exp(z)
    return e / e.sum()


class ReplyState:
    """The reply so far: its tokens, the contexts already used, and the seed's own random numbers."""

    def __init__(self, seed: int, context_tokens: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.context_tokens = context_tokens
        self.tokens: list[int] = []
        self.seen: set[tuple[int, ...]] = set()

    def fresh_context(self) -> tuple[int, ...] | None:
        """Return the context of the next token, or None when it must be sampled freely."""
        h = self.context_tokens
        if len(self.tokens) < h:
            return None
        context = tuple(self.tokens[-h:])
        if context in self.seen:
            return None
        self.seen.add(context)
        return context

    def free(self, probs: np.ndarray) -> int:
        return int(self.rng.choice(len(probs), p=probs))


class GumbelChooser:
    """Aaronson's Gumbel-max choice: argmax of u ** (1 / p) with u keyed by the context."""

    scheme = SCHEME

    def __init__(self, key: bytes, seed: int, context_tokens: int = CONTEXT_TOKENS, key_count: int = KEY_COUNT) -> None:
        self.key = subkey(key, SCHEME)
        self.index = seed % key_count
        self.state = ReplyState(seed, context_tokens)
        self.failures = 0

    def choose(self, ids: np.ndarray, logits: np.ndarray) -> int:
        probs = softmax(logits)
        context = self.state.fresh_context()
        if context is None:
            index = self.state.free(probs)
        else:
            u = uniforms(token_hash(indexed_seeds(context_seed(self.key, context), self.index), ids))
            with np.errstate(divide="ignore"):
                index = int(np.argmax(np.log(u) / probs))  # p = 0 gives -inf: never chosen
        self.state.tokens.append(int(ids[index]))
        return index


def sampler_chain(
    llm: Any,
    top_k: int,
    top_p: float,
    min_p: float,
    temperature: float,
    repeat_penalty: float,
    chooser: Chooser,
    grammar: Any = None,
) -> Any:
    """Return llama.cpp's sampler chain for these settings with ``chooser`` in place of its random draw.

    The steps and their order are those llama-cpp-python's ``Llama.generate`` builds
    (penalties, grammar, top-k, typical, top-p, min-p, temperature), so every setting keeps its
    meaning; only the final draw among the survivors is the watermark's. ``grammar`` (a
    ``llama_cpp.LlamaGrammar``, or None) leaves only the tokens it allows.
    """
    import llama_cpp
    from llama_cpp import _internals

    chain = _internals.LlamaSampler()
    chain.add_penalties(
        n_vocab=llm.n_vocab(),
        penalty_last_n=llm.last_n_tokens_size,
        penalty_repeat=repeat_penalty,
        penalty_freq=0.0,
        penalty_present=0.0,
    )
    if grammar is not None:
        chain.add_grammar(llm._model, grammar)
    chain.add_top_k(top_k)
    chain.add_typical(1.0, 1)
    chain.add_top_p(top_p, 1)
    chain.add_min_p(min_p, 1)
    chain.add_temp(temperature)

    def apply(cur_p: Any) -> None:
        array = cur_p.contents
        size = int(array.size)
        try:
            raw = (llama_cpp.llama_token_data * size).from_address(ctypes.addressof(array.data.contents))
            data = np.frombuffer(raw, dtype=_TOKEN_DATA)
            array.selected = chooser.choose(data["id"], data["logit"])
        except Exception:  # an exception must not cross into C: llama.cpp aborts on no selection
            _log.exception("The text watermark failed on one token; that token is the most likely one.")
            array.selected = max(range(size), key=lambda i: array.data[i].logit)
            chooser.failures += 1

    chain.add_custom(apply)
    return chain


# -- the detector ---------------------------------------------------------------------------
def distinct_pairs(tokens: Sequence[int], h: int, per_context: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Return the contexts and tokens of each (context, token) pair's first occurrence, as arrays.

    With ``per_context`` only a context's first occurrence counts: the sampler marks
    only those (a repeated context is sampled freely), so later ones carry no signal.
    """
    seen: set[tuple[int, ...]] = set()
    contexts: list[tuple[int, ...]] = []
    picked: list[int] = []
    for i in range(h, len(tokens)):
        pair = tuple(tokens[i - h : i + 1])
        seen_as = pair[:-1] if per_context else pair
        if seen_as not in seen:
            seen.add(seen_as)
            contexts.append(pair[:-1])
            picked.append(pair[-1])
    return np.array(contexts, dtype=np.int64).reshape(-1, h), np.array(picked, dtype=np.int64)


def gamma_log_sf(n: int, x: float) -> float:
    """Return ln P(Gamma(n, 1) >= x) for a whole n: the sum of n Exp(1) variables reaching x."""
    if x <= 0:
        return 0.0
    terms = [k * math.log(x) - math.lgamma(k + 1) for k in range(n)]
    top = max(terms)
    return min(0.0, top + math.log(sum(math.exp(t - top) for t in terms)) - x)


def z_of(log_p: float) -> float:
    """Return the standard normal quantile whose upper tail is exp(log_p)."""
    if log_p > -700:
        return -NormalDist().inv_cdf(min(math.exp(log_p), 1 - 1e-15))
    t = -2 * log_p  # far tail: z^2 ~ t - ln(2 pi t)
    return math.sqrt(t - math.log(2 * math.pi * t))


def best_of(log_p: float, count: int) -> float:
    """Return ln of the chance that the best of ``count`` independent tests reaches p = exp(log_p) (Sidak)."""
    if log_p < -25:
        return log_p + math.log(count)  # 1 - (1 - p)^k = k p to within k p^2
    return math.log(-math.expm1(count * math.log1p(-math.exp(log_p)))) if log_p < 0 else 0.0


def verdict_of(tokens_scored: int, p_value: float) -> Verdict:
    if tokens_scored < MIN_TOKENS:
        return "too short to tell"
    return "watermarked" if p_value < THRESHOLD_P else "not watermarked"


def detect_tokens(
    tokens: Sequence[int], key: bytes, context_tokens: int = CONTEXT_TOKENS, key_count: int = KEY_COUNT
) -> TextMarkResult:
    """Return the detector's finding on a token sequence (see ``detect_text``)."""
    contexts, picked = distinct_pairs(tokens, context_tokens, per_context=True)
    n = len(picked)
    if n == 0:
        return TextMarkResult("too short to tell", 0.0, 0.0, 1.0, 0, len(tokens))
    sub = subkey(key, SCHEME)
    seeds = np.array([context_seed(sub, c) for c in contexts.tolist()], dtype=np.uint64)
    best_sum, best_log_p = 0.0, 0.0
    for k in range(key_count):
        total = float(-np.log1p(-uniforms(token_hash(indexed_seeds(seeds, k), picked))).sum())
        log_p = gamma_log_sf(n, total)
        if k == 0 or log_p < best_log_p:
            best_sum, best_log_p = total, log_p
    log_p = best_of(best_log_p, key_count)
    p = math.exp(log_p)
    return TextMarkResult(verdict_of(n, p), best_sum / n, z_of(log_p), p, n, len(tokens))


def detect_text(text: str, key: bytes, tokenize: Callable[[str], list[int]]) -> TextMarkResult:
    """Return whether ``text`` carries this key's watermark, with its score, z and p-value.

    ``tokenize`` is the tokenizer of the model that may have written it (see
    ``engines.text.vocab``). Below ``MIN_TOKENS`` scored tokens the verdict is
    "too short to tell". Raises nothing for any text.
    """
    return detect_tokens(tokenize(text), key)
