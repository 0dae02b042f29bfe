"""``bench music`` on the tiny MusicGen: all figures; the bare loop and transformers make Ember's codes."""

from __future__ import annotations

import math
from pathlib import Path

from engines.benchmarks.music import run_music_bench


def test_music_bench_reports_every_path_and_the_same_codes_as_ember(
    tiny_musicgen_onnx: Path, tiny_musicgen_checkpoint: Path, ember_home: Path
) -> None:
    report = run_music_bench(seconds=0.5, repeats=1)

    figures = {f.name: f for f in report.figures}
    for name in (
        "tiny: Ember via Studio vs transformers",
        "tiny: Ember engine vs transformers",
        "tiny: Ember engine vs bare onnxruntime",
        "tiny: Ember via Studio vs bare onnxruntime",
        "tiny: decoder frames/s, Ember engine vs bare",
        "composer: compose + render 16 bars pop",
        "composer: via Studio (mark, WAV + MIDI)",
        "transcription (Basic Pitch) of it",
    ):
        figure = figures[name]
        assert figure.value > 0 and math.isfinite(figure.value), name
    for name in ("tiny: Ember via Studio vs transformers", "tiny: Ember engine vs bare onnxruntime"):
        assert figures[name].baseline is not None and figures[name].baseline > 0, name
    assert figures["tiny: bare codes equal to Ember's: yes"].value == 1.0
    assert figures["tiny: transformers codes equal to Ember's: yes"].value == 1.0
    assert figures["tiny: Studio clip vs Ember's audio, SNR"].value > 20  # the watermark, nothing else
    assert "0.5 asked" in report.conditions["seconds"]  # a job makes 1 s at least; the report says so
    assert "tiny model" in report.conditions
    assert "tiny: Ember engine vs bare onnxruntime" in report.table()
    assert report.as_dict()["figures"][0]["ratio"] is not None
