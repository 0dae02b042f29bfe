"""The music modality: MusicGen text to music and the MIDI composer (engines/music/engine.py), described once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engines.host.wire import EngineContext, Ran
from engines.modality import Finished, Modality, ModelKind
from engines.music.commands import COMPOSE_COMMAND, CONVERT_MUSIC_COMMAND, MIDI_COMMAND, MUSIC_BENCH, MUSIC_COMMAND
from engines.music.requests import ComposeRequest, MusicClip, MusicOptions, MusicRequest, MusicResult
from engines.pipeline import Delivered


def make_engine(options: MusicOptions, context: EngineContext) -> Any:
    """A (not yet loaded) music engine, in the engine process; ModelFileError for a folder that is not MusicGen."""
    from engines.music.engine import MusicEngine

    return MusicEngine(options)


def prompt_texts(request: MusicRequest | ComposeRequest) -> list[str]:
    """What a person wrote: the description of the music, or the title of a composition."""
    if isinstance(request, MusicRequest):
        return [request.prompt]
    return [request.title] if request.title.strip() else []


def _split(request: Any, ran: Ran) -> list[Finished]:
    made, provenance = ran.output, ran.provenance
    assert provenance is not None
    timings = {k: float(v) for k, v in made.timings.items()}
    # The clip's description is its "text": it passes the output check as spoken words do.
    clip = MusicClip(made.samples, made.sample_rate, made.description, dict(made.parameters), midi=made.midi)
    return [(clip, provenance, timings)]


def _sink(studio: Any, request: Any, delivered: list[Delivered], withheld: list[str]) -> MusicResult:
    """Save the delivered clip as a WAV (watermarked, Content Credentials) and a composition's MIDI beside it, then
    keep it in the library (found by its description or title)."""
    from engines.atomic import write_atomic
    from engines.provenance.files import dated_output_path, save_audio

    item = delivered[0]
    path = save_audio(item, dated_output_path(item, ".wav", "music"))
    midi = getattr(item.output, "midi", b"")
    midi_path = str(write_atomic(path.with_suffix(".mid"), midi)) if midi else ""
    studio.library.add(item, path, kind="music", prompt=item.output.text)  # notes the .mid beside it
    rtf = float(item.record.timings.get("realtime_factor", 0.0))
    return MusicResult(item, str(path), midi_path, rtf, tuple(withheld))


def _samples(models: Mapping[str, str]) -> tuple[Any, ...]:
    samples: list[Any] = [ComposeRequest(MusicOptions(), key="D minor", style="ballad", bars=2, seed=1, title="Dusk")]
    if "music" in models:
        samples.append(MusicRequest(MusicOptions(models["music"]), "calm piano with soft rain", seconds=1.0, seed=1))
    return tuple(samples)


MUSIC = Modality(
    name="music",
    title="music engine",
    requests=(MusicRequest, ComposeRequest),
    options=MusicOptions,
    make_engine=make_engine,
    media="audio",
    prompt_texts=prompt_texts,
    split=_split,
    sink=_sink,
    sample_requests=_samples,
    lost="try again, perhaps with a shorter piece.",
    commands=(MUSIC_COMMAND, COMPOSE_COMMAND, MIDI_COMMAND, CONVERT_MUSIC_COMMAND),
    benches=(MUSIC_BENCH,),
    kinds=(ModelKind("music", "Music", "onnx-musicgen"),),
)
