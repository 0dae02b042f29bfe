"""The speech engine on the embedded voices: sentence by sentence, settings that act, seeds, cancel."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engines.errors import Cancelled, EmberError, ModelFileError
from engines.jobs import CancelToken
from engines.media import AudioOutput
from engines.speech.engine import SpeechEngine
from engines.speech.requests import SpeechOptions, SpeechRequest


class RecordingProgress:
    """A Progress that keeps what the engine reported."""

    def __init__(self, previews: bool = False) -> None:
        self.steps: list[tuple[int, int]] = []
        self.previews: list[object] = []
        self._wants = previews

    def token(self, text: str) -> None:
        raise AssertionError("the speech engine streams no text")

    def step(self, done: int, total: int) -> None:
        self.steps.append((done, total))

    def notice(self, message: str) -> None:
        pass

    def preview(self, image: object, index: int = 0) -> None:
        self.previews.append(image)

    def wants_preview(self) -> bool:
        return self._wants


TEXT = "Hello there. This is a test of the voice. It has three sentences."


def speak(engine: SpeechEngine, text: str = TEXT, **settings: object) -> tuple[object, RecordingProgress]:
    progress = RecordingProgress(previews=True)
    request = SpeechRequest(SpeechOptions(engine.options.voice), text, **settings)  # type: ignore[arg-type]
    return engine.run(request, progress, CancelToken()), progress


def test_each_sentence_is_reported_and_previewed_in_order(heart: SpeechEngine) -> None:
    spoken, progress = speak(heart, seed=1)
    assert spoken.sentences == ("Hello there.", "This is a test of the voice.", "It has three sentences.")
    assert progress.steps == [(1, 3), (2, 3), (3, 3)]
    assert [p.text for p in progress.previews] == list(spoken.sentences)
    assert all(isinstance(p, AudioOutput) and p.sample_rate == 24_000 for p in progress.previews)
    # The previews, one after the other, are the clip: the panel can play them as they come.
    assert np.array_equal(np.concatenate([p.samples for p in progress.previews]), spoken.samples)
    assert list(spoken.starts) == [p.parameters["start"] for p in progress.previews]


def test_the_same_seed_gives_the_same_samples_and_another_seed_others(heart: SpeechEngine) -> None:
    first, _ = speak(heart, seed=7)
    again, _ = speak(heart, seed=7)
    other, _ = speak(heart, seed=8)
    assert np.array_equal(first.samples, again.samples)
    assert len(other.samples) == len(first.samples) and not np.array_equal(other.samples, first.samples)


def test_faster_speech_is_shorter_and_pauses_add_silence(heart: SpeechEngine) -> None:
    normal, _ = speak(heart, seed=1, pause_ms=0)
    fast, _ = speak(heart, seed=1, speed=2.0, pause_ms=0)
    paused, _ = speak(heart, seed=1, pause_ms=500)
    assert len(fast.samples) < 0.7 * len(normal.samples)
    # Two pauses between three sentences: exactly one second more.
    assert len(paused.samples) == len(normal.samples) + 2 * 12_000
    start = paused.starts[1] - 12_000
    assert not paused.samples[start : paused.starts[1]].any()


def test_speech_is_audible_and_in_range(heart: SpeechEngine, joe: SpeechEngine) -> None:
    for engine in (heart, joe):
        spoken, _ = speak(engine, "Good morning, everyone.", seed=1)
        assert spoken.duration_s > 0.5
        assert 0.01 < float(np.sqrt(np.mean(spoken.samples**2))) and np.abs(spoken.samples).max() <= 1.5


def test_settings_out_of_range_are_refused_with_the_range() -> None:
    with pytest.raises(ValueError, match=r"speed must be from 0\.5 to 2\.0"):
        SpeechRequest(SpeechOptions(), "Hi.", speed=3.0)
    with pytest.raises(ValueError, match="no text to speak"):
        SpeechRequest(SpeechOptions(), "   ")
    with pytest.raises(ValueError, match="pause must be from 0 to 3000"):
        SpeechRequest(SpeechOptions(), "Hi.", pause_ms=-1)


@pytest.mark.parametrize("voice", ["heart", "joe"])
def test_a_text_with_nothing_to_say_is_a_clear_error(voice: str, request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue(voice)
    with pytest.raises(EmberError, match="nothing the voice can say"):
        speak(engine, "🙂 🙂")


def test_an_unknown_voice_fails_before_loading() -> None:
    with pytest.raises(ModelFileError, match="knows no voice"):
        SpeechEngine(SpeechOptions("nobody"))


def test_provenance_names_the_voice_its_hash_and_the_seed(heart: SpeechEngine) -> None:
    request = SpeechRequest(SpeechOptions("heart"), "Hi.", seed=5)
    spoken = heart.run(request, RecordingProgress(), CancelToken())
    provenance = heart.provenance(request, spoken)
    assert provenance.seed == 5 and len(provenance.model_sha256) == 64
    assert provenance.settings["voice"] == "heart" and provenance.model_path.endswith("hibari.onnx")


def _cancel_after_first_sentence(engine: SpeechEngine, text: str) -> tuple[BaseException | None, float]:
    token = CancelToken()
    stopped: dict[str, object] = {}

    class CancelOnFirstStep(RecordingProgress):
        def step(self, done: int, total: int) -> None:
            super().step(done, total)
            if done == 1:
                threading.Timer(0.05, lambda: (stopped.setdefault("at", time.monotonic()), token.cancel())).start()

    request = SpeechRequest(SpeechOptions(engine.options.voice), text, seed=1)
    try:
        engine.run(request, CancelOnFirstStep(), token)
    except Cancelled as exc:
        return exc, time.monotonic() - float(stopped["at"])  # type: ignore[arg-type]
    return None, 0.0


@pytest.mark.parametrize("voice", ["heart", "joe"])
def test_cancel_stops_within_200_ms_and_keeps_the_sentences_made(voice: str, request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue(voice)
    # Long sentences: a cancel must stop the one being made, not wait for it to end.
    long = "This sentence goes on and on, with clause after clause, and yet more words after those, " * 4
    text = "First. " + " ".join([long.strip() + "."] * 6)
    stop, latency = _cancel_after_first_sentence(engine, text)
    assert isinstance(stop, Cancelled)
    assert latency < 0.2, f"the cancel took {latency * 1000:.0f} ms"
    assert stop.partial is not None and stop.partial.sentences[0] == "First."
