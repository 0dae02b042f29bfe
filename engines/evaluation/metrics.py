"""Diversity and quality proxies, each named for what it is: numpy only, deterministic.

No model here judges quality (no CLIP or captioning model ships in any package): these are
proxies, and the report says so.

Text: distinct-n (unique n-grams over all n-grams, Li et al. 2016) and self-BLEU (each sample's
BLEU-4 against the others as references, smoothed by method 1 of Chen & Cherry 2014, averaged;
Zhu et al. 2018's Texygen): higher distinct-n and lower self-BLEU mean more diverse samples.
Images: mean pairwise distance between samples of one prompt on a fixed feature, 1 - SSIM of the
luma downscaled to 64x64 and the L1 distance of 8x8x8 colour histograms (proxies: 0 for the
same picture); no-reference sharpness (variance of the Laplacian of the luma), colourfulness
(Hasler and Suesstrunk 2003) and exposure (mean luma, shares of crushed blacks and blown
highlights). Audio: peak and RMS level in dBFS, the share of clipped samples and of silence.
Music: the pitch-class entropy of its notes, in bits (0 for one pitch class, log2 12 for all equally).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from PIL import Image

_LUMA = np.array([0.299, 0.587, 0.114])


# -- text ---------------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the unit of distinct-n and self-BLEU)."""
    import re

    return re.findall(r"\w+|[^\w\s]", text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams, pooled over ``texts`` (0 when there are none)."""
    grams = [gram for text in texts for gram in _ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(candidate: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus-style BLEU of one tokenised candidate against references (clipped counts, brevity penalty,
    add-one smoothing of empty orders: Chen and Cherry's method 1)."""
    if not candidate:
        return 0.0
    logs = []
    for n in range(1, max_n + 1):
        counts = Counter(_ngrams(candidate, n))
        most: Counter[tuple[str, ...]] = Counter()
        for reference in references:
            for gram, count in Counter(_ngrams(reference, n)).items():
                most[gram] = max(most[gram], count)
        matched = sum(min(count, most[gram]) for gram, count in counts.items())
        total = max(len(candidate) - n + 1, 0)
        if total == 0:
            break
        logs.append(math.log((matched if matched else 0.1) / total))  # method 1: epsilon 0.1 for empty orders
    closest = min((abs(len(r) - len(candidate)), len(r)) for r in references)[1] if references else 0
    penalty = 1.0 if len(candidate) > closest else math.exp(1 - closest / len(candidate))
    return penalty * math.exp(sum(logs) / len(logs)) if logs else 0.0


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean BLEU of each text against all the others (needs two texts or more; lower is more diverse)."""
    tokens = [words(text) for text in texts]
    if len(tokens) < 2:
        raise ValueError("self-BLEU needs at least two samples")
    return float(np.mean([bleu(t, tokens[:i] + tokens[i + 1 :], max_n) for i, t in enumerate(tokens)]))


# -- images -------------------------------------------------------------------------------------------
def _luma(image: np.ndarray) -> np.ndarray:
    pixels = image.astype(np.float64)
    return pixels if pixels.ndim == 2 else pixels[..., :3] @ _LUMA


def _small_luma(image: np.ndarray, side: int = 64) -> np.ndarray:
    picture = Image.fromarray(np.clip(_luma(image), 0, 255).astype(np.uint8))
    return np.asarray(picture.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Global-window SSIM over 8x8 blocks of two equal grey planes (the standard constants)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8
    blocks_a = a[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64)
    blocks_b = b[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 64)
    ma, mb = blocks_a.mean(axis=1), blocks_b.mean(axis=1)
    va, vb = blocks_a.var(axis=1), blocks_b.var(axis=1)
    cov = ((blocks_a - ma[:, None]) * (blocks_b - mb[:, None])).mean(axis=1)
    values = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(values.mean())


def _histogram(image: np.ndarray, bins: int = 8) -> np.ndarray:
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    index = (rgb.astype(np.int64) * bins // 256).reshape(-1, 3)
    flat = (index[:, 0] * bins + index[:, 1]) * bins + index[:, 2]
    counts = np.bincount(flat, minlength=bins**3).astype(np.float64)
    return counts / counts.sum()


def pairwise_distances(images: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean over all pairs of 1 - SSIM(64x64 luma) and of the L1 distance of colour histograms (0 to 2)."""
    if len(images) < 2:
        raise ValueError("pairwise distances need at least two images")
    small = [_small_luma(image) for image in images]
    hists = [_histogram(image) for image in images]
    pairs = [(i, j) for i in range(len(images)) for j in range(i + 1, len(images))]
    return {
        "luma_ssim_distance": float(np.mean([1.0 - _ssim(small[i], small[j]) for i, j in pairs])),
        "histogram_l1": float(np.mean([np.abs(hists[i] - hists[j]).sum() for i, j in pairs])),
    }


def sharpness(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the luma (higher: more fine detail or noise)."""
    y = _luma(image)
    laplacian = y[1:-1, :-2] + y[1:-1, 2:] + y[:-2, 1:-1] + y[2:, 1:-1] - 4 * y[1:-1, 1:-1]
    return float(laplacian.var())


def colourfulness(image: np.ndarray) -> float:
    """Hasler and Suesstrunk's M (0 for grey; about 15 "slightly", 45 "moderately", 100+ "extremely" colourful)."""
    if image.ndim == 2:
        return 0.0
    r, g, b = (image[..., c].astype(np.float64) for c in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def exposure(image: np.ndarray) -> dict[str, float]:
    """Mean luma (0-255) and the shares of pixels at or below 5 (crushed) and at or above 250 (blown)."""
    y = _luma(image)
    return {"mean_luma": float(y.mean()), "crushed": float((y <= 5).mean()), "blown": float((y >= 250).mean())}


# -- audio and music --------------------------------------------------------------------------------
def audio_levels(samples: np.ndarray, *, silence_dbfs: float = -50.0, frame: int = 1024) -> dict[str, float]:
    """Peak and RMS level (dBFS, float samples in [-1, 1]), the share of clipped samples (|x| >= 0.999) and
    the share of ``frame``-sample frames quieter than ``silence_dbfs``."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("no samples")

    def dbfs(value: float) -> float:
        return 20 * math.log10(max(value, 1e-10))

    frames = x[: (x.size // frame) * frame].reshape(-1, frame) if x.size >= frame else x[None, :]
    frame_rms = np.sqrt((frames**2).mean(axis=1))
    return {
        "peak_dbfs": dbfs(float(np.abs(x).max())),
        "rms_dbfs": dbfs(float(np.sqrt((x**2).mean()))),
        "clipped": float((np.abs(x) >= 0.999).mean()),
        "silence": float((20 * np.log10(np.maximum(frame_rms, 1e-10)) < silence_dbfs).mean()),
    }


def pitch_class_entropy(pitches: Sequence[int], durations: Sequence[float] | None = None) -> float:
    """Entropy in bits of the pitch classes (MIDI numbers mod 12), weighted by duration when given."""
    if not len(pitches):
        raise ValueError("no notes")
    weights = np.ones(len(pitches)) if durations is None else np.asarray(durations, dtype=np.float64)
    classes = np.bincount(np.asarray(pitches, dtype=np.int64) % 12, weights=weights, minlength=12)
    p = classes[classes > 0] / classes.sum()
    return float(-(p * np.log2(p)).sum())
