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
_IMAGE_GOALS = {
    "none": 0.95,
    "jpeg75": 0.95,
    "jpeg50": 0.90,
    "resize50": 0.90,
    "crop10": 0.90,
    "bright1.3": 0.90,
    "bright0.7": 0.90,
}


def image_mark_figures(quick: bool = False) -> tuple[list[Figure], dict[str, Any]]:
    """Run the image watermark evaluation; return its figures and the conditions to print."""
    from engines.benchmarks.image_mark import evaluate, synthetic_images, test_images

    images = synthetic_images(512, 3) if quick else test_images()
    key = bytes(range(32))
    result = evaluate(images, key)
    figures = [
        Figure("image: PSNR mean", result["psnr_db"]["mean"], "dB", None, f">= {IMAGE_PSNR_GOAL_DB:g} dB"),
        Figure("image: PSNR min", result["psnr_db"]["min"], "dB", None, f">= {IMAGE_PSNR_GOAL_DB:g} dB"),
        Figure("image: SSIM mean", result["ssim"]["mean"], "", None, ""),
    ]
    for name, figures_of in result["attacks"].items():
        goal = _IMAGE_GOALS.get(name)
        figures.append(
            Figure(
                f"image: exact decode, {name}",
                100 * figures_of["exact_rate"],
                "%",
                None,
                f">= {goal:.0%}" if goal is not None else "",
            )
        )
        figures.append(Figure(f"image: bit accuracy, {name}", 100 * figures_of["bit_accuracy"], "%", None, ""))
    false = result["false_detections"]
    figures.append(
        Figure(
            f"image: false detections, unmarked (/{false.get('unmarked_trials', false['unmarked_images'])})",
            false["unmarked"],
            "",
            None,
            "0",
        )
    )
    figures.append(
        Figure(f"image: false detections, other key (/{false['wrong_key_images']})", false["wrong_key"], "", None, "0")
    )
    for what in ("embed", "detect"):
        times = result[f"{what}_ms"]
        figures.append(
            Figure(f"image: {what} 1024x1024", times["1024x1024"], "ms", None, f"<= {IMAGE_TIME_GOAL_MS:g} ms")
        )
        figures.append(Figure(f"image: {what} native size", times["native"], "ms", None, ""))
    conditions = {"image set": f"{result['images']} images", "image payload": f"{result['payload_bits']} bits"}
    return figures, conditions


def run_provenance_bench(quick: bool = False, **_: Any) -> Report:
    """Run every part and return one report."""
    from engines.benchmarks.file_provenance import run_file_provenance_bench
    from engines.benchmarks.text_mark import compare_schemes

    report = Report("provenance")
    figures, conditions = image_mark_figures(quick)
    report.conditions.update(conditions)
    report.figures += figures
    text = compare_schemes("quick" if quick else "full")
    report.conditions.update({f"text {k}": v for k, v in text.conditions.items()})
    report.figures += [Figure(f"text {f.name}", f.value, f.unit, f.baseline, f.goal) for f in text.figures]
    files = run_file_provenance_bench(repeats=10 if quick else 20, clips=4 if quick else 10)
    report.conditions.update({f"files {k}": v for k, v in files.conditions.items()})
    report.figures += files.figures
    return report
