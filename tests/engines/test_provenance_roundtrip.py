"""Every output leaves marked and recorded, and the verifier finds it again: the whole road, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.benchmarks.file_provenance import synthetic_speech
from engines.errors import OutputBlocked
from engines.jobs import EventKind
from engines.media import AudioOutput, ImageOutput
from engines.pipeline import Delivered, Provenance, StageDecision
from engines.provenance.files import save_audio, save_image
from engines.provenance.keys import key_from_secret
from engines.provenance.verify import VerifyReport, VerifyRequest, verify_file
from engines.studio import Studio

PROVENANCE = Provenance("Test Diffusion", "/models/test", "ab" * 32, "CPU", {"steps": 4}, seed=7)


def photograph() -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((512, 512)))


def deliver(studio: Studio, output: object, kind: str) -> Delivered:
    return studio.pipeline.open(1, kind, None).finish(output, PROVENANCE)


def verify(studio: Studio, *paths: Path) -> list[VerifyReport]:
    final = studio.submit(VerifyRequest(tuple(str(p) for p in paths))).wait(120)
    assert final is not None and final.kind is EventKind.RESULT, final
    return final.data


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp"])
def test_a_saved_image_is_found_again_by_its_watermark_credentials_and_record(
    studio: Studio, tmp_path: Path, suffix: str
) -> None:
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "steps": 4, "seed": 7}
    delivered = deliver(studio, ImageOutput(photograph(), params), "image")
    assert [d.stage for d in delivered.record.decisions] == ["safety", "provenance"]
    path = save_image(delivered, tmp_path / f"out.{suffix}")
    (report,) = verify(studio, path)
    assert report.watermark is not None and report.watermark.found
    assert report.credentials.present and report.credentials.validation_state == "Valid"
    assert [r.output_id for r in report.records] == [delivered.record.output_id]
    assert report.parameters["prompt"] == "a lighthouse at dusk"


def test_a_saved_clip_is_found_again_by_its_watermark_and_record(studio: Studio, tmp_path: Path) -> None:
    clip = AudioOutput(synthetic_speech(4.0), 22050, "Hello from Ember.")
    delivered = deliver(studio, clip, "audio")
    path = save_audio(delivered, tmp_path / "hello.wav")
    (report,) = verify(studio, path)
    assert report.watermark is not None and report.watermark.found
    assert report.credentials.validation_state == "Valid"
    assert [r.output_id for r in report.records] == [delivered.record.output_id]


def test_another_installation_does_not_recognise_the_outputs(studio: Studio, tmp_path: Path) -> None:
    delivered = deliver(studio, ImageOutput(photograph(), {}), "image")
    path = save_image(delivered, tmp_path / "out.png")
    other = verify_file(path, key_from_secret(b"\x01" * 32))
    assert other.watermark is not None and not other.watermark.found
    assert not other.records


def test_an_unmarked_photograph_is_not_claimed(studio: Studio, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(photograph()).save(path)
    (report,) = verify(studio, path)
    assert report.watermark is not None and not report.watermark.found
    assert not report.credentials.present and not report.records


def test_a_blocked_image_leaves_no_file_behind(studio: Studio, tmp_path: Path) -> None:
    class Refuse:
        name = "refuse"

        def watch(self, context: object) -> None:
            return None

        def process(self, output: object, context: object) -> tuple[object, StageDecision]:
            raise OutputBlocked(StageDecision(self.name, "blocked", "sexual", 1.0, "test", "withheld"))

    studio.pipeline.add_stage(Refuse())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputBlocked):
        save_image(deliver(studio, ImageOutput(photograph(), {}), "image"), out / "never.png")
    with pytest.raises(TypeError):
        save_image(ImageOutput(photograph(), {}), out / "raw.png")  # type: ignore[arg-type]
    assert list(out.iterdir()) == []
    (record,) = studio.records.recent()
    assert not record.delivered


def test_a_sampled_reply_is_found_again_by_its_text_watermark(
    studio: Studio, replies_unjudged: Studio, smol, tmp_path: Path
) -> None:
    from engines.text.requests import ChatRequest, Message, Sampling

    request = ChatRequest(
        smol,
        (Message("user", "Write a short story about a lighthouse keeper and a storm."),),
        sampling=Sampling(temperature=0.8, max_tokens=220, seed=11),
    )
    final = studio.submit(request).wait(120)
    assert final is not None and final.kind is EventKind.RESULT
    delivered = final.data
    convo = studio.conversations.create("story", smol.path)
    studio.conversations.add_user_message(convo, request.messages[0].content)
    studio.conversations.add_reply(convo, delivered)
    path = tmp_path / "story.txt"
    path.write_text(delivered.output.text, encoding="utf-8")
    (report,) = verify(studio, path)
    assert report.watermark is not None
    if delivered.record.timings["generated_tokens"] >= 150:
        assert report.watermark.found, report.watermark
    assert [r.output_id for r in report.records] == [delivered.record.output_id]
