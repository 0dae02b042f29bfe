"""CLIP's image-prompt score for ``evaluate image``: onnxruntime on the CPU, in an engine process.

No CLIP model ships with Ember; a person downloads one from the catalog (kind "clip": the
transformers.js ONNX export of OpenAI's CLIP ViT-B/32, ``Xenova/clip-vit-base-patch32``). Its folder
holds ``onnx/text_model*.onnx`` (``input_ids``, and in some exports ``attention_mask``, to
``text_embeds``), ``onnx/vision_model*.onnx`` (``pixel_values`` to ``image_embeds``), ``tokenizer.json``
and ``preprocessor_config.json``.

The score is CLIPScore's (Hessel et al. 2021, as torchmetrics computes it): the cosine of the image's
and the prompt's embeddings, times 100, floored at 0. It says how much CLIP finds the image and the
prompt alike: a proxy of prompt alignment, not a judge of it. Images are prepared as transformers'
CLIPImageProcessor prepares them (shortest side to 224 with bicubic resampling, a centred 224 crop,
1/255, CLIP's mean and standard deviation), reading ``preprocessor_config.json`` where there is one; the
prompt is tokenised with the ``tokenizers`` package from ``tokenizer.json``, cut and padded to 77 tokens.

Like every onnxruntime model it runs in an engine process (the Studio calls ``score`` there), never in
the window's; :data:`CLIP_KIND` is the model kind the catalog, the inspector and the model library know.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EmberError, ModelFileError
from engines.modality import ModelKind

CLIP_KIND = ModelKind("clip", "Evaluate", "onnx")
"""A CLIP model: it serves the Evaluate panel's image-prompt score (no modality runs it)."""

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_TOKENS = 77
_VARIANTS = ("", "_quantized", "_fp16", "_int8", "_uint8")  # transformers.js names: text_model_quantized.onnx
_WORKING_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ClipFiles:
    """The files of one CLIP model: its two towers, its tokenizer, and its image settings (None: CLIP's own)."""

    root: Path
    text: Path
    vision: Path
    tokenizer: Path
    preprocessor: Path | None
    config: Path | None


def clip_files(path: str | Path) -> ClipFiles:
    """The files of the CLIP model at ``path``: its folder (the repository's root), or either tower's .onnx.

    A tower's partner is the graph of the same variant beside it (``text_model_quantized.onnx`` goes with
    ``vision_model_quantized.onnx``); the tokenizer and settings are in the tower's folder or the one above
    it (``onnx/``'s parent). Raises ModelFileError, naming what is missing, when a part is not there.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"The CLIP model '{path}' does not exist. It may have been moved or deleted.")
    if path.is_dir():
        text = _text_tower_in(path)
        if text is None:
            raise ModelFileError(
                f"'{path.name}' holds no CLIP text tower (onnx/text_model.onnx or onnx/text_model_quantized.onnx). "
                "Download the CLIP model again in Models."
            )
    else:
        text = path
    name = text.name
    if name.startswith("vision_model") and name.endswith(".onnx"):
        text = text.with_name("text_model" + name[len("vision_model") :])
    elif not (name.startswith("text_model") and name.endswith(".onnx")):
        raise ModelFileError(
            f"'{name}' is not a CLIP tower: Ember opens a CLIP model by its folder or its text_model*.onnx."
        )
    vision = text.with_name("vision_model" + text.name[len("text_model") :])
    for tower, what in ((text, "text"), (vision, "image")):
        if not tower.is_file():
            raise ModelFileError(
                f"The CLIP model in '{text.parent}' has no {what} tower '{tower.name}'. Download the model again "
                "in Models: it needs both towers, tokenizer.json and preprocessor_config.json."
            )
    folders = [text.parent, text.parent.parent] if text.parent.name == "onnx" else [text.parent]
    tokenizer = next((f / "tokenizer.json" for f in folders if (f / "tokenizer.json").is_file()), None)
    if tokenizer is None:
        raise ModelFileError(
            f"The CLIP model in '{folders[-1]}' has no tokenizer.json, so its prompts cannot be read. "
            "Download the model again in Models."
        )
    root = tokenizer.parent
    preprocessor = root / "preprocessor_config.json"
    config = root / "config.json"
    return ClipFiles(
        root=root,
        text=text,
        vision=vision,
        tokenizer=tokenizer,
        preprocessor=preprocessor if preprocessor.is_file() else None,
        config=config if config.is_file() else None,
    )


def _text_tower_in(folder: Path) -> Path | None:
    for where in (folder / "onnx", folder):
        for variant in _VARIANTS:
            candidate = where / f"text_model{variant}.onnx"
            if candidate.is_file():
                return candidate
    return None


def is_clip_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a CLIP model's folder (a text tower, and a tokenizer.json)."""
    return (folder / "tokenizer.json").is_file() and _text_tower_in(folder) is not None


# -- image preparation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSettings:
    """How images are prepared (CLIPImageProcessor's settings; CLIP ViT-B/32's by default)."""

    shortest_edge: int = 224
    crop_height: int = 224
    crop_width: int = 224
    resample: int = 3  # PIL's BICUBIC
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


def image_settings(path: Path | None) -> ImageSettings:
    """The settings in ``preprocessor_config.json`` at ``path`` (old and new spellings of size and crop_size),
    or CLIP's own when ``path`` is None. Raises ModelFileError when the file is not a JSON object."""
    if path is None:
        return ImageSettings()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        defaults = ImageSettings()
        size = data.get("size", defaults.shortest_edge)
        if isinstance(size, dict):
            size = size.get("shortest_edge", min(size.get("height", 224), size.get("width", 224)))
        crop = data.get("crop_size", defaults.crop_height)
        crop_h, crop_w = (crop.get("height", 224), crop.get("width", 224)) if isinstance(crop, dict) else (crop, crop)
        settings = ImageSettings(
            shortest_edge=int(size),
            crop_height=int(crop_h),
            crop_width=int(crop_w),
            resample=int(data.get("resample", defaults.resample)),
            do_resize=bool(data.get("do_resize", True)),
            do_center_crop=bool(data.get("do_center_crop", True)),
            do_rescale=bool(data.get("do_rescale", True)),
            rescale_factor=float(data.get("rescale_factor", defaults.rescale_factor)),
            do_normalize=bool(data.get("do_normalize", True)),
            mean=tuple(float(v) for v in data.get("image_mean", CLIP_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data.get("image_std", CLIP_STD)),  # type: ignore[arg-type]
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ModelFileError(
            f"The CLIP model's preprocessor_config.json ('{path}') is damaged ({exc}). Download the model again."
        ) from None
    if min(settings.shortest_edge, settings.crop_height, settings.crop_width) < 1 or len(settings.mean) != 3:
        raise ModelFileError(f"The CLIP model's preprocessor_config.json ('{path}') gives sizes Ember cannot use.")
    return settings


def prepare_image(image: Any, settings: ImageSettings = ImageSettings()) -> Any:
    """``image`` (a PIL image) as CLIP's ``pixel_values``: a float32 array of shape (1, 3, height, width).

    The steps and their rounding are CLIPImageProcessor's: the shortest side resized to
    ``shortest_edge`` (the other to ``int(edge * long / short)``) with PIL, a centred crop whose top
    left corner is rounded down, the rescale, then the normalisation.
    """
    import numpy as np
    from PIL import Image

    image = image.convert("RGB")
    if settings.do_resize:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = settings.shortest_edge, int(settings.shortest_edge * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, resample=Image.Resampling(settings.resample))
    pixels = np.asarray(image, dtype=np.uint8)
    if settings.do_center_crop:
        pixels = _centre_crop(pixels, settings.crop_height, settings.crop_width)
    values = pixels.astype(np.float32)
    if settings.do_rescale:
        values = values * np.float32(settings.rescale_factor)
    if settings.do_normalize:
        values = (values - np.asarray(settings.mean, np.float32)) / np.asarray(settings.std, np.float32)
    return values.transpose(2, 0, 1)[None].astype(np.float32)


def _centre_crop(pixels: Any, crop_h: int, crop_w: int) -> Any:
    import numpy as np

    height, width = pixels.shape[:2]
    if height < crop_h or width < crop_w:  # as transformers does: pad with zeros to the crop first
        padded = np.zeros((max(height, crop_h), max(width, crop_w), pixels.shape[2]), pixels.dtype)
        top, left = (padded.shape[0] - height) // 2, (padded.shape[1] - width) // 2
        padded[top : top + height, left : left + width] = pixels
        pixels, height, width = padded, padded.shape[0], padded.shape[1]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return pixels[top : top + crop_h, left : left + crop_w]


# -- the engine ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipOptions:
    """The CLIP model that scores (its folder, or its text tower's .onnx), and the CPU threads it may use
    (0: onnxruntime's choice)."""

    path: str
    threads: int = 0


@dataclass(frozen=True)
class ClipRequest:
    """Images (files) to score against one prompt."""

    image_paths: tuple[str, ...]
    prompt: str


@dataclass(frozen=True)
class ClipScores:
    """Per image, the cosine of its embedding and the prompt's, and CLIPScore (``max(100 * cosine, 0)``)."""

    model: str
    cosines: tuple[float, ...]
    tokens: int  # the prompt's tokens, with the start and end tokens, after cutting at 77

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(max(100.0 * c, 0.0) for c in self.cosines)


class ClipEngine:
    """CLIP's two towers and its tokenizer, on the CPU."""

    kind = "clip"
    backend = "CPU"

    def __init__(self, options: ClipOptions) -> None:
        self.options = options
        self.name = Path(options.path).name
        self._text: Any = None
        self._vision: Any = None
        self._tokenizer: Any = None
        self._settings = ImageSettings()
        self._files: ClipFiles | None = None
        self._text_length = CONTEXT_TOKENS
        self._pad_id = 0

    def memory_estimate(self) -> int:
        try:
            files = clip_files(self.options.path)
        except EmberError:
            return _WORKING_BYTES
        return os.path.getsize(files.text) + os.path.getsize(files.vision) + _WORKING_BYTES

    def load(self) -> None:
        """Raises ModelFileError for a missing part, a damaged or truncated graph, a graph that is not a CLIP
        tower, or a tokenizer that cannot be read (OutOfMemoryError when there is no room for it)."""
        if self._text is not None:
            return
        files = clip_files(self.options.path)
        self._settings = image_settings(files.preprocessor)
        self._tokenizer, self._pad_id = _tokenizer(files.tokenizer)
        text = _session(files.text, self.options.threads, "text", {"input_ids"}, "text_embeds")
        vision = _session(files.vision, self.options.threads, "image", {"pixel_values"}, "image_embeds")
        length = _fixed_dim(text, "input_ids", 1)
        self._text_length = length or _context_tokens(files.config)
        self._tokenizer.enable_truncation(self._text_length)  # it keeps room for the start and end tokens
        self._text, self._vision, self._files = text, vision, files

    def score(self, request: ClipRequest) -> ClipScores:
        """The cosine of each image's embedding with the prompt's. Raises EmberError for an image that cannot
        be read or a tower that fails to run."""
        import numpy as np
        from PIL import Image

        from engines.errors import IMAGE_DECODE_ERRORS

        self.load()
        prompt, tokens = self.text_embedding(request.prompt)
        cosines = []
        for path in request.image_paths:
            try:
                with Image.open(path) as image:
                    pixels = prepare_image(image, self._settings)
            except IMAGE_DECODE_ERRORS as exc:
                raise EmberError(f"The image '{path}' cannot be read to score it ({exc}).") from None
            embedding = self.image_embedding(pixels)
            cosines.append(float(np.dot(embedding, prompt)))
        return ClipScores(self.model_name, tuple(cosines), tokens)

    @property
    def model_name(self) -> str:
        return self._files.root.name if self._files is not None else self.name

    def token_ids(self, prompt: str) -> tuple[Any, Any]:
        """The prompt's token ids and attention mask, each an int64 array of shape (1, length), and the
        number of real tokens: cut to the text tower's length (keeping the end token) and padded."""
        import numpy as np

        encoding = self._tokenizer.encode(prompt)
        ids, mask = list(encoding.ids), list(encoding.attention_mask)
        pad = self._text_length - len(ids)
        ids += [self._pad_id] * pad
        mask += [0] * pad
        return np.asarray([ids], np.int64), np.asarray([mask], np.int64)

    def text_embedding(self, prompt: str) -> tuple[Any, int]:
        """The prompt's embedding, L2-normalised, and how many tokens it was."""
        self.load()
        ids, mask = self.token_ids(prompt)
        feeds = {}
        for value in self._text.get_inputs():
            if value.name == "input_ids":
                feeds[value.name] = ids.astype(_numpy_type(value.type, "int64"))
            elif value.name == "attention_mask":
                feeds[value.name] = mask.astype(_numpy_type(value.type, "int64"))
            else:
                raise ModelFileError(
                    f"The CLIP text tower '{self._files.text.name if self._files else ''}' asks for an input "
                    f"'{value.name}' Ember does not know (it gives input_ids and attention_mask)."
                )
        embedding = self._run(self._text, "text_embeds", feeds, "the text tower")
        return _normalised(embedding), int(mask.sum())

    def image_embedding(self, pixels: Any) -> Any:
        """The embedding of prepared ``pixels`` (see :func:`prepare_image`), L2-normalised."""
        self.load()
        (value,) = [v for v in self._vision.get_inputs() if v.name == "pixel_values"]
        feeds = {"pixel_values": pixels.astype(_numpy_type(value.type, "float32"))}
        return _normalised(self._run(self._vision, "image_embeds", feeds, "the image tower"))

    def _run(self, session: Any, output: str, feeds: dict[str, Any], what: str) -> Any:
        import numpy as np

        from engines.ort_errors import is_out_of_memory, ort_reason, out_of_memory

        try:
            (result,) = session.run([output], feeds)
        except Exception as exc:  # onnxruntime raises its own types
            if is_out_of_memory(exc):
                raise out_of_memory(exc, f"CLIP's {what}", "Close other models or programs and try again.") from None
            raise EmberError(f"CLIP's {what} failed to run ({ort_reason(exc)}). The model may be damaged.") from None
        result = np.asarray(result, dtype=np.float32)
        if result.ndim != 2 or result.shape[0] != 1:
            raise ModelFileError(f"CLIP's {what} gave an embedding of shape {result.shape}, not (1, dimensions).")
        return result[0]

    def unload(self) -> None:
        self._text = self._vision = self._tokenizer = None


def make_clip_engine(options: ClipOptions, context: Any) -> ClipEngine:
    """The engine factory (in the engine process)."""
    return ClipEngine(options)


def _tokenizer(path: Path) -> tuple[Any, int]:
    """The tokenizer in ``path`` (padding off: the engine pads), and the id it pads with."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own exception type for a damaged file
        raise ModelFileError(
            f"The CLIP model's tokenizer.json ('{path}') cannot be read ({exc}). Download the model again."
        ) from None
    padding = tokenizer.padding
    pad_id = padding["pad_id"] if padding else None
    tokenizer.no_padding()
    if pad_id is None:
        # CLIP pads with its end token; the text tower pools at the first end token, so what follows is unseen.
        pad_id = tokenizer.token_to_id("<|endoftext|>")
    return tokenizer, int(pad_id or 0)


def _session(path: Path, threads: int, what: str, inputs: set[str], output: str) -> Any:
    """The onnxruntime session of one tower, checked to be one. Raises ModelFileError (or OutOfMemoryError)."""
    import onnxruntime as ort

    from engines.models.onnx_header import read_onnx_header
    from engines.ort_errors import load_error

    header = read_onnx_header(path)  # a missing, cut-short or damaged file, or weights outside its folder
    names = {v.name for v in header.inputs}
    outputs = {v.name for v in header.outputs}
    if not inputs <= names or output not in outputs:
        shown_in = ", ".join(sorted(names)) or "none"
        shown_out = ", ".join(sorted(outputs)) or "none"
        raise ModelFileError(
            f"'{path.name}' is not a CLIP {what} tower: it takes {shown_in} and gives {shown_out} (a CLIP {what} "
            f"tower takes {', '.join(sorted(inputs))} and gives {output}). Download the CLIP model again in Models."
        )
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for damaged or foreign files
        raise load_error(exc, path, f"the CLIP {what} tower '{path.name}'") from None


def _fixed_dim(session: Any, name: str, axis: int) -> int | None:
    for value in session.get_inputs():
        if value.name == name and len(value.shape) > axis and isinstance(value.shape[axis], int):
            return int(value.shape[axis])
    return None


def _context_tokens(config: Path | None) -> int:
    """The text tower's positions (config.json's text_config), or CLIP's 77."""
    if config is None:
        return CONTEXT_TOKENS
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        value = int(data.get("text_config", {}).get("max_position_embeddings", CONTEXT_TOKENS))
    except (OSError, ValueError, TypeError, AttributeError):
        return CONTEXT_TOKENS
    return min(value, CONTEXT_TOKENS) if value > 0 else CONTEXT_TOKENS


def _numpy_type(ort_type: str, default: str) -> str:
    return {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32"}.get(
        ort_type, "float16" if ort_type == "tensor(float16)" else default
    )


def _normalised(vector: Any) -> Any:
    import numpy as np

    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ModelFileError("CLIP gave an empty or non-finite embedding; the model may be damaged.")
    return vector / norm
