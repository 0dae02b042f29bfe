"""`bench dictation`: Ember's dictation path (queue, engine process, pipeline) beside bare faster-whisper.

The clips are sentences the embedded voice (hibari) speaks, made once per run and resampled once to
16 kHz, so both paths get the very same samples. Both load the same Whisper folder with the same
compute type, threads, beam size and voice activity filter; they alternate clip by clip, so drift
in the machine's speed touches both alike. The real-time factor is audio seconds per wall second
(higher is faster; Ember's includes the queue, the pipe to the engine process and the safety
check), the median over repetitions; the word error rate compares each transcription with the
sentence that was spoken (engines/dictation/wer.py), over all clips.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.benchmarks import Figure, Report, median
from engines.dictation.audio import WHISPER_RATE_HZ, resample
from engines.dictation.clips import SENTENCES, speak
from engines.dictation.folder import embedded_whisper_folder, read_whisper_folder
from engines.dictation.requests import DictationOptions, DictationRequest
from engines.dictation.wer import WordErrors, word_errors
from engines.errors import EmberError
from engines.hardware import default_threads
from engines.jobs import EventKind, JobEvent
from engines.progress import Step
from engines.studio import Studio


def _clips() -> list[tuple[str, np.ndarray]]:
    clips = []
    for sentence in SENTENCES:
        samples, rate = speak(sentence)
        clips.append((sentence, resample(samples, rate, WHISPER_RATE_HZ)))
    return clips


def _ember(studio: Studio, request: DictationRequest) -> tuple[float, str]:
    start = time.perf_counter()
    final = studio.submit(request).wait(600)
    wall = time.perf_counter() - start
    if final is None or final.kind is not EventKind.RESULT:
        raise EmberError(f"The Ember path did not finish: {final.data if final else 'no result'}")
    return wall, final.data.output.text


def _bare(model: Any, samples: np.ndarray, language: str | None, beam_size: int) -> tuple[float, str]:
    start = time.perf_counter()
    segments, _ = model.transcribe(samples, language=language, beam_size=beam_size, vad_filter=True)
    text = " ".join(s.text.strip() for s in segments).strip()
    return time.perf_counter() - start, text


def _cancel_ms(studio: Studio, options: DictationOptions, samples: np.ndarray) -> float:
    """From cancel to the job's CANCELLED event, cancelled as the first segment of a long clip is heard."""
    asked: list[float] = []
    job_box: list[Any] = []

    def listen(event: JobEvent) -> None:
        if event.kind is EventKind.PROGRESS and isinstance(event.data, Step) and event.data.done > 0 and not asked:
            asked.append(time.perf_counter())
            job_box[0].cancel()

    job = studio.submit(
        DictationRequest(options, samples=samples, sample_rate_hz=WHISPER_RATE_HZ, source="bench"), listener=listen
    )
    job_box.append(job)
    if job.done:  # it ended before the listener could cancel it
        return float("nan")
    final = job.wait(600)
    ended = time.perf_counter()
    if final is None or final.kind is not EventKind.CANCELLED or not asked:
        return float("nan")
    return (ended - asked[0]) * 1000


def run_dictation_bench(repetitions: int = 3, beam_size: int = 5, threads: int = 0, model: str | None = None) -> Report:
    """Measure real-time factor and word error rate on both paths, and the cancel latency; return the report."""
    import ctranslate2

    from engines.dictation.engine import import_faster_whisper

    faster_whisper = import_faster_whisper()
    WhisperModel = faster_whisper.WhisperModel

    folder = read_whisper_folder(model or embedded_whisper_folder())
    threads = threads or default_threads()
    options = DictationOptions(str(folder.path), device="cpu", compute_type="int8", threads=threads)
    clips = _clips()
    audio_s = sum(len(samples) for _, samples in clips) / WHISPER_RATE_HZ
    language = None if folder.multilingual else "en"
    ember_rtf: list[float] = []
    bare_rtf: list[float] = []
    ember_heard: list[str] = []
    bare_heard: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as home:
        studio = Studio(db_path=Path(home) / "bench.sqlite3")
        try:
            bare = WhisperModel(str(folder.path), device="cpu", compute_type="int8", cpu_threads=threads)

            def request(samples: np.ndarray) -> DictationRequest:
                return DictationRequest(
                    options, samples=samples, sample_rate_hz=WHISPER_RATE_HZ, beam_size=beam_size, source="bench"
                )

            for _, samples in clips[:2]:  # warm-up: the engine process starts and loads the model
                _ember(studio, request(samples))
                _bare(bare, samples, language, beam_size)
            for _ in range(max(1, repetitions)):
                ember_s = bare_s = 0.0
                ember_heard, bare_heard = [], []
                for _, samples in clips:
                    wall, text = _bare(bare, samples, language, beam_size)
                    bare_s += wall
                    bare_heard.append(text)
                    wall, text = _ember(studio, request(samples))
                    ember_s += wall
                    ember_heard.append(text)
                ember_rtf.append(audio_s / ember_s)
                bare_rtf.append(audio_s / bare_s)
            long_clip = np.concatenate([samples for _, samples in clips] * 2)
            cancel_ms = _cancel_ms(studio, options, long_clip)
        finally:
            studio.close()

    def wer(heard: list[str]) -> WordErrors:
        counts = [word_errors(said, text) for (said, _), text in zip(clips, heard, strict=True)]
        return WordErrors(
            sum(c.substitutions for c in counts),
            sum(c.deletions for c in counts),
            sum(c.insertions for c in counts),
            sum(c.reference_words for c in counts),
        )

    ember_wer, bare_wer = wer(ember_heard), wer(bare_heard)
    report = Report(
        "dictation",
        conditions={
            "model": f"{folder.name} ({folder.path})",
            "compute_type": "int8",
            "threads": threads,
            "beam_size": beam_size,
            "vad_filter": True,
            "clips": f"{len(clips)} sentences spoken by hibari, {audio_s:.1f} s of audio in all",
            "repetitions": repetitions,
            "faster_whisper": faster_whisper.__version__,
            "ctranslate2": ctranslate2.__version__,
            "ember_heard": " | ".join(ember_heard),
        },
    )
    report.figures += [
        Figure(
            "real-time factor (audio s per wall s)",
            median(ember_rtf),
            "x",
            median(bare_rtf),
            "within 5% of bare faster-whisper",
        ),
        Figure(
            "word error rate",
            100 * ember_wer.rate,
            "%",
            100 * bare_wer.rate,
            f"the same as bare ({ember_wer.errors} errors in {ember_wer.reference_words} words)",
        ),
        Figure("cancel to cancelled, mid-transcription", cancel_ms, "ms", None, "below 200 ms"),
    ]
    return report
