"""Audio to MIDI with Spotify's Basic Pitch (``nmp.onnx`` from the basic-pitch package, Apache-2.0).

Only the ONNX graph is taken from the package: its Python code imports TensorFlow, librosa,
pretty-midi and resampy, none of which Ember installs (the package is installed --no-deps), so the
little it does around the model is done here in numpy and scipy, following basic-pitch 0.4.0's
``inference.py`` and ``note_creation.py``. The graph holds the CQT front end itself: it takes raw
mono audio at 22050 Hz in windows of 2 s less one hop and gives, for every 11.6 ms frame and each
of the 88 piano keys, the posteriors that a note sounds ("note"), that one starts ("onset"), and a
pitch contour at a third of a semitone (not used here: Ember's notes carry no pitch bends). Windows
overlap by 30 frames, half of which is dropped at each side. Notes are made as Basic Pitch makes
them: onset peaks above a threshold, each followed while its frame posterior stays up, then (the
"melodia trick") notes without a clear onset traced from the strongest remaining frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import Cancelled, EmberError, ModelFileError
from engines.music.compose import (
    TICKS_PER_BEAT,
    Composition,
    Note,
    Track,
    estimate_key,
    validate_tempo,
)

MODEL_RATE_HZ = 22050
_FFT_HOP = 256
_WINDOW_SAMPLES = MODEL_RATE_HZ * 2 - _FFT_HOP  # 43844
_FRAMES_PER_WINDOW = 172  # what the graph gives for one window
_OVERLAP_FRAMES = 30
_OVERLAP_SAMPLES = _OVERLAP_FRAMES * _FFT_HOP
_HOP_SAMPLES = _WINDOW_SAMPLES - _OVERLAP_SAMPLES
_FRAMES_PER_SECOND = MODEL_RATE_HZ // _FFT_HOP  # 86, as basic-pitch counts it
_ANNOT_FRAMES = _FRAMES_PER_SECOND * 2
_MIDI_OFFSET = 21  # the graph's key 0 is A0, MIDI 21
_MAX_KEY_INDEX = 87
_ENERGY_TOLERANCE = 11
_BATCH = 8
_MODEL_FILE = "saved_models/icassp_2022/nmp.onnx"
# A recording whose loudest 30 ms is quieter than this holds nothing to transcribe.
_SILENCE_DBFS = -50.0


@dataclass(frozen=True, order=True)
class NoteEvent:
    """A transcribed note in seconds, with Basic Pitch's amplitude (the mean note posterior, 0-1)."""

    start_s: float
    end_s: float
    pitch: int
    amplitude: float


@dataclass(frozen=True, eq=False)
class Transcription:
    """What was heard: the notes in seconds, and the same notes as a one-track Composition in beats."""

    events: tuple[NoteEvent, ...]
    composition: Composition
    duration_s: float  # of the audio
    elapsed_s: float

    @property
    def notes(self) -> tuple[Note, ...]:
        return self.composition.tracks[0].notes


def model_path() -> Path:
    """The path of Basic Pitch's ``nmp.onnx`` inside the installed basic-pitch package.

    Raises ModelFileError when the package is not installed.
    """
    from engines.models.embedded import package_file

    path = package_file("basic_pitch", _MODEL_FILE)
    if path is None:
        raise ModelFileError(
            "The audio-to-MIDI model (Basic Pitch, package basic-pitch) is not installed. "
            "Run the install command from README.md again."
        )
    return path


class Transcriber:
    """Basic Pitch loaded once on onnxruntime's CPU provider (the graph is 230 KB; a GPU gains nothing)."""

    def __init__(self, model: str | Path | None = None) -> None:
        import onnxruntime as ort

        self.model = Path(model) if model is not None else model_path()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types for a damaged or foreign file
            raise ModelFileError(f"{self.model.name} is not a Basic Pitch ONNX model Ember can load ({exc}).") from None
        self._input = self._session.get_inputs()[0].name
        names = {o.name for o in self._session.get_outputs()}
        wanted = ("StatefulPartitionedCall:1", "StatefulPartitionedCall:2")  # note, onset
        if not set(wanted) <= names:
            raise ModelFileError(f"{self.model.name} does not have Basic Pitch's outputs (note and onset posteriors).")
        self._outputs = list(wanted)

    def posteriors(
        self,
        samples: np.ndarray,
        step: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The note and onset posteriors (frames x 88) of mono float32 ``samples`` at 22050 Hz.

        The audio is cut into the model's windows as basic-pitch does (half an overlap of silence
        in front, windows every 36164 samples, the last one padded). Raises Cancelled.
        """
        padded = np.concatenate([np.zeros(_OVERLAP_SAMPLES // 2, np.float32), samples.astype(np.float32)])
        starts = list(range(0, len(padded), _HOP_SAMPLES))
        notes, onsets = [], []
        for first in range(0, len(starts), _BATCH):
            if cancelled is not None and cancelled():
                raise Cancelled(None)
            batch = np.zeros((len(starts[first : first + _BATCH]), _WINDOW_SAMPLES, 1), np.float32)
            for row, start in enumerate(starts[first : first + _BATCH]):
                window = padded[start : start + _WINDOW_SAMPLES]
                batch[row, : len(window), 0] = window
            note, onset = self._session.run(self._outputs, {self._input: batch})
            notes.append(note)
            onsets.append(onset)
            if step is not None:
                step(min(len(starts), first + _BATCH), len(starts))
        frames = int(np.floor(len(samples) * (_FRAMES_PER_SECOND / MODEL_RATE_HZ)))
        return _unwrap(np.concatenate(notes), frames), _unwrap(np.concatenate(onsets), frames)

    def transcribe(
        self,
        source: str | Path | np.ndarray,
        rate_hz: int | None = None,
        *,
        tempo_bpm: float = 120.0,
        program: int = 0,
        onset_threshold: float = 0.5,
        frame_threshold: float = 0.3,
        min_note_ms: float = 127.7,
        min_hz: float | None = None,
        max_hz: float | None = None,
        melodia_trick: bool = True,
        step: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Transcription:
        """Transcribe an audio file (WAV, FLAC, OGG, MP3) or samples (``rate_hz`` then required) to notes.

        The thresholds and minimum length are basic-pitch's (and its defaults); ``min_hz`` and
        ``max_hz`` limit the pitches. The notes are placed on a beat grid at ``tempo_bpm`` (the
        audio's own tempo is not detected) on one track with General MIDI ``program``.
        Raises EmberError for an unreadable file, silent audio, or audio with no notes in it;
        Cancelled when ``cancelled()`` turns true.
        """
        began = time.perf_counter()
        tempo = validate_tempo(tempo_bpm)
        name, samples = _load(source, rate_hz)
        if _loudest_dbfs(samples) < _SILENCE_DBFS:
            raise EmberError(
                f"{_capital(name)} is silent (nothing in it is louder than {_SILENCE_DBFS:g} dBFS): "
                "there is nothing to transcribe."
            )
        note, onset = self.posteriors(samples, step, cancelled)
        min_frames = int(np.round(min_note_ms / 1000 * (MODEL_RATE_HZ / _FFT_HOP)))
        raw = notes_from_posteriors(
            note, onset, onset_threshold, frame_threshold, min_frames, min_hz, max_hz, melodia_trick
        )
        if not raw:
            raise EmberError(
                f"No notes were found in {name}: it sounds like speech, noise or something too quiet to "
                "hold a tune. Try a recording of a melody or chords, or a lower onset threshold."
            )
        times = frame_times(note.shape[0])
        events = tuple(
            sorted(
                NoteEvent(float(times[start]), float(times[end]), pitch, float(amplitude))
                for start, end, pitch, amplitude in raw
            )
        )
        beats_per_s = tempo / 60.0
        notes = []
        for event in events:
            start = round(max(0.0, event.start_s) * beats_per_s * TICKS_PER_BEAT)
            end = max(start + 1, round(event.end_s * beats_per_s * TICKS_PER_BEAT))
            velocity = max(1, min(127, round(127 * event.amplitude)))
            notes.append(Note(event.pitch, start / TICKS_PER_BEAT, (end - start) / TICKS_PER_BEAT, velocity))
        notes = _without_overlaps(notes)
        duration_s = len(samples) / MODEL_RATE_HZ
        last_beat = max(n.start_beat + n.beats for n in notes)
        bars = max(1, int(np.ceil(max(last_beat, duration_s * beats_per_s) / 4 - 1e-9)))
        track = Track("Transcribed", int(program), 0, tuple(notes))
        composition = Composition((track,), tempo, estimate_key(notes), (4, 4), bars)
        return Transcription(events, composition, duration_s, time.perf_counter() - began)


def transcribe(source: str | Path | np.ndarray, rate_hz: int | None = None, **options: object) -> Transcription:
    """:meth:`Transcriber.transcribe` with a Transcriber made for this one call."""
    return Transcriber().transcribe(source, rate_hz, **options)  # type: ignore[arg-type]


def _unwrap(output: np.ndarray, frames: int) -> np.ndarray:
    """Windows x frames x keys back to one frames x keys matrix, overlaps dropped, trimmed to the audio."""
    half = _OVERLAP_FRAMES // 2
    trimmed = output[:, half:-half, :]
    return trimmed.reshape(-1, trimmed.shape[2])[:frames]


def frame_times(frames: int) -> np.ndarray:
    """The time in seconds of each output frame, with basic-pitch's per-window correction."""
    plain = np.arange(frames) * _FFT_HOP / MODEL_RATE_HZ
    window = np.floor(np.arange(frames) / _ANNOT_FRAMES)
    # basic-pitch's own constant (0.0018 s included) that lines its frames up with the audio.
    offset = (_FFT_HOP / MODEL_RATE_HZ) * (_ANNOT_FRAMES - _WINDOW_SAMPLES / _FFT_HOP) + 0.0018
    return plain - offset * window


def _hz_to_key_index(hz: float) -> int:
    return int(np.round(12 * np.log2(hz / 440.0) + 69 - _MIDI_OFFSET))


def notes_from_posteriors(
    frames: np.ndarray,
    onsets: np.ndarray,
    onset_threshold: float = 0.5,
    frame_threshold: float = 0.3,
    min_note_frames: int = 11,
    min_hz: float | None = None,
    max_hz: float | None = None,
    melodia_trick: bool = True,
) -> list[tuple[int, int, int, float]]:
    """basic-pitch's ``output_to_notes_polyphonic``: (start frame, end frame, MIDI key, amplitude) notes.

    Onsets are the peaks in time of the onset posterior (raised where the frame posterior jumps)
    above ``onset_threshold``; each note lasts while its frame posterior stays above
    ``frame_threshold`` (11 frames of grace), and is kept if longer than ``min_note_frames``.
    """
    from scipy.signal import argrelmax

    frames = frames.astype(np.float64, copy=True)
    onsets = onsets.astype(np.float64, copy=True)
    count = frames.shape[0]
    if count == 0:
        return []
    if max_hz is not None:
        frames[:, _hz_to_key_index(max_hz) :] = 0
        onsets[:, _hz_to_key_index(max_hz) :] = 0
    if min_hz is not None:
        frames[:, : _hz_to_key_index(min_hz)] = 0
        onsets[:, : _hz_to_key_index(min_hz)] = 0
    onsets = _inferred_onsets(onsets, frames)

    peaks = np.zeros_like(onsets)
    where = argrelmax(onsets, axis=0)
    peaks[where] = onsets[where]
    times, keys = np.where(peaks >= onset_threshold)
    remaining = frames.copy()
    notes: list[tuple[int, int, int, float]] = []
    for start, key in zip(times[::-1], keys[::-1], strict=True):  # backwards in time, as basic-pitch goes
        if start >= count - 1:
            continue
        i = start + 1
        below = 0
        while i < count - 1 and below < _ENERGY_TOLERANCE:
            below = below + 1 if remaining[i, key] < frame_threshold else 0
            i += 1
        i -= below
        if i - start <= min_note_frames:
            continue
        remaining[start:i, max(0, key - 1) : min(_MAX_KEY_INDEX, key + 1) + 1] = 0
        notes.append((int(start), int(i), int(key) + _MIDI_OFFSET, float(np.mean(frames[start:i, key]))))

    if melodia_trick:
        while np.max(remaining) > frame_threshold:
            middle, key = np.unravel_index(np.argmax(remaining), remaining.shape)
            remaining[middle, key] = 0
            neighbours = slice(max(0, key - 1), min(_MAX_KEY_INDEX, key + 1) + 1)
            i = middle + 1
            below = 0
            while i < count - 1 and below < _ENERGY_TOLERANCE:
                below = below + 1 if remaining[i, key] < frame_threshold else 0
                remaining[i, neighbours] = 0
                i += 1
            end = i - 1 - below
            i = middle - 1
            below = 0
            while i > 0 and below < _ENERGY_TOLERANCE:
                below = below + 1 if remaining[i, key] < frame_threshold else 0
                remaining[i, neighbours] = 0
                i -= 1
            start = i + 1 + below
            if end - start <= min_note_frames:
                continue
            notes.append((int(start), int(end), int(key) + _MIDI_OFFSET, float(np.mean(frames[start:end, key]))))
    return notes


def _inferred_onsets(onsets: np.ndarray, frames: np.ndarray, differences: int = 2) -> np.ndarray:
    """The onset posterior raised where the frame posterior rises sharply (basic-pitch's get_infered_onsets)."""
    steps = []
    for n in range(1, differences + 1):
        shifted = np.concatenate([np.zeros((n, frames.shape[1])), frames])
        steps.append(shifted[n:, :] - shifted[:-n, :])
    rise = np.min(steps, axis=0)
    rise[rise < 0] = 0
    rise[:differences, :] = 0
    top = np.max(rise)
    if top > 0:
        rise = np.max(onsets) * rise / top
    return np.maximum(onsets, rise)


def _without_overlaps(notes: list[Note]) -> list[Note]:
    """Notes sorted, a note cut short where the same key starts again (MIDI cannot hold both)."""
    notes = sorted(notes, key=lambda n: (n.start_beat, n.pitch, n.beats, n.velocity))
    following: dict[int, float] = {}
    kept: list[Note] = []
    for note in reversed(notes):
        nxt = following.get(note.pitch)
        if nxt is not None and note.start_beat + note.beats > nxt:
            if nxt <= note.start_beat:
                continue  # the same key struck twice at once: keep one
            note = Note(note.pitch, note.start_beat, nxt - note.start_beat, note.velocity)
        following[note.pitch] = note.start_beat
        kept.append(note)
    return kept[::-1]


def _load(source: str | Path | np.ndarray, rate_hz: int | None) -> tuple[str, np.ndarray]:
    """(a name for messages, mono float32 samples at 22050 Hz) from a file or from samples."""
    from engines.dictation.audio import resample

    if isinstance(source, np.ndarray):
        if rate_hz is None or rate_hz <= 0:
            raise EmberError("Samples need their sample rate (rate_hz) to be transcribed.")
        array = np.asarray(source)
        if array.size == 0:
            raise EmberError("The recording is empty: there is nothing to transcribe.")
        if array.dtype.kind not in "fiu" or array.ndim > 2:
            raise EmberError(f"A recording is frames or frames x channels of numbers, not {array.dtype} {array.shape}.")
        if array.dtype.kind in "iu":
            array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
        mono = array.astype(np.float32).reshape(len(array), -1).mean(axis=1)
        return "the recording", _clean(resample(mono, int(rate_hz), MODEL_RATE_HZ))
    path = Path(source)
    if not path.exists():
        raise EmberError(f"There is no file {path}. Check the name and try again.")
    if path.is_dir():
        raise EmberError(f"{path} is a folder; give an audio file (WAV, FLAC, OGG, MP3).")
    if path.stat().st_size == 0:
        raise EmberError(f"{path.name} is empty (0 bytes): there is no audio in it.")
    import miniaudio

    try:
        decoded = miniaudio.decode_file(
            str(path), output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1, sample_rate=MODEL_RATE_HZ
        )
    except miniaudio.MiniaudioError:
        raise EmberError(
            f"{path.name} is not an audio file Ember can read. Pick a WAV, FLAC, OGG or MP3 recording."
        ) from None
    samples = np.asarray(decoded.samples, dtype=np.float32)
    if len(samples) == 0:
        raise EmberError(f"{path.name} holds no audio (its length is 0 seconds).")
    return path.name, _clean(samples)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _clean(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0).astype(np.float32)


def _loudest_dbfs(samples: np.ndarray) -> float:
    from engines.dictation.audio import loudest_dbfs

    return loudest_dbfs(samples, MODEL_RATE_HZ)


def note_f1(
    reference: list[tuple[float, int]] | tuple[tuple[float, int], ...],
    estimate: list[tuple[float, int]] | tuple[tuple[float, int], ...],
    onset_tolerance_s: float = 0.05,
) -> tuple[float, float, float]:
    """(precision, recall, F1) of (onset seconds, MIDI key) notes: a match is the same key within the tolerance.

    Each note matches at most one other, greedily by closeness (mir_eval's onset-only note metric,
    without its optimal matching: the same on well-separated notes).
    """
    pairs = sorted(
        (abs(r[0] - e[0]), i, j)
        for i, r in enumerate(reference)
        for j, e in enumerate(estimate)
        if r[1] == e[1] and abs(r[0] - e[0]) <= onset_tolerance_s
    )
    used_r: set[int] = set()
    used_e: set[int] = set()
    for _distance, i, j in pairs:
        if i not in used_r and j not in used_e:
            used_r.add(i)
            used_e.add(j)
    matched = len(used_r)
    precision = matched / len(estimate) if estimate else 0.0
    recall = matched / len(reference) if reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
