"""Reading recordings for Whisper: WAV, FLAC, OGG Vorbis and MP3, as 16 kHz mono float32.

miniaudio decodes them (MIT, no system libraries). Ember does not ship FFmpeg: PyAV's wheels, which
faster-whisper would bring, link GPL codecs (see resources/licenses/README.md). A file miniaudio
cannot read, an empty one or a missing one is refused with a sentence that says which it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import EmberError

WHISPER_RATE_HZ = 16000
# A recording whose loudest 30 ms is quieter than this holds no speech (a microphone's own
# noise is around -70 to -60 dBFS; quiet speech is louder than -40 dBFS).
SILENCE_DBFS = -50.0
_FRAME_S = 0.03


@dataclass(frozen=True, eq=False)
class Audio:
    """A recording ready for Whisper: ``samples`` mono float32 at 16 kHz, and what it was before."""

    samples: np.ndarray
    source_rate_hz: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / WHISPER_RATE_HZ


def read_audio(path: str | Path) -> Audio:
    """Decode the file at ``path`` to 16 kHz mono.

    Raises EmberError when there is no such file, when it is empty, or when it is not audio
    that miniaudio can decode (WAV, FLAC, OGG Vorbis, MP3).
    """
    path = Path(path)
    name = path.name
    if not path.exists():
        raise EmberError(f"There is no file {path}. Check the name and try again.")
    if path.is_dir():
        raise EmberError(f"{path} is a folder; give an audio file (WAV, FLAC, OGG, MP3).")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EmberError(f"Ember cannot read {path} ({exc.strerror}).") from None
    if size == 0:
        raise EmberError(f"{name} is empty (0 bytes): there is no audio in it.")
    audio = _decode_miniaudio(path)
    if audio is None:
        raise EmberError(
            f"{name} is not an audio file Ember can read ({_looks_like(path)}). Pick a WAV, FLAC, OGG or MP3 recording."
        )
    if len(audio.samples) == 0:
        raise EmberError(f"{name} holds no audio (its length is 0 seconds).")
    return audio


def _decode_miniaudio(path: Path) -> Audio | None:
    import miniaudio

    try:
        info = miniaudio.get_file_info(str(path))
        decoded = miniaudio.decode_file(
            str(path), output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1, sample_rate=WHISPER_RATE_HZ
        )
    except miniaudio.MiniaudioError:
        return None  # not a format miniaudio reads, or damaged
    samples = np.asarray(decoded.samples, dtype=np.float32)
    return Audio(_clean(samples), int(info.sample_rate), int(info.nchannels))


def _looks_like(path: Path) -> str:
    """A few words on what the file seems to be, from its first bytes."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        return exc.strerror or "unreadable"
    if head[:4] == b"RIFF":
        return "its WAV header is damaged or its data is cut off"
    if head[4:8] == b"ftyp":
        return "it is an MP4/M4A file; save the recording as WAV, FLAC, OGG or MP3 first"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"it starts with the bytes {head[:4].hex(' ')}, which no audio format starts with"
    if all(c.isprintable() or c.isspace() for c in text):
        return "it holds text, not sound"
    return "no audio format matches its start"


def from_samples(samples: np.ndarray, sample_rate_hz: int) -> Audio:
    """Samples in memory (frames, or frames x channels; any float or int type) as 16 kHz mono.

    Raises EmberError for an empty recording or one that is not numbers.
    """
    array = np.asarray(samples)
    if array.size == 0:
        raise EmberError("The recording is empty: no sound was captured.")
    if array.dtype.kind not in "fiu":
        raise EmberError(f"A recording must be numbers (samples), not {array.dtype}.")
    channels = 1 if array.ndim == 1 else int(array.shape[1])
    if array.ndim > 2:
        raise EmberError(f"A recording is frames or frames x channels, not an array of shape {array.shape}.")
    if array.dtype.kind in "iu":
        scale = float(np.iinfo(array.dtype).max)
        array = array.astype(np.float32) / scale
    mono = array.astype(np.float32).reshape(len(array), -1).mean(axis=1)
    return Audio(_clean(resample(mono, sample_rate_hz)), sample_rate_hz, channels)


def resample(samples: np.ndarray, rate_hz: int, to_rate_hz: int = WHISPER_RATE_HZ) -> np.ndarray:
    """Mono float32 ``samples`` at ``rate_hz`` resampled to ``to_rate_hz`` (miniaudio's resampler)."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if rate_hz == to_rate_hz or len(samples) == 0:
        return samples
    import miniaudio

    fmt = miniaudio.SampleFormat.FLOAT32
    converted = miniaudio.convert_frames(fmt, 1, rate_hz, samples.tobytes(), fmt, 1, to_rate_hz)
    return np.frombuffer(converted, dtype=np.float32).copy()


def _clean(samples: np.ndarray) -> np.ndarray:
    """Finite samples within [-1, 1] (a broken decoder or a loud recording can give neither)."""
    samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def loudest_dbfs(samples: np.ndarray, rate_hz: int = WHISPER_RATE_HZ) -> float:
    """The RMS level of the loudest 30 ms of ``samples``, in dB below full scale (-inf for digital silence)."""
    frame = max(1, int(rate_hz * _FRAME_S))
    count = len(samples) // frame
    if count == 0:
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    else:
        frames = samples[: count * frame].reshape(count, frame).astype(np.float64)
        rms = float(np.sqrt(np.mean(np.square(frames), axis=1)).max())
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def is_silent(samples: np.ndarray, rate_hz: int = WHISPER_RATE_HZ) -> bool:
    """Whether nothing in ``samples`` is louder than :data:`SILENCE_DBFS`."""
    return loudest_dbfs(samples, rate_hz) < SILENCE_DBFS
