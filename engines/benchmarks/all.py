"""``main.py bench all``: every benchmark in one run, written as JSON, Markdown and PNG charts.

Each benchmark runs with its own defaults (``--quick`` where it has one, when asked), one after the
other, so that none disturbs another's timings. One that cannot run here (a model not installed, a
package missing) is recorded with its reason and the rest go on. The report holds the machine once,
then each benchmark's conditions and figures beside their baselines, as ``main.py bench NAME`` prints
them; each benchmark with baselines gets a chart of its figures against them.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engines.benchmarks import Figure, Report, Spread, spread_text


def _namespace(bench: Any, quick: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"bench {bench.name}")
    bench.arguments(parser)
    args = parser.parse_args([])
    if quick and hasattr(args, "quick"):
        args.quick = True
    return args


def run_all(benches: Sequence[Any], out: Path, *, quick: bool = False) -> tuple[Report, dict[str, Any]]:
    """Run ``benches`` in order; write ``bench-all.json``, ``bench-all.md`` and ``NAME.png`` charts to ``out``.

    Returns the summary report (one figure a benchmark: its seconds) and the whole result as a dict.
    """
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    summary = Report("all")
    started = time.time()
    for bench in benches:
        began = time.monotonic()
        try:
            report = bench.run(_namespace(bench, quick))
            entry: dict[str, Any] = {"report": report.as_dict(), "table": report.table()}
            status = f"{len(report.figures)} figures"
        except Exception as exc:  # a benchmark that cannot run here is recorded, the others still run
            entry = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=3)}
            status = f"not run: {exc}"
            report = None
        seconds = time.monotonic() - began
        entry["seconds"] = seconds
        results[bench.name] = entry
        summary.figures.append(Figure(f"{bench.name}: time", seconds, "s", None, status[:60]))
        if report is not None and any(f.baseline is not None for f in report.figures):
            chart(report, out / f"{bench.name}.png")
            entry["chart"] = f"{bench.name}.png"
    whole = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "quick": quick,
        "machine": summary.as_dict()["machine"],
        "benches": results,
    }
    (out / "bench-all.json").write_text(json.dumps(whole, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "bench-all.md").write_text(markdown(whole), encoding="utf-8")
    summary.conditions["written to"] = str(out)
    return summary, whole


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _spread(spread: dict[str, Any] | None) -> str:
    return "-" if not spread else spread_text(Spread(**spread))


def markdown(whole: dict[str, Any]) -> str:
    """The report as Markdown: the machine, then a table a benchmark (or why it did not run)."""
    machine = whole["machine"]
    lines = [f"# bench all ({'quick' if whole['quick'] else 'full'}), {whole['started_utc']}", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    for name, entry in whole["benches"].items():
        lines += ["", f"## {name} ({entry['seconds']:.0f} s)", ""]
        if "error" in entry:
            lines.append(f"Not run here: {entry['error']}")
            continue
        report = entry["report"]
        own = {k: v for k, v in report["machine"].items() if k not in machine}
        lines += [f"- {key}: {value}" for key, value in own.items()]
        if own:
            lines.append("")
        lines += [
            "| figure | ember | min..max (n) | baseline | min..max (n) | unit | ratio | goal |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in report["figures"]:
            lines.append(
                f"| {f['name']} | {_cell(f['value'])} | {_spread(f.get('spread'))} | {_cell(f['baseline'])} | "
                f"{_spread(f.get('baseline_spread'))} | {f['unit']} | {_cell(f['ratio'])} | {f['goal']} |"
            )
        if entry.get("chart"):
            lines += ["", f"![{name}]({entry['chart']})"]
    return "\n".join(lines) + "\n"


def chart(report: Report, path: Path, *, width: int = 900) -> None:
    """Draw each figure that has a baseline as a pair of bars (Ember, baseline), scaled per figure; PNG."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [f for f in report.figures if f.baseline is not None]
    row_h, top, label_w = 34, 40, 330
    image = Image.new("RGB", (width, top + row_h * len(rows) + 16), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((12, 12), f"bench {report.bench}: Ember (orange) beside its baseline (grey), each row to its own scale",
              fill="black", font=font)  # fmt: skip
    span = width - label_w - 90
    for i, figure in enumerate(rows):
        y = top + i * row_h
        draw.text((12, y + 8), figure.name[:52], fill="black", font=font)
        largest = max(abs(figure.value), abs(figure.baseline or 0.0), 1e-12)
        for j, (value, colour) in enumerate(((figure.value, (217, 95, 38)), (figure.baseline or 0.0, (150, 150, 150)))):
            length = int(span * abs(value) / largest)
            y0 = y + 4 + j * 13
            draw.rectangle((label_w, y0, label_w + max(length, 1), y0 + 10), fill=colour)
            draw.text((label_w + length + 6, y0 - 1), f"{value:.3g} {figure.unit}", fill="black", font=font)
    image.save(path)
