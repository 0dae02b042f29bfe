"""The speech modality's command line: ``main.py speak`` and ``main.py bench speech``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engines.cli import output_json, step_printer
from engines.errors import EmberError
from engines.modality import Bench, Command


def _arguments(speak: argparse.ArgumentParser) -> None:
    speak.add_argument("text", nargs="?", help="what to say, or '-' to read it from standard input")
    speak.add_argument("-o", "--output", metavar="PATH", help="also save here (.wav, .flac or .ogg)")
    speak.add_argument(
        "--voice", default="heart", help="an embedded voice (heart, joe), a catalog voice id, or a piper .onnx file"
    )
    speak.add_argument("--speed", type=float, default=1.0, help="0.5 (slow) to 2.0 (fast); 1.0 is the voice's pace")
    speak.add_argument("--pause", type=int, default=250, metavar="MS", help="silence between sentences (default 250)")
    speak.add_argument("--seed", type=int, default=None, help="fixed seed (hibari voices: same seed, same samples)")
    speak.add_argument("--threads", type=int, default=None, help="CPU threads (default 1)")
    speak.add_argument("--list-voices", action="store_true", help="list the voices that can be used now, and exit")
    speak.add_argument("--quiet", action="store_true", help="no progress on standard error")
    speak.add_argument("--json", action="store_true", help="one JSON line: path, output id, seconds, real-time factor")


def _request(args: argparse.Namespace) -> Any:
    from engines.speech.requests import SpeechOptions, SpeechRequest
    from engines.speech.voices import resolve_voice

    if args.output and Path(args.output).suffix.lower() not in (".wav", ".flac", ".ogg"):
        raise EmberError(f"'{args.output}' must end in .wav, .flac or .ogg.")
    text = sys.stdin.read() if args.text == "-" else (args.text or "")
    if not text.strip():
        raise EmberError("There is no text to speak. Give a text, or '-' to read it from standard input.")
    voice = resolve_voice(args.voice)  # an unknown voice is reported before anything starts
    options = SpeechOptions(voice.path if voice.source == "file" else voice.id, threads=args.threads)
    try:
        return SpeechRequest(options, text, speed=args.speed, pause_ms=args.pause, seed=args.seed)
    except ValueError as exc:
        raise EmberError(str(exc)) from None


def _result(args: argparse.Namespace, result: Any) -> int:
    """Write the clip also to -o; print its path and real-time factor. Exit 0."""
    from engines.speech.audio_files import save_clip

    path = save_clip(result.delivered, Path(args.output).expanduser()) if args.output else Path(result.path)
    audio = result.delivered.output
    seconds = len(audio.samples) / audio.sample_rate
    if args.json:
        extra = {"audio_s": seconds, "sample_rate": audio.sample_rate, "realtime_factor": result.realtime_factor}
        print(output_json(result.delivered, path, result.path, **extra))
    else:
        print(path)
        if not args.quiet:
            print(f"{seconds:.1f} s of speech, {result.realtime_factor:.0f}x faster than real time", file=sys.stderr)
    return 0


def _list_voices(args: argparse.Namespace) -> int:
    from engines.speech.voices import available_voices

    voices = available_voices()
    if args.json:
        print(json.dumps([v.__dict__ for v in voices], indent=2))
        return 0
    for v in voices:
        print(f"{v.id:<30} {v.kind:<7} {v.sample_rate_hz:>6} Hz  {v.source:<9} {v.name}")
    print("Other piper voices: python main.py models --catalog (kind voice), or give a .onnx file.", file=sys.stderr)
    return 0


def _speak(args: argparse.Namespace) -> int:
    from engines.cli import submit

    if args.list_voices:
        return _list_voices(args)
    return submit(SPEAK_COMMAND, args, _request(args))


SPEAK_COMMAND = Command(
    name="speak",
    help="say a text with an ONNX voice and save it as WAV (or FLAC, OGG)",
    description="Speak a text with an embedded voice (heart: hibari; joe: piper), a downloaded catalog voice "
    "or a piper .onnx file. The text passes the safety filter; the clip gets an audio watermark and Content "
    "Credentials and is saved to the library folder (and to -o). Exit status: 0 made, 3 withheld by the "
    "safety filter, 1 error, 130 cancelled.",
    arguments=_arguments,
    request=_request,
    on_event=step_printer(lambda step: f"sentence {step.done}/{step.total}"),
    result=_result,
    run=_speak,
)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--repeats", type=int, default=5, help="repetitions of each path (median reported)")
    bench.add_argument("--voice", action="append", help="only these voices (default: every embedded voice)")


def _bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.speech import run_speech_bench

    return run_speech_bench(repeats=args.repeats, voices=tuple(args.voice or ()))


SPEECH_BENCH = Bench(
    name="speech",
    help="real-time factor of each embedded voice through Ember (queue, engine process, pipeline) beside bare",
    arguments=_bench_arguments,
    run=_bench,
)
