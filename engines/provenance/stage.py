"""The provenance stage of the OutputPipeline: runs after safety, marks every output.

Images get an invisible watermark carrying the first bits of the output id (from
which the library record is found again); speech gets an audio watermark; text
was watermarked while it was sampled (the engine says so in ``TextOutput.watermark``),
and this stage records that. All marks are keyed by the installation's secret.
Files get their metadata and Content Credentials when they are written
(:mod:`engines.provenance.files`), after this stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engines.media import AudioOutput, ImageOutput
from engines.pipeline import OutputContext, StageDecision
from engines.provenance.keys import InstallationKey


class ProvenanceStage:
    """Watermarks images and audio; records the text watermark; never blocks."""

    name = "provenance"

    def __init__(self, key: InstallationKey) -> None:
        self.key = key
        self._image_key = key.derive("image-watermark")
        self._audio_key = key.derive("audio-watermark")

    def watch(self, context: OutputContext) -> None:
        return None  # text is marked while it is sampled; nothing to hold back

    def process(self, output: Any, context: OutputContext) -> tuple[Any, StageDecision]:
        """Return the output with its watermark and the decision that says which mark it carries."""
        if isinstance(output, ImageOutput):
            from engines.provenance import image_mark

            payload = context.mark_id(image_mark.PAYLOAD_BITS)
            marked = image_mark.embed(output.pixels, payload, self._image_key)
            return replace(output, pixels=marked), self._decision("modified", "image-mark", payload)
        if isinstance(output, AudioOutput):
            from engines.provenance import audio_mark

            payload = context.mark_id(audio_mark.PAYLOAD_BITS)
            marked = audio_mark.embed(output.samples, output.sample_rate, payload, self._audio_key)
            return replace(output, samples=marked), self._decision("modified", "audio-mark", payload)
        scheme = getattr(output, "watermark", "")
        if scheme:
            return output, StageDecision(
                self.name, "modified", "", None, f"text-mark:{scheme}", f"key {self.key.key_id}"
            )
        why = "greedy decoding has no randomness to key" if hasattr(output, "finish_reason") else "not made by sampling"
        return output, StageDecision(self.name, "pass", "", None, "text-mark", f"not watermarked ({why})")

    def preview(self, output: Any, context: OutputContext) -> Any:
        """Return a live preview as it may be shown: a sentence of speech carries the clip's audio mark too."""
        if isinstance(output, AudioOutput):
            marked, _ = self.process(output, context)
            return marked
        return output

    def _decision(self, action: str, checker: str, payload: int) -> StageDecision:
        return StageDecision(self.name, action, "", None, checker, f"payload {payload:x}, key {self.key.key_id}")
