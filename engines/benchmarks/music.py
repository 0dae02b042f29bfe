"""``main.py bench music``: seconds of music per second of compute, Ember beside bare onnxruntime and transformers.

For each model (the tiny random-weight MusicGen of tests/tools/tiny_musicgen.py always; with
``small``, a random-weight model in facebook/musicgen-small's architecture, built into that folder
once), the same prompt, length, guidance and greedy decoding go through three paths in this run:

- ember: ``Studio.submit(MusicRequest)`` and wait for the result: the queue, the engine process
  (Ember's MusicGen on onnxruntime), the pipeline (safety check of the prompt, the audio
  watermark) and the WAV with Content Credentials in the library folder. "ember engine" is the
  generation time the engine measured inside that same job (tokenizer, text encoder, every
  decoder step, EnCodec), so the gap between the two is the queue and the pipeline.
- bare: the leanest greedy loop written here on four plain ``onnxruntime.InferenceSession``
  objects over the same graphs, with the same thread count, delay pattern and guidance. Its
  codes must equal those of Ember's MusicGen (run once in this process for them).
- transformers: ``MusicgenForConditionalGeneration.generate`` (torch, CPU) on the checkpoint the
  ONNX folder was exported from, with ``torch.set_num_threads`` at the same count.

Greedy decoding on every path, so that the codes can be compared; the sampler Ember uses by
default (top-k 250) costs one partial sort of the logits a step, small beside the decoder.

The composer (compose and render 16 bars of "pop") and Basic Pitch's transcription of that
rendering are timed too; the composer has no other implementation to compare with, and
basic-pitch's own runner needs TensorFlow and librosa, which Ember does not install, so the
transcription is shown beside the bare nmp.onnx session on the same windows.

The paths alternate, repetition by repetition, so that other load on the machine falls on all of
them; each figure is the median of the repetitions, after one warm-up run of each.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engines.benchmarks import Figure, Report, median
from engines.errors import EmberError

PROMPT = "calm lo-fi hip hop beat with warm piano and soft drums"
GUIDANCE = 3.0
SEED = 1
DEFAULT_THREADS = 2  # the music engine's own default (MusicOptions.threads None)
MIN_SECONDS, MAX_SECONDS = 1.0, 30.0  # what a MusicRequest takes, and one window (transformers makes no more)
COMPOSER_BARS = 16
TOOL = Path(__file__).resolve().parents[2] / "tests" / "tools" / "tiny_musicgen.py"

# basic-pitch 0.4.0's windows (inference.py): 2 s less one hop at 22050 Hz, 30 frames of overlap, 8 a batch.
_BP_RATE_HZ = 22050
_BP_WINDOW = _BP_RATE_HZ * 2 - 256
_BP_OVERLAP = 30 * 256
_BP_HOP = _BP_WINDOW - _BP_OVERLAP
_BP_BATCH = 8


@dataclass(frozen=True)
class _Model:
    """One model to measure: its ONNX folder and the transformers checkpoint it was exported from (or None)."""

    label: str
    onnx: Path
    checkpoint: Path | None


def _tiny_musicgen() -> ModuleType:
    """tests/tools/tiny_musicgen.py, the builder of the benchmark's models (tests/tools is not a package)."""
    if "tiny_musicgen" in sys.modules:
        return sys.modules["tiny_musicgen"]
    if not TOOL.is_file():
        raise EmberError(
            f"The music bench builds its models with {TOOL}, which this installation lacks. "
            "Run it from Ember's source tree."
        )
    spec = importlib.util.spec_from_file_location("tiny_musicgen", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["tiny_musicgen"] = module
    return module


def _tiny_model() -> _Model:
    tool = _tiny_musicgen()
    try:
        checkpoint = tool.tiny_musicgen_checkpoint()
        onnx = tool.tiny_musicgen_onnx()
    except ImportError as exc:
        raise EmberError(
            f"The music bench builds a tiny MusicGen with torch, transformers and optimum ({exc}). "
            "Install Ember's [convert] extra and run it again."
        ) from None
    return _Model("tiny", onnx, checkpoint)


def _small_model(folder: Path) -> _Model:
    """MusicGen-small's architecture in ``folder`` (``onnx/`` and ``checkpoint/``), built there on first use."""
    if (folder / "decoder_model.onnx").is_file():  # the folder is an ONNX export itself
        checkpoint = folder.parent / "checkpoint"
        return _Model("small", folder, checkpoint if (checkpoint / "config.json").is_file() else None)
    if not (folder / "onnx" / "decoder_model.onnx").is_file():
        print(
            f"bench music: building MusicGen-small's architecture into {folder} (minutes, ~6 GB)...",
            file=sys.stderr,
            flush=True,
        )
        built = subprocess.run(
            [sys.executable, str(TOOL), "--small-architecture", str(folder)], capture_output=True, text=True
        )
        if built.returncode != 0:
            last = (built.stderr.strip().splitlines() or [f"exit status {built.returncode}"])[-1]
            raise EmberError(f"Building the MusicGen-small-sized model into {folder} failed: {last}")
    checkpoint = folder / "checkpoint"
    return _Model("small", folder / "onnx", checkpoint if (checkpoint / "config.json").is_file() else None)


def _onnx_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and ".onnx" in p.name) / 1e6


class _BareMusicGen:
    """The leanest guided greedy MusicGen loop on plain onnxruntime sessions: the baseline for Ember's."""

    def __init__(self, folder: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        generation = json.loads((folder / "generation_config.json").read_text())
        self.codebooks = int(config["decoder"]["num_codebooks"])
        self.start = int(generation["decoder_start_token_id"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1

        def session(name: str) -> Any:
            return ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])

        self.text = session("text_encoder.onnx")
        self.first = session("decoder_model.onnx")
        self.step = session("decoder_with_past_model.onnx")
        self.codec = session("encodec_decode.onnx")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # Output 0 is the logits; the rest are the presents, fed back as the past of the same name.
        self.first_past = [o.name.replace("present.", "past_key_values.", 1) for o in self.first.get_outputs()[1:]]
        self.step_past = [o.name.replace("present.", "past_key_values.", 1) for o in self.step.get_outputs()[1:]]
        self.decode_s = 0.0  # the decoder steps of the last run

    def __call__(self, prompt: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the codes (codebooks, frames) and the mono audio for ``prompt``."""
        k = self.codebooks
        ids = np.asarray([self.tokenizer.encode(prompt).ids], np.int64)
        mask = np.ones_like(ids)
        (states,) = self.text.run(None, {"input_ids": ids, "attention_mask": mask})
        states = np.concatenate([states, np.zeros_like(states)])  # the unconditional row
        mask = np.concatenate([mask, np.zeros_like(mask)])
        length = frames + k
        sequence = np.full((k, length), self.start, np.int64)  # the start token is also the delay's pad
        books = np.arange(k)
        guidance = np.float32(GUIDANCE)
        began = time.perf_counter()
        feeds = {
            "input_ids": np.tile(sequence[:, :1], (2, 1)),
            "encoder_hidden_states": states,
            "encoder_attention_mask": mask,
        }
        out = self.first.run(None, feeds)
        past = dict(zip(self.first_past, out[1:], strict=True))
        for position in range(1, length):
            logits = out[0][:, -1, :]
            codes = np.argmax(logits[k:] + (logits[:k] - logits[k:]) * guidance, axis=-1)
            live = (books < position) & (position <= books + frames)  # codebook b runs b frames behind
            sequence[live, position] = codes[live]
            if position == length - 1:
                break
            feeds = {"input_ids": np.tile(sequence[:, position : position + 1], (2, 1)), "encoder_attention_mask": mask}
            out = self.step.run(None, {**feeds, **past})
            past.update(zip(self.step_past, out[1:], strict=True))
        self.decode_s = time.perf_counter() - began
        codes = sequence[books[:, None], np.arange(frames)[None, :] + books[:, None] + 1]
        (audio,) = self.codec.run(None, {"audio_codes": codes[None, None]})
        return codes, audio.reshape(-1)


class _Transformers:
    """transformers' MusicGen on the checkpoint: greedy, guided; catches the codes on their way to EnCodec."""

    def __init__(self, checkpoint: Path, threads: int) -> None:
        import torch
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = MusicgenForConditionalGeneration.from_pretrained(str(checkpoint)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.codebooks = self.model.decoder.num_codebooks
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self._caught: list[np.ndarray] = []
        decode = self.model.audio_encoder.decode

        def catching_decode(audio_codes: Any, *args: Any, **kwargs: Any) -> Any:
            self._caught.append(audio_codes[0, 0].numpy().copy())
            return decode(audio_codes, *args, **kwargs)

        self.model.audio_encoder.decode = catching_decode

    def __call__(self, prompt: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
        self._caught.clear()
        inputs = self.tokenizer([prompt], return_tensors="pt", return_token_type_ids=False)
        with self.torch.no_grad():
            audio = self.model.generate(
                **inputs, do_sample=False, guidance_scale=GUIDANCE, max_new_tokens=frames + self.codebooks - 1
            )
        return self._caught[-1], audio[0, 0].numpy()


def _timed(run: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run(*args)
    return time.perf_counter() - started, result


def _studio_once(studio: Any, folder: Path, threads: int, seconds: float) -> tuple[float, float, dict, np.ndarray]:
    """One music job through the Studio: (wall seconds, audio seconds, the record's timings, the clip's samples)."""
    from engines.jobs import EventKind
    from engines.music.requests import MusicOptions, MusicRequest

    request = MusicRequest(
        MusicOptions(str(folder), threads=threads), PROMPT, seconds=seconds, guidance=GUIDANCE, seed=SEED, greedy=True
    )
    started = time.perf_counter()
    final = studio.submit(request).wait(1800)
    wall = time.perf_counter() - started
    if final is None or final.kind is not EventKind.RESULT:
        ended = f"{final.kind.value}: {final.data}" if final else "nothing within 30 minutes"
        raise EmberError(f"Ember's music job ended as {ended}")
    clip = final.data.delivered.output
    return wall, len(clip.samples) / clip.sample_rate, dict(final.data.delivered.record.timings), clip.samples


def _ember_codes(folder: Path, threads: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Ember's MusicGen run once in this process (for its codes: the Studio's clip carries none)."""
    from engines.music.musicgen import MusicGen, MusicSettings

    model = MusicGen(folder, threads=threads)
    try:
        result = model.generate(PROMPT, MusicSettings(seconds=seconds, guidance_scale=GUIDANCE, seed=SEED, greedy=True))
    finally:
        model.unload()
    return result.codes, result.audio


def _equal_fraction(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b)) if a.shape == b.shape else 0.0


def _snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    n = min(len(reference), len(other))
    noise = float(np.sum((reference[:n] - other[:n]).astype(np.float64) ** 2))
    signal = float(np.sum(reference[:n].astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)


def _musicgen_figures(report: Report, studio: Any, model: _Model, seconds: float, repeats: int, threads: int) -> None:
    from engines.music.musicgen import read_config

    print(f"bench music: {model.label} ({model.onnx})...", file=sys.stderr, flush=True)
    config = read_config(model.onnx)
    frames = max(1, round(seconds * config.frame_rate))
    audio_s = frames / config.frame_rate
    size = f"{_onnx_mb(model.onnx):.1f} MB of ONNX, {config.num_codebooks} codebooks of {config.codebook_size}, "
    size += f"{config.num_layers} decoder layers of {config.hidden_size}"
    ember_codes, ember_audio = _ember_codes(model.onnx, threads, seconds)
    bare = _BareMusicGen(model.onnx, threads)
    bare_codes, _ = bare(PROMPT, frames)  # the warm-up run, and the codes to compare
    reference: _Transformers | None = None
    hf_codes: np.ndarray | None = None
    if model.checkpoint is None:
        report.conditions[f"{model.label} transformers"] = "no checkpoint beside the ONNX folder: not measured"
    else:
        try:
            reference = _Transformers(model.checkpoint, threads)
        except ImportError as exc:
            report.conditions[f"{model.label} transformers"] = f"not installed ({exc}): not measured"
        else:
            size += f", {reference.parameters / 1e6:.1f} M parameters"
            hf_codes, _ = reference(PROMPT, frames)
    report.conditions[f"{model.label} model"] = size
    _, _, _, studio_samples = _studio_once(studio, model.onnx, threads, seconds)  # loads it in the engine process

    ember_rt, engine_rt, ember_fps, bare_rt, bare_fps, hf_rt = [], [], [], [], [], []
    for _ in range(repeats):
        took, _ = _timed(bare, PROMPT, frames)
        bare_rt.append(audio_s / took)
        bare_fps.append(frames / bare.decode_s)
        wall, made_s, timings, studio_samples = _studio_once(studio, model.onnx, threads, seconds)
        ember_rt.append(made_s / wall)
        engine_rt.append(made_s / (timings["total_s"] - timings["load_s"]))
        ember_fps.append(timings["frames_per_s"])
        if reference is not None:
            took, _ = _timed(reference, PROMPT, frames)
            hf_rt.append(audio_s / took)
    bare_median = median(bare_rt)
    hf_median = median(hf_rt) if hf_rt else None
    m = model.label
    report.figures += [
        Figure(f"{m}: Ember via Studio vs transformers", median(ember_rt), "x RT", hf_median, "> transformers"),
        Figure(f"{m}: Ember engine vs transformers", median(engine_rt), "x RT", hf_median, "> transformers"),
        Figure(f"{m}: Ember engine vs bare onnxruntime", median(engine_rt), "x RT", bare_median, ">= 0.95 of bare"),
        Figure(
            f"{m}: Ember via Studio vs bare onnxruntime",
            median(ember_rt),
            "x RT",
            bare_median,
            "(queue, safety, watermark, WAV)",
        ),
        Figure(
            f"{m}: decoder frames/s, Ember engine vs bare",
            median(ember_fps),
            "frames/s",
            median(bare_fps),
            ">= 0.95 of bare",
        ),
    ]
    same = _equal_fraction(bare_codes, ember_codes)
    report.figures.append(
        Figure(
            f"{m}: bare codes equal to Ember's: {'yes' if same == 1 else 'no'}",
            same,
            "of codes",
            None,
            f"1.00 (all {ember_codes.size} codes)",
        )
    )
    if hf_codes is not None:
        same = _equal_fraction(hf_codes, ember_codes)
        report.figures.append(
            Figure(
                f"{m}: transformers codes equal to Ember's: {'yes' if same == 1 else 'no'}",
                same,
                "of codes",
                None,
                f"1.00 (all {ember_codes.size} codes)",
            )
        )
    report.figures.append(
        Figure(
            f"{m}: Studio clip vs Ember's audio, SNR",
            _snr_db(ember_audio, studio_samples),
            "dB",
            None,
            "the audio watermark only",
        )
    )
    del bare, reference


def _studio_compose(studio: Any, request: Any) -> None:
    from engines.jobs import EventKind

    final = studio.submit(request).wait(600)
    if final is None or final.kind is not EventKind.RESULT:
        ended = f"{final.kind.value}: {final.data}" if final else "nothing within 10 minutes"
        raise EmberError(f"Ember's composition job ended as {ended}")


def _composer_figures(report: Report, studio: Any, repeats: int) -> None:
    import onnxruntime as ort
    from scipy.signal import resample_poly

    from engines.music.compose import compose, render
    from engines.music.engine import RENDER_RATE_HZ
    from engines.music.requests import ComposeRequest
    from engines.music.transcribe import Transcriber, model_path

    print("bench music: composer and transcription...", file=sys.stderr, flush=True)

    def make() -> np.ndarray:
        piece = compose("C major", "pop", bars=COMPOSER_BARS, seed=SEED)
        return render(piece, rate_hz=RENDER_RATE_HZ).samples.mean(axis=1).astype(np.float32)

    samples = make()  # the warm-up also builds Ember's SoundFont on first use
    audio_s = len(samples) / RENDER_RATE_HZ
    transcriber = Transcriber()
    notes = len(transcriber.transcribe(samples, RENDER_RATE_HZ).events)
    at_model_rate = resample_poly(samples, 441, 640).astype(np.float32)  # 32000 -> 22050 Hz
    padded = np.concatenate([np.zeros(_BP_OVERLAP // 2, np.float32), at_model_rate])
    windows = np.zeros((len(range(0, len(padded), _BP_HOP)), _BP_WINDOW, 1), np.float32)
    for row, start in enumerate(range(0, len(padded), _BP_HOP)):
        piece = padded[start : start + _BP_WINDOW]
        windows[row, : len(piece), 0] = piece
    # The same graph with the same (default) session options as Ember's, run on the windows cut beforehand.
    graph = ort.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
    name = graph.get_inputs()[0].name

    def bare_transcribe() -> None:
        for first in range(0, len(windows), _BP_BATCH):
            graph.run(None, {name: windows[first : first + _BP_BATCH]})

    request = ComposeRequest(key="C major", style="pop", bars=COMPOSER_BARS, seed=SEED)
    _studio_compose(studio, request)  # the warm-up: the composer loads in the engine process
    made, via_studio, heard, bare = [], [], [], []
    for _ in range(repeats):
        made.append(audio_s / _timed(make)[0])
        via_studio.append(audio_s / _timed(_studio_compose, studio, request)[0])
        heard.append(audio_s / _timed(transcriber.transcribe, samples, RENDER_RATE_HZ)[0])
        bare.append(audio_s / _timed(bare_transcribe)[0])
    report.conditions["composer"] = (
        f"{COMPOSER_BARS} bars of pop in C major (seed {SEED}): {audio_s:.1f} s at {RENDER_RATE_HZ} Hz; "
        f"Basic Pitch finds {notes} notes in it"
    )
    report.figures += [
        Figure(
            f"composer: compose + render {COMPOSER_BARS} bars pop",
            median(made),
            "x RT",
            None,
            "Ember only: no other composer to compare",
        ),
        Figure(
            "composer: via Studio (mark, WAV + MIDI)",
            median(via_studio),
            "x RT",
            None,
            "Ember only: the pipeline's cost shown",
        ),
        Figure(
            "transcription (Basic Pitch) of it",
            median(heard),
            "x RT",
            median(bare),
            "no runner to compare (basic-pitch's needs TF); bare nmp.onnx",
        ),
    ]


def run_music_bench(seconds: float = 4.0, repeats: int = 3, small: str = "", *, threads: int | None = None) -> Report:
    """Measure MusicGen through Ember, bare onnxruntime and transformers, and the composer; return the Report.

    ``seconds`` of music per run (raised to 1 s, the shortest a music job makes; at most one
    30 s window), the median of ``repeats`` runs. ``small``: a folder for a random-weight model
    in MusicGen-small's architecture, built there on first use (needs torch, transformers and
    optimum; minutes and about 6 GB) and reused after. Raises EmberError when a model cannot
    be built or a job does not end with a result.
    """
    import onnxruntime as ort

    from engines.studio import Studio

    if not 0 < seconds <= MAX_SECONDS:
        raise EmberError(
            f"The music bench makes one window of music: more than 0 and at most {MAX_SECONDS:g} s (got {seconds:g})."
        )
    asked = seconds
    seconds = max(MIN_SECONDS, seconds)
    repeats = max(1, repeats)
    threads = threads or min(DEFAULT_THREADS, os.cpu_count() or 1)
    models = [_tiny_model()]
    if small:
        models.append(_small_model(Path(small).expanduser().resolve()))
    versions = f"onnxruntime {ort.__version__}"
    try:
        import torch
        import transformers

        versions += f", torch {torch.__version__}, transformers {transformers.__version__}"
    except ImportError:
        pass
    report = Report(
        "music",
        conditions={
            "seconds": f"{seconds:g} s of music a run"
            + (f" ({asked:g} asked: a job makes 1 s or more)" if asked != seconds else ""),
            "prompt": PROMPT,
            "decoding": f"guidance {GUIDANCE:g}, greedy, on every path (so the codes compare)",
            "threads": f"{threads} (onnxruntime intra-op; torch.set_num_threads)",
            "repeats": f"median of {repeats}, paths alternating, after one warm-up run each",
            "x RT": "seconds of audio per second of wall time (higher is faster)",
            "ember": "Studio queue + engine process + safety + audio watermark + C2PA WAV; engine: its own timing",
            "bare": "a greedy loop on 4 plain onnxruntime sessions, same graphs; transformers: generate()",
            "libraries": versions,
        },
    )
    torch_threads = None
    with tempfile.TemporaryDirectory(prefix="ember-bench-music-") as folder:
        previous = os.environ.get("EMBER_OUTPUTS")
        os.environ["EMBER_OUTPUTS"] = str(Path(folder) / "outputs")
        studio = Studio(Path(folder) / "bench.sqlite")
        try:
            try:
                import torch

                torch_threads = torch.get_num_threads()
            except ImportError:
                pass
            for model in models:
                _musicgen_figures(report, studio, model, seconds, repeats, threads)
            _composer_figures(report, studio, repeats)
        finally:
            studio.close()
            if torch_threads is not None:
                torch.set_num_threads(torch_threads)
            if previous is None:
                os.environ.pop("EMBER_OUTPUTS", None)
            else:
                os.environ["EMBER_OUTPUTS"] = previous
    return report


if __name__ == "__main__":  # pragma: no cover - a manual run
    print(run_music_bench().table())
