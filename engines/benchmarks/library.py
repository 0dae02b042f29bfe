"""``main.py bench library``: the gallery's first screen and its searches over 10,000 outputs.

A temporary library is filled with synthetic outputs as Ember keeps them: records in
``output_records``, rows in ``library_items`` (and so in the full-text index), and a file for
each in a folder a day over a year (512x512 PNGs, 3-second WAVs; hard links of a few distinct
files where the disk allows, so the fill takes seconds and little space). The database is then
closed and opened again, so SQLite's own cache starts empty.

- first screen: what the gallery does when it opens: the newest 200 items with no filter and
  the thumbnails of the first 60 (``Library.thumbnails``), cached (the usual case: a thumbnail
  is made when its output is added) and cold (every one made now: after an import, or an
  emptied cache), and cold one ``thumbnail()`` call after another. Baseline: the bare query of
  the same rows from ``library_items`` and a look for each cached file; for the cold screen,
  Pillow making the same 60 thumbnails in memory, one after another (its ``thumbnail()``).
- searches: full-text (FTS5) words, a prefix while typing, with kind and model filters, and a
  count; the baseline is the same search with ``LIKE '%word%'`` over the same four columns,
  through the same code path, on the same data.
- repair at start (the Studio runs it every start) beside a bare walk of the outputs folder;
  adding one output (hash, row, thumbnail) beside writing its file alone.

Every figure is the median of ``runs`` repetitions after one warm-up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engines.benchmarks import Figure, Report, median

FIRST_SCREEN_GOAL = "first screen <= 300 ms"
SEARCH_GOAL = "search <= 50 ms"
PAGE = 200
THUMBNAILS = 60
IMAGE_SIZE = 512

_SUBJECTS = (
    "castle lighthouse forest portrait dragon city harbour mountain garden robot cat owl ship temple "
    "village desert river bridge knight wizard astronaut fox whale tower market library cathedral"
).split()
_STYLES = (
    "watercolor oil painting photograph sketch anime pixel art cinematic isometric ink charcoal "
    "impressionist baroque minimalist surreal"
).split()
_WORDS = (
    "red blue golden misty ancient quiet stormy sunny dark bright tiny huge glowing frozen rainy "
    "at dusk dawn night in the fog under stars by the sea with flowers detailed soft light dramatic"
).split()
_NEGATIVE = "blurry low quality watermark text deformed extra fingers jpeg artifacts".split()
_MODELS = ("sd-turbo", "sdxl-turbo", "dreamshaper-8", "tiny-sd", "lcm-sd15", "sd21-base")
_KINDS = ("image",) * 70 + ("upscale",) * 8 + ("speech",) * 8 + ("music",) * 6 + ("text",) * 8


def run_library_bench(items: int = 10_000, runs: int = 7) -> Report:
    """Fill a temporary library with ``items`` outputs, measure, and return the report (the folder is removed)."""
    from engines.database import Database
    from engines.library import Library

    folder = Path(tempfile.mkdtemp(prefix="ember-bench-library-"))
    try:
        db = Database(folder / "ember.sqlite3")
        library = Library(db, folder / "outputs", thumbnail_dir=folder / "thumbnails")
        fill_s, linked = _fill(library, db, items, folder / "sources")
        db.close()
        started = time.perf_counter()
        db = Database(folder / "ember.sqlite3")
        library = Library(db, folder / "outputs", thumbnail_dir=folder / "thumbnails")
        open_ms = (time.perf_counter() - started) * 1000
        report = Report(
            "library",
            conditions={
                "items": items,
                "files": f"{IMAGE_SIZE}x{IMAGE_SIZE} PNGs and 3 s WAVs in {_days(items)} day folders"
                + (" (hard links)" if linked else " (copies)"),
                "first screen": f"newest {PAGE} items, thumbnails of the first {THUMBNAILS} (256 px)",
                "runs": f"median of {runs} after one warm-up",
                "fill": f"{fill_s:.1f} s",
                "open library": f"{open_ms:.0f} ms",
                "sqlite": _sqlite_version(),
            },
        )
        report.figures += _first_screen(library, db, runs)
        report.figures += _searches(library, runs)
        report.figures += _maintenance(library, runs)
        db.close()
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the fill -----------------------------------------------------------------------------------------
def _days(items: int) -> int:
    return min(365, max(1, items // 20))


def _sources(folder: Path) -> dict[str, list[Path]]:
    """A few distinct files to link: 16 PNGs (gradients and shapes, like pictures compress) and 4 WAVs."""
    from PIL import Image, ImageDraw

    from engines.provenance.files import pcm16

    folder.mkdir(parents=True, exist_ok=True)
    chance = np.random.default_rng(0)
    images = []
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    for index in range(16):
        tint = chance.integers(0, 255, 3)
        pixels = np.stack([(x + index * 13) % 256, (y + tint[1]) % 256, ((x + y) // 2 + tint[2]) % 256], -1)
        noise = chance.integers(0, 24, pixels.shape)
        picture = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(picture)
        for _ in range(6):
            x0, y0 = (int(v) for v in chance.integers(0, IMAGE_SIZE - 64, 2))
            draw.ellipse([x0, y0, x0 + 120, y0 + 90], fill=tuple(int(v) for v in chance.integers(0, 255, 3)))
        path = folder / f"{index}.png"
        picture.save(path, "PNG")
        images.append(path)
    clips = []
    import wave

    for index in range(4):
        rate = 22_050
        t = np.arange(rate * 3) / rate
        samples = 0.4 * np.sin(2 * np.pi * (180 + 60 * index) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
        path = folder / f"{index}.wav"
        with wave.open(str(path), "wb") as clip:
            clip.setnchannels(1)
            clip.setsampwidth(2)
            clip.setframerate(rate)
            clip.writeframes(pcm16(samples))
        clips.append(path)
    return {"image": images, "audio": clips}


def _prompt(chance: random.Random) -> str:
    words = [chance.choice(_WORDS) for _ in range(chance.randint(4, 9))]
    words.insert(chance.randint(0, len(words)), chance.choice(_SUBJECTS))
    return f"{' '.join(words)}, {chance.choice(_STYLES)}"


def _fill(library: Any, db: Any, items: int, sources_folder: Path) -> tuple[float, bool]:
    """Write ``items`` synthetic outputs (records, rows, files) in one transaction; returns (seconds, linked)."""
    from engines.library.schema import upsert_item

    started = time.perf_counter()
    sources = _sources(sources_folder)
    chance = random.Random(0)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    span_s = _days(items) * 86_400
    linked = True
    records, rows = [], []
    for index in range(items):
        kind = chance.choice(_KINDS)
        output_id = f"{chance.getrandbits(128):032x}"
        created = (start + timedelta(seconds=span_s * index / items)).isoformat(timespec="milliseconds")
        model = (
            chance.choice(_MODELS)
            if kind == "image"
            else {"upscale": "animevideo-x2", "speech": "heart", "music": "Ember composer", "text": "SmolLM2"}[kind]
        )
        prompt = _prompt(chance)
        negative = " ".join(chance.sample(_NEGATIVE, 3)) if kind == "image" else ""
        settings = {
            "prompt": prompt,
            "negative_prompt": negative,
            "steps": 4,
            "guidance": 0.0,
            "seed": index,
            "width": IMAGE_SIZE,
            "height": IMAGE_SIZE,
            "sampler": "euler",
            "made_on": {"backend": "CPU"},
        }
        decisions = [
            {"stage": "safety", "action": "pass", "category": "", "score": 0.01, "checker": "open-nsfw", "reason": ""},
            {
                "stage": "provenance",
                "action": "modified",
                "category": "",
                "score": None,
                "checker": "image-mark",
                "reason": "",
            },
        ]
        media = {"image": "image", "upscale": "image", "speech": "audio", "music": "audio", "text": "text"}[kind]
        records.append(
            (
                output_id,
                media,
                created,
                index,
                model,
                f"/models/{model}",
                "ab" * 32,
                "CPU",
                json.dumps(settings),
                index,
                json.dumps({"total_s": 1.0}),
                json.dumps(decisions),
                0,
                1,
            )
        )
        relative = ""
        if kind != "text":
            suffix = "wav" if media == "audio" else "png"
            relative = f"{created[:10]}/{output_id}.{suffix}"
            target = library.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = chance.choice(sources["audio" if media == "audio" else "image"])
            try:
                os.link(source, target)
            except OSError:
                linked = False
                shutil.copyfile(source, target)
        text = " ".join(chance.choice(_WORDS + _SUBJECTS) for _ in range(40)) if kind == "text" else ""
        rows.append({
            "output_id": output_id, "kind": kind, "path": relative, "file_sha256": "", "prompt": prompt,
            "negative_prompt": negative, "model_name": model, "created_utc": created,
            "width": IMAGE_SIZE if media == "image" else 0, "height": IMAGE_SIZE if media == "image" else 0,
            "duration_s": 3.0 if media == "audio" else 0.0, "text": text, "source_output_id": "", "extra_json": "{}",
        })  # fmt: skip
    with db.transaction() as conn:
        conn.executemany(f"INSERT INTO output_records VALUES ({', '.join('?' * 14)})", records)
        for row in rows:
            upsert_item(conn, row)
    return time.perf_counter() - started, linked


# -- measuring ----------------------------------------------------------------------------------------
def _timed(work: Callable[[], Any], runs: int, before: Callable[[], Any] | None = None) -> float:
    """Median milliseconds of ``work`` over ``runs`` runs after one warm-up; ``before`` runs untimed each time."""
    times = []
    for run in range(runs + 1):
        if before is not None:
            before()
        started = time.perf_counter()
        work()
        if run:
            times.append((time.perf_counter() - started) * 1000)
    return median(times)


def _first_screen(library: Any, db: Any, runs: int) -> list[Figure]:
    from PIL import Image

    def screen() -> None:
        shown = library.search(limit=PAGE)
        library.thumbnails([item.output_id for item in shown[:THUMBNAILS]])

    def screen_one_by_one() -> None:
        shown = library.search(limit=PAGE)
        for item in shown[:THUMBNAILS]:
            library.thumbnail(item.output_id)

    newest = library.search(limit=PAGE)[:THUMBNAILS]

    def bare_screen() -> None:
        rows = db.query(
            "SELECT * FROM library_items WHERE trashed_utc IS NULL ORDER BY created_utc DESC LIMIT ?", (PAGE,)
        )
        for row in rows[:THUMBNAILS]:
            library.thumbnail_path(row["output_id"]).exists()

    def forget() -> None:
        for item in newest:
            library.thumbnail_path(item.output_id).unlink(missing_ok=True)

    def bare_thumbnails() -> None:
        db.query("SELECT * FROM library_items WHERE trashed_utc IS NULL ORDER BY created_utc DESC LIMIT ?", (PAGE,))
        for item in newest:
            if item.path and item.kind in ("image", "upscale"):
                with Image.open(item.path) as picture:
                    picture.convert("RGB").thumbnail((256, 256))

    cold = _timed(screen, runs, before=forget)
    cold_serial = _timed(screen_one_by_one, runs, before=forget)
    cold_bare = _timed(bare_thumbnails, runs)
    cached = _timed(screen, runs)
    cached_bare = _timed(bare_screen, runs)
    return [
        Figure("first screen, thumbnails cached", cached, "ms", cached_bare, FIRST_SCREEN_GOAL),
        Figure("first screen, thumbnails cold (made now)", cold, "ms", cold_bare, FIRST_SCREEN_GOAL),
        Figure("  the same, one thumbnail() at a time", cold_serial, "ms", cold_bare, FIRST_SCREEN_GOAL),
    ]


def _searches(library: Any, runs: int) -> list[Figure]:
    columns = ("prompt", "negative_prompt", "model_name", "text")

    def like(words: list[str], kinds: tuple[str, ...] = (), model: str = "") -> Callable[[], Any]:
        """The same search through the same code path, each word a ``LIKE '%word%'`` over the four columns."""
        where, params = library._where("", kinds, model, "", "", False)
        for word in words:
            where += " AND (" + " OR ".join(f"li.{c} LIKE ?" for c in columns) + ")"
            params += [f"%{word}%"] * len(columns)
        return lambda: library._select(where, params, PAGE, 0)

    def like_count(word: str) -> Callable[[], Any]:
        clause = " OR ".join(f"{c} LIKE ?" for c in columns)
        sql = f"SELECT COUNT(*) FROM library_items WHERE trashed_utc IS NULL AND ({clause})"
        return lambda: library._query(sql, tuple([f"%{word}%"] * len(columns)))

    cases: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = [
        ("search 'castle'", lambda: library.search("castle"), like(["castle"])),
        ("search 'lig' (prefix, while typing)", lambda: library.search("lig"), like(["lig"])),
        ("search 'misty castle', kind image", lambda: library.search("misty castle", kinds=["image"]),
         like(["misty", "castle"], ("image",))),
        ("search 'portrait', model sdxl-turbo", lambda: library.search("portrait", model="sdxl-turbo"),
         like(["portrait"], model="sdxl-turbo")),
        ("search 'watercolor fox at dusk'", lambda: library.search("watercolor fox at dusk"),
         like(["watercolor", "fox", "at", "dusk"])),
        ("count of search 'castle'", lambda: library.count("castle"), like_count("castle")),
        ("filter kind speech (no words)", lambda: library.search(kinds=["speech"]), None),
        ("filter one day (no words)", lambda: library.search(since="2025-06-01", until="2025-06-01"), None),
    ]  # fmt: skip
    figures = []
    for name, work, baseline in cases:
        value = _timed(work, runs)
        base = _timed(baseline, runs) if baseline is not None else None
        figures.append(Figure(name, value, "ms", base, SEARCH_GOAL))
    return figures


def _maintenance(library: Any, runs: int) -> list[Figure]:
    from engines.atomic import write_atomic
    from engines.media import ImageOutput
    from engines.pipeline import OutputPipeline, Provenance
    from engines.provenance.files import encode_image
    from engines.records import RecordStore

    def walk() -> None:
        for _ in os.walk(library.root):
            pass

    repair = _timed(library.repair, runs)
    walked = _timed(walk, runs)
    pipeline = OutputPipeline((), [RecordStore(library._db)])
    pixels = np.asarray(np.random.default_rng(1).integers(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3)), np.uint8)
    made = [
        pipeline.open(run, "image", None).finish(
            ImageOutput(pixels, {"prompt": "a benchmark castle"}), Provenance("tiny-sd", "/m", "ab" * 32, "CPU", {})
        )
        for run in range(2 * (runs + 1))
    ]
    folder = library.root / "2026-01-01"
    folder.mkdir(exist_ok=True)

    def save(item: Any) -> Path:
        """What the image sink does without the library: encode (metadata, Content Credentials) and write."""
        return write_atomic(folder / f"{item.record.output_id}.png", encode_image(item))

    def save_and_keep() -> None:
        item = made.pop()
        library.add(item, save(item), kind="image")

    kept = _timed(save_and_keep, runs)
    saved = _timed(lambda: save(made.pop()), runs)
    return [
        Figure(f"repair at start ({library.count():,} items)", repair, "ms", walked, "cheap at every start"),
        Figure("save a 512px PNG and keep it in the library", kept, "ms", saved, "small beside saving the file"),
    ]


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version
