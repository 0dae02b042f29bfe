"""Dictation through the Studio: the queue, the engine process, the pipeline, and `main.py listen`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from engines.dictation.requests import DictationRequest, Transcription
from engines.dictation.wer import word_error_rate
from engines.jobs import EventKind, JobEvent
from engines.progress import Step
from engines.studio import Studio


def test_a_clip_runs_through_the_queue_the_engine_process_and_the_pipeline(
    studio: Studio, whisper_options, clip
) -> None:
    said, samples, rate = clip
    events: list[JobEvent] = []
    request = DictationRequest(whisper_options, samples=samples, sample_rate_hz=rate, source="a test clip")
    final = studio.submit(request, priority=1, listener=events.append).wait(300)
    assert final is not None and final.kind is EventKind.RESULT, final and final.data
    heard: Transcription = final.data.output
    assert word_error_rate(said, heard.text) <= 0.1
    assert events[0].kind is EventKind.QUEUED and events[0].data == {"lane": "cpu", "priority": 1}
    assert any(isinstance(e.data, Step) for e in events if e.kind is EventKind.PROGRESS)
    assert not [e for e in events if e.kind is EventKind.TOKEN]  # delivered whole, after the safety check
    record = final.data.record
    assert [d.stage for d in record.decisions][:2] == ["safety", "provenance"]
    assert record.kind == "text" and record.provenance.model_name == "Whisper tiny.en"
    assert record.provenance.settings["language"] == "en" and len(record.provenance.model_sha256) == 64
    assert studio.records.get(record.output_id) is not None
    assert record.timings["audio_s"] == pytest.approx(heard.duration_s)
    ((_, info),) = [(o, i) for o, i in studio.engines.loaded() if o == whisper_options]
    assert info.details["pid"] != os.getpid()


def test_a_refuse_everything_filter_withholds_the_transcription(studio: Studio, whisper_options, clip) -> None:
    from engines.safety.policy import Category, Finding

    studio.safety.text.add_checker(
        lambda text, role: [Finding(Category.PROFANITY, 1.0, "test-checker")] if role == "output" and text else []
    )
    _, samples, rate = clip
    events: list[JobEvent] = []
    final = studio.submit(
        DictationRequest(whisper_options, samples=samples, sample_rate_hz=rate), listener=events.append
    ).wait(300)
    assert final is not None and final.kind is EventKind.BLOCKED and final.data.stage == "safety"
    assert not [e for e in events if e.kind in (EventKind.TOKEN, EventKind.RESULT)]
    (record,) = studio.records.recent()
    assert not record.delivered


def test_a_cancelled_dictation_ends_cancelled_and_the_engine_takes_the_next_one(
    studio: Studio, whisper_options, long_clip, clip
) -> None:
    _, samples, rate = long_clip
    jobs = []

    def listen(event: JobEvent) -> None:
        if event.kind is EventKind.PROGRESS and isinstance(event.data, Step) and event.data.done > 0:
            jobs[0].cancel()

    jobs.append(studio.submit(DictationRequest(whisper_options, samples=samples, sample_rate_hz=rate), listener=listen))
    final = jobs[0].wait(300)
    assert final is not None and final.kind is EventKind.CANCELLED
    assert final.data is None or final.data.output.partial  # what was heard so far, checked and recorded
    said, short, short_rate = clip
    after = studio.submit(DictationRequest(whisper_options, samples=short, sample_rate_hz=short_rate)).wait(300)
    assert after is not None and after.kind is EventKind.RESULT
    assert word_error_rate(said, after.data.output.text) <= 0.1


def test_listen_prints_the_text_and_with_json_the_timestamps(
    ember_home: Path, clip, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import main

    said, samples, rate = clip
    path = tmp_path / "memo.wav"
    soundfile.write(path, samples, rate)
    assert main.main(["listen", str(path), "--quiet"]) == 0
    text = capsys.readouterr().out.strip()
    assert word_error_rate(said, text) <= 0.1
    assert main.main(["listen", str(path), "--json", "--words", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == text and data["language"] == "en" and data["language_detected"] is False
    assert "English only" in data["language_note"]
    assert data["duration_s"] == pytest.approx(len(samples) / rate, abs=0.01) and data["real_time_factor"] > 0
    assert all(s["start_s"] < s["end_s"] for s in data["segments"]) and data["segments"][0]["words"]


def test_listen_answers_silence_corruption_and_a_missing_file_in_one_line(
    ember_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import main

    silent, broken = tmp_path / "silent.wav", tmp_path / "broken.mp3"
    soundfile.write(silent, np.zeros(16000, np.float32), 16000)
    broken.write_text("not really an mp3\n")
    assert main.main(["listen", str(silent), "--quiet"]) == 1
    assert capsys.readouterr().err.strip().endswith("No speech was found in silent.wav (it is silent).")
    assert main.main(["listen", str(broken), "--quiet"]) == 1
    assert "broken.mp3 is not an audio file Ember can read (it holds text, not sound)" in capsys.readouterr().err
    assert main.main(["listen", str(tmp_path / "gone.wav")]) == 1
    assert "There is no file" in capsys.readouterr().err
    assert main.main(["listen", str(silent), "--language", "fr", "--quiet"]) == 1
