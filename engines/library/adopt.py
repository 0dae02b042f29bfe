"""Library rows made from what is already there: an output record and its file.

Used when a database from before the library is upgraded, and by repair after a crash that
came between writing a file and adding its row. The record says what made the output; the
file says its size and, for audio, what was spoken (the WAV's INFO comment).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import wave
from pathlib import Path
from typing import Any

from engines.library.layout import sha256_of

log = logging.getLogger(__name__)

KINDS = ("text", "image", "upscale", "speech", "transcript", "music")


def kind_of_record(media: str, settings: dict[str, Any]) -> str | None:
    """The library kind of an output record (its ``kind`` is the medium: "text", "image", "audio"), or None."""
    if media == "image":
        return "upscale" if "model_scale" in settings or "source_sha256" in settings else "image"
    if media == "audio":
        return "speech" if "voice" in settings else "music"
    if media == "text":
        return "transcript" if settings.get("task") == "transcribe" else "text"
    return None


def image_size(path: Path) -> tuple[int, int]:
    """The image's width and height from its header (nothing decoded); (0, 0) when it cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as picture:
            return picture.size
    except Exception:  # a damaged file is still kept; it just has no size
        return 0, 0


def wav_duration_s(path: Path) -> float:
    """The clip's length in seconds from its WAV header; 0.0 when it cannot be read."""
    try:
        with wave.open(str(path), "rb") as clip:
            rate = clip.getframerate()
            return clip.getnframes() / rate if rate else 0.0
    except (OSError, EOFError, wave.Error, RuntimeError):  # RuntimeError: wave's skip past a chunk's end
        return 0.0


def wav_prompt(path: Path) -> str:
    """What a clip Ember wrote says it is (the spoken text, a piece's description), from its INFO comment."""
    from engines.provenance.metadata import parse_parameters, read_wav_info

    try:
        comment = read_wav_info(path.read_bytes()).get("ICMT", "")
    except (OSError, ValueError):
        return ""
    return str(parse_parameters(comment).get("prompt", "")) if comment else ""


def item_from_record(record: sqlite3.Row, root: Path, relative: str) -> dict[str, Any] | None:
    """The library row for an output record whose file is ``root/relative``; None for a record of no library kind.

    Raises OSError when the file cannot be read (its hash is part of the row).
    """
    settings = json.loads(record["settings_json"] or "{}")
    kind = kind_of_record(record["kind"], settings)
    if kind is None:
        return None
    path = root / relative
    row = base_row(record, kind)
    row.update(path=relative, file_sha256=sha256_of(path))
    if kind in ("image", "upscale"):
        row["width"], row["height"] = image_size(path)
        row["prompt"] = str(settings.get("prompt") or "")
        row["negative_prompt"] = str(settings.get("negative_prompt") or "")
        row["source_output_id"] = str(settings.get("source_output_id") or "")
    else:
        row["duration_s"] = wav_duration_s(path)
        row["prompt"] = wav_prompt(path) or str(settings.get("prompt") or settings.get("title") or "")
        midi = path.with_suffix(".mid")
        if kind == "music" and midi.exists():
            row["extra_json"] = json.dumps({"midi": f"{relative.rsplit('.', 1)[0]}.mid"})
    return row


def base_row(record: sqlite3.Row, kind: str) -> dict[str, Any]:
    """A library row with what the record alone gives (no file yet)."""
    return {
        "output_id": record["output_id"],
        "kind": kind,
        "path": "",
        "file_sha256": "",
        "prompt": "",
        "negative_prompt": "",
        "model_name": record["model_name"],
        "created_utc": record["created_utc"],
        "width": 0,
        "height": 0,
        "duration_s": 0.0,
        "text": "",
        "source_output_id": "",
        "extra_json": "{}",
    }
