"""The speech modality: text to speech with ONNX voices (engines/speech/engine.py), described once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engines.host.wire import EngineContext, Ran
from engines.media import AudioOutput
from engines.modality import Finished, Modality, ModelKind
from engines.pipeline import Delivered
from engines.speech.commands import SPEAK_COMMAND, SPEECH_BENCH
from engines.speech.requests import SpeechOptions, SpeechRequest, SpeechResult


def make_engine(options: SpeechOptions, context: EngineContext) -> Any:
    """A (not yet loaded) speech engine; in the engine process. Raises ModelFileError for an unknown voice."""
    from engines.speech.engine import SpeechEngine

    return SpeechEngine(options)


def prompt_texts(request: SpeechRequest) -> list[str]:
    """The whole text to speak: checked before any sentence is made, so every streamed sentence was checked."""
    return [request.text]


def _split(request: SpeechRequest, ran: Ran) -> list[Finished]:
    spoken, provenance = ran.output, ran.provenance
    assert provenance is not None
    timings = {k: float(v) for k, v in spoken.timings.items()}
    parameters = {**spoken.parameters, "sentence_starts": list(spoken.starts)}
    return [(AudioOutput(spoken.samples, spoken.sample_rate, spoken.text, parameters), provenance, timings)]


def _sink(studio: Any, request: SpeechRequest, delivered: list[Delivered], withheld: list[str]) -> SpeechResult:
    """Save the delivered clip as a WAV (watermarked, with Content Credentials) in the outputs folder, then keep
    it in the library (found by the words it speaks)."""
    from engines.provenance.files import dated_output_path, save_audio

    item = delivered[0]
    path = save_audio(item, dated_output_path(item, ".wav", "speech"))
    studio.library.add(item, path, kind="speech", prompt=item.output.text)
    rtf = float(item.record.timings.get("realtime_factor", 0.0))
    return SpeechResult(item, str(path), rtf, tuple(withheld))


def _samples(models: Mapping[str, str]) -> tuple[Any, ...]:
    return (SpeechRequest(SpeechOptions("heart"), "Hello there. This is a test.", seed=1),)


SPEECH = Modality(
    name="speech",
    title="speech engine",
    requests=(SpeechRequest,),
    options=SpeechOptions,
    make_engine=make_engine,
    media="audio",
    prompt_texts=prompt_texts,
    split=_split,
    sink=_sink,
    sample_requests=_samples,
    lost="try again.",
    commands=(SPEAK_COMMAND,),
    benches=(SPEECH_BENCH,),
    kinds=(ModelKind("voice", "Speech", "piper", frozenset({"sample_rate_hz"}), frozenset({"sample_rate_hz"})),),
)
