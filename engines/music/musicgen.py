"""MusicGen without torch: a text prompt to 32 kHz audio from an optimum ONNX export.

The folder is what optimum's exporter writes for a ``MusicgenForConditionalGeneration`` (task
text-to-audio): ``text_encoder.onnx``, ``decoder_model.onnx``, ``decoder_with_past_model.onnx``,
``encodec_decode.onnx``, ``config.json`` (and ``generation_config.json``), plus the T5 tokenizer
as ``tokenizer.json``. optimum has no onnxruntime runner for MusicGen; this module is Ember's,
step for step as transformers' ``MusicgenForConditionalGeneration.generate`` does it:

1. tokenize the prompt (T5's tokenizer appends ``</s>``) and run the T5 text encoder;
2. with guidance, add an unconditional row: zeroed encoder states and a zeroed attention mask,
   the conditional and unconditional halves run as one batch of two;
3. start every codebook from the start token and lay the codebooks out in MusicGen's delay
   pattern (codebook k runs k frames behind codebook 0), then decode one step at a time with
   past key values: ``decoder_model`` for the first step, ``decoder_with_past_model`` after;
4. at each step mix the two halves' logits (``uncond + (cond - uncond) * guidance_scale``) and
   pick each codebook's next code: greedily, or with temperature, top-k and top-p from a seeded
   numpy Generator; positions the delay pattern fixes are overwritten with the pattern's token;
5. undo the delay (codebook k's frame f sits at position f + k + 1) and decode the codes with
   EnCodec to mono float32 audio at the sample rate the config names.

Longer than one window (30 s, what MusicGen was trained on): the audio is made in windows, as
audiocraft's ``MusicGen.generate`` does with ``extend_stride``: after the first window, each
next window is primed with the last ``window_s - extend_stride_s`` seconds (12 s by default) of
codes as the decoder prompt and continues for up to ``extend_stride_s`` new seconds. The text
prompt conditions every window. This keeps the music going, but the model sees only the last
12 s, so long pieces drift and do not return to earlier themes, and the joins can be heard at
times. One window is what transformers itself can generate; the tests prove every window (with
its code prompt) equal to transformers' ``generate`` with ``decoder_input_ids``.

The tests prove the codes equal to transformers' under greedy decoding, with and without
guidance, and the waveform within 1e-4.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.diffusion.onnx_graph import CPU, OnnxGraph
from engines.errors import Cancelled, ContextOverflowError, EmberError, ModelFileError, OutOfMemoryError

# The graphs of optimum's MusicGen export, by the role Ember gives them.
GRAPHS = {
    "text_encoder": "text_encoder.onnx",
    "decoder": "decoder_model.onnx",
    "decoder_with_past": "decoder_with_past_model.onnx",
    "audio_decoder": "encodec_decode.onnx",
}
# What each graph must read, and the names exports use for it (optimum-onnx 0.1 first; the
# optimum 1.x exports on the hub name the decoder's inputs the same way).
_INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "text_encoder": {"input_ids": ("input_ids",), "attention_mask": ("attention_mask",)},
    "decoder": {
        "input_ids": ("input_ids", "decoder_input_ids"),
        "encoder_hidden_states": ("encoder_hidden_states", "encoder_outputs"),
        "encoder_attention_mask": ("encoder_attention_mask", "attention_mask"),
    },
    "decoder_with_past": {
        "input_ids": ("input_ids", "decoder_input_ids"),
        "encoder_attention_mask": ("encoder_attention_mask", "attention_mask"),
    },
    "audio_decoder": {"audio_codes": ("audio_codes",)},
}

MAX_WINDOW_S = 30.0  # what MusicGen was trained on, and what one window holds
EXTEND_STRIDE_S = 18.0  # audiocraft's default: each next window keeps 12 s and adds up to 18 s
MAX_SECONDS = 300.0  # the longest piece Ember makes, in windows


@dataclass(frozen=True)
class MusicSettings:
    """How to generate: the length, the guidance and the sampling.

    ``seconds``: the length of the piece, at most :data:`MAX_SECONDS` (beyond
    :data:`MAX_WINDOW_S` it is made in windows, see the module's docstring).
    ``guidance_scale``: classifier-free guidance; 1.0 turns it off (one batch row instead of
    two), MusicGen's default is 3.0. ``greedy``: take the most likely code at every step
    (deterministic, no seed needed; music made this way tends to repeat itself); otherwise
    sample with ``temperature``, ``top_k`` (0 keeps every code; audiocraft's default is 250) and
    ``top_p`` (1.0 keeps every code) from a numpy Generator seeded with ``seed``.
    """

    seconds: float = 10.0
    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 1.0
    seed: int = 0
    greedy: bool = False

    def check(self, max_seconds: float = MAX_SECONDS) -> None:
        """Raise EmberError, worded for a person, for a setting out of range; return otherwise."""
        if not (isinstance(self.seconds, int | float) and math.isfinite(self.seconds)) or self.seconds <= 0:
            raise EmberError(f"The length must be a positive number of seconds (got {self.seconds!r}).")
        if self.seconds > max_seconds:
            raise EmberError(
                f"{self.seconds:g} s is longer than Ember makes in one piece ({max_seconds:g} s). "
                "Choose a shorter length, or make the piece in parts."
            )
        if not math.isfinite(self.guidance_scale) or self.guidance_scale < 1.0:
            raise EmberError(
                f"The guidance scale must be 1 or more (got {self.guidance_scale:g}); 1 turns guidance off, "
                "3 is MusicGen's usual value."
            )
        if self.greedy:
            return
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise EmberError(
                f"The temperature must be above 0 (got {self.temperature:g}); for the most likely music every "
                "time, choose greedy decoding instead."
            )
        if self.top_k < 0:
            raise EmberError(f"top-k must be 0 (off) or a positive number of codes (got {self.top_k}).")
        if not (0.0 < self.top_p <= 1.0):
            raise EmberError(f"top-p must be above 0 and at most 1 (1 turns it off; got {self.top_p:g}).")
        if self.seed < 0:
            raise EmberError(f"The seed must be 0 or a positive whole number (got {self.seed}).")


@dataclass(frozen=True)
class MusicTimings:
    """Where the time went, in seconds per stage, and the decoder's speed in frames a second.

    ``decode_s`` covers every decoder step of every window (its first step, which reads the
    whole prompt, included); ``frames_per_s`` is audio frames made per second of ``decode_s``.
    """

    load_s: float  # 0 when the graphs were loaded already
    tokenize_s: float
    text_encoder_s: float
    decode_s: float
    audio_decoder_s: float
    total_s: float
    frames: int
    steps: int
    frames_per_s: float


@dataclass(frozen=True, eq=False)
class MusicResult:
    """A generated piece.

    ``codes``: the EnCodec codes, int64 of shape (codebooks, frames), the delay undone.
    ``audio``: mono float32 samples in about [-1, 1] (EnCodec does not clip). ``windows``: how
    many windows made it (1 up to :data:`MAX_WINDOW_S`).
    """

    codes: np.ndarray
    audio: np.ndarray
    sample_rate: int
    timings: MusicTimings
    windows: int = 1

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class MusicGenConfig:
    """What Ember reads from a MusicGen folder's config.json and generation_config.json."""

    num_codebooks: int
    codebook_size: int  # the decoder's vocabulary: codes 0 .. codebook_size - 1
    start_token_id: int  # decoder_start_token_id: the first token of every codebook, and the delay's pad
    pad_token_id: int
    audio_channels: int
    sample_rate: int
    hop_length: int  # audio samples per frame
    max_positions: int  # the decoder's positions: the longest window, in steps
    max_prompt_tokens: int  # the text encoder's limit
    num_layers: int
    hidden_size: int  # the decoder's

    @property
    def frame_rate(self) -> float:
        """Code frames per second of audio (50 for the 32 kHz EnCodec)."""
        return self.sample_rate / self.hop_length


ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], Any]


def build_delay_pattern_mask(
    input_ids: np.ndarray, pad_token_id: int, max_length: int, num_codebooks: int, audio_channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """MusicGen's delay pattern, as transformers' ``MusicgenForCausalLM.build_delay_pattern_mask``.

    ``input_ids`` is (batch * codebooks, seq_len): each codebook's prompt, the start token first.
    Returns ``(input_ids, pattern_mask)``: the prompt laid out in the pattern up to the first
    position left to predict, (batch * codebooks, first_free), and the pattern over the whole
    length, (batch * codebooks, max_length), holding -1 where a code is to be predicted and the
    token to force everywhere else (the pad before and after each delayed codebook, the prompt).
    """
    ids = np.asarray(input_ids, dtype=np.int64).reshape(-1, num_codebooks, input_ids.shape[-1])
    bsz, _, seq_len = ids.shape
    shifted = np.full((bsz, num_codebooks, max_length), -1, dtype=np.int64)
    channel_codebooks = num_codebooks // 2 if audio_channels == 2 else num_codebooks
    if max_length < 2 * channel_codebooks - 1:
        return ids.reshape(bsz * num_codebooks, -1), shifted.reshape(bsz * num_codebooks, -1)
    for codebook in range(channel_codebooks):
        # transformers' slice assignment clips at max_length; so does this one.
        width = min(seq_len, max_length - codebook)
        if audio_channels == 1:
            shifted[:, codebook, codebook : codebook + width] = ids[:, codebook, :width]
        else:
            for row in (2 * codebook, 2 * codebook + 1):
                shifted[:, row, codebook : codebook + width] = ids[:, row, :width]
    # Pads after the end (upper triangle) and before the start (lower triangle) of each codebook.
    delay = np.triu(np.ones((channel_codebooks, max_length), dtype=bool), k=max_length - channel_codebooks + 1)
    delay |= np.tril(np.ones((channel_codebooks, max_length), dtype=bool))
    if audio_channels == 2:
        delay = np.repeat(delay, 2, axis=0)
    laid_out = np.where(delay[None], np.int64(pad_token_id), shifted)
    free = np.nonzero(laid_out[:, 0, :] == -1)[1]
    first_free = int(free.min()) if free.size else seq_len
    pattern = laid_out.reshape(bsz * num_codebooks, -1)
    return laid_out[..., :first_free].reshape(bsz * num_codebooks, -1), pattern


def apply_delay_pattern_mask(input_ids: np.ndarray, pattern_mask: np.ndarray) -> np.ndarray:
    """Keep the codes where the pattern says -1 and the pattern's token elsewhere (transformers' apply)."""
    mask = pattern_mask[..., : input_ids.shape[-1]]
    return np.where(mask == -1, input_ids, mask)


def undelay(delayed: np.ndarray, num_codebooks: int, frames: int) -> np.ndarray:
    """Return the (codebooks, frames) codes of a delayed (codebooks, frames + codebooks) layout.

    Codebook k's frame f sits at position f + k + 1 (after the start token and k pads); this is
    what transformers' removal of the pad tokens leaves, without assuming a code never equals
    the pad.
    """
    rows = np.arange(num_codebooks)[:, None]
    cols = np.arange(frames)[None, :] + rows + 1
    return delayed[rows, cols]


class CodeSampler:
    """Picks each codebook's next code from its logits, as transformers' greedy or sampling search does.

    The logit processors run in transformers' order: temperature, top-k, top-p; the draw is
    from a numpy Generator seeded once a piece, so the same seed makes the same music.
    """

    def __init__(self, settings: MusicSettings) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Return one code per row of ``scores`` (rows, vocabulary), int64."""
        s = self.settings
        if s.greedy:
            return np.argmax(scores, axis=-1).astype(np.int64)
        scores = scores.astype(np.float32, copy=True)
        if s.temperature != 1.0:
            scores = scores / np.float32(s.temperature)
        vocab = scores.shape[-1]
        if 0 < s.top_k < vocab:
            kth = np.partition(scores, vocab - s.top_k, axis=-1)[:, vocab - s.top_k : vocab - s.top_k + 1]
            scores[scores < kth] = -np.inf
        if s.top_p < 1.0:
            order = np.argsort(scores, axis=-1, kind="stable")  # ascending, as transformers sorts
            ordered = np.take_along_axis(scores, order, axis=-1)
            cumulative = np.cumsum(_softmax(ordered), axis=-1)
            remove_sorted = cumulative <= (1.0 - s.top_p)
            remove_sorted[:, -1] = False  # keep at least the most likely code
            remove = np.zeros_like(remove_sorted)
            np.put_along_axis(remove, order, remove_sorted, axis=-1)
            scores[remove] = -np.inf
        probs = _softmax(scores.astype(np.float64))
        cumulative = np.cumsum(probs, axis=-1)
        draws = self.rng.random(len(scores)) * cumulative[:, -1]
        # The first code whose cumulative probability passes the draw (codes filtered out add nothing).
        picks = np.sum(cumulative <= draws[:, None], axis=-1)
        return np.minimum(picks, vocab - 1).astype(np.int64)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(
            f"Ember cannot read '{path.name}' in '{path.parent}' ({exc}). The folder may be damaged."
        ) from None
    if not isinstance(data, dict):
        raise ModelFileError(
            f"'{path}' is not a model configuration (it holds no settings). The folder may be damaged."
        )
    return data


def _graph_folder(folder: Path) -> Path:
    # optimum writes the graphs beside config.json; hub repositories often keep them in onnx/.
    if not (folder / GRAPHS["decoder"]).is_file() and (folder / "onnx" / GRAPHS["decoder"]).is_file():
        return folder / "onnx"
    return folder


def read_config(folder: Path | str) -> MusicGenConfig:
    """Read a MusicGen ONNX folder's configuration and check that its files are all there.

    Returns the :class:`MusicGenConfig`. Raises ModelFileError, worded for a person, for a folder
    that is not a MusicGen export (no config, another architecture, a missing graph or
    tokenizer) or one Ember cannot run (a stereo model).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"'{folder}' is not a folder. Choose the folder of a MusicGen ONNX export.")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFileError(
            f"'{folder}' is not a MusicGen model folder: it has no config.json. Choose the folder that "
            "optimum's exporter wrote (optimum-cli export onnx --task text-to-audio)."
        )
    config = _read_json(config_path)
    model_type = config.get("model_type")
    if model_type != "musicgen":
        what = f"a '{model_type}' model" if model_type else "not a transformers model"
        raise ModelFileError(
            f"'{folder}' holds {what}, not MusicGen. Ember makes music with MusicGen folders "
            "(facebook/musicgen-small and its kind, exported to ONNX by optimum)."
        )
    graphs = _graph_folder(folder)
    missing = [name for name in GRAPHS.values() if not (graphs / name).is_file()]
    if not (folder / "tokenizer.json").is_file() and not (graphs / "tokenizer.json").is_file():
        missing.append("tokenizer.json")
    if missing:
        merged = (graphs / "decoder_model_merged.onnx").is_file()
        hint = (
            " It has only the merged decoder (decoder_model_merged.onnx); export it again without merging "
            "(optimum-cli export onnx --task text-to-audio --no-post-process)."
            if merged and set(missing) <= {GRAPHS["decoder"], GRAPHS["decoder_with_past"]}
            else " Export the model again with optimum (optimum-cli export onnx --task text-to-audio)."
        )
        raise ModelFileError(f"The MusicGen folder '{folder}' is incomplete: {', '.join(missing)} missing.{hint}")
    try:
        decoder = config["decoder"]
        audio = config["audio_encoder"]
        text = config.get("text_encoder", {})
        generation = (
            _read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
        )
        num_codebooks = int(decoder["num_codebooks"])
        codebook_size = int(decoder["vocab_size"])
        start = generation.get("decoder_start_token_id", config.get("decoder_start_token_id"))
        pad = generation.get("pad_token_id", config.get("pad_token_id", decoder.get("pad_token_id")))
        start = int(start if start is not None else decoder.get("bos_token_id", codebook_size))
        pad = int(pad if pad is not None else start)
        audio_channels = int(decoder.get("audio_channels", 1))
        sample_rate = int(audio.get("sampling_rate", 32000))
        hop_length = int(np.prod(audio.get("upsampling_ratios", [8, 5, 4, 4])))
        max_positions = int(decoder.get("max_position_embeddings", 2048))
        max_prompt = text.get("n_positions") or _tokenizer_limit(folder) or 512
        num_layers = int(decoder["num_hidden_layers"])
        hidden_size = int(decoder["hidden_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"The config.json of '{folder}' lacks MusicGen's settings ({exc}). Export the model again with optimum."
        ) from None
    if audio_channels != 1:
        raise ModelFileError(
            f"'{folder}' is a stereo MusicGen ({audio_channels} channels); Ember makes mono music only so far. "
            "Choose a mono model such as musicgen-small."
        )
    return MusicGenConfig(
        num_codebooks=num_codebooks,
        codebook_size=codebook_size,
        start_token_id=start,
        pad_token_id=pad,
        audio_channels=audio_channels,
        sample_rate=sample_rate,
        hop_length=hop_length,
        max_positions=max_positions,
        max_prompt_tokens=int(max_prompt),
        num_layers=num_layers,
        hidden_size=hidden_size,
    )


def _tokenizer_limit(folder: Path) -> int | None:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return None
    limit = _read_json(path).get("model_max_length")
    # transformers writes a huge sentinel (1e30) for "no limit".
    return int(limit) if isinstance(limit, int | float) and 0 < limit < 1_000_000 else None


def _graph_bytes(path: Path) -> int:
    """The bytes of one graph and of its external weights ("decoder_model.onnx_data" and the like)."""
    if not path.parent.is_dir():
        return 0
    # All the graphs share one folder, so only the files named after this one count.
    return sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file() and p.name.startswith(path.name))


@dataclass(frozen=True)
class MusicWindow:
    """One window of a piece: ``frames`` new frames after ``context`` frames of the previous window."""

    frames: int  # new frames this window adds
    context: int  # frames of the previous windows it is primed with

    def steps(self, num_codebooks: int) -> int:
        return self.frames + num_codebooks - 1


class MusicGen:
    """A MusicGen ONNX folder, ready to turn a text prompt into music.

    ``providers`` lists onnxruntime execution providers in order of preference (the CPU is the
    fallback); ``threads`` is onnxruntime's intra-op thread count. ``window_s`` and
    ``extend_stride_s`` set the windows of long pieces (audiocraft's 30 s and 18 s by default).
    The graphs load on first use, or with :meth:`load`; :meth:`unload` frees them.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        providers: Sequence[str] = (CPU,),
        threads: int = 1,
        window_s: float = MAX_WINDOW_S,
        extend_stride_s: float = EXTEND_STRIDE_S,
    ) -> None:
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        if not (0 < extend_stride_s < window_s):
            raise EmberError(
                f"The window stride ({extend_stride_s:g} s) must be above 0 and shorter than the window "
                f"({window_s:g} s)."
            )
        self.window_frames = max(1, int(window_s * self.config.frame_rate))
        self.stride_frames = max(1, int(extend_stride_s * self.config.frame_rate))
        if self.window_frames + self.config.num_codebooks > self.config.max_positions:
            raise EmberError(
                f"A {window_s:g} s window needs {self.window_frames + self.config.num_codebooks} decoder positions; "
                f"this model has {self.config.max_positions}. Choose a shorter window."
            )
        graphs = _graph_folder(self.folder)
        providers = list(providers) or [CPU]
        self.graphs: dict[str, OnnxGraph] = {
            role: OnnxGraph(role.replace("_", " "), graphs / name, providers, threads) for role, name in GRAPHS.items()
        }
        self._names: dict[str, dict[str, str]] = {}
        self._past_names: list[str] = []
        self._tokenizer: Any = None

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the tokenizer and the four graphs, and check that they are MusicGen's.

        Raises ModelFileError for a damaged graph or one whose inputs are not what optimum's
        MusicGen export has, OutOfMemoryError when a graph does not fit.
        """
        if self.loaded:
            return
        self.tokenizer()
        found_names: dict[str, dict[str, str]] = {}
        for role, graph in self.graphs.items():
            graph.load()
            names: dict[str, str] = {}
            for wanted, aliases in _INPUTS[role].items():
                found = next((a for a in aliases if a in graph.input_names), None)
                if found is None:
                    raise ModelFileError(
                        f"'{graph.path.name}' in '{self.folder}' is not MusicGen's {graph.name}: it has no "
                        f"'{aliases[0]}' input (its inputs are {', '.join(graph.input_names)}). "
                        "Export the model again with optimum (task text-to-audio)."
                    )
                names[wanted] = found
            found_names[role] = names
        past = [n for n in self.graphs["decoder_with_past"].input_names if n.startswith("past_key_values.")]
        presents = set(self.graphs["decoder"].output_names)
        expected = 4 * self.config.num_layers
        if len(past) != expected or any(n.replace("past_key_values.", "present.", 1) not in presents for n in past):
            raise ModelFileError(
                f"The decoders in '{self.folder}' do not match: decoder_with_past_model.onnx reads {len(past)} past "
                f"key/value tensors where {self.config.num_layers} layers need {expected}, or decoder_model.onnx "
                "does not return them. Export the model again with optimum (task text-to-audio)."
            )
        self._past_names = past
        self._names = found_names  # last: a load that failed a check is tried (and fails) again

    def unload(self) -> None:
        """Free the graphs and the tokenizer; they load again when next needed."""
        for graph in self.graphs.values():
            graph.unload()
        self._names.clear()
        self._tokenizer = None

    @property
    def loaded(self) -> bool:
        return all(g.loaded for g in self.graphs.values()) and bool(self._names)

    @property
    def provider(self) -> str:
        """The execution provider the decoder runs on, once loaded ("" before)."""
        return self.graphs["decoder_with_past"].provider

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def file_bytes(self) -> int:
        """The bytes of the four graphs (with their external weights) on disk: a floor for the memory they need."""
        return sum(_graph_bytes(g.path) for g in self.graphs.values())

    def memory_estimate_bytes(self, settings: MusicSettings) -> int:
        """Roughly the memory a generation with ``settings`` needs: a floor, not a promise.

        The graphs' weights (their size on disk), twice the key/value cache of the longest
        window (onnxruntime holds the cache it is fed and the one it returns), and the audio.
        """
        cfg = self.config
        rows = 2 if settings.guidance_scale > 1.0 else 1
        longest = max(w.context + w.frames for w in self.plan(settings.seconds)) + cfg.num_codebooks
        kv_bytes = cfg.num_layers * 2 * rows * cfg.hidden_size * (longest + cfg.max_prompt_tokens) * 4
        audio_bytes = round(settings.seconds * cfg.sample_rate) * 4
        return self.file_bytes + 2 * kv_bytes + 4 * audio_bytes

    def tokenizer(self) -> Any:
        """Return the folder's own tokenizer (``tokenizers.Tokenizer``), loading it once."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer  # heavy: imported in the worker, never at start-up

            path = self.folder / "tokenizer.json"
            if not path.is_file():
                path = _graph_folder(self.folder) / "tokenizer.json"
            try:
                self._tokenizer = Tokenizer.from_file(str(path))
            except Exception as exc:  # tokenizers raises its own exception type for a bad file
                raise ModelFileError(
                    f"Ember cannot read the tokenizer '{path}' ({exc}). The folder may be damaged."
                ) from None
        return self._tokenizer

    # -- generating -------------------------------------------------------------------------
    def tokenize(self, prompt: str) -> np.ndarray:
        """Return the prompt's token ids, (1, tokens) int64, ``</s>`` included as T5 adds it.

        Raises ContextOverflowError when the prompt has more tokens than the text encoder takes.
        """
        ids = self.tokenizer().encode(prompt).ids
        limit = self.config.max_prompt_tokens
        if len(ids) > limit:
            raise ContextOverflowError(
                f"The prompt is too long for this model: {len(ids)} tokens, and its text encoder takes at most "
                f"{limit}. Shorten the description."
            )
        return np.asarray([ids], dtype=np.int64)

    def plan(self, seconds: float) -> list[MusicWindow]:
        """Return the windows that make ``seconds`` of audio: the first unprimed, each next primed."""
        total = max(1, round(seconds * self.config.frame_rate))
        first = min(total, self.window_frames)
        windows = [MusicWindow(frames=first, context=0)]
        made = first
        context = self.window_frames - self.stride_frames
        while made < total:
            frames = min(total - made, self.window_frames - context)
            windows.append(MusicWindow(frames=frames, context=context))
            made += frames
        return windows

    def total_steps(self, seconds: float) -> int:
        """The decoder steps (and so progress calls) that ``seconds`` of audio take."""
        return sum(w.steps(self.config.num_codebooks) for w in self.plan(seconds))

    def generate(
        self,
        prompt: str,
        settings: MusicSettings,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        preview: Callable[[np.ndarray], None] | None = None,
        preview_every: int = 100,
    ) -> MusicResult:
        """Make music for ``prompt`` with ``settings``; return the codes, the audio and the timings.

        ``progress(done, total)`` is called after every decoder step (one step yields one
        delayed frame: a code for each codebook; ``total`` is :meth:`total_steps`). ``cancel``
        is called before every step and before the audio decoding: when it returns a true value
        (or raises Cancelled itself, as ``CancelToken.raise_if_cancelled`` does) the generation
        stops with Cancelled. Raises EmberError for settings out of range,
        ContextOverflowError for a prompt too long, ModelFileError for a folder that is not a
        MusicGen export, OutOfMemoryError when the model does not fit.

        ``preview(audio)``, when given, gets the audio of about every ``preview_every`` new frames as
        they are complete (each chunk decoded on its own: the joins may click; the result does not).
        """
        settings.check()
        t_load = time.perf_counter()
        self.load()
        t0 = time.perf_counter()
        ids = self.tokenize(prompt)
        t1 = time.perf_counter()
        states, mask = self.encode_text(ids)
        t2 = time.perf_counter()
        windows = self.plan(settings.seconds)
        total = sum(w.steps(self.config.num_codebooks) for w in windows)
        sampler = CodeSampler(settings)
        counter = _StepCounter(progress, total)
        pieces: list[np.ndarray] = []
        made: np.ndarray | None = None
        shown = 0  # frames of the whole piece already sent as previews
        for window in windows:
            context = None if made is None or window.context == 0 else made[:, -window.context :]
            before = 0 if made is None else made.shape[1]
            skip = 0 if context is None else context.shape[1]

            def on_sequence(codes_so_far: np.ndarray, before: int = before, skip: int = skip) -> None:
                nonlocal shown
                complete = before + codes_so_far.shape[1] - skip
                if preview is None or complete - shown < preview_every:
                    return
                new = codes_so_far[:, shown - before + skip :]
                shown = complete
                preview(self.decode_audio(new))

            codes = self.generate_codes(
                states,
                mask,
                window.frames,
                settings,
                prompt_codes=context,
                sampler=sampler,
                step=counter,
                cancel=cancel,
                on_codes=on_sequence if preview is not None else None,
            )
            pieces.append(codes if context is None else codes[:, context.shape[1] :])
            made = np.concatenate(pieces, axis=1)
        assert made is not None
        t3 = time.perf_counter()
        _check_cancel(cancel)
        audio = self.decode_audio(made)
        t4 = time.perf_counter()
        frames = made.shape[1]
        timings = MusicTimings(
            load_s=t0 - t_load,
            tokenize_s=t1 - t0,
            text_encoder_s=t2 - t1,
            decode_s=t3 - t2,
            audio_decoder_s=t4 - t3,
            total_s=t4 - t_load,
            frames=frames,
            steps=total,
            frames_per_s=frames / (t3 - t2) if t3 > t2 else 0.0,
        )
        return MusicResult(codes=made, audio=audio, sample_rate=self.sample_rate, timings=timings, windows=len(windows))

    def encode_text(self, input_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the T5 encoder; return its hidden states (1, tokens, d_model) and the attention mask (1, tokens)."""
        self.load()
        mask = np.ones_like(input_ids, dtype=np.int64)
        names = self._names["text_encoder"]
        out = self._run("text_encoder", {names["input_ids"]: input_ids, names["attention_mask"]: mask})
        return out["last_hidden_state"] if "last_hidden_state" in out else next(iter(out.values())), mask

    def generate_codes(
        self,
        encoder_states: np.ndarray,
        attention_mask: np.ndarray,
        frames: int,
        settings: MusicSettings,
        *,
        prompt_codes: np.ndarray | None = None,
        sampler: CodeSampler | None = None,
        step: Callable[[], None] | None = None,
        cancel: CancelCheck | None = None,
        on_codes: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Decode one window: ``frames`` new frames after ``prompt_codes`` (codebooks, P), if given.

        Returns the window's codes with the delay undone, (codebooks, P + frames) int64, the
        prompt first. ``step()`` is called after every decoder step; ``cancel`` as in
        :meth:`generate`. ``on_codes(codes)`` gets the window's complete frames so far (the delay
        undone, the prompt first) after every step. This is what transformers' ``generate`` does for one batch row with
        ``max_new_tokens = frames + codebooks - 1`` (and ``decoder_input_ids = prompt_codes``).
        """
        self.load()
        cfg = self.config
        k = cfg.num_codebooks
        sampler = sampler or CodeSampler(settings)
        guided = settings.guidance_scale > 1.0
        prompt_len = 0 if prompt_codes is None else prompt_codes.shape[1]
        max_length = prompt_len + frames + k
        start = np.full((k, 1), cfg.start_token_id, dtype=np.int64)
        first = start if prompt_codes is None else np.concatenate([start, prompt_codes.astype(np.int64)], axis=1)
        first_ids, pattern = build_delay_pattern_mask(first, cfg.start_token_id, max_length, k, cfg.audio_channels)
        sequence = np.empty((k, max_length), dtype=np.int64)
        sequence[:, : first_ids.shape[1]] = first_ids

        if guided:
            # transformers' "null" condition: zeroed encoder states, and a mask that hides them.
            encoder_states = np.concatenate([encoder_states, np.zeros_like(encoder_states)], axis=0)
            attention_mask = np.concatenate([attention_mask, np.zeros_like(attention_mask)], axis=0)
        rows = 2 if guided else 1
        names = self._names["decoder"]
        past_names = self._names["decoder_with_past"]
        position = first_ids.shape[1]
        past: dict[str, np.ndarray] = {}
        # Per step only the codes the delay pattern leaves free are sampled; the rest are the pattern's.
        free = pattern == -1
        sequence[:, position:] = np.where(free[:, position:], 0, pattern[:, position:])
        free_rows = [np.flatnonzero(free[:, p]) for p in range(max_length)]
        presents = [(name, name.replace("past_key_values.", "present.", 1)) for name in self._past_names]
        step_ids = np.empty((rows, k), dtype=np.int64)  # the last codes, for both halves of the batch
        while position < max_length:
            _check_cancel(cancel)
            if not past:
                feeds = {
                    names["input_ids"]: np.tile(sequence[:, :position], (rows, 1)),
                    names["encoder_hidden_states"]: encoder_states,
                    names["encoder_attention_mask"]: attention_mask,
                }
                out = self._run("decoder", feeds)
            else:
                step_ids[:] = sequence[:, position - 1]
                feeds = {
                    past_names["input_ids"]: step_ids.reshape(rows * k, 1),
                    past_names["encoder_attention_mask"]: attention_mask,
                    **past,
                }
                out = self._run("decoder_with_past", feeds)
            # The encoder's keys and values come only from the first step; the decoder's grow.
            for name, present in presents:
                if present in out:
                    past[name] = out[present]
            logits = out["logits"][:, -1, :]
            if guided:
                cond, uncond = logits[:k], logits[k:]
                logits = uncond + (cond - uncond) * np.float32(settings.guidance_scale)
            codes = sampler(logits)
            chosen = free_rows[position]
            sequence[chosen, position] = codes[chosen]
            position += 1
            if step is not None:
                step()
            if on_codes is not None and position - k > 0:
                on_codes(undelay(sequence[:, :position], k, position - k))
        return undelay(sequence, k, prompt_len + frames)

    def decode_audio(self, codes: np.ndarray) -> np.ndarray:
        """Decode (codebooks, frames) codes with EnCodec; return mono float32 samples (frames * hop_length)."""
        self.load()
        name = self._names["audio_decoder"]["audio_codes"]
        out = self._run("audio_decoder", {name: np.asarray(codes, dtype=np.int64)[None, None]})
        audio = out["audio_values"] if "audio_values" in out else next(iter(out.values()))
        return np.ascontiguousarray(audio.reshape(-1), dtype=np.float32)

    def _run(self, role: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.graphs[role].run(feeds)
        except OutOfMemoryError:
            raise OutOfMemoryError(
                f"The {self.graphs[role].name} of this music model ran out of memory. Choose a shorter length, "
                "turn guidance off (it doubles the work), or close other models."
            ) from None


class _StepCounter:
    """Counts decoder steps across windows and reports each to the progress callback."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _check_cancel(cancel: CancelCheck | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()
