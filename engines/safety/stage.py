"""The safety stage of the OutputPipeline: nothing reaches a person without passing it.

Streamed text is released word by word, only as far as the filter has checked it.
When the evidence of an unsafe category appears, the text from there on is held
back until its sentence ends (so that "how do I kill" can still become "... a
Python process"); if the sentence confirms it, the stream stops and the held part
is withheld. Finished outputs are checked whole: text by the rules, the classifier
and the guard model; images (and every live preview) by the image classifier;
speech by the text it speaks.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np

from engines.errors import OutputBlocked
from engines.media import AudioOutput, ImageOutput
from engines.pipeline import OutputContext, StageDecision
from engines.safety.filter import SafetyFilter, decision_for
from engines.safety.policy import Action

# How much text before the newest word the stream guard re-reads: enough for any rule's context.
_WINDOW_CHARS = 400
# Held text waits at most this long for its sentence to end before the guard decides anyway.
_HOLD_CHARS = 240
_EAGER_CHARS = 64
_BATCH_CHARS = 40
_WORD_END = re.compile(r"[\s.,;:!?)\]}\"'»”’-]")
_SENTENCE_END = re.compile(r"[.!?\n]")


class StreamGuard:
    """Watches one streamed reply (see the module docstring)."""

    def __init__(self, safety: SafetyFilter, context: OutputContext) -> None:
        self._safety = safety
        self._context = context
        self._released = 0
        self._checked_to = 0

    def release(self, text: str) -> int:
        end = _last_word_end(text)
        if end <= self._checked_to:
            return self._released
        # Check every word while the reply is short (cheap, and the first words show at once), then
        # every few words or at a sentence's end: a check reads a whole window, so checking every
        # token would cost about a tenth of the generation speed; a few words wait ~50 ms at most.
        if (
            self._checked_to >= _EAGER_CHARS
            and end - self._checked_to < _BATCH_CHARS
            and not _SENTENCE_END.search(text, self._checked_to, end)
        ):
            return self._released
        # The meaning layer reads the window when a sentence has ended since the last check.
        meaning = bool(_SENTENCE_END.search(text, self._checked_to, end + 1))
        self._checked_to = end
        start = max(0, end - _WINDOW_CHARS)
        window = text[start:end]
        findings = self._safety.text_findings(window, "output", meaning=meaning)
        verdict = self._safety.policy.decide(findings)
        if verdict.allowed:
            self._released = end
            return end
        evidence = start + verdict.start if verdict.start >= 0 else self._released
        # Wait for the sentence to end before deciding, unless it has run on too long.
        if not _SENTENCE_END.search(text, evidence, end) and end - evidence < _HOLD_CHARS:
            self._released = max(self._released, _word_start(text, evidence))
            return self._released
        self._safety.log(verdict, "text", job_id=self._context.job_id, output_id=self._context.output_id)
        raise OutputBlocked(decision_for(verdict, "The reply"))


class SafetyStage:
    """The pipeline stage; ``safety`` is the Studio's filter (policy, checkers, audit log)."""

    name = "safety"

    def __init__(self, safety: SafetyFilter) -> None:
        self.safety = safety

    def watch(self, context: OutputContext) -> StreamGuard | None:
        return StreamGuard(self.safety, context) if context.kind == "text" else None

    def process(self, output: Any, context: OutputContext) -> tuple[Any, StageDecision]:
        """Check a finished output: pass it, blur it (images, per the policy) or raise OutputBlocked."""
        if isinstance(output, ImageOutput):
            return self._image(output, context)
        if isinstance(output, AudioOutput):
            verdict, subject, what = self.safety.check_text(output.text, "output"), "audio", "The speech"
        else:
            text = getattr(output, "text", None)
            if not isinstance(text, str):
                raise OutputBlocked(
                    StageDecision(self.name, "blocked", "", None, "safety", "Ember cannot check this kind of output.")
                )
            verdict, subject, what = self.safety.check_text(text, "output", guard=True), "text", "The reply"
        self.safety.log(verdict, subject, job_id=context.job_id, output_id=context.output_id)
        if not verdict.allowed:
            raise OutputBlocked(decision_for(verdict, what))
        return output, decision_for(verdict, what)

    def _image(self, output: ImageOutput, context: OutputContext) -> tuple[ImageOutput, StageDecision]:
        verdict = self.safety.check_image(output.pixels)
        self.safety.log(verdict, "image", job_id=context.job_id, output_id=context.output_id)
        decision = decision_for(verdict, "This image")
        if verdict.action is Action.BLOCK:
            raise OutputBlocked(decision)
        if verdict.action is Action.BLUR:
            blurred = self.safety.blur(output.pixels)
            return replace(output, pixels=blurred, blurred=True, notes=(*output.notes, decision.reason)), decision
        return output, decision

    def preview(self, image: np.ndarray | AudioOutput, context: OutputContext) -> np.ndarray | AudioOutput | None:
        """Return a live preview as it may be shown: unchanged, blurred, or None (hidden).

        A preview of speech (one sentence, played while the rest is made) is checked by its text.
        """
        if isinstance(image, AudioOutput):
            spoken = self.safety.check_text(image.text, "output")
            if not spoken.allowed:
                self.safety.log(spoken, "preview", job_id=context.job_id, output_id=context.output_id)
            return image if spoken.allowed else None
        verdict = self.safety.check_image(image)
        if verdict.allowed:
            return image
        self.safety.log(verdict, "preview", job_id=context.job_id, output_id=context.output_id)
        return self.safety.blur(image) if verdict.action is Action.BLUR else None


def _last_word_end(text: str) -> int:
    """Return the index just past the last complete word (0 when no word is complete yet)."""
    for i in range(len(text) - 1, -1, -1):
        if _WORD_END.match(text, i):
            return i + 1
    return 0


def _word_start(text: str, index: int) -> int:
    """Return the start of the word that contains ``index``."""
    while index > 0 and not _WORD_END.match(text, index - 1):
        index -= 1
    return index
