"""The verifier: does a file carry this installation's watermark, valid Content Credentials, a record?

It reads any image (PNG, JPEG, WebP, ...), WAV file or text file and reports, for a
person: whether Ember's watermark is there and how sure the detector is (a p-value:
the chance an unmarked file scores as high), whether the C2PA manifest is valid,
the generation parameters written in the file, and which library record it matches.
Watermarks are keyed by the installation's secret: another installation's outputs
are "not found" here, never a false match.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engines.errors import IMAGE_DECODE_ERRORS, EmberError
from engines.pipeline import OutputRecord
from engines.provenance.keys import InstallationKey


@dataclass(frozen=True)
class VerifyRequest:
    """Verify files (submitted to the Studio's queue by the Verify panel and the CLI)."""

    PROMPTLESS: ClassVar[bool] = True  # file paths, no text a person wrote for a model

    paths: tuple[str, ...]


@dataclass(frozen=True)
class MarkReport:
    """What the watermark detector found."""

    kind: str  # "image", "audio", "text"
    found: bool
    verdict: str  # "watermarked", "not watermarked", "too short to tell"
    p_value: float
    confidence: float
    payload: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    """Everything the verifier can say about one file."""

    path: str
    kind: str  # "image", "audio", "text"
    watermark: MarkReport | None
    credentials: Any = None  # content_credentials.CredentialReport, or None when the format has none
    parameters: dict[str, Any] = field(default_factory=dict)
    records: tuple[OutputRecord, ...] = ()
    error: str = ""

    @property
    def summary(self) -> str:
        """One or two sentences a person reads."""
        if self.error:
            return self.error
        parts = []
        mark = self.watermark
        if mark is None or mark.verdict == "too short to tell":
            parts.append(f"Too little {self.kind} to tell whether Ember's watermark is there.")
        elif mark.found:
            parts.append(f"Ember's watermark is present (p = {mark.p_value:.1e}, confidence {mark.confidence:.0%}).")
        else:
            parts.append("No watermark from this installation of Ember was found.")
        creds = self.credentials
        if creds is not None and getattr(creds, "present", False):
            state = getattr(creds, "validation_state", "")
            parts.append(f"Content Credentials: {state}.")
        elif self.kind != "text":
            parts.append("No Content Credentials.")
        if self.records:
            from engines.reproducibility import reproducibility

            rec = self.records[0]
            parts.append(f"Made by {rec.provenance.model_name or 'Ember'} on {rec.created_utc[:19].replace('T', ' ')}.")
            parts.append(reproducibility(rec.provenance.settings))
        return " ".join(parts)


def verify_file(
    path: str | Path,
    key: InstallationKey,
    *,
    find_records: Callable[[str, int | None, str], list[OutputRecord]] | None = None,
    text_tokenizers: Callable[[], Sequence[Callable[[str], list[int]]]] = tuple,
) -> VerifyReport:
    """Return the report for one file; a file Ember cannot read gets a report with ``error`` set.

    ``find_records(kind, payload, text)`` returns matching library records (by the
    watermark's payload, or for text by the text itself). ``text_tokenizers`` are the
    installed models' tokenizers, asked for only when the file is text; the detector tries
    each (and pays for it in p).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return VerifyReport(str(path), "unknown", None, error=f"Ember cannot read '{path}' ({exc.strerror or exc}).")
    if not data.strip():
        return VerifyReport(str(path), "unknown", None, error=f"'{path.name}' is empty: there is nothing to check.")
    find = find_records or (lambda kind, payload, text: [])
    try:
        if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
            return _verify_audio(path, data, key, find)
        pixels, mime, parameters = _read_image(data)
        if pixels is not None:
            return _verify_image(path, data, pixels, mime, parameters, key, find)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return VerifyReport(
                str(path), "unknown", None, error=f"'{path.name}' is not an image, a WAV file or UTF-8 text."
            )
        return _verify_text(path, text, key, find, text_tokenizers())
    except EmberError as exc:
        return VerifyReport(str(path), "unknown", None, error=str(exc))


def _read_image(data: bytes) -> tuple[np.ndarray | None, str, dict[str, Any]]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            mime = Image.MIME.get(img.format or "", "application/octet-stream")
            text = img.info.get("parameters") if isinstance(img.info.get("parameters"), str) else None
            if text is None:
                comment = img.getexif().get_ifd(0x8769).get(0x9286)
                if isinstance(comment, bytes | str):
                    text = _user_comment(comment)
            pixels = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:
        # Pillow's guard against a small file that decodes to gigabytes: say so, do not decode it.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "more pixels than Ember reads"
        raise EmberError(
            f"This image is too large to check: it would decode to {size}, more than any photograph has "
            "(a file made to exhaust memory, or a damaged header)."
        ) from None
    except IMAGE_DECODE_ERRORS:
        return None, "", {}
    parameters: dict[str, Any] = {}
    if text:
        from engines.provenance.metadata import parse_parameters

        parameters = parse_parameters(text)
    return pixels, mime, parameters


def _user_comment(value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    if value[:8] == b"UNICODE\0":
        body = value[8:]
        return body.decode("utf-16-be" if body[:1] == b"\0" else "utf-16-le", "replace")
    return value[8:].decode("ascii", "replace") if value[:5] == b"ASCII" else value.decode("utf-8", "replace")


def _credentials(data: bytes, mime: str) -> Any:
    from engines.provenance.content_credentials import read_manifest

    return read_manifest(data, mime)


def _verify_image(
    path: Path, data: bytes, pixels: np.ndarray, mime: str, parameters: dict[str, Any], key: InstallationKey, find: Any
) -> VerifyReport:
    from engines.provenance import image_mark

    result = image_mark.detect(pixels, key.derive("image-watermark"))
    mark = _mark_report("image", result)
    creds = _credentials(data, mime)
    records = find("image", result.payload if result.found else None, "")
    if not records and getattr(creds, "output_id", None):
        records = find("id", None, creds.output_id)
    return VerifyReport(str(path), "image", mark, creds, parameters, tuple(records))


def _verify_audio(path: Path, data: bytes, key: InstallationKey, find: Any) -> VerifyReport:
    from engines.provenance import audio_mark

    samples, rate = read_wav(data)
    result = audio_mark.detect(samples, rate, key.derive("audio-watermark"))
    mark = _mark_report("audio", result)
    creds = _credentials(data, "audio/wav")
    records = find("audio", result.payload if result.found else None, "")
    if not records and getattr(creds, "output_id", None):
        records = find("id", None, creds.output_id)
    return VerifyReport(str(path), "audio", mark, creds, {}, tuple(records))


def _mark_report(kind: str, result: Any) -> MarkReport:
    verdict = "watermarked" if result.found else "not watermarked"
    return MarkReport(kind, result.found, verdict, result.p_value, result.confidence, result.payload)


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Return mono float32 samples in [-1, 1] and the sample rate; raises EmberError for unreadable WAV.

    Reads 8, 16, 24 and 32-bit PCM and 32 and 64-bit float, plain or in the extensible layout (what
    audio editors export). A data chunk that claims more than the file holds is read as far as it goes.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EmberError("This file is not a WAV file (it has no RIFF/WAVE header).")
    fmt: bytes | None = None
    frames: bytes | None = None
    pos = 12
    while pos + 8 <= len(data) and frames is None:
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]
        if kind == b"fmt ":
            fmt = body
        elif kind == b"data":
            frames = body
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise EmberError("This WAV file is damaged: it has no complete format chunk.")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")  # the sub-format's first two bytes are its tag
    if frames is None:
        raise EmberError("This WAV file holds no audio (it has no data chunk).")
    if channels < 1 or rate < 1:
        raise EmberError(f"This WAV file is damaged: it says it has {channels} channels at {rate} samples a second.")
    supported = {(_PCM, 8), (_PCM, 16), (_PCM, 24), (_PCM, 32), (_FLOAT, 32), (_FLOAT, 64)}
    if (tag, bits) not in supported:
        kind_name = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format-{tag}")
        raise EmberError(
            f"This WAV file holds {bits}-bit {kind_name} samples; Ember reads 8, 16, 24 and 32-bit PCM and "
            "32 and 64-bit float WAV. Export it as 16-bit PCM and try again."
        )
    width = bits // 8
    frames = frames[: len(frames) // (width * channels) * (width * channels)]
    raw = np.frombuffer(frames, dtype=np.uint8)
    if tag == _FLOAT:
        samples = np.frombuffer(frames, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    elif bits == 8:
        samples = (raw.astype(np.float32) - 128.0) / 128.0
    elif bits == 24:
        triples = raw.reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        samples = (np.where(values >= 1 << 23, values - (1 << 24), values) / float(1 << 23)).astype(np.float32)
    else:
        samples = np.frombuffer(frames, dtype=f"<i{width}").astype(np.float32) / float(1 << (bits - 1))
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return np.clip(samples, -1.0, 1.0).astype(np.float32), rate


def _verify_text(
    path: Path, text: str, key: InstallationKey, find: Any, tokenizers: Sequence[Callable[[str], list[int]]]
) -> VerifyReport:
    from engines.provenance import text_mark

    best = None
    for tokenize in tokenizers:
        result = text_mark.detect_text(text, key.derive("text-watermark"), tokenize)
        if best is None or result.p_value < best.p_value:
            best = result
    if best is None:
        raise EmberError("Ember has no text model installed whose tokenizer could read this text.")
    # One try per tokenizer: correct the p-value for the number of tries.
    p_value = min(1.0, best.p_value * len(tokenizers))
    found = best.verdict == "watermarked" and p_value < text_mark.THRESHOLD_P
    verdict = best.verdict if best.verdict == "too short to tell" else ("watermarked" if found else "not watermarked")
    mark = MarkReport(
        "text",
        found,
        verdict,
        p_value,
        max(0.0, 1.0 - p_value) if found else 0.0,
        None,
        f"{best.tokens_scored} of {best.tokens_total} tokens scored, z = {best.z:.1f}",
    )
    records = find("text", None, text)
    return VerifyReport(str(path), "text", mark, None, {}, tuple(records))
