"""The dictation engine: faster-whisper's WhisperModel on a CTranslate2 Whisper folder.

It runs in the engine process; the model loads on the first job and stays loaded. faster-whisper
transcribes one 30-second window at a time and yields its segments as a generator; a window on
the CPU takes longer than the 200 ms a cancel may take, so the generator runs on a thread of its
own and the job waits for its segments in 20 ms steps: a cancel ends the job at once, and the
window in progress (at most one) finishes on that thread and is thrown away before the next job.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
import types
from typing import Any

import numpy as np

from engines.dictation.audio import Audio, from_samples, is_silent, read_audio
from engines.dictation.folder import WhisperFolder, read_whisper_folder
from engines.dictation.requests import DictationOptions, DictationRequest, Segment, Transcription, Word
from engines.engine import Progress
from engines.errors import Cancelled, EmberError, ModelFileError
from engines.hardware import default_threads
from engines.jobs import CancelToken
from engines.pipeline import Provenance

_POLL_S = 0.02


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CPU-only build, or no driver: the CPU it is
        return 0


class DictationEngine:
    """One Whisper folder, loaded for transcribing. Raises ModelFileError at construction for a bad folder."""

    kind = "dictation"

    def __init__(self, options: DictationOptions) -> None:
        self.options = options
        self.folder: WhisperFolder = read_whisper_folder(options.folder)
        self.threads = options.threads or default_threads()
        self.backend = "CPU"
        self.notes: list[str] = []
        self._model: Any = None
        self._sha256 = ""
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def multilingual(self) -> bool:
        if self._model is not None:
            return bool(self._model.model.is_multilingual)
        return self.folder.multilingual

    # -- the Engine protocol ---------------------------------------------------------------
    def memory_estimate(self) -> int:
        """The weights (float16 on disk; int8 in memory is smaller) plus the decoder's buffers."""
        return self.folder.weights_bytes + 128 * 2**20

    def load(self) -> None:
        """Load the model with CTranslate2 (CUDA when asked for and present). Raises ModelFileError when it cannot."""
        if self._model is not None:
            return
        from tqdm import tqdm

        WhisperModel = import_faster_whisper().WhisperModel

        from engines.models.hashes import file_sha256

        # faster-whisper makes a (disabled) tqdm bar every job, and tqdm's default lock is a
        # multiprocessing semaphore that the engine process's hard exit would leave behind.
        tqdm.set_lock(threading.RLock())

        device = "cpu"
        if self.options.device in ("auto", "gpu") and _cuda_devices() > 0:
            device = "cuda"
        elif self.options.device == "gpu":
            self.notes.append("CTranslate2 finds no CUDA GPU here; dictation runs on the CPU.")
        try:
            self._model = self._whisper(WhisperModel, device)
        except (RuntimeError, ValueError, OSError) as exc:
            if device != "cuda":
                raise ModelFileError(
                    f"CTranslate2 cannot load the Whisper model in {self.folder.path} ({exc})."
                ) from None
            self.notes.append(f"CTranslate2 could not start on the GPU ({exc}); dictation runs on the CPU.")
            device = "cpu"
            try:
                self._model = self._whisper(WhisperModel, device)
            except (RuntimeError, ValueError, OSError) as again:
                raise ModelFileError(
                    f"CTranslate2 cannot load the Whisper model in {self.folder.path} ({again})."
                ) from None
        try:
            self._sha256 = file_sha256(self.folder.path / "model.bin")
        except OSError as exc:
            self._model = None
            raise ModelFileError(f"Ember cannot read {self.folder.path / 'model.bin'} ({exc.strerror}).") from None
        self.backend = "CUDA" if device == "cuda" else "CPU"

    def _whisper(self, whisper_model: Any, device: str) -> Any:
        compute = self.options.compute_type
        if device == "cpu" and compute in ("float16", "int8_float16"):
            compute = "int8"  # CTranslate2 has no float16 kernels for the CPU
        return whisper_model(
            str(self.folder.path), device=device, compute_type=compute, cpu_threads=self.threads, local_files_only=True
        )

    def unload(self) -> None:
        """Free the model (after the window a cancelled job left running has finished)."""
        self._finish_leftover()
        self._model = None

    def details(self) -> dict[str, Any]:
        """What the Studio may read of this engine in the engine process."""
        return {"threads": self.threads, "sha256": self._sha256, "multilingual": self.multilingual, "pid": os.getpid()}

    # -- running ---------------------------------------------------------------------------
    def audio_of(self, request: DictationRequest) -> Audio:
        """The request's recording at 16 kHz mono. Raises EmberError for an unreadable or empty one."""
        if request.audio_path is not None:
            return read_audio(request.audio_path)
        assert request.samples is not None
        return from_samples(request.samples, request.sample_rate_hz)

    def language_for(self, request: DictationRequest) -> tuple[str | None, str]:
        """The language to pass to Whisper (None: detect it) and the note that says why.

        Raises EmberError for a language the model cannot transcribe.
        """
        language = request.language.lower() if request.language else None
        if not self.multilingual:
            if language not in (None, "en"):
                raise EmberError(
                    f"{self.name} understands English only, so it cannot transcribe '{language}'. "
                    "Pick a multilingual Whisper folder (--model), or leave the language out."
                )
            note = (
                ""
                if language
                else f"{self.name} understands English only, so the language was not detected: it is English."
            )
            return "en", note
        if language is not None:
            supported = set(self._model.supported_languages) if self._model is not None else set()
            if supported and language not in supported:
                raise EmberError(f"{self.name} does not know the language '{language}'. Leave it out to detect it.")
        return language, ""

    def run(self, request: DictationRequest, progress: Progress, cancel: CancelToken) -> Transcription:
        """Transcribe the request's recording; segments are reported as they are heard.

        Raises EmberError for unreadable, silent or speechless audio and for a language the model
        does not know; Cancelled (with what was heard so far, or None) when cancelled.
        """
        audio = self.audio_of(request)  # a bad or silent recording is refused before anything loads
        name = request.name
        if is_silent(audio.samples):
            raise EmberError(f"No speech was found in {name} (it is silent).")
        self.load()
        for note in self.notes:
            progress.notice(note)
        self.notes.clear()
        language, note = self.language_for(request)
        self._finish_leftover()
        started = time.perf_counter()
        feed: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop = stop = threading.Event()
        worker = threading.Thread(
            target=self._transcribe, args=(audio.samples, request, language, feed, stop), daemon=True
        )
        self._worker = worker
        worker.start()
        total = max(1, math.ceil(audio.duration_s))
        progress.step(0, total)
        segments: list[Segment] = []
        info: Any = None
        while True:
            if cancel.cancelled:
                stop.set()
                raise Cancelled(self._result(request, audio, info, segments, note, started, partial=True) or None)
            try:
                kind, value = feed.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if kind == "info":
                info = value
            elif kind == "segment":
                segments.append(_segment(value))
                progress.step(min(total, round(value.end)), total)
            elif kind == "error":
                raise _failure(value, name)
            else:
                break
        progress.step(total, total)
        result = self._result(request, audio, info, segments, note, started, partial=False)
        if result is None:
            raise EmberError(f"No speech was found in {name} (it holds sound, but no words Ember could hear).")
        return result

    def _transcribe(
        self,
        samples: np.ndarray,
        request: DictationRequest,
        language: str | None,
        feed: queue.SimpleQueue[tuple[str, Any]],
        stop: threading.Event,
    ) -> None:
        """On the worker thread: run faster-whisper's generator, one segment at a time, until done or stopped."""
        try:
            segments, info = self._model.transcribe(
                samples,
                language=language,
                beam_size=request.beam_size,
                word_timestamps=request.word_timestamps,
                vad_filter=request.vad,
            )
            feed.put(("info", info))
            for segment in segments:
                if stop.is_set():
                    break
                feed.put(("segment", segment))
        except BaseException as exc:  # every failure goes back to the job, none ends the engine process
            feed.put(("error", exc))
            return
        feed.put(("done", None))

    def _finish_leftover(self) -> None:
        """Wait for the window a cancelled job left on the worker thread (it stops after it)."""
        worker = self._worker
        if worker is not None:
            self._stop.set()
            worker.join()
            self._worker = None

    def _result(
        self,
        request: DictationRequest,
        audio: Audio,
        info: Any,
        segments: list[Segment],
        note: str,
        started: float,
        *,
        partial: bool,
    ) -> Transcription | None:
        """The transcription of what was heard, or None when no words were."""
        text = " ".join(s.text for s in segments if s.text).strip()
        if not text:
            return None
        language = getattr(info, "language", None) or "en"
        detected = self.multilingual and request.language is None
        return Transcription(
            text=text,
            segments=tuple(segments),
            language=language,
            language_probability=float(getattr(info, "language_probability", 1.0) or 0.0),
            language_detected=detected,
            language_note=note,
            multilingual=self.multilingual,
            duration_s=audio.duration_s,
            speech_s=float(getattr(info, "duration_after_vad", audio.duration_s) or 0.0),
            transcribe_s=time.perf_counter() - started,
            source=request.name,
            model_name=self.name,
            partial=partial,
        )

    def provenance(self, request: DictationRequest, output: Transcription) -> Provenance:
        """What made ``output``: the Whisper folder, its model.bin's SHA-256, the backend and the settings."""
        from engines.reproducibility import made_on

        settings = {
            "task": "transcribe",
            "source": request.name,
            "language": output.language,
            "language_detected": output.language_detected,
            "beam_size": request.beam_size,
            "vad": request.vad,
            "word_timestamps": request.word_timestamps,
            "compute_type": self.options.compute_type,
            "threads": self.threads,
            "device": self.options.device,
            "duration_s": round(output.duration_s, 3),
            "made_on": made_on(self.backend, f"ctranslate2 {_ctranslate2_version()}"),
        }
        return Provenance(
            model_name=self.name,
            model_path=str(self.folder.path),
            model_sha256=self._sha256,
            backend=self.backend,
            settings=settings,
            seed=None,
        )


def _segment(segment: Any) -> Segment:
    words = tuple(
        Word(float(w.start), float(w.end), str(w.word).strip(), float(w.probability)) for w in (segment.words or ())
    )
    return Segment(float(segment.start), float(segment.end), str(segment.text).strip(), words)


def _failure(exc: BaseException, name: str) -> BaseException:
    if isinstance(exc, EmberError):
        return exc
    if isinstance(exc, MemoryError):
        return EmberError(f"There was not enough memory to transcribe {name}. Try a shorter recording.")
    return EmberError(f"Whisper could not transcribe {name} ({type(exc).__name__}: {exc}).")


def _ctranslate2_version() -> str:
    try:
        import ctranslate2

        return str(ctranslate2.__version__)
    except ImportError:
        return "?"


class _NoPyAV(types.ModuleType):
    """Stands in for PyAV, which faster-whisper imports at start for its own file decoder.

    Ember never calls that decoder: it decodes with miniaudio and hands Whisper samples
    (engines/dictation/audio.py). PyAV's wheels link GPL codecs, so Ember does not ship it.
    """

    def __getattr__(self, name: str) -> Any:
        # AttributeError, so that hasattr() and introspection see an empty module.
        raise AttributeError(f"av.{name}: Ember decodes audio itself; PyAV (faster-whisper's decoder) is not installed")


def import_faster_whisper() -> types.ModuleType:
    """faster-whisper, imported where PyAV is not installed (a real PyAV, if present, is used)."""
    stand_in = None
    if "av" not in sys.modules:
        try:
            import av  # noqa: F401
        except ImportError:
            stand_in = sys.modules["av"] = _NoPyAV("av")
    try:
        import faster_whisper
    finally:
        # Only faster-whisper's modules keep the stand-in: to everything else PyAV stays not installed
        # (diffusers, for one, asks importlib for its spec, which a stand-in cannot give).
        if stand_in is not None and sys.modules.get("av") is stand_in:
            del sys.modules["av"]
    return faster_whisper
