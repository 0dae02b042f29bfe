"""``main.py bench fuzz``: coverage-guided fuzzing (atheris, libFuzzer for Python) of every reader of strangers' bytes.

The targets are the doors a file a person picks, or a stranger sends, comes in by: the GGUF and
ONNX header readers, the image loaders (a starting image, an image to upscale, Verify's reader,
the library's size look-up), the WAV readers (Verify, the library, the INFO comment), the
recording reader of dictation (miniaudio), the watermark detectors (image, audio, text) on arrays
built from the fuzzer's bytes, the text metadata parsers (A1111 parameters, EXIF UserComment, XMP)
and the Content Credentials reader (c2pa).

The rule for every target: an input may make the code return, or raise EmberError (a message
for a person), or the exception its docstring names; any other exception, an input that takes
longer than ``TIMEOUT_S``, more memory than ``RSS_LIMIT_MB``, or a crash in native code is a
finding. libFuzzer writes each finding's input under the output folder (``crashes/TARGET/``);
each one fixed becomes a regression test (tests/engines/test_fuzz_regressions.py).

libFuzzer owns the process it runs in (it exits when done), so each target runs in a process of
its own: ``python -m engines.benchmarks.fuzz TARGET SCRATCH [libFuzzer flags] CORPUS SEEDS``,
for ``seconds`` (started again, for the time left, after a finding). The seed corpus is
``tests/fuzz/corpus/TARGET/`` in a source checkout (made by ``tests/fuzz/make_corpus.py``); what
the fuzzer adds goes to the output folder, so the committed seeds stay as they are.

The targets live here, beside the runner, and not under tests/: each states the contract of an
engine's reader, they call nothing but engine code, and ``bench fuzz`` runs from the engines
package like every benchmark. Only the seeds, and the script that makes them, are test data; without
them (an installed copy) the fuzzer starts from an empty corpus. atheris is a test tool (the
``test`` extra), never shipped: the benchmark says how to install it when it is missing.

Code under test is instrumented (its branches are what guides the fuzzer): Ember's own modules,
and Pillow's Python plugins for the image targets. Native code (Pillow's decoders, miniaudio,
c2pa, numpy) is run, not instrumented: a crash there is found, but only by chance.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engines.benchmarks import Figure, Report
from engines.errors import EmberError

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "fuzz" / "corpus"
GOAL = "no finding"
TIMEOUT_S = 10  # one input; they take milliseconds (the image detector: a few tenths of a second)
RSS_LIMIT_MB = 2048
_RESTARTS = 8  # after a finding the target starts again for the time left, this many times at most
_KEY = bytes(range(32))  # a fixed installation key for the detectors
_LONG_TEXT = 65_536


# -- the targets --------------------------------------------------------------------------------------
# Each takes the fuzzer's bytes. Files are written to one scratch path a target (the readers take paths).
_scratch = Path(tempfile.gettempdir())


def _file(name: str, data: bytes) -> Path:
    path = _scratch / name
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def _refused(*allowed: type[BaseException]) -> Iterator[None]:
    """Let an EmberError (a message for a person) and the ``allowed`` exceptions end this call; nothing else."""
    try:
        yield
    except (EmberError, *allowed):
        pass


def _outcome(read: Callable[[], object]) -> str:
    try:
        return repr(read())
    except EmberError as exc:
        return f"{type(exc).__name__}: {exc}"


def gguf_header(data: bytes) -> None:
    """read_gguf_header on the bytes as a file, and as the same file in two parts (the two must agree)."""
    from engines.text.gguf_header import read_gguf_header

    path = _file("model.gguf", data)
    whole = _outcome(lambda: _gguf_summary(read_gguf_header(path)))
    cut = len(data) // 2
    parts = [_file("model.gguf.part1", data[:cut]), _file("model.gguf.part2", data[cut:])]
    joined = _outcome(lambda: _gguf_summary(read_gguf_header(_scratch / "parts" / "model.gguf", parts=parts)))
    if whole != joined:
        raise AssertionError(f"the file read whole and in parts differ:\n{whole}\n{joined}")


def _gguf_summary(header: object) -> tuple[object, ...]:
    """What Ember reads of a header: every derived figure (each may raise only EmberError)."""
    return (
        header.name,
        header.architecture,
        header.chat_template,
        header.license,
        header.quantization,
        header.context_length,
        header.block_count,
        header.kv_cache_bytes(2048),
        header.parameter_count,
        header.special_tokens,
        header.data_bytes,
    )


def onnx_header(data: bytes) -> None:
    """read_onnx_header on the bytes as a file, then what Ember derives from the header."""
    from engines.models.onnx_header import read_onnx_header

    with _refused():
        header = read_onnx_header(_file("model.onnx", data))
        _ = (header.precision, header.parameter_count, header.weight_bytes)
        _ = [(value.rank, value.dim(0), value.dim(-1)) for value in (*header.inputs, *header.outputs)]


def image_file(data: bytes) -> None:
    """The image loaders: a starting image, an image to upscale (its size), Verify's reader, the library's size."""
    from engines.diffusion.pipeline import load_init_image
    from engines.library.adopt import image_size
    from engines.provenance.verify import _read_image
    from engines.upscale.engine import read_size

    path = _file("picture", data)
    with _refused():
        load_init_image(path, 64, 64)
    with _refused():
        read_size(path)
    with _refused():
        _read_image(data)
    image_size(path)  # (0, 0) for anything it cannot read


def wav_file(data: bytes) -> None:
    """The WAV readers: Verify's (samples), the INFO comment, the library's duration and prompt."""
    from engines.library.adopt import wav_duration_s, wav_prompt
    from engines.provenance.metadata import read_wav_info
    from engines.provenance.verify import read_wav

    with _refused():
        read_wav(data)
    with _refused(ValueError):  # its documented refusal of a file that is not RIFF/WAVE
        read_wav_info(data)
    path = _file("clip.wav", data)
    wav_duration_s(path)  # 0.0 for anything it cannot read
    wav_prompt(path)  # "" likewise


def audio_file(data: bytes) -> None:
    """Dictation's recording reader (miniaudio: WAV, FLAC, OGG Vorbis, MP3) on the bytes as a file."""
    from engines.dictation.audio import read_audio

    with _refused():
        read_audio(_file("recording", data))


def image_mark(data: bytes) -> None:
    """The image watermark detector on an array made of the bytes: its shape, its type, its pixels.

    Half the time the pixels are first marked (so the decoder's own path runs on them), then damaged.
    """
    import atheris
    import numpy as np

    from engines.provenance import image_mark as mark

    given = atheris.FuzzedDataProvider(data)
    height, width = given.ConsumeIntInRange(1, 160), given.ConsumeIntInRange(1, 160)
    layout = given.PickValueInList([(), (1,), (2,), (3,), (4,), (5,), (3, 1)])
    kind = given.PickValueInList(["uint8"] * 12 + ["float32", "int16", "bool"])
    marked = given.ConsumeBool()
    payload = given.ConsumeIntInRange(0, 2**32 - 1)
    damage = given.PickValueInList(["none", "flip", "crop", "noise", "transpose"])
    fill = given.ConsumeBytes(given.remaining_bytes()) or b"\x00"
    shape = (height, width, *layout)
    pixels = np.resize(np.frombuffer(fill, dtype=np.uint8), shape)
    if marked and kind == "uint8" and layout in ((), (3,), (4,)) and min(height, width) >= mark.MIN_SIDE:
        pixels = mark.embed(pixels, payload, _KEY)
        if damage == "flip":
            pixels = pixels[::-1]
        elif damage == "crop":
            pixels = pixels[height // 8 :, width // 10 :]
        elif damage == "noise":
            pixels = pixels ^ np.resize(np.frombuffer(fill, dtype=np.uint8), pixels.shape) & 7
        elif damage == "transpose":
            pixels = np.ascontiguousarray(np.swapaxes(pixels, 0, 1))
    with _refused():
        mark.detect(pixels.astype(kind), _KEY)


def audio_mark(data: bytes) -> None:
    """The audio watermark detector on samples made of the bytes, at a rate the bytes choose (any a WAV can say).

    Half the time the samples are first marked, then damaged (cut, scaled, noise, NaN).
    """
    import atheris
    import numpy as np

    from engines.provenance import audio_mark as mark

    given = atheris.FuzzedDataProvider(data)
    rate = given.PickValueInList([1, 400, 3_999, 8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000, 0])
    if rate == 0:
        rate = given.ConsumeIntInRange(1, 2**32 - 1)  # any rate a WAV header can claim (Verify passes it on)
    form = given.PickValueInList(["float32", "float64", "int16"])
    marked = given.ConsumeBool()
    payload = given.ConsumeIntInRange(0, 2**32 - 1)
    damage = given.PickValueInList(["none", "cut", "loud", "noise", "nan"])
    seconds = given.ConsumeProbability() * 3.0
    body = given.ConsumeBytes(given.remaining_bytes())
    if form == "int16":
        samples = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0
    else:
        width = 4 if form == "float32" else 8
        samples = np.frombuffer(body[: len(body) // width * width], dtype=f"<f{width}").astype(np.float64)
    if marked and rate <= 96_000:
        length = int(seconds * rate)
        tone = np.resize(samples, length) if len(samples) else np.zeros(length)
        tone = np.nan_to_num(tone, nan=0.0, posinf=1.0, neginf=-1.0).clip(-1, 1)
        tone = tone * 0.3 + 0.2 * np.sin(np.arange(length) * (2 * np.pi * 220 / rate))
        samples = mark.embed(tone, rate, payload, _KEY).astype(np.float64)
        if damage == "cut":
            samples = samples[len(samples) // 5 :]
        elif damage == "loud":
            samples = samples * 40.0
        elif damage == "noise":
            samples = samples + np.resize(np.frombuffer(body or b"\x00", dtype=np.uint8), samples.shape) / 2560.0
        elif damage == "nan" and len(samples):
            samples[:: max(1, len(samples) // 7)] = np.nan
    with _refused():
        mark.detect(samples, rate, _KEY)


def text_mark(data: bytes) -> None:
    """The text watermark detector on token ids made of the bytes, and on the bytes as text (byte tokens)."""
    import atheris

    from engines.provenance import text_mark as mark

    given = atheris.FuzzedDataProvider(data)
    context = given.ConsumeIntInRange(1, 6)
    count = given.ConsumeIntInRange(0, 600)
    vocabulary = given.PickValueInList([2, 16, 256, 49_152, 262_144, 2**31 - 1])
    tokens = given.ConsumeIntListInRange(count, 0, vocabulary - 1)
    text = given.ConsumeUnicodeNoSurrogates(given.remaining_bytes())
    with _refused():
        mark.detect_tokens(tokens, _KEY, context_tokens=context)
    with _refused():
        mark.detect_text(text, _KEY, lambda words: list(words.encode("utf-8")))


def text_metadata(data: bytes) -> None:
    """The text a file carries: A1111 parameters (PNG text), EXIF UserComment, XMP (ValueError: not XMP).

    The parameters are parsed once more from the text repeated to 64 KB (a PNG text chunk holds up to
    1 MB), which must take under a second: a parser that is quadratic in some input shows here.
    """
    from engines.provenance.metadata import parse_parameters, parse_xmp, read_user_comment

    text = read_user_comment(data)
    parse_parameters(text)
    parse_parameters(data.decode("utf-8", "replace"))
    with _refused(ValueError):
        parse_xmp(data)
    if text:
        long = (text * (_LONG_TEXT // len(text) + 1))[:_LONG_TEXT]
        started = time.perf_counter()
        parse_parameters(long)
        took = time.perf_counter() - started
        if took > 1.0:
            raise AssertionError(f"parse_parameters took {took:.1f} s over {len(long):,} characters")


def content_credentials(data: bytes) -> None:
    """The C2PA manifest reader on the bytes, as each kind of file Ember signs (the first byte picks which)."""
    from engines.provenance.content_credentials import read_manifest

    mime = ("image/png", "image/jpeg", "image/webp", "audio/wav")[data[0] % 4] if data else "image/png"
    with _refused():
        read_manifest(data[1:], mime)


@dataclass(frozen=True)
class Target:
    """One fuzzing target: ``check`` takes the fuzzer's bytes; ``modules`` are imported instrumented."""

    name: str
    what: str
    check: Callable[[bytes], None]
    modules: tuple[str, ...]
    max_len: int = 4096
    timeout_s: int = TIMEOUT_S


_IMAGE_MODULES = (
    "PIL.Image",
    "engines.diffusion.pipeline",
    "engines.library.adopt",
    "engines.provenance.verify",
    "engines.upscale.engine",
)
_NOT_INSTRUMENTED = ("numpy",)  # imported before the instrumented modules: native, and too large to trace
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("gguf-header", "GGUF header reader", gguf_header, ("engines.text.gguf_header",), 8192),
        Target("onnx-header", "ONNX header reader", onnx_header, ("engines.models.onnx_header",), 8192),
        Target(
            "image-file",
            "image loaders (start image, upscale, Verify, library)",
            image_file,
            _IMAGE_MODULES,
            16384,
            # Pillow decodes an 8-bit RLE BMP in Python, a pixel at a time: a 1.5 KB file claiming 34.6 million
            # pixels takes 2.3 s (11 s at Pillow's pixel limit, five times that instrumented). Bounded by that
            # limit, so it is slow, not a hang; a hang still shows at this bound.
            timeout_s=90,
        ),
        Target(
            "wav-file",
            "WAV readers (Verify, INFO comment, library)",
            wav_file,
            ("engines.provenance.verify", "engines.provenance.metadata", "engines.library.adopt", "wave"),
            8192,
        ),
        Target("audio-file", "recording reader (miniaudio)", audio_file, ("engines.dictation.audio",), 8192),
        Target("image-mark", "image watermark detector", image_mark, ("engines.provenance.image_mark",), 4096),
        Target("audio-mark", "audio watermark detector", audio_mark, ("engines.provenance.audio_mark",), 8192),
        Target("text-mark", "text watermark detector", text_mark, ("engines.provenance.text_mark",), 4096),
        Target("text-metadata", "parameters, UserComment, XMP", text_metadata, ("engines.provenance.metadata",), 4096),
        Target(
            "content-credentials",
            "C2PA manifest reader",
            content_credentials,
            ("engines.provenance.content_credentials",),
            16384,
        ),
    )
}


def _fuzz_process(argv: Sequence[str]) -> None:
    """The fuzzing process: ``TARGET SCRATCH [libFuzzer arguments]``. libFuzzer exits it."""
    import warnings

    import atheris

    global _scratch
    name, scratch, *libfuzzer = argv
    target = TARGETS[name]
    _scratch = Path(scratch)
    _scratch.mkdir(parents=True, exist_ok=True)
    for module in _NOT_INSTRUMENTED:
        importlib.import_module(module)
    packages = sorted({m.split(".")[0] for m in target.modules} | {"engines"})
    with atheris.instrument_imports(include=packages):
        for module in target.modules:
            importlib.import_module(module)
        if "PIL.Image" in target.modules:
            from PIL import Image

            Image.init()  # every plugin, imported here (instrumented) rather than at the first open
    warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning, numpy's overflow warnings
    check = target.check

    def one_input(data: bytes) -> None:
        check(data)

    atheris.Setup([sys.argv[0], *libfuzzer], one_input)
    atheris.Fuzz()


# -- the runner ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One input that broke the rule: ``kind`` "exception", "timeout", "out of memory" or "native crash"."""

    target: str
    kind: str
    summary: str  # the exception and where it was raised, or libFuzzer's words
    input_path: Path


@dataclass(frozen=True)
class TargetRun:
    """What fuzzing one target did."""

    target: str
    executions: int
    seconds: float
    coverage: int  # instrumented edges reached (libFuzzer's "cov")
    corpus: int  # inputs in the corpus at the end (seeds and what was found)
    new_units: int
    peak_rss_mb: int
    findings: tuple[Finding, ...]
    log: Path

    @property
    def exec_per_s(self) -> float:
        return self.executions / self.seconds if self.seconds > 0 else 0.0


def atheris_version() -> str:
    """atheris's version; raises EmberError, saying how to install it, when it is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        import atheris  # noqa: F401

        try:
            return version("atheris")
        except PackageNotFoundError:
            return "unknown"
    except ImportError:
        raise EmberError(
            "bench fuzz needs atheris, a test tool that Ember does not ship: "
            "pip install 'atheris>=3.0' (Linux, Python 3.11 or 3.12; or pip install -e '.[test]')."
        ) from None


def _command(target: Target, scratch: Path, corpus: Path, crashes: Path, seconds: int, runs: int | None) -> list[str]:
    flags = [
        f"-max_total_time={seconds}",
        f"-timeout={target.timeout_s}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={target.max_len}",
        f"-artifact_prefix={crashes}{os.sep}",
        "-print_final_stats=1",
        "-detect_leaks=0",
    ]
    if runs is not None:
        flags.append(f"-runs={runs}")
    dirs = [str(corpus)]
    if (SEEDS / target.name).is_dir():
        dirs.append(str(SEEDS / target.name))
    return [sys.executable, "-m", "engines.benchmarks.fuzz", target.name, str(scratch), *flags, *dirs]


_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.M)
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+).*?corp: (\d+)/", re.M)
_WRITTEN = re.compile(r"Test unit written to (\S+)")


def _summary(log: str, kind: str) -> str:
    """The exception and the line that raised it (the last frame), or libFuzzer's one line."""
    if kind == "exception":
        block = log.split("=== Uncaught Python exception: ===", 1)[-1].strip().splitlines()
        error = block[0] if block else "an exception"
        frames = [line.strip() for line in block if line.strip().startswith("File ")]
        frames = frames[1:]  # the first is this module's one_input
        ember = [f for f in frames if f"{os.sep}engines{os.sep}" in f and f"{os.sep}benchmarks{os.sep}" not in f]
        where = [*ember[-1:], *frames[-1:]] if ember and ember[-1] != frames[-1] else frames[-1:]
        return f"{error} ({'; raised in '.join(where)})" if where else error
    found = re.search(r"ERROR: libFuzzer: (.*)", log)
    return found.group(1).strip() if found else kind


def _kind(artifact: Path, log: str) -> str:
    if artifact.name.startswith("timeout-"):
        return "timeout"
    if artifact.name.startswith("oom-"):
        return "out of memory"
    return "exception" if "=== Uncaught Python exception: ===" in log else "native crash"


def fuzz_target(target: Target, out: Path, seconds: int, *, runs: int | None = None) -> TargetRun:
    """Fuzz ``target`` for ``seconds`` (or ``runs`` inputs), in processes of its own; return what happened.

    Files go under ``out``: ``corpus/NAME`` (what the fuzzer kept), ``crashes/NAME`` (the findings'
    inputs), ``logs/NAME-N.log`` (libFuzzer's output). Raises EmberError when atheris is missing.
    """
    atheris_version()
    corpus, crashes, logs = (out / part / target.name for part in ("corpus", "crashes", "logs"))
    for folder in (corpus, crashes, logs.parent):
        folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"ember-fuzz-{target.name}-"))
    executions, coverage, new_units, rss = 0, 0, 0, 0
    findings: list[Finding] = []
    began = time.monotonic()
    log_path = logs.parent / f"{target.name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        with log_path.open("w", encoding="utf-8") as whole_log:
            for attempt in range(_RESTARTS + 1):
                left = seconds - (time.monotonic() - began)
                if attempt and (left < 2 or runs is not None):
                    break
                command = _command(target, scratch, corpus, crashes, max(1, round(left)), runs)
                try:
                    done = subprocess.run(
                        command, cwd=ROOT, env=env, capture_output=True, text=True, errors="replace",
                        timeout=max(left, 1) + target.timeout_s * 3 + 60,
                    )  # fmt: skip
                    log = done.stdout + done.stderr
                except subprocess.TimeoutExpired as exc:
                    log = f"{exc.stdout or ''}{exc.stderr or ''}\nERROR: libFuzzer: the process did not stop"
                whole_log.write(f"$ {' '.join(command)}\n{log}\n")
                stats = {key: int(value) for key, value in _STAT.findall(log)}
                status = _STATUS.findall(log)
                executions += stats.get("number_of_executed_units", int(status[-1][0]) if status else 0)
                new_units += stats.get("new_units_added", 0)
                rss = max(rss, stats.get("peak_rss_mb", 0))
                if status:
                    coverage = max(coverage, int(status[-1][1]))
                written = [Path(p) for p in _WRITTEN.findall(log) if not Path(p).name.startswith("slow-unit-")]
                for artifact in written:
                    kind = _kind(artifact, log)
                    findings.append(Finding(target.name, kind, _summary(log, kind), artifact))
                if not written:
                    if "ERROR: libFuzzer" in log or (done.returncode != 0 and not stats):
                        findings.append(Finding(target.name, "native crash", _summary(log, "native crash"), log_path))
                    break
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return TargetRun(
        target=target.name,
        executions=executions,
        seconds=time.monotonic() - began,
        coverage=coverage,
        corpus=sum(1 for _ in corpus.iterdir()) + _seed_count(target.name),
        new_units=new_units,
        peak_rss_mb=rss,
        findings=tuple(findings),
        log=log_path,
    )


def _seed_count(name: str) -> int:
    folder = SEEDS / name
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def chosen_targets(only: str = "") -> list[Target]:
    """The targets named in ``only`` (comma-separated; all when empty); raises EmberError for an unknown name."""
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise EmberError(f"No fuzzing target named {', '.join(unknown)}; there are: {', '.join(TARGETS)}.")
    return [TARGETS[n] for n in names] if names else list(TARGETS.values())


def _timeouts(targets: Sequence[Target]) -> str:
    longer = [f"{t.name} {t.timeout_s} s" for t in targets if t.timeout_s != TIMEOUT_S]
    return f"{TIMEOUT_S} s" + (f" ({', '.join(longer)})" if longer else "")


def _findings_text(findings: Sequence[Finding]) -> str:
    """Each distinct finding once: its target, kind and summary, how many inputs showed it, the first input."""
    grouped: dict[tuple[str, str, str], list[Path]] = {}
    for f in findings:
        grouped.setdefault((f.target, f.kind, f.summary), []).append(f.input_path)
    return (
        "; ".join(
            f"{target}: {kind}: {summary} ({len(paths)} input{'s' if len(paths) > 1 else ''}, first {paths[0]})"
            for (target, kind, summary), paths in grouped.items()
        )
        or "none"
    )


def run_fuzz_bench(seconds: int = 60, only: str = "", out: Path | None = None) -> Report:
    """Fuzz each chosen target for ``seconds``; return the report (executions, exec/s, coverage, findings).

    ``out`` keeps the corpus, the findings' inputs and the logs; without it they go to a temporary
    folder that is removed unless something was found. Raises EmberError when atheris is missing.
    """
    version = atheris_version()
    if seconds < 1:
        raise EmberError("--seconds must be at least 1.")
    targets = chosen_targets(only)
    folder = out if out is not None else Path(tempfile.mkdtemp(prefix="ember-bench-fuzz-"))
    ran = [fuzz_target(target, folder, seconds) for target in targets]
    findings = [f for run in ran for f in run.findings]
    if out is None and not findings:
        shutil.rmtree(folder, ignore_errors=True)
    total = sum(run.executions for run in ran)
    report = Report(
        "fuzz",
        conditions={
            "fuzzer": f"atheris {version} (libFuzzer), one process a target",
            "budget": f"{seconds} s a target; an input: {_timeouts(targets)} and {RSS_LIMIT_MB} MB",
            "seeds": str(SEEDS) if SEEDS.is_dir() else "none (no tests/fuzz/corpus here): the fuzzer starts empty",
            "executions": f"{total:,} in all",
            "output": str(folder) if out is not None or findings else "removed (nothing found)",
            "findings": _findings_text(findings),
        },
    )
    for run in ran:
        what = TARGETS[run.target].what
        report.figures += [
            Figure(f"{run.target}: executions", run.executions, "inputs", None, what),
            Figure(f"{run.target}: exec/s", run.exec_per_s, "1/s", None, f"in {run.seconds:.0f} s"),
            Figure(f"{run.target}: coverage", run.coverage, "edges", None, f"{run.corpus} kept, {run.peak_rss_mb} MB"),
            Figure(f"{run.target}: findings", len(run.findings), "inputs", None, GOAL),
        ]
    return report


if __name__ == "__main__":
    _fuzz_process(sys.argv[1:])
