"""A library on a fresh Ember home, and outputs made for it through a real OutputPipeline and Ember's file writers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.database import Database
from engines.library import Library
from engines.media import AudioOutput, ImageOutput
from engines.music.requests import MusicClip
from engines.paths import database_path
from engines.pipeline import Delivered, OutputPipeline, Provenance
from engines.provenance.files import dated_output_path, save_audio, save_images
from engines.records import RecordStore
from engines.text.requests import TextOutput

SHA = "5f1d7e0c" + "ab" * 28


class Outputs:
    """Makes delivered outputs (a pipeline without stages: what the library sees is the same) and writes
    their files where the modality sinks do; ``created_utc`` sets when the output was made."""

    def __init__(self, db: Database) -> None:
        self.pipeline = OutputPipeline((), [RecordStore(db)])
        self._jobs = itertools.count(1)

    def _deliver(self, media: str, output: object, provenance: Provenance, created_utc: str | None) -> Delivered:
        session = self.pipeline.open(next(self._jobs), media, None)
        if created_utc:
            session.context = replace(session.context, created_utc=created_utc)
        return session.finish(output, provenance, {"total_s": 0.5})

    def image(
        self,
        prompt: str = "a red castle at dusk",
        negative_prompt: str = "",
        *,
        model: str = "tiny-sd",
        size: tuple[int, int] = (64, 48),
        seed: int = 1,
        created_utc: str | None = None,
        extra_settings: dict | None = None,
    ) -> tuple[Delivered, Path]:
        width, height = size
        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y + seed) % 256], -1)
        parameters = {"prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, "steps": 2}
        settings = {**parameters, "width": width, "height": height, **(extra_settings or {})}
        provenance = Provenance(model, f"/models/{model}", SHA, "CPU", settings, seed)
        item = self._deliver("image", ImageOutput(pixels.astype(np.uint8), parameters), provenance, created_utc)
        (path,) = save_images([item])
        return item, Path(path)

    def speech(self, text: str = "Hello there.", *, created_utc: str | None = None) -> tuple[Delivered, Path]:
        rate = 16_000
        t = np.arange(rate // 2) / rate
        samples = (0.3 * np.sin(2 * np.pi * 220 * t) * np.linspace(1, 0, t.size)).astype(np.float32)
        settings = {"voice": "heart", "speed": 1.0, "seed": 3}
        provenance = Provenance("heart", "/voices/heart", SHA, "CPU", settings, 3)
        output = AudioOutput(samples, rate, text, {"voice": "heart"})
        item = self._deliver("audio", output, provenance, created_utc)
        return item, save_audio(item, dated_output_path(item, ".wav", "speech"))

    def music(self, title: str = "Rain on the window", *, created_utc: str | None = None) -> tuple[Delivered, Path]:
        from engines.atomic import write_atomic

        rate = 16_000
        t = np.arange(rate) / rate
        samples = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
        settings = {"style": "lofi", "key": "A minor", "title": title, "seed": 7}
        provenance = Provenance("Ember composer", "composer", "", "CPU", settings, 7)
        clip = MusicClip(samples, rate, title, {"style": "lofi"}, midi=b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0")
        item = self._deliver("audio", clip, provenance, created_utc)
        path = save_audio(item, dated_output_path(item, ".wav", "music"))
        write_atomic(path.with_suffix(".mid"), clip.midi)
        return item, path

    def reply(self, text: str = "The sky is blue.", *, created_utc: str | None = None) -> Delivered:
        output = TextOutput(text, "stop", 5, 6, 0, 1, 0.01, 0.02)
        settings = {"temperature": 0.0, "seed": 1, "mode": "reply"}
        provenance = Provenance("SmolLM2-135M-Instruct", "/models/smol.gguf", SHA, "CPU", settings, 1)
        return self._deliver("text", output, provenance, created_utc)


@pytest.fixture
def db(ember_home: Path) -> Iterator[Database]:
    """The Ember home's database (a fresh home for each test)."""
    database = Database(database_path())
    yield database
    database.close()


@pytest.fixture
def library(db: Database, tmp_path: Path) -> Library:
    """A library on the home's database and outputs folder, with thumbnails of its own (the cache folder is
    shared between tests, and the sizes the gallery asked for are read from it)."""
    return Library(db, thumbnail_dir=tmp_path / "thumbnails")


@pytest.fixture
def outputs(db: Database) -> Outputs:
    return Outputs(db)
