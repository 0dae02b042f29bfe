"""The speech engine: one voice, loaded once, speaking a text sentence by sentence.

It runs in the engine process. Between sentences it checks the cancel token, and a cancel
also stops the onnxruntime call under way (RunOptions.terminate), so a cancel wins within a
few milliseconds even in a long sentence. When previews are asked for, each sentence goes out
as soon as it is made (with the pause after it), so the panel plays the first sentence while
the rest is made; the whole clip is what the job returns and the pipeline finishes.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.engine import Progress
from engines.errors import Cancelled, EmberError
from engines.jobs import CancelToken
from engines.media import AudioOutput
from engines.models.hashes import file_sha256
from engines.pipeline import Provenance
from engines.speech.requests import SpeechOptions, SpeechRequest, SpokenText
from engines.speech.voices import HIBARI, HibariVoice, PiperVoice, load_voice, resolve_voice, split_sentences


class SpeechEngine:
    """One voice. Raises ModelFileError at construction for an unknown voice or a missing file."""

    kind = "speech"

    def __init__(self, options: SpeechOptions) -> None:
        self.options = options
        self.info = resolve_voice(options.voice)
        # One thread: hibari runs ~100x and piper ~10x real time on one core, and the others stay free
        # for the window and the pipeline (the watermark of the clip runs beside the next job).
        self.threads = options.threads or 1
        self.backend = "CPU"
        self._voice: HibariVoice | PiperVoice | None = None
        self._sha256 = ""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def voice(self) -> HibariVoice | PiperVoice:
        self.load()
        assert self._voice is not None
        return self._voice

    def memory_estimate(self) -> int:
        """Return the bytes the loaded voice needs: about twice its graph file (weights and buffers)."""
        return 2 * Path(self.info.path).stat().st_size + 64 * 2**20

    def load(self) -> None:
        """Load the voice's graph and the G2P; raises ModelFileError for a file that is not a voice."""
        if self._voice is not None:
            return
        voice = load_voice(self.info, self.threads)
        voice.phonemes("Ready.")  # the G2P loads its lexicons on first use: here, not in the first job
        self._sha256 = file_sha256(Path(self.info.path))
        self._voice = voice

    def unload(self) -> None:
        self._voice = None

    def details(self) -> dict[str, Any]:
        return {"threads": self.threads, "sha256": self._sha256, "voice": self.info.id, "kind": self.info.kind}

    def run(self, request: SpeechRequest, progress: Progress, cancel: CancelToken) -> SpokenText:
        """Speak ``request.text``; returns the whole clip with each sentence's start.

        Raises Cancelled (with the sentences made so far) when cancelled.
        """
        voice = self.voice
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        rng = np.random.default_rng(seed)
        sentences = split_sentences(request.text)
        pause = np.zeros(int(voice.sample_rate * request.pause_ms / 1000), np.float32)
        parts: list[np.ndarray] = []
        starts: list[int] = []
        length = 0
        started = time.perf_counter()
        previews = progress.wants_preview()
        for index, sentence in enumerate(sentences):
            try:
                cancel.raise_if_cancelled()
                audio = voice.synthesize(sentence, request.speed, rng, cancel)
            except Cancelled:
                # What was said so far is kept (and finished by the pipeline like a whole clip).
                kept = self._spoken(request, sentences[:index], parts, starts, seed, started) if parts else None
                raise Cancelled(kept) from None
            if index < len(sentences) - 1 and len(audio):
                audio = np.concatenate([audio, pause])
            starts.append(length)
            parts.append(audio)
            length += len(audio)
            if previews:
                # Nothing is played that was not checked: the whole text was checked as the prompt before
                # this job ran (prompt_texts), and each preview passes the pipeline's preview hooks
                # (the safety check of its text, the audio watermark) before the panel gets it.
                chunk = AudioOutput(audio, voice.sample_rate, sentence, {"sentence": index, "start": starts[-1]})
                progress.preview(chunk, 0)
            progress.step(index + 1, len(sentences))
        if not length:
            raise EmberError(
                "There is nothing the voice can say in this text (no words, only symbols or emoji). Write it in words."
            )
        return self._spoken(request, sentences, parts, starts, seed, started)

    def _spoken(
        self,
        request: SpeechRequest,
        sentences: list[str],
        parts: list[np.ndarray],
        starts: list[int],
        seed: int,
        started: float,
    ) -> SpokenText:
        samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        rate = self.voice.sample_rate
        synthesis_s = time.perf_counter() - started
        parameters = {
            "voice": self.info.id,
            "model": self.info.name,
            "speed": request.speed,
            "pause_ms": request.pause_ms,
            "seed": seed if self.info.kind == HIBARI else None,
            "sentences": len(sentences),
        }
        timings = {"synthesis_s": synthesis_s, "audio_s": len(samples) / rate}
        if synthesis_s > 0:
            timings["realtime_factor"] = len(samples) / rate / synthesis_s
        return SpokenText(samples, rate, " ".join(sentences), tuple(sentences), tuple(starts), parameters, timings)

    def provenance(self, request: SpeechRequest, output: SpokenText) -> Provenance:
        """Return what made ``output``: the voice, its graph's SHA-256, the settings and the seed."""
        from engines.reproducibility import made_on

        settings = {**output.parameters, "threads": self.threads, "made_on": made_on(self.backend, self.kernels)}
        return Provenance(
            model_name=self.info.name,
            model_path=self.info.path,
            model_sha256=self._sha256,
            backend=self.backend,
            settings=settings,
            seed=output.parameters.get("seed"),
        )

    @property
    def kernels(self) -> str:
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__} CPUExecutionProvider"
