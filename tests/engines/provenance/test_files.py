"""Saving delivered images and clips: A1111 parameters, XMP, WAV INFO, Content Credentials, written whole."""

from __future__ import annotations

import io
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from full_disk import FullDisk
from PIL import ExifTags, Image

from engines.errors import EmberError
from engines.media import AudioOutput, ImageOutput
from engines.pipeline import Delivered, OutputPipeline, Provenance
from engines.provenance.content_credentials import read_manifest
from engines.provenance.files import encode_audio, encode_image, save_audio, save_image
from engines.provenance.metadata import (
    TRAINED_ALGORITHMIC_MEDIA,
    format_parameters,
    parse_parameters,
    parse_xmp,
    read_user_comment,
    read_wav_info,
)

SHA = "5f1d7e0c" + "ab" * 28
PARAMETERS = {
    "prompt": "a lighthouse at dusk, oil painting\n(warm light:1.2)",
    "negative_prompt": "blurry, low quality",
    "steps": 20,
    "sampler": "Euler a",
    "guidance": 7.5,
    "seed": 1234,
    "width": 96,
    "height": 64,
    "model": "tiny-sd",
    "model_sha256": SHA,
    "clip_skip": "2",
    "style": 'ink, "wet", paper',
}
PROVENANCE = Provenance("tiny-sd", "/models/tiny-sd", SHA, "cpu", {"steps": 20}, seed=1234)


def deliver(output: Any, kind: str) -> Delivered:
    """An output as it reaches a sink: through a real OutputPipeline."""
    return OutputPipeline([]).open(1, kind, request=None).finish(output, PROVENANCE)


@pytest.fixture
def image() -> Delivered:
    pixels = (np.random.default_rng(1).random((64, 96, 3)) * 255).astype(np.uint8)
    return deliver(ImageOutput(pixels, dict(PARAMETERS)), "image")


@pytest.fixture
def clip() -> Delivered:
    t = np.arange(22050 * 2) / 22050
    samples = (0.4 * np.sin(2 * np.pi * 220 * t) * np.sin(np.pi * t / 2)).astype(np.float32)
    return deliver(AudioOutput(samples, 22050, "Hello, world.", {"voice": "joe", "speed": 1.0}), "audio")


def opened(path: Path | io.BytesIO) -> Image.Image:
    """The image at ``path``, read whole (the file is closed again)."""
    with Image.open(path) as picture:
        picture.load()
    return picture


def expected_parameters() -> dict[str, Any]:
    expected = {k: v for k, v in PARAMETERS.items() if k != "model_sha256"}
    expected["model_hash"] = SHA[:10]  # A1111's short hash
    return expected


@pytest.mark.parametrize("suffix", ["png", "jpg", "jpeg", "webp"])
def test_saved_image_reads_back_valid_in_each_format(ember_home: Path, image: Delivered, suffix: str) -> None:
    path = save_image(image, ember_home / f"out.{suffix}")
    report = read_manifest(path)
    assert report.valid and report.validation_state == "Valid" and report.note
    assert report.output_id == image.record.output_id
    assert (report.model_name, report.model_sha256) == ("tiny-sd", SHA)
    assert report.created_utc == image.record.created_utc
    assert opened(path).format == {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}[suffix]


def test_png_keeps_the_pixels_exactly(ember_home: Path, image: Delivered) -> None:
    path = save_image(image, ember_home / "out.png")
    assert np.array_equal(np.asarray(opened(path).convert("RGB")), image.output.pixels)


def test_png_parameters_chunk_parses_back_as_a1111(ember_home: Path, image: Delivered) -> None:
    text = opened(save_image(image, ember_home / "out.png")).info["parameters"]
    assert text.splitlines()[2] == "Negative prompt: blurry, low quality"
    assert text.splitlines()[-1].startswith(
        f"Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 96x64, Model hash: {SHA[:10]}, Model: tiny-sd"
    )
    assert parse_parameters(text) == expected_parameters()


def test_a1111_text_round_trips_quoted_values_and_whole_guidance() -> None:
    parameters = {**PARAMETERS, "guidance": 7.0, "note": "line one\nline two: more"}
    text = format_parameters(parameters)
    assert "CFG scale: 7," in text and 'Note: "line one\\nline two: more"' in text
    parsed = parse_parameters(text)
    assert parsed["guidance"] == 7.0 and parsed["note"] == "line one\nline two: more"
    assert parsed["style"] == 'ink, "wet", paper'


def test_a1111_text_written_by_a1111_parses() -> None:
    text = (
        "masterpiece, a cat\nNegative prompt: dog\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 42, Size: 512x768, "
        'Model hash: 6ce0161689, Model: v1-5, Lora hashes: "a: 1, b: 2", Version: v1.10.1'
    )
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "masterpiece, a cat" and parsed["negative_prompt"] == "dog"
    assert (parsed["steps"], parsed["guidance"], parsed["seed"]) == (30, 6.0, 42)
    assert (parsed["width"], parsed["height"]) == (512, 768)
    assert parsed["schedule_type"] == "Karras" and parsed["lora_hashes"] == "a: 1, b: 2"


@pytest.mark.parametrize("suffix", ["jpg", "webp"])
def test_jpeg_and_webp_carry_the_parameters_in_exif_user_comment(
    ember_home: Path, image: Delivered, suffix: str
) -> None:
    exif = opened(save_image(image, ember_home / f"out.{suffix}")).getexif()
    comment = exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment]
    assert comment.startswith(b"UNICODE\x00")
    assert parse_parameters(read_user_comment(comment)) == expected_parameters()
    assert exif[ExifTags.Base.Software] == "Ember"


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp"])
def test_xmp_declares_trained_algorithmic_media(ember_home: Path, image: Delivered, suffix: str) -> None:
    xmp = opened(save_image(image, ember_home / f"out.{suffix}")).info["xmp"]
    fields = parse_xmp(xmp)
    assert fields["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
    assert fields["creator_tool"] == "Ember"
    assert fields["output_id"] == image.record.output_id
    assert fields["model_sha256"] == SHA
    assert fields["description"] == PARAMETERS["prompt"]


def test_encoded_image_bytes_read_back_valid(image: Delivered, ember_home: Path) -> None:
    data = encode_image(image, "webp")
    assert read_manifest(data, "image/webp").valid
    assert opened(io.BytesIO(data)).size == (96, 64)


def test_saved_wav_reads_back_valid_with_info_chunk(ember_home: Path, clip: Delivered) -> None:
    path = save_audio(clip, ember_home / "speech.wav")
    report = read_manifest(path)
    assert report.valid and report.validation_state == "Valid" and report.note
    assert report.output_id == clip.record.output_id
    info = read_wav_info(path.read_bytes())
    assert info["ISFT"] == "Ember"
    assert info["ICRD"] == clip.record.created_utc[:10]
    comment = parse_parameters(info["ICMT"])
    assert comment["prompt"] == "Hello, world." and comment["voice"] == "joe"
    assert comment["output_id"] == clip.record.output_id and comment["model_hash"] == SHA[:10]
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert np.abs(pcm / 32767.0 - clip.output.samples).max() <= 1 / 32767


def test_encoded_audio_bytes_read_back_valid(clip: Delivered, ember_home: Path) -> None:
    assert read_manifest(encode_audio(clip), "audio/wav").valid


def test_raw_outputs_are_refused(ember_home: Path, image: Delivered, clip: Delivered) -> None:
    with pytest.raises(TypeError, match="OutputPipeline"):
        save_image(image.output, ember_home / "raw.png")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OutputPipeline"):
        save_audio(clip.output, ember_home / "raw.wav")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="OutputPipeline"):
        encode_image(image.output, "png")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Delivered(image.output, image.record)  # only the pipeline seals outputs
    with pytest.raises(TypeError):
        save_image(clip, ember_home / "clip.png")  # delivered, but not an image
    assert not list(ember_home.glob("raw.*")) and not (ember_home / "clip.png").exists()


def test_unknown_image_format_is_refused_with_a_readable_message(ember_home: Path, image: Delivered) -> None:
    with pytest.raises(EmberError, match="PNG, JPEG or WebP"):
        save_image(image, ember_home / "out.gif")


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_full_disk_leaves_no_partial_file(
    ember_home: Path, image: Delivered, clip: Delivered, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    folder = ember_home / "out"
    folder.mkdir()
    target = folder / ("picture.png" if kind == "image" else "speech.wav")
    old = folder / ("old.png" if kind == "image" else "old.wav")
    save = (lambda p: save_image(image, p)) if kind == "image" else (lambda p: save_audio(clip, p))
    save(old)
    before = old.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr("engines.atomic.os.fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(EmberError, match="Nothing was half-written"):
        save(target)
    with pytest.raises(EmberError):
        save(old)  # over an existing file: the old one stays as it was
    assert sorted(p.name for p in folder.iterdir()) == [old.name]  # no target, no temporary files
    assert old.read_bytes() == before
