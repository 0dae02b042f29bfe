"""``main.py bench soak``: a thousand mixed jobs with random cancels through the queue, on the real engines.

A fresh process (``python -m engines.benchmarks.soak``) opens a Studio on a fresh data folder and keeps
a few jobs in flight at a time, drawn at random from every kind a person starts: chat and completion on
the embedded model, an image from the self-test's tiny diffusion model, speech with the embedded voice,
a composed piece, an upscale, a dictation, texts embedded for the API, and Verify of a file made
earlier. About one job in five is cancelled at a random moment (queued or running). Every output passes
the whole OutputPipeline (safety, watermarks, the library), as in the window.

What it checks, as the issue asks:

- no deadlock: every job ends (a stretch of :data:`STALL_S` with none ending while jobs are in flight
  is a deadlock, and the run stops there);
- nothing unexpected: a job that is not cancelled ends with its result; a failure is counted, with its
  message; every result's record is in the library;
- no leaks: the Studio process's threads and open file handles, and the engine processes', at the
  100th job and at the last; after the Studio closes, none of its threads is left;
- resident memory growth from the 100th job to the last, of the Studio process and of its engine
  processes, each sampled when the queue is empty (goal: at most 5%).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engines.benchmarks import Figure, Report
from engines.errors import EmberError

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("chat", "completion", "image", "speech", "music", "upscale", "dictation", "embed", "verify")
STALL_S = 300.0  # no job ended for this long while jobs were in flight: a deadlock
GROWTH_GOAL = 5.0  # percent, from the 100th job to the last
_LINE = "ember-soak "

PROMPTS = (
    "Write a haiku about rain on a tin roof.",
    "Name three uses for a paper clip.",
    "What is the capital of France?",
    "Give me a short tip for learning to juggle.",
    "Describe a lighthouse at dusk in one sentence.",
    "List two colours of the sea.",
)
SENTENCES = (
    "The lamp is lit and the sea is calm.",
    "Bread rises slowly in a warm kitchen.",
    "A small boat drifts past the harbour wall.",
)


@dataclass(frozen=True)
class Sample:
    """The processes' state after ``job`` jobs had ended, with the queue empty."""

    job: int
    studio_rss_kb: int
    engines_rss_kb: int
    studio_threads: int  # the OS's count: Python threads and native ones
    python_threads: int
    python_blocks: int  # memory blocks Python's objects hold (sys.getallocatedblocks): flat unless objects leak
    studio_fds: int
    engines_fds: int
    engine_processes: int


@dataclass
class SoakResult:
    """What :func:`soak` saw: each job's kind and ending, the samples, and anything that went wrong."""

    jobs: int
    seconds: float = 0.0
    endings: dict[str, int] = field(default_factory=dict)  # "chat result", "image cancelled", ...
    cancels_asked: int = 0
    failures: list[str] = field(default_factory=list)  # jobs that failed without being cancelled
    records: int = 0  # outputs the results carried
    missing_records: int = 0  # of those, the ones whose record the library did not have
    deadlock: str = ""
    samples: list[Sample] = field(default_factory=list)
    threads_left_after_close: list[str] = field(default_factory=list)
    closed_cleanly: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SoakResult:
        samples = [Sample(**s) for s in data.pop("samples")]
        return cls(**data, samples=samples)


def sample(job: int, settle_s: float = 0.5) -> Sample:
    """The Studio process's and its engine processes' memory, threads and open files, ``settle_s`` after the
    queue emptied (what a person's idle Ember holds)."""
    import psutil

    time.sleep(settle_s)
    gc.collect()
    me = psutil.Process()
    engines_rss = engines_fds = count = 0
    for child in me.children(recursive=True):
        try:
            engines_rss += child.memory_info().rss
            engines_fds += child.num_fds()
            count += 1
        except psutil.Error:  # ended meanwhile
            pass
    return Sample(job, me.memory_info().rss // 1024, engines_rss // 1024, me.num_threads(),
                  threading.active_count(), sys.getallocatedblocks(), me.num_fds(), engines_fds, count)  # fmt: skip


class _Maker:
    """Builds a request of each kind, with random settings drawn from ``rng``."""

    def __init__(self, rng: random.Random, studio: Any, clip: Any) -> None:
        from engines.benchmarks.upscale import photo
        from engines.diffusion.selftest_model import write_selftest_model
        from engines.paths import cache_dir

        self.rng = rng
        self.studio = studio
        self.clip = clip  # 16 kHz speech for dictation
        self.diffusion = write_selftest_model(cache_dir() / "selftest-diffusion")
        self.photo = photo(64)
        self.made: list[str] = []  # files saved so far, for Verify

    def __call__(self, kind: str) -> Any:
        return getattr(self, kind)()

    def _text_model(self) -> Any:
        from engines.models.embedded import DEFAULT_TEXT_MODEL
        from engines.text.requests import ModelOptions

        return ModelOptions(f"embedded:{DEFAULT_TEXT_MODEL.id}", context_tokens=1024, device="cpu")

    def _sampling(self) -> Any:
        from engines.text.requests import Sampling

        r = self.rng
        return Sampling(temperature=r.choice((0.0, 0.7, 1.0)), max_tokens=r.randint(4, 24), seed=r.randrange(2**31))

    def chat(self) -> Any:
        from engines.text.requests import ChatRequest, Message

        return ChatRequest(self._text_model(), (Message("user", self.rng.choice(PROMPTS)),), sampling=self._sampling())

    def completion(self) -> Any:
        from engines.text.requests import CompletionRequest

        return CompletionRequest(self._text_model(), self.rng.choice(SENTENCES), sampling=self._sampling())

    def image(self) -> Any:
        from engines.diffusion.requests import DiffusionOptions, ImageRequest

        size = self.rng.choice((64, 128))
        return ImageRequest(DiffusionOptions(str(self.diffusion), device="cpu"), "a lighthouse at dusk",
                            seed=self.rng.randrange(2**31), steps=self.rng.randint(1, 3), width=size, height=size,
                            preview=self.rng.random() < 0.5)  # fmt: skip

    def speech(self) -> Any:
        from engines.speech.requests import SpeechOptions, SpeechRequest

        text = " ".join(self.rng.sample(SENTENCES, self.rng.randint(1, 2)))
        return SpeechRequest(
            SpeechOptions("heart"), text, seed=self.rng.randrange(2**31), preview=self.rng.random() < 0.5
        )

    def music(self) -> Any:
        from engines.music.compose import STYLES
        from engines.music.requests import ComposeRequest

        return ComposeRequest(
            style=self.rng.choice(sorted(STYLES)), bars=self.rng.randint(1, 3), seed=self.rng.randrange(2**31)
        )

    def upscale(self) -> Any:
        from engines.upscale.requests import UpscaleOptions, UpscaleRequest

        return UpscaleRequest(UpscaleOptions("animevideo-x2", device="cpu"), self.photo, scale=2, tile_size=64)

    def dictation(self) -> Any:
        from engines.dictation.audio import WHISPER_RATE_HZ
        from engines.dictation.folder import embedded_whisper_folder
        from engines.dictation.requests import DictationOptions, DictationRequest

        options = DictationOptions(str(embedded_whisper_folder()), device="cpu", compute_type="int8")
        return DictationRequest(options, samples=self.clip, sample_rate_hz=WHISPER_RATE_HZ, source="soak")

    def embed(self) -> Any:
        from engines.documents.service import EmbedTextsRequest

        return EmbedTextsRequest(tuple(self.rng.sample(PROMPTS, self.rng.randint(1, 4))))

    def verify(self) -> Any:
        from engines.provenance.verify import VerifyRequest

        if not self.made:
            return self.chat()
        return VerifyRequest((self.rng.choice(self.made),))


def _dictation_clip(studio: Any) -> Any:
    """A few sentences spoken by the embedded voice through the Studio, at Whisper's rate."""
    import numpy as np

    from engines.dictation.audio import WHISPER_RATE_HZ, resample
    from engines.jobs import EventKind
    from engines.speech.requests import SpeechOptions, SpeechRequest

    final = studio.submit(SpeechRequest(SpeechOptions("heart"), " ".join(SENTENCES), seed=1)).wait(600)
    if final is None or final.kind is not EventKind.RESULT:
        raise EmberError(f"The embedded voice did not speak the dictation clip: {final.data if final else 'no answer'}")
    clip = final.data.delivered.output
    return np.asarray(resample(clip.samples, clip.sample_rate, WHISPER_RATE_HZ), dtype=np.float32)


def records_in(result: Any, depth: int = 3) -> list[Any]:
    """The OutputRecords a job's result carries, however its modality shapes it (``.record``,
    ``.delivered.record``, a list of delivered images ...)."""
    from engines.pipeline import OutputRecord

    if isinstance(result, OutputRecord):
        return [result]
    if depth == 0 or result is None or isinstance(result, (str, bytes, int, float)):
        return []
    if isinstance(result, (list, tuple)):
        return [r for item in result for r in records_in(item, depth - 1)]
    fields = getattr(result, "__dataclass_fields__", None)
    if not fields:
        return []
    return [r for name in fields for r in records_in(getattr(result, name, None), depth - 1)]


def _saved_file(studio: Any, record: Any) -> str:
    """The file the library holds for ``record`` ("" for a reply or a transcript, which have none)."""
    item = studio.library.get(record.output_id)
    return item.path if item is not None and item.path and Path(item.path).is_file() else ""


def soak(jobs: int = 1000, *, seed: int = 0, in_flight: int = 3, cancel_share: float = 0.2,
         first_sample: int = 100, every: int = 50, kinds: tuple[str, ...] = KINDS) -> SoakResult:  # fmt: skip
    """Run ``jobs`` random jobs through a new Studio on the data folder in use; return what was seen.

    ``in_flight`` jobs are kept submitted at once; ``cancel_share`` of them get a cancel at a random
    moment in their first 2 s. Samples are taken after the first job (a baseline), after
    ``first_sample`` jobs, every ``every`` jobs after that, and after the last, each once the queue
    is empty. Raises EmberError when a kind's model is not installed.
    """
    from engines.jobs import EventKind
    from engines.studio import Studio

    rng = random.Random(seed)
    result = SoakResult(jobs)
    before = set(threading.enumerate())
    studio = Studio()
    started = time.monotonic()
    try:
        studio.wait_warm(120)
        maker = _Maker(rng, studio, _dictation_clip(studio))
        waiting: list[tuple[str, Any, float | None]] = []  # kind, job, when to cancel it
        submitted = ended = 0
        last_end = time.monotonic()
        sample_at = sorted({1, first_sample, jobs} | set(range(first_sample + every, jobs, every)))
        endings: Counter[str] = Counter()
        while ended < jobs:
            # Up to the next sample, then let the queue empty: each sample is taken with nothing running.
            next_sample = next(n for n in sample_at if n > ended)
            while len(waiting) < in_flight and submitted < next_sample:
                kind = rng.choice(kinds)
                cancel_at = time.monotonic() + rng.uniform(0.0, 2.0) if rng.random() < cancel_share else None
                waiting.append((kind, studio.submit(maker(kind)), cancel_at))
                submitted += 1
            time.sleep(0.005)
            now = time.monotonic()
            still: list[tuple[str, Any, float | None]] = []
            for kind, job, cancel_at in waiting:
                final = job.final_event
                if final is None:
                    if cancel_at is not None and now >= cancel_at:
                        job.cancel()
                        result.cancels_asked += 1
                        cancel_at = None
                    still.append((kind, job, cancel_at))
                    continue
                ended += 1
                last_end = now
                endings[f"{kind} {final.kind.value}"] += 1
                if final.kind is EventKind.FAILED:
                    result.failures.append(f"{kind}: {final.data}"[:300])
                for record in records_in(final.data) if final.kind is EventKind.RESULT else ():
                    result.records += 1
                    if studio.records.get(record.output_id) is None:
                        result.missing_records += 1
                    if saved := _saved_file(studio, record):
                        maker.made = [*maker.made[-49:], saved]
            waiting = still
            if ended == next_sample:
                result.samples.append(sample(ended))
            if waiting and now - last_end > STALL_S:
                result.deadlock = (f"no job ended for {STALL_S:.0f} s with {len(waiting)} in flight: "
                                   + ", ".join(f"{k} job {j.id}" for k, j, _ in waiting))  # fmt: skip
                break
        result.endings = dict(sorted(endings.items()))
    finally:
        result.seconds = time.monotonic() - started
        result.closed_cleanly = studio.close(timeout_s=30)
    time.sleep(0.5)
    result.threads_left_after_close = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    return result


def _growth(first: int, last: int) -> float:
    return 100.0 * (last - first) / first if first else 0.0


def trend_mb_per_1000_jobs(samples: list[Sample], attribute: str, since: int) -> float:
    """The least-squares slope of ``attribute`` (KiB) over the samples from job ``since`` on, in MB a
    thousand jobs: a leak shows as a steady slope, the allocator's ups and downs as none."""
    import numpy as np

    points = [(s.job, getattr(s, attribute)) for s in samples if s.job >= since]
    if len(points) < 3:
        return 0.0
    jobs, kib = np.array(points, dtype=float).T
    return float(np.polyfit(jobs, kib, 1)[0]) * 1000 / 1024


def report_of(result: SoakResult, *, first_sample: int = 100) -> Report:
    """The soak as a table: growth and leaks from the ``first_sample``-th job to the last, and the endings."""
    report = Report("soak")
    by_job = {s.job: s for s in result.samples}
    first = by_job.get(first_sample) or (result.samples[1] if len(result.samples) > 1 else None)
    last = result.samples[-1] if result.samples else None
    report.conditions.update({
        "jobs": f"{result.jobs} of {len(KINDS)} kinds ({', '.join(KINDS)}), 3 in flight, random settings",
        "cancels": f"{result.cancels_asked} asked, at a random moment in a job's first 2 s",
        "models": "the embedded SmolLM2, voice, Whisper, upscaler, MiniLM; the self-test's tiny diffusion model",
        "samples": f"when the queue is empty, after jobs {', '.join(str(s.job) for s in result.samples)}",
        "memory": "resident set of the Studio's process, and of its engine processes together",
        "endings": ", ".join(f"{k}: {v}" for k, v in result.endings.items()),
    })  # fmt: skip
    if result.deadlock:
        report.conditions["deadlock"] = result.deadlock
    if result.failures:
        report.conditions["first failure"] = result.failures[0]
    ended = sum(result.endings.values())
    report.figures += [
        Figure("jobs ended (baseline: submitted)", ended, "jobs", result.jobs, "all"),
        Figure("deadlocks", 1 if result.deadlock else 0, "", None, "0"),
        Figure("jobs failed without a cancel", len(result.failures), "jobs", None, "0"),
        Figure("results missing from the library", result.missing_records, "", None, "0"),
        Figure("seconds a job (mean, 3 in flight)", result.seconds / max(ended, 1), "s", None, ""),
    ]
    if first is not None and last is not None:
        since = f"(baseline: at job {first.job})"
        later = result.samples[result.samples.index(first) :]
        report.conditions["Studio memory range"] = (
            f"{min(s.studio_rss_kb for s in later) // 1024}-{max(s.studio_rss_kb for s in later) // 1024} MB "
            f"over the {len(later)} samples from job {first.job}"
        )
        goal = f"<= {GROWTH_GOAL:.0f}%"
        for who, attribute in (("Studio process", "studio_rss_kb"), ("engine processes'", "engines_rss_kb")):
            at_first, at_last = getattr(first, attribute), getattr(last, attribute)
            report.figures += [
                Figure(f"{who} memory at job {last.job} {since}", at_last / 1024, "MB", at_first / 1024, ""),
                Figure(f"{who} memory growth, job {first.job} to {last.job}", _growth(at_first, at_last), "%",
                       None, goal),
                Figure(f"{who} memory trend (least squares)", trend_mb_per_1000_jobs(result.samples, attribute,
                       first.job), "MB/1000 jobs", None, "~0"),
            ]  # fmt: skip
        report.figures += [
            Figure(f"Python's allocated blocks (Studio) {since}", last.python_blocks, "", first.python_blocks,
                   "flat"),
            Figure(f"Studio threads, OS count {since}", last.studio_threads, "", first.studio_threads, "same"),
            Figure(f"Studio threads, Python {since}", last.python_threads, "", first.python_threads, "same"),
            Figure(f"Studio open files {since}", last.studio_fds, "", first.studio_fds, "same"),
            Figure(f"engine processes' open files {since}", last.engines_fds, "", first.engines_fds, "same"),
            Figure(f"engine processes {since}", last.engine_processes, "", first.engine_processes, "same"),
        ]  # fmt: skip
    report.figures.append(Figure("Studio threads left after close", len(result.threads_left_after_close), "",
                                 None, "0"))  # fmt: skip
    if result.threads_left_after_close or not result.closed_cleanly:
        report.conditions["left after close"] = ", ".join(result.threads_left_after_close) or "close timed out"
    return report


def run_soak_bench(jobs: int = 1000, *, seed: int = 0, home: Path | None = None) -> tuple[Report, SoakResult]:
    """Run :func:`soak` in a new process on a fresh data folder; return its report and result.

    Raises EmberError when the process ends without a result.
    """
    with tempfile.TemporaryDirectory(prefix="ember-bench-soak-") as tmp:
        env = {**os.environ, "EMBER_HOME": str(home or tmp)}
        command = [sys.executable, "-m", "engines.benchmarks.soak", "--jobs", str(jobs), "--seed", str(seed)]
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=6 * 3600)
    for line in done.stdout.splitlines():
        if line.startswith(_LINE):
            result = SoakResult.from_dict(json.loads(line.removeprefix(_LINE)))
            return report_of(result, first_sample=min(100, jobs)), result
    raise EmberError(f"The soak process ended without a result (exit {done.returncode}): {done.stderr[-1500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.benchmarks.soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = soak(args.jobs, seed=args.seed, first_sample=min(100, args.jobs))
    print(_LINE + json.dumps(result.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
