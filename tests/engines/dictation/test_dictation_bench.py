"""`bench dictation`: both paths hear the same clips with the same settings, so they must hear the same words."""

from __future__ import annotations

import math
from pathlib import Path


def test_the_bench_measures_both_paths_on_the_same_clips(ember_home: Path) -> None:
    from engines.benchmarks.dictation import run_dictation_bench

    report = run_dictation_bench(repetitions=1, beam_size=1)
    figures = {f.name.split(" (")[0]: f for f in report.figures}
    speed, wer, cancel = (
        figures["real-time factor"],
        figures["word error rate"],
        figures["cancel to cancelled, mid-transcription"],
    )
    assert speed.value > 0 and speed.baseline is not None and speed.baseline > 0
    # Same model, samples, threads, beam and VAD: Ember's path hears exactly what bare faster-whisper hears.
    assert wer.value == wer.baseline and wer.value <= 10.0
    assert math.isnan(cancel.value) or cancel.value > 0
    table = report.table()
    assert "real-time factor" in table and "faster-whisper" in table
    assert report.as_dict()["figures"][0]["ratio"] == speed.value / speed.baseline
