"""Writing a delivered clip: WAV with Content Credentials, or FLAC / Ogg Vorbis through soundfile (libsndfile).

FLAC and Ogg carry the clip's text, parameters and output id in their Vorbis comments (the
audio watermark is in the samples either way); only the WAV holds the signed Content Credentials.
"""

from __future__ import annotations

import io
from pathlib import Path

from engines.atomic import write_atomic
from engines.errors import EmberError
from engines.media import AudioOutput
from engines.pipeline import Delivered, require_delivered

FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def encode_clip(item: Delivered, fmt: str, *, title: str = "") -> bytes:
    """Return the delivered clip encoded as ``fmt`` ("WAV", "FLAC" or "OGG").

    Raises TypeError for anything that did not come out of the OutputPipeline, EmberError for
    another format or a failed encoding.
    """
    from engines.provenance.files import CREATOR_TOOL, audio_comment, encode_audio

    require_delivered(item)
    if fmt == "WAV":
        return encode_audio(item, title=title)
    if fmt not in ("FLAC", "OGG"):
        raise EmberError(f"Ember writes speech as .wav, .flac or .ogg, not {fmt}.")
    audio = item.output
    if not isinstance(audio, AudioOutput):
        raise TypeError("Only a delivered audio clip is written as audio.")
    import soundfile

    buffer = io.BytesIO()
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    try:
        with soundfile.SoundFile(buffer, "w", audio.sample_rate, 1, subtype, format=fmt) as f:
            f.title = title or item.record.output_id
            f.software = CREATOR_TOOL
            f.comment = audio_comment(audio, item.record)
            f.date = item.record.created_utc
            f.write(audio.samples.clip(-1.0, 1.0))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise EmberError(f"The clip could not be written as {fmt} ({exc}).") from None
    return buffer.getvalue()


def save_clip(item: Delivered, path: Path | str) -> Path:
    """Write the delivered clip to ``path`` in the format its suffix names (.wav, .flac, .ogg); returns the path.

    Written whole or not at all. Raises EmberError for another suffix or a folder that cannot be written.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise EmberError(f"Ember saves speech as .wav, .flac or .ogg; '{path.name}' has none of these endings.")
    return write_atomic(path, encode_clip(item, fmt, title=path.name))
