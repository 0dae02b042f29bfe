"""Every modality's delivered outputs are kept in the Studio's library as soon as their files are written."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from engines.jobs import EventKind
from engines.library import LibraryItem
from engines.studio import Studio
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling


def run(studio: Studio, request: Any, timeout_s: float = 300) -> Any:
    final = studio.submit(request).wait(timeout_s)
    assert final is not None and final.kind is EventKind.RESULT, final and final.data
    return final.data


def kept(studio: Studio, output_id: str, path: str | Path | None) -> LibraryItem:
    item = studio.library.get(output_id)
    assert item is not None
    if path:
        assert item.path == str(path)
        assert item.file_sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert studio.library.thumbnail_path(output_id).exists()  # made as it was added
    return item


def test_a_composition_is_kept_with_its_midi(studio: Studio) -> None:
    pytest.importorskip("tinysoundfont")
    from engines.music.requests import ComposeRequest

    result = run(studio, ComposeRequest(bars=1, seed=4, title="Lantern"))
    item = kept(studio, result.delivered.record.output_id, result.path)
    assert (item.kind, item.prompt, item.seed, item.model_name) == ("music", "Lantern", 4, "Ember composer")
    assert item.extra["midi"] == result.midi_path and item.duration_s > 0
    assert [d.stage for d in item.decisions] == ["safety", "provenance"]
    assert [i.output_id for i in studio.library.search("lantern", kinds=["music"])] == [item.output_id]


def test_speech_is_kept_and_found_by_its_words(studio: Studio) -> None:
    from engines.speech.requests import SpeechOptions, SpeechRequest

    result = run(studio, SpeechRequest(SpeechOptions("heart"), "The lighthouse keeper waves.", seed=1))
    item = kept(studio, result.delivered.record.output_id, result.path)
    assert item.kind == "speech" and "lighthouse keeper" in item.prompt
    assert studio.library.search("keeper")[0].output_id == item.output_id


def test_a_reply_is_kept_with_its_conversation(replies_unjudged: Studio, smol: ModelOptions) -> None:
    studio = replies_unjudged
    convo = studio.conversations.create("Colours", smol.path)
    studio.conversations.add_user_message(convo, "Name a colour.")
    sampling = Sampling(temperature=0.0, max_tokens=12, seed=1)
    reply = run(
        studio, ChatRequest(smol, (Message("user", "Name a colour."),), sampling=sampling, conversation_id=convo)
    )
    item = kept(studio, reply.record.output_id, None)
    assert (item.kind, item.path, item.prompt, item.text) == ("text", "", "Name a colour.", reply.output.text)
    assert item.extra == {"conversation_id": convo, "mode": "reply"}
    assert studio.conversations.get(convo).messages[-1].output_id == item.output_id


def test_images_and_their_upscale_are_kept_linked(studio: Studio, tiny_sd: Path) -> None:
    from engines.diffusion.requests import DiffusionOptions, ImageRequest
    from engines.upscale.requests import UpscaleOptions, UpscaleRequest

    request = ImageRequest(
        DiffusionOptions(str(tiny_sd)),
        "a red cat",
        negative_prompt="dog",
        seed=3,
        steps=2,
        width=64,
        height=64,
        batch_size=2,
    )
    batch = run(studio, request)
    images = [kept(studio, d.record.output_id, p) for d, p in zip(batch.delivered, batch.paths, strict=True)]
    assert [(i.kind, i.prompt, i.negative_prompt, i.width) for i in images] == [("image", "a red cat", "dog", 64)] * 2
    upscale = run(
        studio,
        UpscaleRequest(UpscaleOptions("animevideo-x2", device="cpu"), batch.paths[0], scale=2, tile_size=32, overlap=8),
    )
    item = kept(studio, upscale.delivered[0].record.output_id, upscale.paths[0])
    assert (item.kind, item.source_output_id, item.width) == ("upscale", images[0].output_id, 128)
    assert item.prompt == "a red cat"  # found by its source's words
    assert {i.output_id for i in studio.library.search("red cat")} == {item.output_id, *(i.output_id for i in images)}


def test_a_transcript_is_kept_as_text(studio: Studio) -> None:
    from engines.dictation.clips import SENTENCES, speak
    from engines.dictation.folder import embedded_whisper_folder
    from engines.dictation.requests import DictationOptions, DictationRequest

    samples, rate = speak(SENTENCES[0])
    request = DictationRequest(
        DictationOptions(embedded_whisper_folder(), threads=1), samples=samples, sample_rate_hz=rate, source="a clip"
    )
    heard = run(studio, request)
    item = kept(studio, heard.record.output_id, None)
    assert (item.kind, item.path, item.text) == ("transcript", "", heard.output.text)
    assert item.extra == {"source": "a clip", "language": "en"}
    assert studio.library.thumbnail(item.output_id) is None
