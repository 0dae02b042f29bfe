"""The dictation modality: speech to text with Whisper (engines/dictation/engine.py), described once.

The transcription is text, but not a stream a model writes: it arrives whole and goes through the
OutputPipeline as a finished text output (checked by the safety stage like any reply, recorded
with its provenance). Audio carries no text a person wrote, so there are no prompt texts to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engines.dictation.commands import DICTATION_BENCH, LISTEN_COMMAND
from engines.dictation.requests import DictationOptions, DictationRequest, Transcription
from engines.host.wire import EngineContext, Ran
from engines.modality import Finished, Modality
from engines.pipeline import Delivered


def make_engine(options: DictationOptions, context: EngineContext) -> Any:
    """A (not yet loaded) Whisper engine; in the engine process. Raises ModelFileError for a bad folder."""
    from engines.dictation.engine import DictationEngine

    return DictationEngine(options)


def prompt_texts(request: DictationRequest) -> list[str]:
    """None: a recording holds no text until it is transcribed (the transcription is checked as output)."""
    return []


def timings_of(output: Transcription) -> dict[str, float]:
    return {
        "audio_s": output.duration_s,
        "speech_s": output.speech_s,
        "transcribe_s": output.transcribe_s,
        "real_time_factor": output.real_time_factor,
    }


def _split(request: DictationRequest, ran: Ran) -> list[Finished]:
    assert ran.provenance is not None
    return [(ran.output, ran.provenance, timings_of(ran.output))]


def _sink(studio: Any, request: DictationRequest, delivered: list[Delivered], withheld: list[str]) -> Delivered:
    """Keep the delivered transcription in the library (its text, no file); the job ends with it, and where it
    goes then (a message box, stdout) is the caller's."""
    (transcription,) = delivered
    heard = transcription.output
    studio.library.add(
        transcription,
        None,
        kind="transcript",
        text=heard.text,
        extra={"source": heard.source, "language": heard.language},
    )
    return transcription


def _samples(models: Mapping[str, str]) -> tuple[Any, ...]:
    from engines.dictation.clips import SENTENCES, speak
    from engines.dictation.folder import embedded_whisper_folder

    samples, rate = speak(SENTENCES[0])
    folder = models.get("dictation") or embedded_whisper_folder()
    return (DictationRequest(DictationOptions(folder), samples=samples, sample_rate_hz=rate, source="a spoken clip"),)


DICTATION = Modality(
    name="dictation",
    title="dictation engine",
    requests=(DictationRequest,),
    options=DictationOptions,
    make_engine=make_engine,
    media="text",
    prompt_texts=prompt_texts,
    split=_split,
    sink=_sink,
    sample_requests=_samples,
    lost="a recording file is left as it was; try again.",
    commands=(LISTEN_COMMAND,),
    benches=(DICTATION_BENCH,),
)
