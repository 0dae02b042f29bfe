"""``main.py bench provenance``: every watermark and the file credentials, measured in one run.

Images: embed/detect times, PSNR and SSIM, exact-decode rate and bit accuracy per
attack, false detections (unmarked images and another installation's key).
Text: detection and false-positive rates, perplexity and tokens/s with and
without, and robustness to replaced words, for each scheme compared. Files: C2PA
signing time and size per format; audio: the mark's SNR and detection per attack.
"""

from __future__ import annotations

from typing import Any

from engines.benchmarks import Figure, Report

IMAGE_PSNR_GOAL_DB = 40.0
IMAGE_TIME_GOAL_MS = 300.0
IMAGE_GEOMETRY_GOAL = 0.90
_IMAGE_GOALS = {
    "none": 0.95,
    "jpeg75": 0.95,
    "jpeg50": 0.90,
    "resize50": 0.90,
    "crop10": 0.90,
    "bright1.3": 0.90,
    "bright0.7": 0.90,
}
# every unmarked image is also checked under these (the searches that could be fooled: none, turned, mirrored)
_NULL_ATTACKS = ("none", "jpeg75", "crop10", "rotate5", "turn90", "mirror", "rotate4+crop10+scale0.7+jpeg75")


def image_mark_figures(quick: bool = False) -> tuple[list[Figure], dict[str, Any]]:
    """Run the image watermark evaluation; return its figures and the conditions to print.

    Every attack is measured on each image set: the real photographs at native size and at 1024x1024,
    and the generated-looking synthetics (``quick``: three synthetics at 512 only).
    """
    from engines.benchmarks.image_mark import ATTACKS, GEOMETRY_ATTACKS, image_sets, synthetic_images, timings
    from engines.provenance.image_mark import PAYLOAD_BITS

    sets = {"synthetic 512": synthetic_images(512, 3)} if quick else image_sets()
    key = bytes(range(32))
    attacks = {**ATTACKS, **GEOMETRY_ATTACKS}
    goals = {**_IMAGE_GOALS, **dict.fromkeys(GEOMETRY_ATTACKS, IMAGE_GEOMETRY_GOAL)}
    figures: list[Figure] = []
    conditions: dict[str, Any] = {}
    psnrs, unmarked, trials, wrong, wrong_trials = [], 0, 0, 0, 0
    for label, images in sets.items():
        result = evaluate_set(images, key, attacks)
        conditions[f"image set: {label}"] = f"{result['images']} images"
        psnrs.append(result["psnr_db"])
        figures.append(
            Figure(f"image: PSNR min, {label}", result["psnr_db"]["min"], "dB", None, f">= {IMAGE_PSNR_GOAL_DB:g}")
        )
        figures.append(Figure(f"image: SSIM mean, {label}", result["ssim"]["mean"], "", None, ""))
        for name, measured in result["attacks"].items():
            goal = goals.get(name)
            figures.append(
                Figure(
                    f"image: decode {name}, {label}",
                    100 * measured["exact_rate"],
                    "%",
                    None,
                    f">= {goal:.0%}" if goal is not None else "",
                )
            )
            figures.append(
                Figure(f"image: bit accuracy {name}, {label}", 100 * measured["bit_accuracy"], "%", None, "")
            )
        false = result["false_detections"]
        unmarked += false["unmarked"]
        trials += false["unmarked_trials"]
        wrong += false["wrong_key"]
        wrong_trials += false["wrong_key_images"]
    figures.append(Figure("image: PSNR mean, all sets", sum(p["mean"] for p in psnrs) / len(psnrs), "dB", None, ""))
    figures.append(Figure(f"image: false detections, unmarked (/{trials})", unmarked, "", None, "0"))
    figures.append(Figure(f"image: false detections, other key (/{wrong_trials})", wrong, "", None, "0"))
    first = next(iter(sets.values()))
    times = timings(first, key, rounds=2 if quick else 5)
    for what, label in (
        ("embed", "embed"),
        ("detect", "detect, untouched"),
        ("detect_turned", "detect, turned 5 degrees"),
        ("detect_unmarked", "detect, unmarked (every search)"),
    ):
        figures.append(Figure(f"image: {label} 1024x1024", times[what], "ms", None, f"<= {IMAGE_TIME_GOAL_MS:g} ms"))
    conditions["image payload"] = f"{PAYLOAD_BITS} bits"
    conditions["image null trials"] = "each unmarked image as is and " + ", ".join(_NULL_ATTACKS[1:])
    return figures, conditions


def evaluate_set(images: list[Any], key: bytes, attacks: dict[str, Any]) -> dict[str, Any]:
    """One image set through every attack (engines.benchmarks.image_mark.evaluate)."""
    from engines.benchmarks.image_mark import evaluate

    return evaluate(images, key, attacks=attacks, null_attacks=tuple(a for a in _NULL_ATTACKS if a in attacks))


def run_provenance_bench(quick: bool = False, only: str | None = None, **_: Any) -> Report:
    """Run every part (or ``only`` "image", "text" or "files") and return one report."""
    from engines.benchmarks.file_provenance import run_file_provenance_bench
    from engines.benchmarks.text_mark import compare_schemes

    report = Report("provenance")
    if only in (None, "image"):
        figures, conditions = image_mark_figures(quick)
        report.conditions.update(conditions)
        report.figures += figures
    if only in (None, "text"):
        text = compare_schemes("quick" if quick else "full")
        report.conditions.update({f"text {k}": v for k, v in text.conditions.items()})
        report.figures += [Figure(f"text {f.name}", f.value, f.unit, f.baseline, f.goal) for f in text.figures]
    if only in (None, "files"):
        files = run_file_provenance_bench(repeats=10 if quick else 20, clips=4 if quick else 10)
        report.conditions.update({f"files {k}": v for k, v in files.conditions.items()})
        report.figures += files.figures
    return report
