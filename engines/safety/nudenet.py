"""An optional region detector: NudeNet's 320n YOLO model, for a second opinion on images.

Licence: the ``nudenet`` package says "MIT" in its metadata, but the licence file
it installs (``LICENSE``, ``LICENSE.md``) is the GNU AGPL-3.0. Ember takes the
stricter reading: NudeNet is never bundled, never a default and never a
dependency. A person who wants it installs it themselves
(``pip install ember-studio[nudenet]``, which pulls ``nudenet`` and, through it,
``opencv-python-headless``); Ember then uses it only when the person turns it on.

Ember does not import the package's code (it imports cv2 and the CPU onnxruntime
at import time). It loads the package's ``320n.onnx`` with onnxruntime and does
the package's pre- and post-processing itself, as ``nudenet/nudenet.py`` 3.4.2 does
for an image file:

- pad the image at the bottom and right with black to a square, resize to 320x320
  (bilinear, OpenCV's pixel-centre convention, no antialiasing), scale to 0..1, NCHW.
  For a file, NudeNet reads BGR with OpenCV, then swaps red and blue twice
  (``cvtColor(..., COLOR_RGBA2BGR)`` on a 3-channel image, then ``swapRB=True``), so
  the model is fed B, G, R; Ember feeds the same (on the astronaut photograph the
  face scores 0.72 fed so and 0.81 fed R, G, B, which hints that the model was trained
  on RGB; Ember keeps the package's behaviour until that can be tested on real data);
- the output is (1, 22, 2100): box centre, size, and 18 class scores per anchor; an
  anchor is kept when its best class scores 0.2 or more, then non-maximum suppression
  across classes (score above 0.25, IoU 0.45), as ``cv2.dnn.NMSBoxes`` does.

Each kept label becomes a SEXUAL finding (``rule`` = the label): exposed genitalia,
anus, female breasts and buttocks score 0.5 + confidence / 2 (any detection NudeNet
keeps blocks at "standard"; at "minimal" only confident ones do); the covered ones
score confidence / 2 (only "strict" blocks them, and only confident ones). Faces,
feet, armpits, bellies and male chests are not findings.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EmberError, ModelFileError
from engines.models.embedded import package_file
from engines.safety.image import as_rgb
from engines.safety.policy import Category, Finding

CHECKER = "nudenet"
_MODEL_FILE = "320n.onnx"
_SIZE = 320
_KEEP_SCORE = 0.2
_NMS_SCORE = 0.25
_NMS_IOU = 0.45

# The model's classes, in output order (nudenet/nudenet.py 3.4.2).
LABELS = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
EXPOSED = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "ANUS_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
    }
)
COVERED = frozenset({"FEMALE_GENITALIA_COVERED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED"})


def label_score(label: str, confidence: float) -> float | None:
    """Return the SEXUAL score for one detection, or None when the label is not a finding."""
    if label in EXPOSED:
        return 0.5 + confidence / 2
    if label in COVERED:
        return confidence / 2
    return None


def model_path() -> Path | None:
    """Return the installed ``nudenet/320n.onnx``, found without importing the package, or None."""
    return package_file("nudenet", _MODEL_FILE)


def resize_linear(image: np.ndarray, size: int) -> np.ndarray:
    """Return ``image`` (HxWxC uint8) resized to size x size like ``cv2.resize(..., INTER_LINEAR)``.

    Pixel centres map as (d + 0.5) * scale - 0.5, clamped at the edges, with no
    antialiasing; the result is float32 (OpenCV rounds to uint8, within one level).
    """
    height, width = image.shape[:2]

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size, dtype=np.float64) + 0.5) * (n_in / size) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        low = np.floor(pos).astype(np.intp)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (pos - low).astype(np.float32)

    y0, y1, wy = axis(height)
    x0, x1, wx = axis(width)
    src = image.astype(np.float32)
    rows = src[y0] * (1 - wy)[:, None, None] + src[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.rint(out).astype(np.float32)


def preprocess(pixels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Return (the 1x3x320x320 float32 input, width, height) for one RGB image."""
    rgb = as_rgb(pixels)
    height, width = rgb.shape[:2]
    side = max(height, width)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[:height, :width] = rgb[:, :, ::-1]  # B, G, R: what NudeNet feeds for an image file
    blob = resize_linear(square, _SIZE) / np.float32(255.0)
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None], dtype=np.float32), width, height


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y2 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box[2] * box[3] + others[:, 2] * others[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def postprocess(output: np.ndarray, width: int, height: int) -> list[tuple[str, float, tuple[int, int, int, int]]]:
    """Return (label, confidence, (x, y, w, h)) per detection, best first, as NudeNet's ``_postprocess``."""
    rows = np.asarray(output, dtype=np.float32).reshape(output.shape[-2], output.shape[-1]).T
    class_scores = rows[:, 4:]
    best = class_scores.max(axis=1)
    keep = best >= _KEEP_SCORE
    if not keep.any():
        return []
    rows, best, class_ids = rows[keep], best[keep], class_scores[keep].argmax(axis=1)
    side = max(width, height)
    scale = side / _SIZE
    w = rows[:, 2] * scale
    h = rows[:, 3] * scale
    x = np.clip((rows[:, 0] - rows[:, 2] / 2) * scale, 0, width)
    y = np.clip((rows[:, 1] - rows[:, 3] / 2) * scale, 0, height)
    w = np.minimum(w, width - x)
    h = np.minimum(h, height - y)
    boxes = np.stack([x, y, w, h], axis=1)
    order = [i for i in np.argsort(-best, kind="stable") if best[i] > _NMS_SCORE]
    kept: list[int] = []
    for i in order:
        if kept and (_iou(boxes[i], boxes[kept]) > _NMS_IOU).any():
            continue
        kept.append(i)
    return [
        (LABELS[int(class_ids[i])], float(best[i]), tuple(int(v) for v in boxes[i]))  # type: ignore[misc]
        for i in kept
    ]


class NudeNetDetector:
    """NudeNet's region detector as a checker; see the module docstring for its licence."""

    name = CHECKER

    def __init__(self, path: str | Path | None = None, *, threads: int = 1) -> None:
        self._path = Path(path) if path is not None else None
        self._threads = threads
        self._session: Any = None
        self._input = ""
        self._lock = threading.Lock()

    def available(self) -> tuple[bool, str]:
        """Return (True, "") when the detector can run, else (False, the reason for a person)."""
        path = self._path or model_path()
        if path is None:
            return False, (
                "NudeNet is not installed. It is an optional extra under the AGPL-3.0 licence: "
                "install it with 'pip install ember-studio[nudenet]' to use it."
            )
        if not path.is_file():
            return False, f"The NudeNet model '{path}' is missing. Reinstall the 'nudenet' package."
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed, so NudeNet cannot run. Reinstall Ember."
        return True, ""

    def _ensure_session(self) -> Any:
        with self._lock:
            if self._session is None:
                ok, why = self.available()
                if not ok:
                    raise EmberError(why)
                import onnxruntime as ort  # heavy: in the worker, on first use

                path = self._path or model_path()
                options = ort.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                try:
                    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
                except Exception as exc:  # onnxruntime raises its own types for a broken file
                    raise ModelFileError(
                        f"The NudeNet model could not be loaded ({exc}). Reinstall the 'nudenet' package."
                    ) from None
                self._input = session.get_inputs()[0].name
                self._session = session
            return self._session

    def detect(self, pixels: np.ndarray) -> list[tuple[str, float, tuple[int, int, int, int]]]:
        """Return NudeNet's detections: (label, confidence, (x, y, w, h) in image pixels), best first.

        Raises EmberError when NudeNet is not available or the image cannot be read.
        """
        blob, width, height = preprocess(pixels)
        session = self._ensure_session()
        (output,) = session.run(None, {self._input: blob})
        return postprocess(output[0], width, height)

    def check(self, pixels: np.ndarray) -> list[Finding]:
        """Return one SEXUAL finding per sexual label found (its best detection), ``rule`` = the label.

        Raises EmberError when NudeNet is not available or the image cannot be read.
        """
        best: dict[str, float] = {}
        for label, confidence, _box in self.detect(pixels):
            score = label_score(label, confidence)
            if score is not None and score > best.get(label, -1.0):
                best[label] = score
        return [Finding(Category.SEXUAL, round(s, 6), CHECKER, rule=label) for label, s in best.items()]
