"""Hostile images and WAV files, generated: what a person might pick, or a stranger might send.

Two kinds in each corpus: files that are broken or built to hurt (decompression bombs, truncated
PNG and JPEG, lying headers, WAV chunks that claim more than the file holds) must give a clear
error in bounded time; files that are only unusual (CMYK, 16-bit, palette, alpha, grey, 1-bit,
EXIF-rotated, 8/24/32-bit and float WAV, stereo) must work. Each entry says which it is; a few
(a header that claims less than the data holds, a data chunk that claims more) may be read as far
as they go or refused, but plainly either way (``readable`` None).

As a script: ``python tests/tools/hostile_media.py OUTDIR`` writes the corpus and prints it.
"""

from __future__ import annotations

import io
import struct
import sys
import wave
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class HostileMedia:
    """One generated file: its name, whether Ember must read it (``readable``; None: either) and what it is."""

    name: str
    readable: bool | None
    what: str
    path: Path


def _photo(width: int = 96, height: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 255 // width), (y * 255 // height), ((x + y) * 3) % 256], axis=-1).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG of ``width`` x ``height`` black grey pixels: a few kilobytes that decode to gigabytes."""
    row = b"\x00" + b"\x00" * width  # filter byte, then the row
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(min(height, 64))) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _saved(image: object, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _images() -> list[tuple[str, bool | None, str, Callable[[], bytes]]]:
    from PIL import Image

    rgb = Image.fromarray(_photo())
    png, jpeg = _saved(rgb, "PNG"), _saved(rgb, "JPEG", quality=90)

    def exif_rotated() -> bytes:
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: turned 90 degrees
        return _saved(rgb, "JPEG", exif=exif.tobytes())

    def sixteen_bit() -> bytes:
        grey = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        return _saved(Image.fromarray(grey), "PNG")

    def lying_ihdr() -> bytes:  # the header says 4 x 4, the data holds 96 x 64
        data = bytearray(png)
        data[16:24] = struct.pack(">II", 4, 4)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
        return bytes(data)

    return [
        ("rgb.png", True, "an ordinary PNG", lambda: png),
        ("cmyk.jpg", True, "a CMYK JPEG (print workflows)", lambda: _saved(rgb.convert("CMYK"), "JPEG")),
        ("grey16.png", True, "a 16-bit greyscale PNG", sixteen_bit),
        ("palette.png", True, "a palette PNG", lambda: _saved(rgb.convert("P"), "PNG")),
        ("palette-transparent.png", True, "a palette PNG with a transparent colour",
         lambda: _saved(rgb.convert("P"), "PNG", transparency=0)),
        ("alpha.png", True, "an RGBA PNG", lambda: _saved(rgb.convert("RGBA"), "PNG")),
        ("grey-alpha.png", True, "a greyscale PNG with alpha", lambda: _saved(rgb.convert("LA"), "PNG")),
        ("one-bit.png", True, "a 1-bit PNG", lambda: _saved(rgb.convert("1"), "PNG")),
        ("exif-rotated.jpg", True, "a JPEG turned by its EXIF orientation", exif_rotated),
        ("photo.webp", True, "a WebP", lambda: _saved(rgb, "WEBP")),
        ("truncated.png", False, "a PNG cut off halfway", lambda: png[: len(png) // 2]),
        ("truncated.jpg", False, "a JPEG cut off halfway", lambda: jpeg[: len(jpeg) // 2]),
        ("header-only.png", False, "a PNG signature and nothing else", lambda: png[:8]),
        ("empty.png", False, "an empty file named .png", lambda: b""),
        ("text.png", False, "a text file named .png", lambda: b"This is not a picture.\n" * 20),
        ("zip.jpg", False, "a ZIP archive named .jpg", lambda: b"PK\x03\x04" + b"\x00" * 200),
        ("bad-crc.png", False, "a PNG whose header's checksum is wrong",
         lambda: png[:29] + b"\x00\x00\x00\x00" + png[33:]),
        ("lying-size.png", None, "a PNG whose header claims another size than its data", lying_ihdr),
        ("bomb-100k.png", False, "a decompression bomb: 100,000 x 100,000 pixels in a few kilobytes",
         lambda: _png_bomb(100_000, 100_000)),
        ("bomb-wide.png", False, "a decompression bomb: 2,000,000 x 20,000 pixels",
         lambda: _png_bomb(2_000_000, 20_000)),
        ("zero-size.png", False, "a PNG of 0 x 0 pixels", lambda: _png_bomb(0, 0)),
    ]  # fmt: skip


def wav_bytes(samples: np.ndarray, rate: int, width: int, channels: int = 1) -> bytes:
    """``samples`` as a PCM WAV file of ``width`` bytes a sample."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as clip:
        clip.setnchannels(channels)
        clip.setsampwidth(width)
        clip.setframerate(rate)
        clip.writeframes(samples.tobytes())
    return buffer.getvalue()


def _riff(fmt: bytes, data: bytes, *, data_size: int | None = None, riff_size: int | None = None) -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def _fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def _wavs() -> list[tuple[str, bool | None, str, Callable[[], bytes]]]:
    rate = 16_000
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    pcm16 = (tone * 32767).astype("<i2")
    ok16 = wav_bytes(pcm16, rate, 2)

    def pcm24() -> bytes:
        values = (tone * (2**23 - 1)).astype("<i4")
        packed = b"".join(struct.pack("<i", int(v))[:3] for v in values)
        return _riff(_fmt(1, 1, rate, 24), packed)

    return [
        ("pcm16.wav", True, "16-bit mono PCM", lambda: ok16),
        ("pcm8.wav", True, "8-bit mono PCM", lambda: wav_bytes(((tone * 127) + 128).astype(np.uint8), rate, 1)),
        ("pcm24.wav", True, "24-bit mono PCM", pcm24),
        ("pcm32.wav", True, "32-bit mono PCM", lambda: wav_bytes((tone * 2**31 * 0.99).astype("<i4"), rate, 4)),
        ("float32.wav", True, "32-bit float WAV (format 3)",
         lambda: _riff(_fmt(3, 1, rate, 32), tone.astype("<f4").tobytes())),
        ("stereo.wav", True, "16-bit stereo", lambda: wav_bytes(np.repeat(pcm16, 2), rate, 2, channels=2)),
        ("truncated.wav", False, "a WAV cut off inside its header", lambda: ok16[:30]),
        ("short-data.wav", None, "a data chunk that claims 1 GB and holds 100 bytes",
         lambda: _riff(_fmt(1, 1, rate, 16), pcm16.tobytes()[:100], data_size=1 << 30)),
        ("zero-channels.wav", False, "a WAV with 0 channels", lambda: _riff(_fmt(1, 0, rate, 16), pcm16.tobytes())),
        ("zero-rate.wav", False, "a WAV at 0 samples a second", lambda: _riff(_fmt(1, 1, 0, 16), pcm16.tobytes())),
        ("odd-bits.wav", None, "a WAV that says its samples are 12 bits",
         lambda: _riff(_fmt(1, 1, rate, 12), pcm16.tobytes())),
        ("not-riff.wav", False, "an MP3-like file named .wav", lambda: b"ID3\x03\x00" + b"\x00" * 500),
        ("empty.wav", False, "an empty file named .wav", lambda: b""),
        ("no-data.wav", False, "a WAV with a format chunk and no data chunk",
         lambda: b"RIFF" + struct.pack("<I", 28) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + _fmt(1, 1, rate, 16)),
    ]  # fmt: skip


def corpus_names() -> list[str]:
    """The names of the corpus's files, images first, without writing them."""
    return [name for name, *_ in (*_images(), *_wavs())]


def write_corpus(folder: Path) -> list[HostileMedia]:
    """Write every image and WAV of the corpus into ``folder``; return them, images first."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, readable, what, make in (*_images(), *_wavs()):
        path = folder / name
        path.write_bytes(make())
        written.append(HostileMedia(name, readable, what, path))
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    verdicts = {True: "readable", False: "refused", None: "either"}
    for item in write_corpus(Path(argv[0])):
        print(f"{item.name:26} {verdicts[item.readable]:9} {item.path.stat().st_size:>9} B  {item.what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
