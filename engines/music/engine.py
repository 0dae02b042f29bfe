"""The music engine: the composer (MIDI, rendered with a SoundFont) or a MusicGen model, in the engine process.

Composing writes the notes (engines/music/compose.py), then plays them through a SoundFont
(tinysoundfont), mixed to mono for the pipeline's audio watermark. MusicGen
(engines/music/musicgen.py) turns a description into music frame by frame; a cancel is seen
before every frame. When previews are asked for, the audio made so far is decoded about every
two seconds of music and sent as a PREVIEW (the pipeline checks and watermarks it), so the
panel draws the waveform as it grows.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.engine import Progress
from engines.errors import Cancelled, EmberError, ModelFileError
from engines.jobs import CancelToken
from engines.media import AudioOutput
from engines.music.requests import ComposeRequest, MadeMusic, MusicOptions, MusicRequest
from engines.pipeline import Provenance

RENDER_RATE_HZ = 32_000  # MusicGen's rate too: one rate for every clip of the Music panel
PREVIEW_EVERY_S = 2.0
STEP_EVERY_S = 0.02  # progress events at most 50 a second: a small model makes thousands of frames a second


class MusicEngine:
    """The composer or one MusicGen folder. Raises ModelFileError at construction for a folder that is not one."""

    kind = "music"

    def __init__(self, options: MusicOptions) -> None:
        self.options = options
        self.threads = options.threads or 2
        self.backend = "CPU"
        self.notes: list[str] = []
        self._musicgen: Any = None
        self._sha256 = ""
        if options.is_composer:
            self.name = "Ember composer"
            self._soundfont = Path(options.soundfont) if options.soundfont else None
        else:
            folder = Path(options.model)
            if not folder.is_dir():
                raise ModelFileError(
                    f"The music model {folder} is not a folder. Pick the folder of a MusicGen ONNX export "
                    "(text_encoder.onnx, decoder_model.onnx, decoder_with_past_model.onnx, encodec_decode.onnx)."
                )
            self.name = folder.parent.name if folder.name == "onnx" else folder.name  # optimum's onnx/ subfolder

    def memory_estimate(self) -> int:
        """The bytes the loaded model needs: the graphs' files and their buffers (64 MiB for the composer)."""
        if self.options.is_composer:
            return 64 * 2**20
        return 2 * sum(p.stat().st_size for p in Path(self.options.model).rglob("*.onnx")) + 256 * 2**20

    def load(self) -> None:
        """Load MusicGen's graphs (or make Ember's SoundFont once); raises ModelFileError for a damaged folder."""
        from engines.models.hashes import file_sha256

        if self.options.is_composer:
            from engines.music.compose import _soundfont_file

            font = _soundfont_file(self._soundfont)
            self._sha256 = file_sha256(font)
            return
        if self._musicgen is not None:
            return
        from engines.diffusion.engine import cuda_usable
        from engines.music.musicgen import MusicGen

        providers = ["CPUExecutionProvider"]
        if self.options.device in ("auto", "gpu") and cuda_usable():
            providers.insert(0, "CUDAExecutionProvider")
        elif self.options.device == "gpu":
            self.notes.append("No CUDA GPU is usable by onnxruntime here; the music is made on the CPU.")
        model = MusicGen(self.options.model, providers=providers, threads=self.threads)
        model.load()
        self.backend = "CUDA" if model.provider.startswith("CUDA") else "CPU"
        self._sha256 = file_sha256(model.graphs["decoder"].path)
        self._musicgen = model

    def unload(self) -> None:
        if self._musicgen is not None:
            self._musicgen.unload()
        self._musicgen = None

    def details(self) -> dict[str, Any]:
        return {"threads": self.threads, "sha256": self._sha256, "model": self.name}

    def run(self, request: Any, progress: Progress, cancel: CancelToken) -> MadeMusic:
        """Compose or generate; raises Cancelled (with what was made, for a composition nothing) when cancelled."""
        self.load()
        for note in self.notes:
            progress.notice(note)
        self.notes.clear()
        if isinstance(request, ComposeRequest):
            return self._compose(request, progress, cancel)
        if isinstance(request, MusicRequest):
            return self._generate(request, progress, cancel)
        raise EmberError(f"The music engine does not run {type(request).__name__}.")

    # -- composing -------------------------------------------------------------------------------
    def _compose(self, request: ComposeRequest, progress: Progress, cancel: CancelToken) -> MadeMusic:
        from engines.music.compose import compose, midi_bytes, render

        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        started = time.perf_counter()
        piece = compose(
            request.key,
            request.style,
            tempo_bpm=request.tempo_bpm,
            bars=request.bars,
            time_signature=request.metre,
            seed=seed,
        )
        composed = time.perf_counter()
        rendering = render(
            piece,
            self._soundfont,
            rate_hz=RENDER_RATE_HZ,
            step=lambda done, total: progress.step(done, total),
            cancelled=lambda: cancel.cancelled,
        )
        samples = rendering.samples.mean(axis=1).astype(np.float32)  # the audio mark and WAV are mono
        elapsed = time.perf_counter() - started
        parameters = {
            "model": self.name,
            "key": piece.key,
            "style": piece.style,
            "tempo_bpm": piece.tempo_bpm,
            "bars": piece.bars,
            "time_signature": f"{piece.time_signature[0]}/{piece.time_signature[1]}",
            "seed": seed,
            "soundfont": rendering.soundfont.name,
            "chords": " ".join(c.symbol for c in piece.chords),
            "title": request.title,
        }
        timings = {
            "compose_s": composed - started,
            "render_s": rendering.elapsed_s,
            "total_s": elapsed,
            "audio_s": len(samples) / RENDER_RATE_HZ,
        }
        if elapsed > 0:
            timings["realtime_factor"] = timings["audio_s"] / elapsed
        description = request.title or f"{piece.style} in {piece.key}, {piece.tempo_bpm:g} BPM, {piece.bars} bars"
        return MadeMusic(samples, RENDER_RATE_HZ, description, parameters, timings, midi=midi_bytes(piece))

    # -- MusicGen --------------------------------------------------------------------------------
    def _generate(self, request: MusicRequest, progress: Progress, cancel: CancelToken) -> MadeMusic:
        from engines.music.musicgen import MusicSettings

        model = self._musicgen
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        settings = MusicSettings(
            seconds=request.seconds,
            guidance_scale=request.guidance,
            temperature=request.temperature,
            top_k=request.top_k,
            top_p=request.top_p,
            seed=seed,
            greedy=request.greedy,
        )
        every = max(1, int(PREVIEW_EVERY_S * model.config.frame_rate))
        shown = {"samples": 0}

        def preview(audio: np.ndarray) -> None:
            # Nothing is played that was not checked: the description was checked as the prompt, and
            # each preview passes the pipeline's preview hooks (the audio watermark) first.
            chunk = AudioOutput(np.asarray(audio, np.float32).reshape(-1), model.sample_rate, request.prompt,
                                {"start": shown["samples"]})  # fmt: skip
            shown["samples"] += len(chunk.samples)
            progress.preview(chunk, 0)

        wants = request.preview and progress.wants_preview()
        try:
            result = model.generate(
                request.prompt,
                settings,
                progress=_throttled(progress.step),
                cancel=lambda: cancel.cancelled,
                preview=preview if wants else None,
                preview_every=every,
            )
        except Cancelled:
            raise Cancelled(None) from None
        parameters = {
            "model": self.name,
            "prompt": request.prompt,
            "seconds": request.seconds,
            "guidance": request.guidance,
            "temperature": request.temperature,
            "top_k": request.top_k,
            "top_p": request.top_p,
            "greedy": request.greedy,
            "seed": None if request.greedy else seed,
            "windows": result.windows,
        }
        t = result.timings
        timings = {
            "load_s": t.load_s,
            "text_encoder_s": t.text_encoder_s,
            "decode_s": t.decode_s,
            "audio_decoder_s": t.audio_decoder_s,
            "total_s": t.total_s,
            "frames_per_s": t.frames_per_s,
            "audio_s": result.duration_s,
        }
        compute = t.total_s - t.load_s
        if compute > 0:
            timings["realtime_factor"] = result.duration_s / compute
        audio = np.asarray(result.audio, np.float32).reshape(-1)
        return MadeMusic(audio, result.sample_rate, request.prompt, parameters, timings, codes=result.codes)

    # -- records ---------------------------------------------------------------------------------
    def provenance(self, request: Any, output: MadeMusic) -> Provenance:
        """What made ``output``: the composer and SoundFont, or the MusicGen folder; settings, seed, machine."""
        from engines.reproducibility import made_on

        kernels = self.kernels
        settings = {**output.parameters, "threads": self.threads, "made_on": made_on(self.backend, kernels)}
        path = self.options.soundfont if self.options.is_composer else self.options.model
        return Provenance(
            model_name=self.name,
            model_path=str(path),
            model_sha256=self._sha256,
            backend=self.backend,
            settings=settings,
            seed=output.parameters.get("seed"),
        )

    @property
    def kernels(self) -> str:
        if self.options.is_composer:
            import tinysoundfont

            return f"tinysoundfont {getattr(tinysoundfont, '__version__', '0.3')}"
        import onnxruntime as ort

        provider = self._musicgen.provider if self._musicgen is not None else "CPUExecutionProvider"
        return f"onnxruntime {ort.__version__} {provider}"


def _throttled(step: Any) -> Any:
    """``step(done, total)`` passed on at most every :data:`STEP_EVERY_S`, and always for the last frame.

    Every frame is counted; only the events are fewer. With the tiny test model a frame takes
    0.2 ms, and an event per frame from the engine process halved its speed on two cores.
    """
    last = [0.0]

    def throttled(done: int, total: int) -> None:
        now = time.perf_counter()
        if done >= total or now - last[0] >= STEP_EVERY_S:
            last[0] = now
            step(done, total)

    return throttled
