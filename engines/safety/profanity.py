"""The profanity classifier: alt-profanity-check's linear model, loaded on first use.

alt-profanity-check (MIT) ships a TF-IDF vectoriser and a calibrated linear SVM
pickled with joblib. Its own module loads both at import time, so we load the
two files ourselves, lazily, the first time a text is scored: importing
scikit-learn costs about half a second and most sessions never need it here.

The pickles only load with the scikit-learn version they were made with (the
package pins it exactly). When the package is missing or its model will not
load, the checker fails soft: :attr:`ProfanityModel.available` is False,
:attr:`ProfanityModel.unavailable_reason` says why in words a person can act
on, and :meth:`ProfanityModel.check` returns no findings, so the rules still
stand on their own.

Scoring: the calibrated model averages five sigmoid-calibrated linear SVMs. We
compute that average with numpy from the fitted weights (about 0.05 ms a
sentence instead of 2 ms through ``predict_proba``), after checking at load
time that both give the same probabilities; when they do not (a different model
layout), we use ``predict_proba``.
"""

from __future__ import annotations

import threading
from typing import Any

from engines.safety.policy import Category, Finding

CHECKER = "profanity-model"
_PACKAGE = "alt-profanity-check"
# Sentences to check the fast path against predict_proba on when the model loads.
_PROBES = ("what the hell is this", "have a lovely day", "you are a stupid idiot", "shut up", "kill the lights")


class ProfanityModel:
    """alt-profanity-check's model, loaded on first use and shared by all callers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._reason: str | None = None
        self._vectorizer: Any = None
        self._model: Any = None
        self._fast: tuple[Any, ...] | None = None  # (analyzer, vocabulary, idf, weights, a, b)

    # --- loading --------------------------------------------------------------------

    def load(self) -> bool:
        """Load the model if it is not loaded yet; return whether it is available. Never raises."""
        if self._loaded:
            return self._reason is None
        with self._lock:
            if not self._loaded:
                self._reason = self._load()
                self._loaded = True
        return self._reason is None

    def _load(self) -> str | None:
        """Load vectoriser and model; return None on success, else the reason it is unavailable."""
        try:
            from importlib import resources

            data = resources.files("profanity_check") / "data"
        except (ImportError, ModuleNotFoundError):
            return f"The profanity model is not installed (Python package {_PACKAGE}); only the word rules are used."
        try:
            import warnings

            import joblib

            with warnings.catch_warnings():
                # A version mismatch warns and may still load something wrong: treat it as an error.
                warnings.simplefilter("error")
                vectorizer = joblib.load(data / "vectorizer.joblib")
                model = joblib.load(data / "model.joblib")
            model.predict_proba(vectorizer.transform(["hello"]))
        except Exception as exc:  # unpickling an incompatible model raises all sorts of errors
            try:
                import sklearn

                have = f"scikit-learn {sklearn.__version__}"
            except Exception:
                have = "no working scikit-learn"
            return (
                f"The profanity model could not be loaded ({type(exc).__name__}: {exc}); it needs the scikit-learn "
                f"version that {_PACKAGE} pins, and this install has {have}. Only the word rules are used."
            )
        self._vectorizer = vectorizer
        self._model = model
        self._fast = _fast_path(vectorizer, model)
        return None

    @property
    def available(self) -> bool:
        """Whether the model can score text (loads it on first access)."""
        return self.load()

    @property
    def unavailable_reason(self) -> str | None:
        """Why the model cannot be used, in words for a person; None when it is available."""
        self.load()
        return self._reason

    # --- scoring --------------------------------------------------------------------

    def probabilities(self, texts: list[str]) -> list[float]:
        """Return the probability that each text is profane or offensive, in [0, 1].

        Raises RuntimeError (with :attr:`unavailable_reason`) when the model is unavailable.
        """
        if not self.load():
            raise RuntimeError(self._reason or "The profanity model is unavailable.")
        if self._fast is not None:
            return [_fast_probability(self._fast, t) for t in texts]
        proba = self._model.predict_proba(self._vectorizer.transform(texts))
        return [float(p) for p in proba[:, 1]]

    def check(self, text: str) -> list[Finding]:
        """Return ``[Finding(PROFANITY, p, "profanity-model")]``, or [] when the model is unavailable."""
        if not text.strip() or not self.load():
            return []
        return [Finding(Category.PROFANITY, round(self.probabilities([text])[0], 4), CHECKER, "profanity-model")]


def _fast_path(vectorizer: Any, model: Any) -> tuple[Any, ...] | None:
    """Return the pieces to score without scikit-learn's per-call overhead, or None if the layout differs."""
    try:
        import numpy as np

        classifiers = model.calibrated_classifiers_
        weights = np.stack([c.estimator.coef_.ravel() for c in classifiers], axis=1)  # (features, k)
        intercepts = np.array([c.estimator.intercept_[0] for c in classifiers])
        a = np.array([c.calibrators[0].a_ for c in classifiers])
        b = np.array([c.calibrators[0].b_ for c in classifiers])
        if getattr(vectorizer, "norm", None) != "l2" or getattr(vectorizer, "sublinear_tf", False):
            return None
        fast = (vectorizer.build_analyzer(), vectorizer.vocabulary_, vectorizer.idf_, weights, intercepts, a, b)
        expected = model.predict_proba(vectorizer.transform(list(_PROBES)))[:, 1]
        got = [_fast_probability(fast, t) for t in _PROBES]
        if max(abs(x - y) for x, y in zip(got, expected, strict=True)) > 1e-6:
            return None
        return fast
    except Exception:  # any surprise in the fitted model's layout: use predict_proba
        return None


def _fast_probability(fast: tuple[Any, ...], text: str) -> float:
    """Return the calibrated ensemble's probability for one text (same maths as predict_proba)."""
    import numpy as np

    analyzer, vocabulary, idf, weights, intercepts, a, b = fast
    counts: dict[int, int] = {}
    for token in analyzer(text):
        j = vocabulary.get(token)
        if j is not None:
            counts[j] = counts.get(j, 0) + 1
    if counts:
        idx = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tfidf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) * idf[idx]
        tfidf /= np.sqrt(tfidf @ tfidf)
        decision = tfidf @ weights[idx] + intercepts
    else:
        decision = intercepts
    # Binary sigmoid calibration per classifier, then the ensemble's mean.
    return float(np.mean(1.0 / (1.0 + np.exp(a * decision + b))))


_shared: ProfanityModel | None = None
_shared_lock = threading.Lock()


def shared_model() -> ProfanityModel:
    """Return the process-wide model (loaded on its first use, not here)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ProfanityModel()
        return _shared
