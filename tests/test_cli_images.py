"""The image and convert commands: the same queue, engine and pipeline as the Images panel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def ember(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"EMBER_HOME": str(home), "PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )


def test_image_writes_the_images_with_their_settings_and_provenance(tmp_path: Path, tiny_sd: Path) -> None:
    out = tmp_path / "cat.png"
    done = ember(
        "image", "a red cat", "--model", str(tiny_sd), "--size", "128x128", "--steps", "3", "--seed", "7",
        "--batch", "2", "--scheduler", "dpmpp_2m_karras", "-o", str(out), "--json", home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(line["path"]).name for line in lines] == ["cat-1.png", "cat-2.png"]
    assert [line["parameters"]["seed"] for line in lines] == [7, 8]
    assert {line["parameters"]["sampler"] for line in lines} == {"dpmpp_2m_karras"}
    for line in lines:
        with Image.open(line["path"]) as picture:
            assert picture.size == (128, 128)
            assert "a red cat" in picture.info["parameters"]  # AUTOMATIC1111-style settings
        assert Path(line["library_path"]).exists()
    checked = ember("verify", str(tmp_path / "cat-1.png"), "--json", home=tmp_path)
    report = json.loads(checked.stdout.splitlines()[0])
    assert checked.returncode == 0 and report["watermark"]["found"] and report["credentials"]["valid"]
    assert report["parameters"]["seed"] == 7


def test_image_to_image_starts_from_the_given_picture(tmp_path: Path, tiny_sd: Path) -> None:
    start = tmp_path / "start.png"
    Image.fromarray(np.full((64, 64, 3), (200, 40, 40), np.uint8)).save(start)
    done = ember(
        "image", "a red cat", "--model", str(tiny_sd), "--size", "64x64", "--steps", "4", "--seed", "1",
        "--init", str(start), "--strength", "0.5", "-o", str(tmp_path / "out.png"), "--json", home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parameters = json.loads(done.stdout)["parameters"]
    assert parameters["mode"] == "img2img" and parameters["strength"] == 0.5


def test_image_failures_say_what_to_do(tmp_path: Path, tiny_sd: Path) -> None:
    no_model = ember("image", "a cat", home=tmp_path)
    assert no_model.returncode == 1 and "--model" in no_model.stderr
    bad_size = ember("image", "a cat", "--model", str(tiny_sd), "--width", "100", home=tmp_path)
    assert bad_size.returncode == 1 and "multiples of 8" in bad_size.stderr
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    bad_init = ember("image", "a cat", "--model", str(tiny_sd), "--init", str(tmp_path / "broken.png"), home=tmp_path)
    assert bad_init.returncode == 1 and "cannot read the starting image" in bad_init.stderr.splitlines()[-1]


def test_an_unsafe_prompt_is_refused_with_exit_status_3(tmp_path: Path, tiny_sd: Path) -> None:
    done = ember("image", "a naked child", "--model", str(tiny_sd), home=tmp_path)
    assert done.returncode == 3
    assert "safety filter" in done.stderr
    assert not list(tmp_path.rglob("*.png"))


def test_convert_exports_a_checkpoint_that_the_image_command_runs(tmp_path: Path, tiny_sd_checkpoint: Path) -> None:
    target = tmp_path / "tiny-int8"
    done = ember("convert", str(tiny_sd_checkpoint), "--to", "onnx", "--int8", "-o", str(target), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (target / "unet" / "model.onnx").exists() and (target / "ember_convert.json").exists()
    made = ember("image", "a cat", "--model", str(target), "--size", "64x64", "--steps", "2", home=tmp_path)
    assert made.returncode == 0, made.stderr


def test_convert_refuses_a_folder_that_is_not_a_pipeline(tmp_path: Path) -> None:
    (tmp_path / "weights.ckpt").write_bytes(b"\x80\x04pickle")
    done = ember("convert", str(tmp_path / "weights.ckpt"), home=tmp_path)
    assert done.returncode == 1
    assert "can run code" in done.stderr or "pickle" in done.stderr.lower()
