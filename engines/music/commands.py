"""The music modality's command line: ``main.py music``, ``main.py compose``, ``main.py midi`` and ``bench music``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from engines.cli import eta_suffix, output_json, step_printer
from engines.errors import EmberError
from engines.modality import Bench, Command


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="PATH", help="also save here (.wav, .flac or .ogg; compose: or .mid)")
    parser.add_argument("--seed", type=int, default=None, help="fixed seed (same seed, same music on this machine)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress on standard error")
    parser.add_argument("--json", action="store_true", help="one JSON line: paths, output id, seconds, parameters")


def _music_arguments(music: argparse.ArgumentParser) -> None:
    music.add_argument("prompt", help="the music to make, e.g. 'calm lo-fi piano with soft rain'")
    music.add_argument("--model", required=True, metavar="FOLDER", help="a MusicGen ONNX folder (see README: Music)")
    music.add_argument("--seconds", type=float, default=10.0, help="length, 1 to 300 s (over 30 s: in windows)")
    music.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance, 1 (off) to 10")
    music.add_argument("--temperature", type=float, default=1.0)
    music.add_argument("--top-k", type=int, default=250, help="0 keeps every code")
    music.add_argument("--top-p", type=float, default=1.0, help="1 turns it off")
    music.add_argument("--greedy", action="store_true", help="the likeliest code every step (no sampling)")
    music.add_argument("--device", choices=("auto", "cpu", "gpu"), default="cpu")
    _common(music)


def _compose_arguments(compose: argparse.ArgumentParser) -> None:
    from engines.music.compose import STYLES

    compose.add_argument("--key", default="C major", help="e.g. 'C major', 'A minor', 'F# dorian' (default C major)")
    compose.add_argument("--style", default="pop", choices=tuple(STYLES), help="default pop")
    compose.add_argument("--tempo", type=float, default=None, metavar="BPM", help="30 to 300 (default: the style's)")
    compose.add_argument("--bars", type=int, default=16, help="1 to 256 (default 16)")
    compose.add_argument("--time", default="", choices=("", "4/4", "3/4"), help="time signature (default: the style's)")
    compose.add_argument("--soundfont", default="", metavar="SF2", help="render with this SoundFont (default: Ember's)")
    compose.add_argument("--title", default="", help="a name for the piece")
    compose.add_argument("--midi", metavar="PATH", help="also write the notes here as a .mid file")
    _common(compose)


def _check_output(args: argparse.Namespace, allowed: tuple[str, ...]) -> None:
    if args.output and Path(args.output).suffix.lower() not in allowed:
        raise EmberError(f"'{args.output}' must end in {', '.join(allowed[:-1])} or {allowed[-1]}.")


def _music_request(args: argparse.Namespace) -> Any:
    from engines.music.requests import MusicOptions, MusicRequest

    _check_output(args, (".wav", ".flac", ".ogg"))
    folder = Path(args.model).expanduser()
    if not folder.is_dir():
        raise EmberError(f"The music model {folder} is not a folder: give the folder of a MusicGen ONNX export.")
    try:
        return MusicRequest(
            MusicOptions(str(folder.resolve()), threads=args.threads, device=args.device),
            args.prompt,
            seconds=args.seconds,
            guidance=args.guidance,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            greedy=args.greedy,
        )
    except ValueError as exc:
        raise EmberError(str(exc)) from None


def _compose_request(args: argparse.Namespace) -> Any:
    from engines.music.requests import ComposeRequest, MusicOptions

    _check_output(args, (".wav", ".flac", ".ogg", ".mid"))
    soundfont = str(Path(args.soundfont).expanduser().resolve()) if args.soundfont else ""
    try:
        return ComposeRequest(
            MusicOptions(soundfont=soundfont, threads=args.threads),
            key=args.key,
            style=args.style,
            tempo_bpm=args.tempo,
            bars=args.bars,
            time_signature=args.time,
            seed=args.seed,
            title=args.title,
        )
    except ValueError as exc:
        raise EmberError(str(exc)) from None


def _result(args: argparse.Namespace, result: Any) -> int:
    """Copy the clip (and MIDI) to -o/--midi; print the path and the speed. Exit 0."""
    from engines.atomic import write_atomic
    from engines.speech.audio_files import save_clip

    wanted = Path(args.output).expanduser() if args.output else None
    midi_out = Path(args.midi).expanduser() if getattr(args, "midi", None) else None
    if wanted is not None and wanted.suffix.lower() == ".mid":
        midi_out, wanted = wanted, None
    path = save_clip(result.delivered, wanted) if wanted is not None else Path(result.path)
    if midi_out is not None:
        if not result.midi_path:
            raise EmberError("This piece has no MIDI: only compositions do.")
        write_atomic(midi_out, Path(result.midi_path).read_bytes())
    audio = result.delivered.output
    seconds = len(audio.samples) / audio.sample_rate
    if args.json:
        extra = {"midi_path": str(midi_out or result.midi_path), "audio_s": seconds, "sample_rate": audio.sample_rate,
                 "realtime_factor": result.realtime_factor}  # fmt: skip
        print(output_json(result.delivered, path, result.path, **extra))
    else:
        print(path)
        if midi_out is not None:
            print(midi_out)
        if not args.quiet:
            print(f"{seconds:.1f} s of music, {result.realtime_factor:.1f}x real time", file=sys.stderr)
    return 0


MUSIC_COMMAND = Command(
    name="music",
    help="make music from a description with a MusicGen ONNX model and save it as WAV",
    description="Text to music with a MusicGen model exported to ONNX (optimum's layout). The description "
    "passes the safety filter; the clip gets an audio watermark and Content Credentials and is saved to the "
    "library folder (and to -o). Exit status: 0 made, 3 withheld by the safety filter, 1 error, 130 cancelled.",
    arguments=_music_arguments,
    request=_music_request,
    on_event=step_printer(lambda step: f"frame {step.done}/{step.total}{eta_suffix(step)}"),
    result=_result,
)

COMPOSE_COMMAND = Command(
    name="compose",
    help="compose a piece in MIDI (melody, chords, bass, drums) and render it to WAV",
    description="Ember's algorithmic composer (a Markov chain over each style's chords, a melody that favours "
    "chord tones; no model) writes a piece in the key, style and tempo given and plays it through a SoundFont "
    "(Ember's own unless --soundfont). The clip is watermarked and saved with its .mid beside it.",
    arguments=_compose_arguments,
    request=_compose_request,
    on_event=step_printer(lambda step: f"rendering {100 * step.done // max(1, step.total)}%"),
    result=_result,
)


def _midi_arguments(midi: argparse.ArgumentParser) -> None:
    midi.add_argument("audio", help="an audio file (.wav, .flac, .mp3, .ogg) of a tune, hummed or played")
    midi.add_argument("-o", "--output", required=True, metavar="PATH.mid", help="where to write the notes")
    midi.add_argument("--tempo", type=float, default=120.0, metavar="BPM", help="the tempo the notes are written at")
    midi.add_argument("--json", action="store_true", help="one JSON line: the notes found and the key")


def _midi(args: argparse.Namespace) -> int:
    """Audio to MIDI with Basic Pitch (no job: a file in, a file out, nothing generated)."""
    from engines.music.compose import write_midi
    from engines.music.transcribe import transcribe

    if Path(args.output).suffix.lower() != ".mid":
        raise EmberError(f"'{args.output}' must end in .mid.")
    found = transcribe(Path(args.audio).expanduser(), tempo_bpm=args.tempo)
    path = write_midi(found.composition, Path(args.output).expanduser())
    if args.json:
        print(json.dumps({"path": str(path), "notes": len(found.events), "key": found.composition.key}))
    else:
        print(path)
        print(f"{len(found.events)} notes, in {found.composition.key} (an estimate)", file=sys.stderr)
    return 0


MIDI_COMMAND = Command(
    name="midi",
    help="turn a recorded tune into MIDI notes (Basic Pitch)",
    description="Transcribe the notes of an audio file with Spotify's Basic Pitch model (onnxruntime) and "
    "write them as a MIDI file to edit. Works best on one instrument or voice at a time.",
    arguments=_midi_arguments,
    run=_midi,
)


def _convert_arguments(convert: argparse.ArgumentParser) -> None:
    convert.add_argument("source", help="a MusicGen checkpoint folder (config.json, safetensors, tokenizer.json)")
    convert.add_argument("-o", "--output", metavar="FOLDER", help="where to write (default: SOURCE-onnx)")


def _convert(args: argparse.Namespace) -> int:
    """Export a MusicGen checkpoint to ONNX; exit 0 on success, 1 with a reason otherwise."""
    from engines.music.convert import export_musicgen

    source = Path(args.source).expanduser()
    out = Path(args.output).expanduser() if args.output else source.with_name(f"{source.name}-onnx")
    print(export_musicgen(source, out, progress=lambda message: print(message, file=sys.stderr)))
    return 0


CONVERT_MUSIC_COMMAND = Command(
    name="convert-music",
    help="export a MusicGen checkpoint folder to the ONNX folder `main.py music` runs",
    description="Export a transformers MusicGen checkpoint (safetensors, e.g. a downloaded facebook/musicgen-small) "
    "to ONNX with optimum. Needs: pip install 'ember-studio[convert]'. Meta's MusicGen weights are "
    "CC-BY-NC-4.0 (non-commercial).",
    arguments=_convert_arguments,
    run=_convert,
)


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("--seconds", type=float, default=4.0, help="seconds of music per run (default 4)")
    bench.add_argument("--repeats", type=int, default=3, help="runs of each path (median reported)")
    bench.add_argument(
        "--small", metavar="FOLDER", default="",
        help="also a random-weight model of MusicGen-small's size (built into FOLDER once; needs torch)",
    )  # fmt: skip


def _bench(args: argparse.Namespace) -> Any:
    from engines.benchmarks.music import run_music_bench

    if not shutil.which("python") and not sys.executable:  # pragma: no cover - always there
        raise EmberError("No Python to run the comparison with.")
    return run_music_bench(seconds=args.seconds, repeats=args.repeats, small=args.small)


MUSIC_BENCH = Bench(
    name="music",
    help="seconds of music per second: Ember beside transformers (torch) and bare onnxruntime, and the composer",
    arguments=_bench_arguments,
    run=_bench,
)
