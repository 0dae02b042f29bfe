"""The dictation modality's command line: ``main.py listen FILE`` and ``main.py bench dictation``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engines.cli import step_printer
from engines.errors import EmberError
from engines.modality import Bench, Command


def _arguments(listen: argparse.ArgumentParser) -> None:
    listen.add_argument("file", help="the recording (WAV, FLAC, OGG or MP3)")
    listen.add_argument("--json", action="store_true", help="print the segments with timestamps, language, timings")
    listen.add_argument(
        "--language",
        metavar="CODE",
        help="the language spoken ('en', 'fr'...); default: detect it (multilingual models)",
    )
    listen.add_argument("--model", metavar="FOLDER", help="a CTranslate2 Whisper folder (default: Whisper tiny.en)")
    listen.add_argument("--words", action="store_true", help="with --json: when each word was said")
    listen.add_argument("--beam", type=int, default=5, help="beam size (default 5; 1 is greedy and faster)")
    listen.add_argument("--no-vad", action="store_true", help="transcribe the silences too (no voice activity filter)")
    listen.add_argument("--threads", type=int, default=0, help="CPU threads (default: physical cores but one)")
    listen.add_argument("--device", choices=["cpu", "auto", "gpu"], default="cpu")
    listen.add_argument("--quiet", action="store_true", help="no progress on standard error")


def _request(args: argparse.Namespace) -> Any:
    from engines.dictation.folder import embedded_whisper_folder, read_whisper_folder
    from engines.dictation.requests import DictationOptions, DictationRequest

    path = Path(args.file).expanduser()
    if not path.is_file():
        raise EmberError(f"There is no file {args.file}. Give the path of a recording.")
    folder = str(read_whisper_folder(args.model).path) if args.model else embedded_whisper_folder()
    options = DictationOptions(folder, device=args.device, threads=args.threads)
    return DictationRequest(
        options,
        audio_path=str(path.resolve()),
        language=args.language,
        word_timestamps=args.words,
        beam_size=args.beam,
        vad=not args.no_vad,
        source=path.name,
    )


def _result(args: argparse.Namespace, delivered: Any) -> int:
    """Print the transcription (or, with --json, all of it and its record's id); exit 0."""
    from engines.pipeline import require_delivered

    item = require_delivered(delivered)
    heard = item.output
    if args.json:
        print(json.dumps({**heard.as_dict(), "output_id": item.record.output_id}, ensure_ascii=False))
    else:
        print(heard.text)
    if not args.quiet:
        language = f"language {heard.language}"
        if heard.language_detected:
            language += f" (detected, p={heard.language_probability:.2f})"
        elif heard.language_note:
            language += " (English-only model: not detected)"
        print(
            f"{heard.duration_s:.1f} s of audio in {heard.transcribe_s:.2f} s "
            f"({heard.real_time_factor:.1f}x real time), {language}",
            file=sys.stderr,
        )
    return 0


LISTEN_COMMAND = Command(
    name="listen",
    help="transcribe a recording with Whisper (the embedded tiny.en, or --model FOLDER)",
    description="Transcribe speech in an audio file with a Whisper model in CTranslate2 format (faster-whisper), "
    "on the CPU. The transcription passes the safety filter and is recorded with its provenance. --json prints "
    "the segments with their start and end times, the language, the duration and the real-time factor. "
    "Exit status: 0 transcribed, 1 error (unreadable, silent or speechless audio), 3 withheld by the safety "
    "filter, 130 cancelled (Ctrl+C).",
    arguments=_arguments,
    request=_request,
    on_event=step_printer(lambda step: f"heard {step.done} of {step.total} s"),
    result=_result,
)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--repetitions", type=int, default=3, help="runs of every clip on each path (median)")
    bench.add_argument("--beam", type=int, default=5, help="beam size on both paths (default 5)")
    bench.add_argument("--threads", type=int, default=0, help="CPU threads on both paths (default: cores but one)")
    bench.add_argument("--model", metavar="FOLDER", help="a CTranslate2 Whisper folder (default: Whisper tiny.en)")


def _bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.dictation import run_dictation_bench

    return run_dictation_bench(
        repetitions=args.repetitions, beam_size=args.beam, threads=args.threads, model=args.model
    )


DICTATION_BENCH = Bench(
    name="dictation",
    help="real-time factor and word error rate of Ember's dictation path beside bare faster-whisper, "
    "on clips the embedded voice speaks",
    arguments=_bench_arguments,
    run=_bench,
)
