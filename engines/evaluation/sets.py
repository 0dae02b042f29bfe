"""The prompt sets that ship in ``resources/evaluation/prompt_sets.json``, and running one (the Evaluate panel).

A set is a named list of prompts for one kind (text, image, speech; for music, the composer's styles).
:func:`run_set` evaluates a model on every prompt of a set, one after another, reporting progress and
stopping between samples when asked; :func:`save` keeps the result as JSON and Markdown in the data
folder's ``evaluations`` (the samples themselves are in the library, as every output).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engines.errors import Cancelled, EmberError

SETS_FILE = Path(__file__).resolve().parents[2] / "resources" / "evaluation" / "prompt_sets.json"
KINDS = ("text", "image", "speech", "music")
Spread = tuple[float, float, float]


def prompt_sets(path: Path = SETS_FILE) -> dict[str, dict[str, list[str]]]:
    """{kind: {set name: prompts}}; raises EmberError when the file is missing or malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmberError(f"The evaluation prompt sets cannot be read ({path}): {exc}") from None
    if not isinstance(data, dict) or any(kind not in KINDS for kind in data):
        raise EmberError(f"{path} must map {', '.join(KINDS)} to named lists of prompts.")
    return {kind: {name: [str(p) for p in prompts] for name, prompts in sets.items()} for kind, sets in data.items()}


@dataclass
class SetResult:
    """One set's evaluation: per prompt, its figures as (min, median, max); what it was run with."""

    kind: str
    model: str
    set_name: str
    samples: int
    started_utc: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # {"prompt", "figures": {name: spread}, "extra"}
    seconds: float = 0.0

    def figure_names(self) -> list[str]:
        names: list[str] = []
        for row in self.rows:
            names += [n for n in row["figures"] if n not in names]
        return names

    def markdown(self) -> str:
        lines = [f"# Evaluation: {self.kind}, {self.model}, set '{self.set_name}'", ""]
        lines.append(f"{self.samples} samples a prompt, started {self.started_utc}, {self.seconds:.0f} s.")
        for row in self.rows:
            lines += ["", f"## {row['prompt']}"]
            if row.get("extra", {}).get("alignment"):
                lines += ["", f"Prompt alignment: {row['extra']['alignment']}"]
            lines += ["", "| figure | min | median | max |", "|---|---|---|---|"]
            lines += [f"| {n} | {lo:.3g} | {mid:.3g} | {hi:.3g} |" for n, (lo, mid, hi) in row["figures"].items()]
        return "\n".join(lines) + "\n"


def _figures(evaluation: Any) -> dict[str, Spread]:
    figures: dict[str, Spread] = {}
    for name, shown in (("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"), ("self_bleu", "self-BLEU")):
        if hasattr(evaluation, name):
            value = float(getattr(evaluation, name))
            figures[shown] = (value, value, value)
    for name, value in getattr(evaluation, "distances", {}).items():
        figures[f"pairwise {name.replace('_', ' ')}"] = (value, value, value)
    figures.update({k: tuple(v) for k, v in evaluation.spread.items()})  # type: ignore[misc]
    return figures


def run_set(
    studio: Any,
    kind: str,
    model: str,
    set_name: str,
    prompts: list[str],
    *,
    samples: int = 4,
    progress: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> SetResult:
    """Evaluate ``model`` on each prompt of the set; ``progress`` hears what runs; ``stop`` set ends it between
    prompts with Cancelled (what finished is in the exception's ``partial``)."""
    from engines.evaluation.audio import evaluate_music, evaluate_speech
    from engines.evaluation.image import evaluate_image
    from engines.evaluation.text import evaluate_text

    if kind not in KINDS:
        raise EmberError(f"There is no evaluation of {kind!r}; pick one of {', '.join(KINDS)}.")
    from engines.models.embedded import EMBEDDED_PREFIX

    shown = model[len(EMBEDDED_PREFIX) :] if model.startswith(EMBEDDED_PREFIX) else Path(model).name or model
    result = SetResult(kind, shown, set_name, samples, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    began = time.monotonic()
    say = progress or (lambda message: None)
    groups = [[p] for p in prompts] if kind in ("text", "image") else [prompts]
    if kind == "image" and "clip" not in options:
        from engines.evaluation.image import find_clip_model

        options = {**options, "clip": find_clip_model(studio) or ""}  # looked for once, not once a prompt
    for index, group in enumerate(groups):
        if stop is not None and stop.is_set():
            result.seconds = time.monotonic() - began
            raise Cancelled(result)
        label = group[0] if len(group) == 1 else f"{len(group)} {'styles' if kind == 'music' else 'texts'}"
        say(f"{index + 1} of {len(groups)}: {label}")
        if kind == "text":
            evaluation: Any = evaluate_text(studio, model, group[0], samples=samples, **options)
            extra = {"samples": list(evaluation.samples)}
        elif kind == "image":
            evaluation = evaluate_image(studio, model, group[0], samples=samples, **options)
            extra = {"paths": list(evaluation.paths), "alignment": evaluation.alignment}
        elif kind == "speech":
            evaluation = evaluate_speech(studio, model, group)
            extra = {"heard": list(evaluation.heard)}
        else:
            evaluation = evaluate_music(studio, group, seeds=samples, **options)
            extra = {"pieces": list(evaluation.items)}
        result.rows.append({"prompt": label, "figures": _figures(evaluation), "extra": extra})
    result.seconds = time.monotonic() - began
    return result


def save(result: SetResult, folder: Path | None = None) -> Path:
    """Write the result as JSON and Markdown in ``folder`` (the data folder's ``evaluations``); returns the JSON."""
    from engines.atomic import write_atomic
    from engines.paths import data_dir

    folder = folder or data_dir() / "evaluations"
    folder.mkdir(parents=True, exist_ok=True)
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(result.model).stem).strip("-") or "model"
    stem = f"{result.started_utc.replace(':', '').replace('-', '')}-{result.kind}-{model}"
    path = folder / f"{stem}.json"
    write_atomic(path, json.dumps(asdict(result), indent=2))
    write_atomic(path.with_suffix(".md"), result.markdown())
    return path
