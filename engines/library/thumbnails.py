"""Thumbnails for the gallery: an image scaled down, a clip drawn as its waveform; JPEGs kept in the cache.

A thumbnail is made once (the library makes the default size as the output is added) and then
only looked up, so a grid of 10,000 outputs reads small files. They are written through a
temporary file and a rename, like everything else, but without an fsync: a cache can be
rebuilt, and an empty file left by a power cut is made again.

They are JPEGs (quality 90), not PNGs: encoding a 256-pixel picture takes 0.3 ms instead of
4-8 ms, which is most of what a screenful of cold thumbnails costs (``bench library``), and the
file is a tenth of the size. Transparency is flattened onto the gallery's tile colour.
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np

_BACKGROUND = (24, 26, 31)
JPEG_QUALITY = 90
_WAVE_COLOURS = {"speech": (96, 176, 255), "music": (255, 170, 80)}
_MIDLINE = (70, 74, 84)


def cached(path: Path) -> bool:
    """Whether a thumbnail file is there and not empty."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def write_thumbnail(source: Path, kind: str, target: Path, size: int) -> Path:
    """Draw the thumbnail of ``source`` (an image, or a WAV for the audio kinds) into ``target`` and return it.

    Images keep their aspect ratio within ``size`` x ``size``; a waveform fills ``size`` x ``size``.
    Raises OSError (or Pillow's errors) when the source cannot be read.
    """
    from PIL import Image

    if kind in ("speech", "music"):
        picture = waveform(source, size, _WAVE_COLOURS.get(kind, _WAVE_COLOURS["speech"]))
    else:
        with Image.open(source) as image:
            image.draft("RGB", (size, size))  # JPEG decodes at the smaller size at once
            picture = _opaque(image)
        factor = max(picture.width, picture.height) // size
        if factor > 1:  # a box reduction by a whole factor first: exact, and ten times faster than resampling
            picture = picture.reduce(factor)
        picture.thumbnail((size, size), Image.Resampling.BICUBIC)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            picture.save(f, "JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _opaque(image: object) -> object:
    """The image as RGB, transparent parts laid over the gallery's tile colour."""
    from PIL import Image

    if "A" not in image.getbands() and image.info.get("transparency") is None:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    tile = Image.new("RGB", rgba.size, _BACKGROUND)
    tile.paste(rgba, mask=rgba.getchannel("A"))
    return tile


def waveform(source: Path, size: int, colour: tuple[int, int, int]) -> object:
    """Return a ``size`` x ``size`` picture of the clip's waveform: each column the loudest swing in its slice."""
    from PIL import Image, ImageDraw

    samples = read_wav_samples(source)
    picture = Image.new("RGB", (size, size), _BACKGROUND)
    draw = ImageDraw.Draw(picture)
    middle = size // 2
    draw.line([(0, middle), (size - 1, middle)], fill=_MIDLINE)
    if samples.size:
        columns = np.array_split(samples, min(size, samples.size))
        peak = max(float(np.abs(samples).max()), 1e-6)
        half = size * 0.45
        for x, part in enumerate(columns):
            top = middle - float(part.max()) / peak * half
            bottom = middle - float(part.min()) / peak * half
            draw.line([(x, top), (x, bottom)], fill=colour)
    return picture


def read_wav_samples(path: Path) -> np.ndarray:
    """Return a WAV's samples as mono float32 in [-1, 1] (16-bit PCM, as Ember writes; 8/32-bit read too).

    Raises OSError or wave.Error when the file is not a WAV.
    """
    with wave.open(str(path), "rb") as clip:
        width, channels = clip.getsampwidth(), clip.getnchannels()
        data = clip.readframes(clip.getnframes())
    if width == 2:
        samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = np.frombuffer(data, "<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        samples = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        raise wave.Error(f"{width * 8}-bit samples are not read here")
    if channels > 1:
        samples = samples[: samples.size // channels * channels].reshape(-1, channels).mean(axis=1)
    return samples
