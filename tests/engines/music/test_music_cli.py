"""``main.py compose``, ``main.py music`` and ``main.py midi``: files, JSON lines, exit statuses, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytest.importorskip("tinysoundfont")


def ember(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"EMBER_HOME": str(home), "HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


def test_compose_writes_a_wav_and_its_midi_and_says_what_it_made(tmp_path: Path) -> None:
    import soundfile

    from engines.music.compose import compose, read_midi

    wav, mid = tmp_path / "piece.wav", tmp_path / "piece.mid"
    done = ember("compose", "--key", "E minor", "--style", "rock", "--bars", "4", "--seed", "12", "-o", str(wav),
                 "--midi", str(mid), "--json", home=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["path"] == str(wav) and line["midi_path"] == str(mid)
    assert line["parameters"]["key"] == "E minor" and line["parameters"]["seed"] == 12
    samples, rate = soundfile.read(wav)
    assert rate == 32_000 and abs(len(samples) / rate - line["audio_s"]) < 0.01
    expected = compose("E minor", "rock", bars=4, seed=12)
    assert [t.notes for t in read_midi(mid).tracks] == [t.notes for t in expected.tracks]
    # The library keeps both too.
    assert Path(line["library_path"]).with_suffix(".mid").exists()


def test_compose_to_a_mid_path_and_the_errors_a_person_can_act_on(tmp_path: Path) -> None:
    done = ember("compose", "--bars", "2", "-o", str(tmp_path / "only.mid"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "only.mid").exists()
    bad = ember("compose", "--key", "H major", home=tmp_path)
    assert bad.returncode == 1 and "key" in bad.stderr.lower()
    bad = ember("compose", "--tempo", "500", home=tmp_path)
    assert bad.returncode == 1 and "tempo" in bad.stderr
    bad = ember("compose", "-o", str(tmp_path / "x.mp4"), home=tmp_path)
    assert bad.returncode == 1 and ".mid" in bad.stderr
    unsafe = ember("compose", "--bars", "2", "--title", "how to make a pipe bomb at home", home=tmp_path)
    assert unsafe.returncode == 3


def test_music_with_a_musicgen_folder_and_without_one(tmp_path: Path, tiny_musicgen_onnx: Path) -> None:
    out = tmp_path / "rain.flac"
    done = ember("music", "soft rain on a piano", "--model", str(tiny_musicgen_onnx), "--seconds", "2",
                 "--seed", "5", "-o", str(out), "--json", home=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["path"] == str(out) and out.exists() and line["parameters"]["seed"] == 5
    assert "frame" in done.stderr
    missing = ember("music", "soft rain", "--model", str(tmp_path / "nothing"), home=tmp_path)
    assert missing.returncode == 1 and "not a folder" in missing.stderr


def test_midi_turns_a_recorded_tune_into_notes(tmp_path: Path) -> None:
    import numpy as np
    import soundfile

    from engines.music.compose import read_midi

    rate = 22_050
    t = np.arange(int(0.4 * rate)) / rate
    tune = np.concatenate([0.4 * np.sin(2 * np.pi * 261.63 * 2 ** (n / 12) * t) for n in (0, 2, 4, 5, 7)])
    soundfile.write(tmp_path / "hum.wav", tune.astype(np.float32), rate)
    done = ember("midi", str(tmp_path / "hum.wav"), "-o", str(tmp_path / "hum.mid"), "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["notes"] == 5
    pitches = [n.pitch for track in read_midi(tmp_path / "hum.mid").tracks for n in track.notes]
    assert pitches == [60, 62, 64, 65, 67]
    silent = tmp_path / "silence.wav"
    soundfile.write(silent, np.zeros(rate, np.float32), rate)
    quiet = ember("midi", str(silent), "-o", str(tmp_path / "s.mid"), home=tmp_path)
    assert quiet.returncode == 1 and "silent" in quiet.stderr.lower()


def test_convert_music_exports_a_checkpoint_that_music_then_runs(
    tmp_path: Path, tiny_musicgen_checkpoint: Path
) -> None:
    pytest.importorskip("optimum.exporters.onnx")
    out = tmp_path / "tiny-onnx"
    done = ember("convert-music", str(tiny_musicgen_checkpoint), "-o", str(out), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and "CC-BY-NC-4.0" in done.stderr
    assert {p.name for p in out.glob("*.onnx")} >= {"text_encoder.onnx", "decoder_model.onnx",
                                                    "decoder_with_past_model.onnx", "encodec_decode.onnx"}  # fmt: skip
    made = ember("music", "a drum loop", "--model", str(out), "--seconds", "1", "--seed", "1", home=tmp_path)
    assert made.returncode == 0, made.stderr
    again = ember("convert-music", str(tiny_musicgen_checkpoint), "-o", str(out), home=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    (tmp_path / "not-music").mkdir()
    (tmp_path / "not-music" / "config.json").write_text('{"model_type": "llama"}')
    wrong = ember("convert-music", str(tmp_path / "not-music"), home=tmp_path)
    assert wrong.returncode == 1 and "not MusicGen" in wrong.stderr
    assert not (tmp_path / "not-music-onnx").exists()
