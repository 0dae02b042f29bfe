"""The upscaler: a Real-ESRGAN-style ONNX graph run in overlapping, blended tiles with onnxruntime.

Any image size fits: the model only ever sees one tile (``tile_size`` pixels plus ``overlap``
pixels of context on each side, mirrored at the image's edges), neighbouring tiles share
``overlap`` pixels that are blended with linear ramps, and the output is finished one row of
tiles at a time, so the float working memory is one band of tiles, not the whole image.
Progress is reported per tile; the cancel token is checked before every tile and also stops
a tile in flight (onnxruntime's terminate flag), so a cancel wins within a fraction of a tile.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.engine import Progress
from engines.errors import IMAGE_DECODE_ERRORS, Cancelled, EmberError, ModelFileError, OutOfMemoryError
from engines.hardware import available_ram_bytes, default_threads
from engines.jobs import CancelToken
from engines.ort_errors import is_out_of_memory, load_error, ort_reason, out_of_memory
from engines.pipeline import Provenance
from engines.units import human_bytes
from engines.upscale.requests import Upscaled, UpscaleOptions, UpscaleRequest

_CLOSE_OTHERS = "Close other models or programs and try again."

TileRunner = Callable[[np.ndarray], np.ndarray]
"""Runs the model on one tile: 1x3xhxw float32 RGB in [0, 1] to 1x3x(h*s)x(w*s)."""


def tile_starts(length: int, core: int, overlap: int) -> list[int]:
    """Where tiles of ``core`` pixels start along an axis of ``length``, neighbours sharing at least ``overlap``."""
    if length <= core:
        return [0]
    count = math.ceil((length - overlap) / (core - overlap))
    return [round(i * (length - core) / (count - 1)) for i in range(count)]


def _ramp(start: int, size: int, length: int, overlap: int) -> np.ndarray:
    """Blend weights along one axis of a tile: linear ramps over the shared pixels, 1 at the image's own edges."""
    weights = np.ones(size, np.float32)
    if overlap <= 0:
        return weights
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if start > 0:
        weights[:overlap] = ramp
    if start + size < length:
        weights[size - overlap :] = np.minimum(weights[size - overlap :], ramp[::-1])
    return weights


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut: tile cores and their starts, the context read around them, the scale."""

    height: int
    width: int
    core_h: int
    core_w: int
    context: int
    overlap: int
    scale: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    def tile_inputs(self) -> tuple[int, int]:
        """The height and width of the array the model sees for one tile."""
        return self.core_h + 2 * self.context, self.core_w + 2 * self.context


def plan_tiles(height: int, width: int, scale: int, tile: int, overlap: int, context: int | None = None) -> TilePlan:
    """Cut a ``height`` x ``width`` image into tiles of at most ``tile`` pixels sharing ``overlap``,
    each reading ``context`` pixels around it (``overlap`` when None)."""
    core_h, core_w = min(tile, height), min(tile, width)
    overlap = min(overlap, core_h // 2, core_w // 2)
    ys = tile_starts(height, core_h, overlap)
    xs = tile_starts(width, core_w, overlap)
    reach = overlap if context is None else context
    return TilePlan(height, width, core_h, core_w, reach, overlap, scale, tuple(ys), tuple(xs))


def upscale_tiled(
    rgb: np.ndarray,
    run_tile: TileRunner,
    plan: TilePlan,
    *,
    on_tile: Callable[[int, int], None] = lambda done, total: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    """Return ``rgb`` (HxWx3 uint8) upscaled ``plan.scale`` times, tile by tile, as HxWx3 uint8.

    Raises Cancelled before the next tile once ``cancelled()`` is true.
    """
    s, c = plan.scale, plan.context
    height, width = plan.height, plan.width
    padded = np.pad(rgb.astype(np.float32) / 255.0, ((c, c), (c, c), (0, 0)), mode="reflect")
    out = np.empty((height * s, width * s, 3), np.uint8)
    band_h, out_w = plan.core_h * s, width * s
    acc = np.zeros((band_h, out_w, 3), np.float32)
    weight = np.zeros((band_h, out_w), np.float32)
    ramps_x = [_ramp(x * s, plan.core_w * s, out_w, plan.overlap * s) for x in plan.xs]
    done, total = 0, plan.tiles
    for row, y in enumerate(plan.ys):
        ramp_y = _ramp(y * s, band_h, height * s, plan.overlap * s)
        for x, ramp_x in zip(plan.xs, ramps_x, strict=True):
            if cancelled():
                raise Cancelled(None)
            window = padded[y : y + plan.core_h + 2 * c, x : x + plan.core_w + 2 * c]
            tile = run_tile(np.ascontiguousarray(window.transpose(2, 0, 1)[None]))
            core = tile[0, :, c * s : (c + plan.core_h) * s, c * s : (c + plan.core_w) * s].transpose(1, 2, 0)
            w = ramp_y[:, None] * ramp_x[None, :]
            acc[:, x * s : (x + plan.core_w) * s] += core * w[..., None]
            weight[:, x * s : (x + plan.core_w) * s] += w
            done += 1
            on_tile(done, total)
        # Output rows above the next row of tiles are final: write them and move the band down.
        following = plan.ys[row + 1] if row + 1 < len(plan.ys) else None
        finished = (following - y) * s if following is not None else band_h
        rows = slice(y * s, y * s + finished)
        values = acc[:finished] / weight[:finished, :, None]
        out[rows] = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        if following is not None:
            keep = band_h - finished
            acc[:keep], weight[:keep] = acc[finished:], weight[finished:]
            acc[keep:], weight[keep:] = 0.0, 0.0
    return out


def tile_memory_bytes(tile_h: int, tile_w: int, scale: int) -> int:
    """A generous estimate of one tile's working memory inside the model (Real-ESRGAN's widest layers)."""
    return tile_h * tile_w * 4 * (256 + 3 * 64 * scale * scale)


def memory_needed(
    height: int, width: int, scale: int, model_scale: int, tile: int, overlap: int, context: int | None = None
) -> dict[str, int]:
    """Bytes an upscale of a ``height`` x ``width`` image needs, by what needs them."""
    plan = plan_tiles(height, width, model_scale, tile, overlap, context)
    th, tw = plan.tile_inputs()
    model_out = height * model_scale * width * model_scale
    parts = {
        "source": (height + 2 * plan.context) * (width + 2 * plan.context) * 3 * 4 + height * width * 4,
        "output": model_out * 3 + (height * scale * width * scale * 4 if scale != model_scale else 0),
        "alpha": height * scale * width * scale,
        "band": plan.core_h * model_scale * width * model_scale * 4 * 4,
        "tile": tile_memory_bytes(th, tw, model_scale),
    }
    parts["total"] = sum(parts.values())
    return parts


def check_fits(
    height: int, width: int, scale: int, model_scale: int, tile: int, overlap: int, context: int | None = None
) -> None:
    """Raise OutOfMemoryError, before anything runs, when the upscale will not fit in free memory."""
    need = memory_needed(height, width, scale, model_scale, tile, overlap, context)
    free = available_ram_bytes()
    if need["total"] > free:
        raise OutOfMemoryError(
            f"Upscaling a {width}x{height} image x{scale} makes a {width * scale}x{height * scale} image "
            f"and needs about {human_bytes(need['total'], approximate=True)} "
            f"(the result alone is {human_bytes(need['output'], approximate=True)}); "
            f"{human_bytes(free, approximate=True)} is free. Upscale a smaller image or use a smaller scale."
        )


@dataclass(frozen=True)
class SourceImage:
    """The image to upscale as read: RGB, alpha (or None), and what links the result to it."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    sha256: str
    output_id: str  # the Ember record the source file carries, or ""
    name: str


@contextlib.contextmanager
def _no_pixel_limit() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit while an upscale reads its source.

    Ember's own memory check (:func:`check_fits`, before the pixels are decoded) stands in for
    it, and says how large the image is; Pillow's limit would refuse a large photograph without that.
    """
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def read_size(path: Path) -> tuple[int, int]:
    """Return (width, height) of an image file from its header, without decoding it.

    Raises EmberError when the file is missing or not an image Pillow reads.
    """
    from PIL import Image

    try:
        with _no_pixel_limit(), Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise EmberError(f"There is no image '{path}'. Check the path.") from None
    except IMAGE_DECODE_ERRORS as exc:
        raise EmberError(
            f"'{path.name}' is not an image Ember can read ({exc}). Upscale a PNG, JPEG, WebP, BMP or TIFF file."
        ) from None


def _record_of(data: bytes) -> str:
    """The Ember output id a PNG/WebP/JPEG file carries in its XMP packet, or ""."""
    from engines.provenance.metadata import parse_xmp

    start, end = data.find(b"<x:xmpmeta"), data.find(b"</x:xmpmeta>")
    if start < 0 or end < 0:
        return ""
    try:
        return parse_xmp(data[start : end + len(b"</x:xmpmeta>")]).get("output_id", "")
    except ValueError:
        return ""


def read_source(image: str | np.ndarray, name: str = "") -> SourceImage:
    """Decode the source into RGB and alpha; a file's SHA-256 and Ember record id come with it.

    Raises EmberError when the file cannot be read or decoded.
    """
    from PIL import Image, ImageOps

    if isinstance(image, np.ndarray):
        rgb = np.ascontiguousarray(image[..., :3])
        alpha = np.ascontiguousarray(image[..., 3]) if image.shape[2] == 4 else None
        return SourceImage(rgb, alpha, hashlib.sha256(image.tobytes()).hexdigest(), "", name or "pixels")
    path = Path(image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmberError(f"Ember cannot read the image '{path}' ({exc.strerror or exc}).") from None
    try:
        with _no_pixel_limit(), Image.open(io.BytesIO(data)) as opened:
            picture = ImageOps.exif_transpose(opened)
            has_alpha = picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info
            if picture.mode.startswith("I;16") or picture.mode in ("I", "F"):
                picture = picture.point(lambda v: v / 256).convert("L")  # 16-bit grey to 8-bit
            rgba = np.asarray(picture.convert("RGBA" if has_alpha else "RGB"))
    except IMAGE_DECODE_ERRORS as exc:
        raise EmberError(f"'{path.name}' is not an image Ember can read ({exc}).") from None
    alpha = np.ascontiguousarray(rgba[..., 3]) if has_alpha else None
    return SourceImage(
        np.ascontiguousarray(rgba[..., :3]),
        alpha,
        hashlib.sha256(data).hexdigest(),
        _record_of(data),
        name or path.name,
    )


def _resize(array: np.ndarray, width: int, height: int, method: str) -> np.ndarray:
    from PIL import Image

    resample = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}[method]
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


class _Terminator:
    """Stops a tile that is running when the job is cancelled: onnxruntime's terminate flag, set from the cancel."""

    def __init__(self, cancel: CancelToken) -> None:
        import onnxruntime as ort

        self.options = ort.RunOptions()
        self._remove = cancel.on_cancel(self._stop)

    def _stop(self) -> None:
        self.options.terminate = True

    def close(self) -> None:
        self._remove()


class UpscaleEngine:
    """One upscaler graph, loaded once and kept between jobs.

    Raises ModelFileError at construction for an unknown embedded id or a missing file.
    """

    kind = "upscale"

    def __init__(self, options: UpscaleOptions) -> None:
        from engines.upscale.models import UPSCALERS, upscaler

        self.options = options
        self.threads = options.threads or default_threads()
        self.backend = "CPU"
        self.notes: list[str] = []
        self._session: Any = None
        self._sha256 = ""
        self._lock = threading.Lock()
        embedded = {m.id for m in UPSCALERS}
        if options.model in embedded:
            self.embedded = upscaler(options.model)
            self.name = self.embedded.name
            self.model_scale = self.embedded.scale
            self.path: Path | None = None
        else:
            self.embedded = None
            self.path = Path(options.model).expanduser()
            if not self.path.is_file():
                raise ModelFileError(
                    f"There is no upscaler '{options.model}'. Give an ONNX upscaler file, an ncnn .param file, "
                    f"or one of Ember's: {', '.join(sorted(embedded))}."
                )
            self.name = self.path.stem
            self.model_scale = 0  # read from the graph when it loads

    # -- the Engine protocol ---------------------------------------------------------------
    def memory_estimate(self) -> int:
        """Return the bytes the loaded graph and one default tile need."""
        weights = self._graph.stat().st_size if self._session is not None else 64 * 2**20
        return int(weights + tile_memory_bytes(224, 224, self.model_scale or 4))

    def details(self) -> dict[str, Any]:
        return {"threads": self.threads, "sha256": self._sha256, "scale": self.model_scale}

    def _graph_path(self) -> Path:
        """The ONNX file to run (an embedded model's converted graph, a converted .param, or the file itself)."""
        from engines.upscale.models import converted_path

        if self.embedded is not None:
            return converted_path(self.embedded)
        assert self.path is not None
        if self.path.suffix.lower() == ".param":
            return _converted_user_model(self.path)
        return self.path

    def load(self) -> None:
        """Open the graph with onnxruntime (CUDA when asked for and usable); check it is an upscaler.

        Raises ModelFileError for a damaged file or a graph that is not an image upscaler.
        """
        if self._session is not None:
            return
        import onnxruntime as ort

        from engines.diffusion.engine import cuda_usable
        from engines.models.hashes import file_sha256

        graph = self._graph_path()
        if self.embedded is None and graph.suffix.lower() == ".onnx":
            _check_is_upscaler(graph)
        wants_gpu = self.options.device in ("auto", "gpu")
        providers = ["CPUExecutionProvider"]
        if wants_gpu and cuda_usable():
            providers.insert(0, "CUDAExecutionProvider")
        elif self.options.device == "gpu":
            self.notes.append("No CUDA GPU is usable by onnxruntime here; the upscale runs on the CPU.")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(graph), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for a damaged graph
            raise load_error(exc, graph, f"the upscaler '{graph.name}'") from None
        self.backend = "CUDA" if session.get_providers()[0] == "CUDAExecutionProvider" else "CPU"
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelFileError(f"'{graph.name}' is not an upscaler: it does not take one image.")
        self._input = inputs[0].name
        self._output = outputs[0].name
        fixed = inputs[0].shape[2:]
        self.fixed_tile = tuple(fixed) if all(isinstance(d, int) for d in fixed) else None
        probe_h, probe_w = self.fixed_tile or (16, 16)
        try:
            probe = session.run([self._output], {self._input: np.zeros((1, 3, probe_h, probe_w), np.float32)})[0]
        except Exception as exc:
            if is_out_of_memory(exc):
                raise out_of_memory(
                    exc, f"the upscaler '{graph.name}'", _CLOSE_OTHERS, on_gpu=self.backend == "CUDA"
                ) from None
            raise ModelFileError(
                f"'{graph.name}' is not an upscaler Ember can run: a 3-channel {probe_w}x{probe_h} image fails "
                f"({ort_reason(exc)})."
            ) from None
        scale = probe.shape[2] / probe_h if probe.ndim == 4 else 0
        if (
            probe.ndim != 4
            or probe.shape[1] != 3
            or scale < 1
            or scale != int(scale)
            or probe.shape[3] != probe_w * scale
        ):
            raise ModelFileError(
                f"'{graph.name}' is not an upscaler: a 1x3x{probe_h}x{probe_w} image comes out as "
                f"{'x'.join(map(str, probe.shape))}, not a larger 3-channel image."
            )
        self.model_scale = int(scale)
        self._sha256 = file_sha256(graph)
        self._graph = graph
        self._session = session

    def unload(self) -> None:
        self._session = None

    @property
    def kernels(self) -> str:
        import onnxruntime as ort

        provider = "CUDAExecutionProvider" if self.backend == "CUDA" else "CPUExecutionProvider"
        return f"onnxruntime {ort.__version__} {provider}"

    def run_tile(self, tile: np.ndarray, run_options: Any = None) -> np.ndarray:
        """Run the graph on one 1x3xhxw tile and return its output (onnxruntime, bare)."""
        return self._session.run([self._output], {self._input: tile}, run_options)[0]

    def run(self, request: UpscaleRequest, progress: Progress, cancel: CancelToken) -> Upscaled:
        """Upscale ``request.image``; raises EmberError for an unreadable image, OutOfMemoryError (with the
        sizes) before anything runs when it will not fit, and Cancelled before the next tile once cancelled."""
        self.load()
        for note in self.notes:
            progress.notice(note)
        self.notes.clear()
        tile, context = request.tile_size, self.context_for(request)
        if self.fixed_tile is not None:
            tile = min(self.fixed_tile) - 2 * context
            if tile < 16:
                raise ModelFileError(
                    f"'{self.name}' takes fixed {self.fixed_tile[1]}x{self.fixed_tile[0]} tiles, too small for "
                    f"{context} pixels of context around each. Ask for a smaller context."
                )
        if isinstance(request.image, np.ndarray):
            height, width = request.image.shape[:2]
        else:
            width, height = read_size(Path(request.image))
        check_fits(height, width, request.scale, self.model_scale, tile, request.overlap, context)
        source = read_source(request.image, request.source_name)
        started = time.perf_counter()
        rgb = source.rgb
        if self.fixed_tile is not None:
            rgb = _pad_to(rgb, tile)
        plan = plan_tiles(rgb.shape[0], rgb.shape[1], self.model_scale, tile, request.overlap, context)
        terminator = _Terminator(cancel)
        try:
            upscaled = upscale_tiled(
                rgb,
                lambda x: self._run_or_cancel(x, terminator, cancel),
                plan,
                on_tile=progress.step,
                cancelled=lambda: cancel.cancelled,
            )
        finally:
            terminator.close()
        upscaled = upscaled[: height * self.model_scale, : width * self.model_scale]
        out_w, out_h = width * request.scale, height * request.scale
        if request.scale != self.model_scale:
            upscaled = _resize(upscaled, out_w, out_h, "lanczos")
        alpha = _resize(source.alpha, out_w, out_h, "bicubic") if source.alpha is not None else None
        total_s = time.perf_counter() - started
        parameters: dict[str, Any] = {
            "mode": "upscale",
            "model": self.name,
            "scale": request.scale,
            "model_scale": self.model_scale,
            "tile_size": tile,
            "overlap": plan.overlap,
            "context": plan.context,
            "tiles": plan.tiles,
            "width": out_w,
            "height": out_h,
            "source": source.name,
            "source_width": width,
            "source_height": height,
            "source_sha256": source.sha256,
        }
        source_id = request.source_output_id or source.output_id
        if source_id:
            parameters["source_output_id"] = source_id
        if alpha is not None:
            parameters["alpha"] = "bicubic"
        timings = {
            "upscale_s": total_s,
            "tiles": float(plan.tiles),
            "input_megapixels_per_s": width * height / 1e6 / total_s if total_s > 0 else 0.0,
        }
        return Upscaled(upscaled, alpha, parameters, timings)

    def context_for(self, request: UpscaleRequest) -> int:
        """Pixels each tile reads around itself: the request's, else the model's reach (32 for a graph from disk)."""
        if request.context is not None:
            return request.context
        return self.embedded.context if self.embedded is not None else 32

    def _run_or_cancel(self, tile: np.ndarray, terminator: _Terminator, cancel: CancelToken) -> np.ndarray:
        try:
            return self.run_tile(tile, terminator.options)
        except Exception as exc:
            if cancel.cancelled:  # onnxruntime stopped the tile because of the terminate flag
                raise Cancelled(None) from None
            raise self._tile_error(exc, tile) from None

    def _tile_error(self, exc: Exception, tile: np.ndarray) -> EmberError:
        """What a person reads when onnxruntime fails on a tile: out of memory (and what to do), or a failure."""
        height, width = tile.shape[2:]
        if is_out_of_memory(exc):
            return out_of_memory(
                exc,
                f"upscaling one {width}x{height} tile",
                "Use a smaller tile size, upscale a smaller image, or close other programs (on the GPU: other "
                "models and games too). Images already saved are kept.",
                on_gpu=self.backend == "CUDA",
            )
        return EmberError(f"The upscaler '{self.name}' failed on a tile ({ort_reason(exc)}). The model may be damaged.")

    def provenance(self, request: UpscaleRequest, output: Upscaled) -> Provenance:
        """Return what made ``output``: the upscaler, its graph's SHA-256, the backend, and the source it came from."""
        from engines.reproducibility import made_on

        settings = {
            **output.parameters,
            "threads": self.threads,
            "device": self.options.device,
            "made_on": made_on(self.backend, self.kernels),
        }
        return Provenance(self.name, str(self._graph), self._sha256, self.backend, settings, None)


def _pad_to(rgb: np.ndarray, size: int) -> np.ndarray:
    """Mirror-pad an image smaller than one fixed-size tile up to it (the extra is cropped off afterwards)."""
    pad_h, pad_w = max(0, size - rgb.shape[0]), max(0, size - rgb.shape[1])
    if not (pad_h or pad_w):
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def _check_is_upscaler(path: Path) -> None:
    """Raise ModelFileError when the inspector says ``path`` is an ONNX graph of another kind."""
    from engines.models.inspect import UnsupportedModel, inspect_model

    try:
        info = inspect_model(path)
    except UnsupportedModel as exc:
        raise ModelFileError(f"'{path.name}' is not an upscaler. {exc}") from None
    if info.kind != "upscaler":
        raise ModelFileError(
            f"'{path.name}' is not an upscaler: it is a {info.kind} model ({info.architecture}). "
            "Pick an ONNX upscaler (an image in, a larger image out)."
        )


def _converted_user_model(param: Path) -> Path:
    """Convert a person's ncnn .param (with its .bin beside it) into the cache, keyed by the files' hash."""
    from engines.atomic import write_atomic
    from engines.paths import cache_dir
    from engines.upscale.ncnn_to_onnx import convert

    weights = param.with_suffix(".bin")
    if not weights.is_file():
        raise ModelFileError(f"The ncnn model '{param.name}' needs its weights '{weights.name}' beside it.")
    digest = hashlib.sha256(param.read_bytes() + weights.read_bytes()).hexdigest()[:16]
    target = cache_dir() / "upscalers" / f"{param.stem}-{digest}.onnx"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, convert(param, weights).onnx_bytes)
    return target
