"""The invisible image watermark: quality, robustness, false detections, input handling."""

from __future__ import annotations

import numpy as np
import pytest

from engines.benchmarks import image_mark as bench
from engines.errors import EmberError
from engines.provenance import image_mark
from engines.provenance.keys import key_from_secret

KEY = key_from_secret(bytes(range(32))).derive("image-watermark")
OTHER_KEY = key_from_secret(bytes(range(1, 33))).derive("image-watermark")
PAYLOAD = 0xC0FFEE42 & ((1 << image_mark.PAYLOAD_BITS) - 1)


@pytest.fixture(scope="module")
def photographs() -> list[np.ndarray]:
    """Three real photographs of different kinds (portrait, food, grey scene) and one generated-looking image."""
    skimage_data = pytest.importorskip("skimage.data")
    return [
        skimage_data.astronaut(),
        skimage_data.coffee(),
        skimage_data.camera(),
        bench.synthetic_images(512, 2)[1],
    ]


@pytest.fixture(scope="module")
def marked(photographs: list[np.ndarray]) -> list[np.ndarray]:
    return [image_mark.embed(photo, PAYLOAD, KEY) for photo in photographs]


def _decodes(images: list[np.ndarray], attack: bench.Attack) -> list[int | None]:
    return [image_mark.detect(attack(image, seed), KEY).payload for seed, image in enumerate(images)]


def test_psnr_at_least_40_db(photographs: list[np.ndarray], marked: list[np.ndarray]) -> None:
    for photo, mark in zip(photographs, marked, strict=True):
        assert bench.psnr(photo, mark) >= 40.0
        assert bench.ssim(photo, mark) >= 0.93


def test_payload_decodes_from_the_marked_image(marked: list[np.ndarray]) -> None:
    results = [image_mark.detect(image, KEY) for image in marked]
    assert [r.payload for r in results] == [PAYLOAD] * len(marked)
    assert all(r.found and r.p_value <= 1e-6 and r.confidence > 0.999 for r in results)


def test_payload_survives_jpeg_75(marked: list[np.ndarray]) -> None:
    assert _decodes(marked, bench.jpeg(75)) == [PAYLOAD] * len(marked)


def test_payload_survives_jpeg_50(marked: list[np.ndarray]) -> None:
    assert _decodes(marked, bench.jpeg(50)) == [PAYLOAD] * len(marked)


def test_payload_survives_resize_to_half(marked: list[np.ndarray]) -> None:
    assert _decodes(marked, bench.resize(0.5)) == [PAYLOAD] * len(marked)


def test_payload_survives_an_off_centre_crop_of_10_percent_of_the_area(marked: list[np.ndarray]) -> None:
    assert _decodes(marked, bench.crop(0.10)) == [PAYLOAD] * len(marked)


def test_payload_survives_brightness_changes(marked: list[np.ndarray]) -> None:
    assert _decodes(marked, bench.brightness(1.3)) == [PAYLOAD] * len(marked)
    assert _decodes(marked, bench.brightness(0.7)) == [PAYLOAD] * len(marked)


@pytest.mark.parametrize("degrees", [2.0, -5.0, 10.0])
def test_payload_survives_straightening_a_turn_with_its_crop(marked: list[np.ndarray], degrees: float) -> None:
    assert _decodes(marked, bench.rotate(degrees)) == [PAYLOAD] * len(marked)


def test_payload_survives_quarter_turns_and_mirroring(marked: list[np.ndarray]) -> None:
    for attack in (bench.quarter_turns(1), bench.quarter_turns(2), bench.quarter_turns(3), bench.mirror):
        assert _decodes(marked, attack) == [PAYLOAD] * len(marked)


def test_payload_survives_zooms_with_a_change_of_aspect(marked: list[np.ndarray]) -> None:
    assert _decodes(marked, bench.scale(0.5, 0.55)) == [PAYLOAD] * len(marked)
    assert _decodes(marked, bench.scale(2.0, 1.8)) == [PAYLOAD] * len(marked)


def test_payload_survives_a_turn_a_crop_a_resize_and_jpeg_together(marked: list[np.ndarray]) -> None:
    attack = bench.chain(bench.rotate(4.0), bench.crop(0.10), bench.resize(0.7), bench.jpeg(75))
    assert _decodes(marked, attack) == [PAYLOAD] * len(marked)


def test_payload_survives_a_screenshot(marked: list[np.ndarray]) -> None:
    assert _decodes(marked, bench.chain(bench.resize(0.8), bench.sharpen, bench.png)) == [PAYLOAD] * len(marked)
    assert _decodes(marked, bench.chain(bench.resize(1.25), bench.sharpen, bench.jpeg(85))) == [PAYLOAD] * len(marked)


def test_a_found_mark_is_vouched_for_by_its_check_bits(marked: list[np.ndarray]) -> None:
    # every search together may test the check bits at most _MAX_ATTEMPTS times
    bound = image_mark._MAX_ATTEMPTS * 2.0**-image_mark.CHECK_BITS
    for attack in (bench.rotate(5.0), bench.quarter_turns(1), bench.crop(0.10)):
        result = image_mark.detect(attack(marked[0], 0), KEY)
        assert result.found and 0 < result.p_value <= bound and result.confidence >= 1 - bound


def test_unmarked_photographs_are_not_detected(photographs: list[np.ndarray]) -> None:
    for photo in photographs:
        for attack in (lambda image, seed: image, bench.rotate(5.0), bench.mirror):
            result = image_mark.detect(attack(photo, 0), KEY)
            assert not result.found and result.payload is None


def test_wrong_key_does_not_detect(marked: list[np.ndarray]) -> None:
    for image in marked:
        assert not image_mark.detect(image, OTHER_KEY).found
        assert not image_mark.detect(bench.rotate(5.0)(image, 0), OTHER_KEY).found


def test_grey_and_rgba_images_keep_their_shape_and_alpha(photographs: list[np.ndarray]) -> None:
    grey = photographs[2]
    marked_grey = image_mark.embed(grey, PAYLOAD, KEY)
    assert marked_grey.shape == grey.shape and marked_grey.dtype == np.uint8
    assert image_mark.detect(marked_grey, KEY).payload == PAYLOAD

    rgba = np.dstack([photographs[0], np.linspace(0, 255, 512 * 512).reshape(512, 512).astype(np.uint8)])
    marked_rgba = image_mark.embed(rgba, PAYLOAD, KEY)
    assert marked_rgba.shape == rgba.shape
    assert np.array_equal(marked_rgba[..., 3], rgba[..., 3])
    assert image_mark.detect(marked_rgba, KEY).payload == PAYLOAD


def test_tiny_image_gets_a_clear_error() -> None:
    tiny = np.zeros((40, 300, 3), np.uint8)
    with pytest.raises(EmberError, match="too small to carry a watermark"):
        image_mark.embed(tiny, PAYLOAD, KEY)
    assert image_mark.detect(tiny, KEY) == image_mark.ImageMarkResult(False, None, 1.0, 0.0, None)


def test_float_image_gets_a_clear_error() -> None:
    with pytest.raises(EmberError, match="8-bit"):
        image_mark.embed(np.zeros((128, 128, 3), np.float32), PAYLOAD, KEY)


def test_payload_too_large_is_refused(photographs: list[np.ndarray]) -> None:
    with pytest.raises(EmberError, match="does not fit"):
        image_mark.embed(photographs[0], 1 << image_mark.PAYLOAD_BITS, KEY)


def test_flat_and_saturated_images_still_carry_the_mark() -> None:
    flat = np.full((256, 384, 3), 128, np.uint8)
    white = np.full((256, 256, 3), 255, np.uint8)
    for image in (flat, white):
        marked_image = image_mark.embed(image, PAYLOAD, KEY)
        assert bench.psnr(image, marked_image) >= 40.0
        assert image_mark.detect(marked_image, KEY).payload == PAYLOAD


@pytest.mark.parametrize("shape", [(64, 4096, 3), (4096, 64), (65, 65, 3), (70, 3000, 4), (3000, 70, 1)])
def test_extreme_shapes_are_marked_and_searched_without_error(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    assert not image_mark.detect(noise, KEY).found  # unmarked: every search runs, none is fooled
    ramp = np.linspace(40, 215, shape[0] * shape[1]).reshape(shape[:2])  # a smooth picture with some grain
    image = np.clip(ramp.reshape(shape[:2] + (1,) * (len(shape) - 2)) + rng.normal(0, 8, shape), 0, 255)
    image = image.astype(np.uint8)
    marked = image_mark.embed(image, PAYLOAD, KEY)
    assert marked.shape == image.shape
    if min(shape[:2]) >= 70:  # a 65-pixel square keeps too little of the 512 working copy to decode
        assert image_mark.detect(marked, KEY).payload == PAYLOAD
