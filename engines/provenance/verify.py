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
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from engines.errors import EmberError
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
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            mime = Image.MIME.get(img.format or "", "application/octet-stream")
            text = img.info.get("parameters") if isinstance(img.info.get("parameters"), str) else None
            if text is None:
                comment = img.getexif().get_ifd(0x8769).get(0x9286)
                if isinstance(comment, bytes | str):
                    text = _user_comment(comment)
            pixels = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
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


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Return mono float32 samples in [-1, 1] and the sample rate; raises EmberError for unreadable WAV."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise EmberError(f"This WAV file cannot be read ({exc}); Ember reads PCM WAV files.") from None
    if width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 1:
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 4:
        samples = np.frombuffer(frames, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise EmberError(f"This WAV file has {8 * width}-bit samples; Ember reads 8, 16 and 32-bit PCM.")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


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
