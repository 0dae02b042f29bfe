"""``main.py upscale``: the same queue, engine process and pipeline as the Images panel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]


def ember(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"EMBER_HOME": str(home), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


def test_upscale_writes_the_larger_image_with_its_record(tmp_path: Path, photo: np.ndarray) -> None:
    source, out = tmp_path / "astronaut.jpg", tmp_path / "big.png"
    Image.fromarray(photo).save(source, quality=90)
    done = ember("upscale", str(source), "-o", str(out), "--scale", "2", "--tile", "64", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.splitlines()[0])
    assert line["path"] == str(out) and Path(line["library_path"]).exists()
    assert line["parameters"]["model"] == "Real-ESRGAN AnimeVideo v3 x2"
    assert line["parameters"]["tiles"] == 4
    with Image.open(out) as picture:
        assert picture.size == (photo.shape[1] * 2, photo.shape[0] * 2)
        assert "Real-ESRGAN" in picture.info["parameters"]
    checked = ember("verify", str(out), "--json", home=tmp_path)
    report = json.loads(checked.stdout.splitlines()[0])
    assert checked.returncode == 0 and report["watermark"]["found"] and report["credentials"]["valid"]


def test_upscale_refuses_what_it_cannot_do_in_one_line(tmp_path: Path) -> None:
    missing = ember("upscale", str(tmp_path / "nope.png"), home=tmp_path)
    assert missing.returncode == 1 and "There is no image" in missing.stderr
    text = tmp_path / "notes.png"
    text.write_text("hello")
    unreadable = ember("upscale", str(text), "--scale", "2", home=tmp_path)
    assert unreadable.returncode == 1
    assert "'notes.png' is not an image Ember can read" in unreadable.stderr
    unknown = ember("upscale", str(text), "--model", "x9-magic", home=tmp_path)
    assert unknown.returncode == 1 and "x9-magic" in unknown.stderr
    assert all(len(run.stderr.strip().splitlines()[-1]) > 20 for run in (missing, unreadable, unknown))


def test_upscale_help_names_the_embedded_models(tmp_path: Path) -> None:
    shown = ember("upscale", "--help", home=tmp_path)
    assert shown.returncode == 0
    assert "animevideo-x4" in shown.stdout and "x4plus" in shown.stdout and "--scale" in shown.stdout
