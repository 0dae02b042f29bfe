"""Train the safety filter's classifier head: ``python -m engines.safety.semantic_train``.

Reads the training prompts (``resources/safety/training/*.jsonl``, written for Ember)
and the development split of ``tests/data/safety_prompts.jsonl`` (profanity rows left out:
that category is the profanity model's), embeds them with the quantized MiniLM
(:class:`engines.safety.semantic.Embedder`), fits a multinomial logistic regression with class
weights (half benign, half the unsafe categories) and an L2 penalty (scipy's L-BFGS, deterministic),
reports 5-fold cross-validated figures on the training data, and writes
``resources/safety/semantic_head.npz``.
Nothing from the fresh evaluation rounds (``tests/data/safety_rounds/``) is read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from engines.safety.semantic import BENIGN, CATEGORIES, HEAD_PATH, Embedder, Head

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "resources" / "safety" / "training"
DEV_SET = ROOT / "tests" / "data" / "safety_prompts.jsonl"
CLASSES = (BENIGN, *(c.value for c in CATEGORIES))
L2 = 1e-4  # per example, on the weights (not the bias); chosen by cross-validation on the training data


def training_rows() -> list[tuple[str, str]]:
    """(text, label) of every training example."""
    rows = []
    for path in sorted(TRAINING.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                rows.append((item["text"], item["label"]))
    for line in DEV_SET.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if item.get("split") == "dev" and item["label"] in CLASSES:
                rows.append((item["text"], item["label"]))
    unknown = {label for _, label in rows if label not in CLASSES}
    if unknown:
        raise ValueError(f"unknown labels in the training data: {sorted(unknown)}")
    return rows


def fit(vectors: np.ndarray, labels: np.ndarray, l2: float = L2) -> tuple[np.ndarray, np.ndarray]:
    """Weights (dims x classes) and bias of a weighted multinomial logistic regression (see the weights below)."""
    from scipy.optimize import minimize

    n, d = vectors.shape
    k = len(CLASSES)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    # Half the weight on benign prompts, half shared by the unsafe categories: balancing all seven
    # classes would make "benign" a 1-in-7 prior, and short, plain texts ("A reply to read.") then
    # land in some unsafe category.
    share = np.where(np.arange(k) == 0, 0.5, 0.5 / (k - 1))
    sample_weight = (n * share / np.maximum(counts, 1))[labels]
    onehot = np.eye(k)[labels]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        logits = vectors @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -(sample_weight * (onehot * log_p).sum(axis=1)).sum() / n + l2 * (w**2).sum() / 2
        diff = (np.exp(log_p) - onehot) * sample_weight[:, None] / n
        return value, np.concatenate([(vectors.T @ diff + l2 * w).ravel(), diff.sum(axis=0)])

    result = minimize(loss, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return result.x[: d * k].reshape(d, k), result.x[d * k :]


def cross_validated(vectors: np.ndarray, labels: np.ndarray, folds: int = 5) -> dict[str, float]:
    """Accuracy, and recall and false positives at the standard level, of ``folds``-fold cross-validation."""
    from engines.safety.semantic import calibrated

    order = np.random.default_rng(0).permutation(len(labels))
    right = caught = false = 0
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        w, b = fit(vectors[train], labels[train])
        logits = vectors[test] @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        right += int((logits.argmax(axis=1) == labels[test]).sum())
        blocked = np.array([calibrated(1 - q) >= 0.6 for q in p[:, 0]])
        caught += int((blocked & (labels[test] != 0)).sum())
        false += int((blocked & (labels[test] == 0)).sum())
    unsafe, benign = int((labels != 0).sum()), int((labels == 0).sum())
    return {"accuracy": right / len(labels), "recall": caught / unsafe, "false_positives": false / benign}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=HEAD_PATH)
    args = parser.parse_args(argv)
    rows = training_rows()
    texts = [t for t, _ in rows]
    labels = np.array([CLASSES.index(label) for _, label in rows])
    embedder = Embedder()
    vectors = embedder.embed(texts).astype(np.float64)
    counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    print(f"{len(rows)} examples: {counts}")
    cv = cross_validated(vectors, labels)
    print(
        f"5-fold cross-validation, the meaning layer alone: accuracy {cv['accuracy']:.3f}, at the standard level "
        f"recall {cv['recall']:.3f} and false positives {cv['false_positives']:.3f}"
    )
    weights, bias = fit(vectors, labels)
    trained_on = f"{TRAINING.relative_to(ROOT)}/*.jsonl + dev split of {DEV_SET.relative_to(ROOT)}: {counts}"
    Head(CLASSES, weights, bias, trained_on).save(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
