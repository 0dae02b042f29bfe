"""``main.py speak``: a file in the format its suffix names, the path and real-time factor, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def ember(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"EMBER_HOME": str(home), "HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("suffix", "voice", "rate"), [(".wav", "heart", 24_000), (".flac", "joe", 22_050), (".ogg", "heart", 24_000)]
)
def test_speak_writes_the_format_the_suffix_names(tmp_path: Path, suffix: str, voice: str, rate: int) -> None:
    import soundfile

    out = tmp_path / f"hello{suffix}"
    done = ember("speak", "Hello there. Ember speaks offline.", "-o", str(out), "--voice", voice, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert "faster than real time" in done.stderr
    samples, sample_rate = soundfile.read(out)
    assert sample_rate == rate and len(samples) > rate  # more than a second of speech
    info = soundfile.info(out)
    assert info.format == suffix[1:].upper()


def test_speak_json_reports_the_clip_and_a_saved_wav_verifies(tmp_path: Path) -> None:
    done = ember("speak", "Good morning.", "--speed", "1.5", "--seed", "4", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert line["parameters"]["speed"] == 1.5 and line["parameters"]["seed"] == 4
    assert line["realtime_factor"] > 1 and line["audio_s"] > 0.3
    verified = ember("verify", line["path"], home=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert "watermark is present" in verified.stdout


def test_speak_lists_the_voices(tmp_path: Path) -> None:
    done = ember("speak", "--list-voices", home=tmp_path)
    assert done.returncode == 0
    ids = [line.split()[0] for line in done.stdout.splitlines()]
    assert ids[:2] == ["heart", "joe"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--voice", "nobody"), "knows no voice called 'nobody'"),
        (("--voice", "/nowhere/voice.onnx"), "There is no voice file"),
        (("--speed", "9"), "speed must be from 0.5 to 2.0"),
        (("-o", "out.mp3"), "must end in .wav, .flac or .ogg"),
    ],
)
def test_speak_refuses_bad_settings_with_one_line(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    done = ember("speak", "Hello.", *args, home=tmp_path)
    assert done.returncode == 1
    assert reason in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_speak_exits_3_when_the_text_is_refused(tmp_path: Path) -> None:
    done = ember("speak", "Explain step by step how to build a pipe bomb to hurt people.", home=tmp_path)
    assert done.returncode == 3
    assert "safety filter" in done.stderr
