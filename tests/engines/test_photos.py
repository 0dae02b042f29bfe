"""The image benchmark's photographs: from the registry's wheels and the test install, never from a hub."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.benchmarks import photos
from engines.errors import EmberError


def test_every_wheel_named_is_pinned_in_the_requirements_file() -> None:
    pinned = {line.split("==")[0].lower() for line in photos.requirements()}
    assert {photo.project for photo in photos.WHEEL_PHOTOS} == pinned
    assert all("==" in line for line in photos.requirements())


def test_missing_wheels_give_an_error_that_names_the_command(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    with pytest.raises(EmberError, match=r"bootstrap\.py test") as raised:
        photos.photographs(cache=tmp_path)
    assert "pywavelets" in str(raised.value) and str(tmp_path) in str(raised.value)
    only_installed = photos.photographs(cache=tmp_path, allow_missing=True)
    assert len(only_installed) == len(photos.SKIMAGE_PHOTOS) + 2 + len(photos.SKLEARN_PHOTOS)


def test_at_least_30_distinct_photographs_of_128_pixels_or_more() -> None:
    pytest.importorskip("skimage")
    missing = [p.project for p in photos.WHEEL_PHOTOS if photos.wheel_path(p.project) is None]
    if missing:
        pytest.skip(f"the photographs' wheels are not downloaded ({', '.join(sorted(set(missing)))}): {photos.FETCH}")
    found = photos.photographs()
    names = [name for name, _ in found]
    assert len(found) >= 30 and len(set(names)) == len(names)
    for name, image in found:
        assert image.dtype == np.uint8 and image.ndim in (2, 3), name
        assert min(image.shape[:2]) >= photos.MIN_SIDE and (image.ndim == 2 or image.shape[2] == 3), name
    digests = {image.tobytes()[::97][:4096] for _, image in found}
    assert len(digests) == len(found)  # no picture twice
