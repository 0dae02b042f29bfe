"""Thumbnails: made once (as the output is added), then only read from the cache; waveforms for clips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.library import Library
from tests.engines.library.conftest import Outputs


def test_an_image_thumbnail_fits_the_size_keeps_the_aspect_and_is_cached(library: Library, outputs: Outputs) -> None:
    item = library.add(*outputs.image(size=(640, 320)), kind="image")
    thumbnail = library.thumbnail(item.output_id)  # the default size was made as it was added
    assert thumbnail is not None and thumbnail.is_relative_to(library.thumbnail_dir)
    with Image.open(thumbnail) as picture:
        assert picture.format == "JPEG" and picture.size == (256, 128)
    small = library.thumbnail(item.output_id, 64)
    assert small is not None and Image.open(small).size == (64, 32)
    # Cached: the source is not read again, and the file is not rewritten.
    os.utime(thumbnail, (1_000_000, 1_000_000))
    Path(item.path).unlink()
    assert library.thumbnail(item.output_id) == thumbnail
    assert thumbnail.stat().st_mtime == 1_000_000


def test_an_image_thumbnail_shows_the_image(library: Library, outputs: Outputs) -> None:
    item = library.add(*outputs.image(size=(96, 96)), kind="image")
    thumbnail = library.thumbnail(item.output_id, 48)
    assert thumbnail is not None
    source = np.asarray(Image.open(item.path).convert("RGB").resize((48, 48)), dtype=float)
    shown = np.asarray(Image.open(thumbnail).convert("RGB"), dtype=float)
    assert np.abs(source - shown).mean() < 3


def test_a_clip_thumbnail_is_its_waveform(library: Library, outputs: Outputs) -> None:
    item = library.add(*outputs.speech(), kind="speech")
    thumbnail = library.thumbnail(item.output_id, 128)
    assert thumbnail is not None
    pixels = np.asarray(Image.open(thumbnail).convert("RGB"), dtype=int)
    assert pixels.shape == (128, 128, 3)
    background = pixels[0, 0]
    drawn = np.abs(pixels - background).sum(axis=2) > 90  # the line, not the JPEG's ringing beside it
    # The clip fades out: its first columns swing wider than its last ones.
    height_of = drawn.sum(axis=0)
    assert height_of[:16].mean() > 3 * max(1.0, height_of[-16:].mean())


def test_replies_transcripts_and_unknown_ids_have_no_thumbnail(library: Library, outputs: Outputs) -> None:
    reply = library.add(outputs.reply(), None, kind="text", text="Hi")
    assert library.thumbnail(reply.output_id) is None
    assert library.thumbnail("0" * 32) is None
    assert library.thumbnail("../../etc/passwd") is None
    with pytest.raises(ValueError, match="16 to 2048"):
        library.thumbnail(reply.output_id, 4)


def test_a_damaged_file_gives_no_thumbnail_and_keeps_its_item(library: Library, outputs: Outputs) -> None:
    delivered, path = outputs.image()
    path.write_bytes(b"not a png")
    item = library.add(delivered, path, kind="image")
    assert library.thumbnail(item.output_id) is None
    assert library.get(item.output_id) is not None


def test_a_trashed_item_still_has_its_thumbnail(library: Library, outputs: Outputs) -> None:
    item = library.add(*outputs.image(), kind="image")
    cached = library.thumbnail(item.output_id)
    assert cached is not None
    cached.unlink()
    library.trash(item.output_id)
    again = library.thumbnail(item.output_id)
    assert again is not None and again.exists()


def test_a_size_the_gallery_asks_for_is_made_as_later_outputs_are_added(library: Library, outputs: Outputs) -> None:
    first = library.add(*outputs.image(), kind="image")
    assert not library.thumbnail_path(first.output_id, 160).exists()
    library.thumbnail(first.output_id, 160)
    later = library.add(*outputs.image(), kind="image")
    assert library.thumbnail_path(later.output_id, 160).exists()
    reopened = Library(library._db, library.root, thumbnail_dir=library.thumbnail_dir)
    after = reopened.add(*outputs.image(), kind="image")
    assert reopened.thumbnail_path(after.output_id, 160).exists()  # remembered from the cache's folders


def test_a_screenful_of_thumbnails_is_made_at_once(library: Library, outputs: Outputs) -> None:
    items = [library.add(*outputs.image(seed=i), kind="image") for i in range(5)]
    clip = library.add(*outputs.speech(), kind="speech")
    reply = library.add(outputs.reply(), None, kind="text", text="Hi")
    for item in (*items, clip):
        library.thumbnail_path(item.output_id, 96).unlink(missing_ok=True)
    wanted = [i.output_id for i in (*items, clip, reply)] + ["not an id"]
    made = library.thumbnails(wanted, 96)
    assert list(made) == wanted
    assert all(made[i.output_id] == library.thumbnail_path(i.output_id, 96) for i in (*items, clip))
    assert all(p is not None and p.exists() for i, p in made.items() if i in {x.output_id for x in (*items, clip)})
    assert made[reply.output_id] is None and made["not an id"] is None


def test_a_transparent_image_is_laid_over_the_tile_colour(tmp_path: Path) -> None:
    from engines.library import thumbnails

    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[:, :32] = (250, 20, 20, 255)  # the left half opaque red, the right half fully transparent white
    pixels[:, 32:] = (255, 255, 255, 0)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "cut-out.png")
    made = thumbnails.write_thumbnail(tmp_path / "cut-out.png", "image", tmp_path / "thumb.jpg", 32)
    shown = np.asarray(Image.open(made).convert("RGB"), dtype=int)
    assert shown.shape == (32, 32, 3)
    assert np.abs(shown[:, :12] - (250, 20, 20)).max() < 24
    assert np.abs(shown[:, 20:] - thumbnails._BACKGROUND).max() < 12
