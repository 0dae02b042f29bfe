"""The image watermark benchmark: quality, robustness, false detections and speed.

``evaluate`` marks every image, attacks it (JPEG 75 and 50, a 50 % resize, a crop
removing 10 % of the area, brightness x1.3 and x0.7) and decodes it again; it
also runs the detector on the unmarked images and on marked ones with another
installation's key. ``GEOMETRY_ATTACKS`` are the edits people make before they
share a picture: straightening (a turn with the crop it implies), quarter turns,
mirroring, zooms with a change of aspect, and screenshots. ``image_sets``
gathers the real photographs of ``engines/benchmarks/photos.py`` (native size
and 1024x1024) and synthetic "generated-looking" images.
"""

from __future__ import annotations

import hashlib
import io
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from engines.benchmarks import median
from engines.provenance import image_mark

Attack = Callable[[np.ndarray, int], np.ndarray]


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image)


def jpeg(quality: int) -> Attack:
    """Return an attack that saves as JPEG at ``quality`` (Pillow's default 4:2:0 subsampling) and reads back."""

    def attack(image: np.ndarray, seed: int) -> np.ndarray:
        buffer = io.BytesIO()
        _pil(image).save(buffer, format="JPEG", quality=quality)
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))

    return attack


def resize(factor: float) -> Attack:
    """Return an attack that resizes by ``factor`` (bicubic)."""

    def attack(image: np.ndarray, seed: int) -> np.ndarray:
        h, w = image.shape[:2]
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        return np.asarray(_pil(image).resize(size, Image.Resampling.BICUBIC))

    return attack


def crop(area_removed: float) -> Attack:
    """Return an attack that keeps ``1 - area_removed`` of the area, at an off-centre position set by the seed."""

    def attack(image: np.ndarray, seed: int) -> np.ndarray:
        h, w = image.shape[:2]
        keep = math.sqrt(1.0 - area_removed)
        ch, cw = round(h * keep), round(w * keep)
        rng = np.random.default_rng(seed)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return image[y0 : y0 + ch, x0 : x0 + cw].copy()

    return attack


def brightness(factor: float) -> Attack:
    """Return an attack that multiplies every pixel by ``factor`` and clips."""

    def attack(image: np.ndarray, seed: int) -> np.ndarray:
        return np.clip(np.rint(image.astype(np.float32) * factor), 0, 255).astype(np.uint8)

    return attack


def rotate(degrees: float) -> Attack:
    """Return an attack that turns the image by ``degrees`` (counter-clockwise, bicubic) and crops what that implies.

    The crop is the largest centred rectangle of the original aspect ratio that
    holds no corner of the background, as a photo app's straightening tool does.
    """

    def attack(image: np.ndarray, seed: int) -> np.ndarray:
        picture = _pil(image)
        width, height = picture.size
        turned = picture.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
        a = math.radians(abs(degrees))
        keep = min(
            width / (width * math.cos(a) + height * math.sin(a)), height / (width * math.sin(a) + height * math.cos(a))
        )
        w, h = int(width * keep), int(height * keep)
        x0, y0 = (turned.size[0] - w) // 2, (turned.size[1] - h) // 2
        return np.asarray(turned.crop((x0, y0, x0 + w, y0 + h)))

    return attack


def quarter_turns(count: int) -> Attack:
    """Return an attack that turns the image by ``count`` quarter turns (counter-clockwise; lossless)."""
    return lambda image, seed: np.ascontiguousarray(np.rot90(image, count))


def mirror(image: np.ndarray, seed: int) -> np.ndarray:
    """Flip the image left to right."""
    return np.ascontiguousarray(image[:, ::-1])


def scale(factor_x: float, factor_y: float) -> Attack:
    """Return an attack that resizes each side by its own factor (bicubic): a zoom with a change of aspect."""

    def attack(image: np.ndarray, seed: int) -> np.ndarray:
        h, w = image.shape[:2]
        size = (max(1, round(w * factor_x)), max(1, round(h * factor_y)))
        return np.asarray(_pil(image).resize(size, Image.Resampling.BICUBIC))

    return attack


def sharpen(image: np.ndarray, seed: int) -> np.ndarray:
    """Unsharp-mask the image (radius 1.5, 80 %), as screenshot tools and social sites do after scaling."""
    return np.asarray(_pil(image).filter(ImageFilter.UnsharpMask(radius=1.5, percent=80, threshold=2)))


def png(image: np.ndarray, seed: int) -> np.ndarray:
    """Save as PNG and read back (lossless: what a screenshot writes)."""
    buffer = io.BytesIO()
    _pil(image).save(buffer, format="PNG")
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def chain(*attacks: Attack) -> Attack:
    """Return an attack that applies ``attacks`` in order."""

    def attack(image: np.ndarray, seed: int) -> np.ndarray:
        for step in attacks:
            image = step(image, seed)
        return image

    return attack


ATTACKS: dict[str, Attack] = {
    "none": lambda image, seed: image,
    "jpeg75": jpeg(75),
    "jpeg50": jpeg(50),
    "resize50": resize(0.5),
    "crop10": crop(0.10),
    "bright1.3": brightness(1.3),
    "bright0.7": brightness(0.7),
}

# What people do to a picture before they share it: straighten it, turn or mirror it, zoom it with a change
# of aspect, and screenshots (scale, sharpen, re-encode). Each must decode at 90 % or more.
GEOMETRY_ATTACKS: dict[str, Attack] = {
    "rotate1": rotate(1.0),
    "rotate-2": rotate(-2.0),
    "rotate5": rotate(5.0),
    "rotate-7": rotate(-7.0),
    "rotate10": rotate(10.0),
    "rotate-10": rotate(-10.0),
    "turn90": quarter_turns(1),
    "turn180": quarter_turns(2),
    "turn270": quarter_turns(3),
    "mirror": mirror,
    "scale0.5x0.55": scale(0.5, 0.55),
    "scale2x1.8": scale(2.0, 1.8),
    "scale1.1x1.0": scale(1.1, 1.0),
    "rotate4+crop10+scale0.7+jpeg75": chain(rotate(4.0), crop(0.10), resize(0.7), jpeg(75)),
    "rotate-8+crop10+scale1.5+jpeg75": chain(rotate(-8.0), crop(0.10), resize(1.5), jpeg(75)),
    "screenshot: scale0.8+sharpen+png": chain(resize(0.8), sharpen, png),
    "screenshot: scale1.25+sharpen+jpeg85": chain(resize(1.25), sharpen, jpeg(85)),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Return the PSNR in dB between two uint8 images of the same shape."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Return the mean SSIM of the luma (Gaussian window, sigma 1.5, the standard constants)."""
    luma = np.array([0.299, 0.587, 0.114])
    x = (a[..., :3] @ luma if a.ndim == 3 else a).astype(np.float64)
    y = (b[..., :3] @ luma if b.ndim == 3 else b).astype(np.float64)
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.rfftfreq(x.shape[1])[None, :]
    window = np.exp(-2.0 * math.pi**2 * 1.5**2 * (fx**2 + fy**2))

    def blur(plane: np.ndarray) -> np.ndarray:
        return np.fft.irfft2(np.fft.rfft2(plane) * window, s=plane.shape)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(value[8:-8, 8:-8].mean())


def _payload(index: int) -> int:
    digest = hashlib.sha256(f"bench-payload-{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << image_mark.PAYLOAD_BITS) - 1)


def _bit_accuracy(found: int | None, expected: int) -> float:
    if found is None:
        return 0.5  # nothing decoded: as good as a coin toss
    wrong = bin((found ^ expected) & ((1 << image_mark.PAYLOAD_BITS) - 1)).count("1")
    return 1.0 - wrong / image_mark.PAYLOAD_BITS


def _decoded_bits(image: np.ndarray, key: bytes) -> int | None:
    result = image_mark.detect(image, key)
    return result.payload if result.found else None


def evaluate(
    images: list[np.ndarray],
    key: bytes,
    *,
    attacks: dict[str, Attack] | None = None,
    null_attacks: tuple[str, ...] | None = None,
) -> dict:
    """Mark, attack and decode every image; return the figures as a dict.

    Keys: ``images``, ``payload_bits``, ``psnr_db`` and ``ssim`` ({mean, min}),
    ``attacks`` ({name: {exact_rate, bit_accuracy, failures}}), ``false_detections``
    ({unmarked, unmarked_images, unmarked_trials (each unmarked image as is and under every attack
    named in ``null_attacks``, all by default), lowest_p_value_unmarked, wrong_key, wrong_key_images}),
    ``embed_ms`` and ``detect_ms`` ({"native": median}).
    Bit accuracy counts an undetected image as 50 % (the decoder reports nothing).
    """
    attacks = attacks or ATTACKS
    nulls = [attacks[name] for name in (null_attacks or tuple(attacks))]
    wrong_key = hashlib.blake2b(b"another installation", key=key[:64], digest_size=32).digest()
    psnrs, ssims = [], []
    exact = {name: 0 for name in attacks}
    accuracy = {name: 0.0 for name in attacks}
    failures: dict[str, list[int]] = {name: [] for name in attacks}
    false_unmarked = false_wrong = null_trials = 0
    lowest_p = 1.0
    embed_native, detect_native = [], []
    for index, image in enumerate(images):
        payload = _payload(index)
        start = time.perf_counter()
        marked = image_mark.embed(image, payload, key)
        embed_native.append((time.perf_counter() - start) * 1000)
        psnrs.append(psnr(image, marked))
        ssims.append(ssim(image, marked))
        for name, attack in attacks.items():
            start = time.perf_counter()
            found = _decoded_bits(attack(marked, index), key)
            if name == "none":
                detect_native.append((time.perf_counter() - start) * 1000)
            exact[name] += found == payload
            accuracy[name] += _bit_accuracy(found, payload)
            if found != payload:
                failures[name].append(index)
        for attack in nulls:  # every unmarked image, as is and attacked, is a null trial
            result = image_mark.detect(attack(image, index), key)
            false_unmarked += result.found
            null_trials += 1
            lowest_p = min(lowest_p, result.p_value)
        false_wrong += image_mark.detect(marked, wrong_key).found

    n = len(images)
    return {
        "images": n,
        "payload_bits": image_mark.PAYLOAD_BITS,
        "psnr_db": {"mean": statistics.fmean(psnrs), "min": min(psnrs)},
        "ssim": {"mean": statistics.fmean(ssims), "min": min(ssims)},
        "attacks": {
            name: {"exact_rate": exact[name] / n, "bit_accuracy": accuracy[name] / n, "failures": failures[name]}
            for name in attacks
        },
        "false_detections": {
            "unmarked": false_unmarked,
            "unmarked_images": n,
            "unmarked_trials": null_trials,
            "lowest_p_value_unmarked": lowest_p,
            "wrong_key": false_wrong,
            "wrong_key_images": n,
        },
        "embed_ms": {"native": median(embed_native)},
        "detect_ms": {"native": median(detect_native)},
    }


def timings(images: list[np.ndarray], key: bytes, *, side: int = 1024, rounds: int = 5) -> dict[str, float]:
    """Return median milliseconds at ``side`` x ``side`` (the first three images, squared) for: embed,
    detect (marked, untouched), detect_turned (marked, turned 5 degrees: the geometry search) and
    detect_unmarked (the slowest path: every search runs and finds nothing)."""
    square = [
        np.asarray(_pil(_gray_to_rgb(image)).resize((side, side), Image.Resampling.BICUBIC)) for image in images[:3]
    ]
    turn = rotate(5.0)
    spent: dict[str, list[float]] = {"embed": [], "detect": [], "detect_turned": [], "detect_unmarked": []}

    def clock(what: str, run: Callable[..., object], *args: object) -> object:
        start = time.perf_counter()
        out = run(*args)
        spent[what].append((time.perf_counter() - start) * 1000)
        return out

    for round_ in range(rounds):
        for image in square:
            marked = clock("embed", image_mark.embed, image, round_, key)
            clock("detect", image_mark.detect, marked, key)
            clock("detect_turned", image_mark.detect, turn(marked, round_), key)
            clock("detect_unmarked", image_mark.detect, image, key)
    return {what: median(values) for what, values in spent.items()}


def _gray_to_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def synthetic_images(size: int = 512, count: int = 6, seed: int = 7) -> list[np.ndarray]:
    """Return "generated-looking" RGB images: smooth gradients, flat colour areas, soft shapes, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for index in range(count):
        kind = index % 3
        if kind == 0:  # smooth two-axis gradient, like a sky
            top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            t = (0.7 * yy + 0.3 * xx)[..., None]
            image = top * (1 - t) + bottom * t
        elif kind == 1:  # flat colour areas with soft-edged shapes (including pure black and white)
            image = np.empty((size, size, 3), np.float32)
            image[:] = rng.uniform(0, 255, 3)
            for colour in ([0, 0, 0], [255, 255, 255], rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)):
                cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
                inside = np.clip((r - np.hypot(yy - cy, xx - cx)) * size / 3.0, 0, 1)[..., None]
                image = image * (1 - inside) + np.asarray(colour, np.float32) * inside
        else:  # smooth low-frequency "painting" plus fine noise
            coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
            image = np.stack(
                [
                    np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.Resampling.BICUBIC))
                    for c in range(3)
                ],
                axis=2,
            )
            image = image + rng.normal(0, 6, image.shape)
        images.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return images


def image_sets(*, square: int = 1024, synthetic: int = 6) -> dict[str, list[np.ndarray]]:
    """Return the benchmark's image sets: the real photographs (engines/benchmarks/photos.py) at native size
    and at ``square`` x ``square``, and generated-looking synthetics at 512 and at ``square``.

    Grey photographs stay grey at native size; the square copies are RGB.
    """
    from engines.benchmarks.photos import photographs

    native = [photo for _, photo in photographs()]
    resized = [
        np.asarray(_pil(_gray_to_rgb(photo)).resize((square, square), Image.Resampling.BICUBIC)) for photo in native
    ]
    made = synthetic_images(512, synthetic) + synthetic_images(square, synthetic, seed=11)
    return {"photos, native size": native, f"photos, {square}x{square}": resized, "generated-looking": made}
