"""Image and audio files as Ember writes them: metadata in, Content Credentials signed last, written whole.

Every writer takes only a :class:`Delivered` output (what came through the
OutputPipeline, so its pixels or samples already carry the watermark) and
refuses anything else. The order matters:

1. encode (Pillow for images, plain RIFF for WAV) with the readable metadata:
   the A1111 ``parameters`` text (PNG chunk, or EXIF UserComment in JPEG/WebP),
   the XMP packet with the IPTC digital source type, or the WAV INFO chunk;
2. sign the C2PA manifest over the encoded bytes (any later re-encode would drop it);
3. write through a temporary file and a rename, so a full disk leaves no partial file.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np

from engines.atomic import write_atomic
from engines.errors import EmberError
from engines.media import AudioOutput, ImageOutput
from engines.pipeline import Delivered, OutputRecord, require_delivered
from engines.provenance.content_credentials import CreationManifest, mime_for, sign_file_bytes
from engines.provenance.metadata import (
    CREATOR_TOOL,
    format_parameters,
    user_comment,
    wav_info_chunk,
    xmp_packet,
)

IMAGE_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
JPEG_QUALITY = 92
WEBP_QUALITY = 92


def _image_format(fmt: str) -> str:
    name = IMAGE_FORMATS.get(fmt.lower().lstrip("."))
    if name is None:
        raise EmberError(f"Ember saves images as PNG, JPEG or WebP, not {fmt!r}. Use a .png, .jpg or .webp name.")
    return name


def _output(item: object, kind: type) -> tuple[Any, OutputRecord]:
    delivered: Delivered = require_delivered(item)
    if not isinstance(delivered.output, kind):
        raise TypeError(f"Expected a delivered {kind.__name__}, got {type(delivered.output).__name__}.")
    return delivered.output, delivered.record


def image_parameters(image: ImageOutput, record: OutputRecord) -> dict[str, Any]:
    """Return the image's parameters with what the record knows filled in (model, hash, seed, size)."""
    parameters = dict(image.parameters)
    provenance = record.provenance
    parameters.setdefault("model", provenance.model_name)
    parameters.setdefault("model_sha256", provenance.model_sha256)
    if provenance.seed is not None:
        parameters.setdefault("seed", provenance.seed)
    height, width = image.pixels.shape[:2]
    parameters.setdefault("width", width)
    parameters.setdefault("height", height)
    return parameters


def _manifest(record: OutputRecord, kind: str, title: str) -> CreationManifest:
    provenance = record.provenance
    return CreationManifest(
        output_id=record.output_id,
        created_utc=record.created_utc,
        model_name=provenance.model_name,
        model_sha256=provenance.model_sha256,
        title=title,
        kind=kind,
    )


def encode_image(item: Delivered, fmt: str = "png", *, title: str = "") -> bytes:
    """Return the delivered image as a whole file (``fmt``: png, jpg/jpeg or webp) with metadata and credentials.

    Raises TypeError for anything that did not come out of the OutputPipeline (or
    is not an image), EmberError for an unknown format or a failed signature.
    """
    image, record = _output(item, ImageOutput)
    name = _image_format(fmt)
    parameters = image_parameters(image, record)
    text = format_parameters(parameters)
    xmp = xmp_packet(
        record.output_id,
        record.created_utc,
        model_name=str(parameters.get("model") or ""),
        model_sha256=str(parameters.get("model_sha256") or ""),
        description=str(parameters.get("prompt") or ""),
    )
    from PIL import Image, PngImagePlugin

    picture = Image.fromarray(np.ascontiguousarray(image.pixels, dtype=np.uint8), "RGB")
    alpha = getattr(image, "alpha", None)  # an upscaled image keeps its source's transparency
    if alpha is not None and name != "jpeg":
        picture.putalpha(Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L"))
    buffer = io.BytesIO()
    if name == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)  # tEXt when Latin-1 fits, iTXt otherwise: as A1111
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=False)
        picture.save(buffer, "PNG", pnginfo=info)
    else:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = user_comment(text)  # Exif IFD, UserComment
        exif[0x0131] = CREATOR_TOOL  # Software
        quality = JPEG_QUALITY if name == "jpeg" else WEBP_QUALITY
        picture.save(buffer, name.upper(), quality=quality, exif=exif.tobytes(), xmp=xmp)
    suffix = "jpg" if name == "jpeg" else name
    return sign_file_bytes(
        buffer.getvalue(), mime_for(suffix), _manifest(record, "image", title or f"{record.output_id}.{suffix}")
    )


def dated_output_path(item: Delivered, suffix: str, what: str) -> Path:
    """Return where a delivered output is kept: the outputs folder, a folder per day, ``<output id><suffix>``.

    Makes the day's folder; raises EmberError naming ``what`` ("image", "speech") when it cannot.
    """
    from engines.paths import outputs_dir

    folder = outputs_dir() / item.record.created_utc[:10]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmberError(f"Ember cannot make the folder {folder} for the {what} ({exc.strerror}).") from exc
    return folder / f"{item.record.output_id}{suffix}"


def save_images(delivered: list[Delivered]) -> tuple[str, ...]:
    """Save each delivered image as a PNG (watermark, parameters, Content Credentials) where it is kept."""
    return tuple(str(save_image(item, dated_output_path(item, ".png", "image"))) for item in delivered)


def save_image(item: Delivered, path: Path, fmt: str | None = None) -> Path:
    """Write the delivered image to ``path`` (format from ``fmt`` or the suffix) and return the path.

    The file is written whole or not at all. Raises TypeError for an output that
    did not come through the OutputPipeline, EmberError for an unknown format, a
    failed signature or a folder that cannot be written (a full disk).
    """
    require_delivered(item)
    path = Path(path)
    data = encode_image(item, fmt or path.suffix or "png", title=path.name)
    return write_atomic(path, data)


def pcm16(samples: np.ndarray) -> bytes:
    """Return mono float samples in [-1, 1] as little-endian 16-bit PCM (clipped, rounded)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float64).reshape(-1), -1.0, 1.0)
    return np.round(clipped * 32767.0).astype("<i2").tobytes()


def audio_comment(audio: AudioOutput, record: OutputRecord) -> str:
    """Return the ICMT text: what was spoken, then the parameters as A1111-style ``Key: value`` pairs."""
    provenance = record.provenance
    parameters: dict[str, Any] = {"prompt": audio.text, **dict(audio.parameters)}
    parameters.setdefault("model", provenance.model_name)
    parameters.setdefault("model_sha256", provenance.model_sha256)
    parameters["sample_rate"] = audio.sample_rate
    parameters["output_id"] = record.output_id
    return format_parameters(parameters)


def encode_audio(item: Delivered, *, title: str = "") -> bytes:
    """Return the delivered clip as a 16-bit PCM mono WAV with the INFO chunk and Content Credentials.

    Raises TypeError for anything that did not come out of the OutputPipeline (or
    is not audio), EmberError when signing fails.
    """
    audio, record = _output(item, AudioOutput)
    pcm = pcm16(audio.samples)
    rate = int(audio.sample_rate)
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    info = wav_info_chunk(CREATOR_TOOL, audio_comment(audio, record), record.created_utc)
    data = b"data" + struct.pack("<I", len(pcm)) + pcm + (b"\x00" if len(pcm) % 2 else b"")
    body = b"WAVE" + fmt + info + data
    wav = b"RIFF" + struct.pack("<I", len(body)) + body
    return sign_file_bytes(wav, mime_for("wav"), _manifest(record, "audio", title or f"{record.output_id}.wav"))


def save_audio(item: Delivered, path: Path) -> Path:
    """Write the delivered clip to ``path`` as WAV and return the path; written whole or not at all.

    Raises TypeError for an output that did not come through the OutputPipeline,
    EmberError for a failed signature or a folder that cannot be written.
    """
    require_delivered(item)
    path = Path(path)
    return write_atomic(path, encode_audio(item, title=path.name))
