"""Music through the Studio: the composer and MusicGen checked, watermarked, saved with a record; MIDI beside
the WAV; previews only after the check; the same seed gives the same piece; cancel; clear errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.jobs import EventKind, JobEvent
from engines.media import AudioOutput
from engines.modalities import modality_of
from engines.music.compose import compose, parse_midi
from engines.music.requests import ComposeRequest, MusicOptions, MusicRequest, MusicResult
from engines.progress import Preview, Step
from engines.studio import Studio

pytest.importorskip("tinysoundfont")


def run(studio: Studio, request: Any, listener: Any = None) -> tuple[JobEvent, list[JobEvent]]:
    events: list[JobEvent] = []

    def listen(event: JobEvent) -> None:
        events.append(event)
        if listener:
            listener(event)

    final = studio.submit(request, listener=listen).wait(120)
    assert final is not None
    return final, events


def test_music_is_one_modality_with_two_requests_and_checks_what_a_person_wrote() -> None:
    described = MusicRequest(MusicOptions("/models/musicgen"), "calm piano with rain")
    composed = ComposeRequest(title="Evening rain")
    modality = modality_of(described)
    assert modality is not None and modality is modality_of(composed) and modality.media == "audio"
    assert modality.prompt_texts(described) == ["calm piano with rain"]
    assert modality.prompt_texts(composed) == ["Evening rain"]
    assert modality.prompt_texts(ComposeRequest()) == []


def test_a_composition_is_watermarked_saved_with_its_midi_and_the_same_seed_makes_it_again(studio: Studio) -> None:
    from engines.provenance.verify import verify_file

    request = ComposeRequest(key="A minor", style="lofi", bars=4, seed=7, title="Rain on the window")
    final, events = run(studio, request)
    assert final.kind is EventKind.RESULT, final.data
    result: MusicResult = final.data
    assert [d.stage for d in result.delivered.record.decisions] == ["safety", "provenance"]
    assert result.delivered.record.decisions[1].checker == "audio-mark"
    report = verify_file(Path(result.path), studio.key, find_records=studio._find_records)
    assert report.watermark is not None and report.watermark.found
    assert report.credentials is not None and report.credentials.valid
    assert [r.output_id for r in report.records] == [result.delivered.record.output_id]
    # The notes beside the clip are the composition the seed makes.
    midi = Path(result.midi_path)
    assert midi.with_suffix(".wav") == Path(result.path)
    written = parse_midi(midi.read_bytes())
    expected = compose("A minor", "lofi", bars=4, seed=7)
    assert [t.notes for t in written.tracks] == [t.notes for t in expected.tracks]
    record = result.delivered.record
    assert record.provenance.seed == 7 and record.provenance.settings["style"] == "lofi"
    assert record.provenance.settings["made_on"]["kernels"].startswith("tinysoundfont")
    assert any(isinstance(e.data, Step) for e in events)
    # Re-run: the same settings and seed, the same samples (before the mark, which carries each output's id).
    again, _ = run(studio, request)
    a, b = result.delivered.output, again.data.delivered.output
    assert a.sample_rate == b.sample_rate == 32_000 and len(a.samples) == len(b.samples)
    assert relative_difference(a.samples, b.samples) < 0.1  # only the two marks differ
    other, _ = run(studio, ComposeRequest(key="A minor", style="lofi", bars=4, seed=8))
    assert len(other.data.delivered.output.samples) == len(a.samples)
    assert relative_difference(other.data.delivered.output.samples, a.samples) > 0.5


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """RMS of the difference over RMS of ``a``: two marks of one clip differ by a few percent."""
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a**2)))


def test_the_engine_makes_the_same_samples_for_the_same_seed(tiny_musicgen_onnx: Path) -> None:
    from engines.jobs import CancelToken
    from engines.music.engine import MusicEngine

    class Quiet:
        def step(self, done: int, total: int) -> None: ...
        def notice(self, message: str) -> None: ...
        def preview(self, image: Any, index: int = 0) -> None: ...
        def wants_preview(self) -> bool:
            return False

    composer = MusicEngine(ComposeRequest().model)
    piece = ComposeRequest(key="G major", style="waltz", bars=4, seed=5)
    first, second = (composer.run(piece, Quiet(), CancelToken()) for _ in range(2))
    assert np.array_equal(first.samples, second.samples) and first.midi == second.midi
    musicgen = MusicEngine(MusicOptions(str(tiny_musicgen_onnx)))
    asked = MusicRequest(musicgen.options, "bright brass fanfare", seconds=2.0, seed=9)
    a, b = (musicgen.run(asked, Quiet(), CancelToken()) for _ in range(2))
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.samples, b.samples)
    c = musicgen.run(
        MusicRequest(musicgen.options, "bright brass fanfare", seconds=2.0, seed=10), Quiet(), CancelToken()
    )
    assert not np.array_equal(a.codes, c.codes)


def test_an_unsafe_title_is_refused_before_anything_is_made(studio: Studio) -> None:
    final, events = run(studio, ComposeRequest(bars=2, title="how to build a pipe bomb step by step"))
    assert final.kind is EventKind.BLOCKED
    assert not [e for e in events if e.kind in (EventKind.RESULT, EventKind.PREVIEW)]


def test_musicgen_through_the_studio_previews_after_the_mark_and_repeats_with_the_seed(
    studio: Studio, tiny_musicgen_onnx: Path
) -> None:
    request = MusicRequest(MusicOptions(str(tiny_musicgen_onnx)), "calm piano with soft rain", seconds=5.0, seed=3,
                           preview=True)  # fmt: skip
    final, events = run(studio, request)
    assert final.kind is EventKind.RESULT, final.data
    result: MusicResult = final.data
    audio = result.delivered.output
    assert audio.sample_rate == 32_000 and abs(len(audio.samples) / audio.sample_rate - 5.0) < 0.1
    assert result.midi_path == "" and Path(result.path).is_file()
    previews = [e.data for e in events if isinstance(e.data, Preview)]
    assert previews and all(isinstance(p.image, AudioOutput) for p in previews)
    # A preview is audio the pipeline's hooks let through: it comes after the prompt check, never before.
    kinds = [e.kind for e in events]
    assert kinds.index(EventKind.PREVIEW) < kinds.index(EventKind.RESULT)
    steps = [e.data for e in events if isinstance(e.data, Step)]
    assert steps[-1].done == steps[-1].total
    record = result.delivered.record
    assert record.provenance.seed == 3 and record.provenance.settings["guidance"] == 3.0
    again, _ = run(studio, MusicRequest(MusicOptions(str(tiny_musicgen_onnx)), "calm piano with soft rain",
                                        seconds=5.0, seed=3))  # fmt: skip
    assert relative_difference(audio.samples, again.data.delivered.output.samples) < 0.1


def test_a_cancel_stops_musicgen_between_frames_within_200_ms(studio: Studio, tiny_musicgen_onnx: Path) -> None:
    started = threading.Event()

    def listen(event: JobEvent) -> None:
        if isinstance(event.data, Step) and event.data.done > 5:
            started.set()

    job = studio.submit(
        MusicRequest(MusicOptions(str(tiny_musicgen_onnx)), "a long drone", seconds=120.0, seed=1), listener=listen
    )
    assert started.wait(60)
    t0 = time.perf_counter()
    job.cancel()
    final = job.wait(10)
    assert final is not None and final.kind is EventKind.CANCELLED
    assert time.perf_counter() - t0 < 0.2 + 0.3  # 200 ms goal, with room for a loaded CI machine


def test_a_folder_that_is_not_musicgen_is_refused_with_a_reason(studio: Studio, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    final, _ = run(studio, MusicRequest(MusicOptions(str(tmp_path)), "calm piano"))
    assert final.kind is EventKind.FAILED
    assert "MusicGen" in str(final.data)
    with pytest.raises(ValueError, match="MusicGen model"):
        MusicRequest(MusicOptions(), "calm piano")
    with pytest.raises(ValueError, match="tempo"):
        ComposeRequest(tempo_bpm=500)


def test_an_unknown_style_or_key_is_a_clear_error(studio: Studio) -> None:
    final, _ = run(studio, ComposeRequest(key="H major", bars=2))
    assert final.kind is EventKind.FAILED and "key" in str(final.data).lower()
    final, _ = run(studio, ComposeRequest(style="polka", bars=2))
    assert final.kind is EventKind.FAILED and "style" in str(final.data)
