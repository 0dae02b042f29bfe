"""The safety filter: one object that checks prompts, texts, images and previews under one policy.

The Studio owns one :class:`SafetyFilter`. Prompts are checked when a request is
submitted (the rule and classifier layers, in a few milliseconds) and again by the
guard model, if one is installed, on the worker before the engine runs. Outputs
are checked by :class:`engines.safety.stage.SafetyStage` in the OutputPipeline.
Every decision goes to the audit log, without the content.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from engines.errors import OutputBlocked
from engines.pipeline import StageDecision, utc_now
from engines.safety.audit import AuditEntry, AuditLog
from engines.safety.policy import Action, Category, Finding, Policy, Verdict

log = logging.getLogger(__name__)

TextChecker = Callable[[str, str], list[Finding]]


class SafetyFilter:
    """Checks under the current policy and logs every decision.

    ``text`` defaults to the rule and classifier layers (:class:`engines.safety.text.TextSafety`);
    the image classifier is made on first use by ``image_factory`` (the Studio's runs its model in an
    engine process); without one it runs here (it imports onnxruntime), on a worker.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        audit: AuditLog | None = None,
        text: Any = None,
        image_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.policy = policy or Policy()
        self.audit = audit
        if text is None:
            from engines.safety.text import TextSafety

            text = TextSafety()
        self.text = text
        self.guard: TextChecker | None = None
        self._image: Any = None
        self._image_factory = image_factory
        self._image_lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the text classifier now (it takes about a second), so that the first real check is fast."""
        try:
            self.text.check("warm up", role="prompt")
        except Exception:  # a checker that cannot load says so at its first real check
            log.debug("The safety warm-up failed", exc_info=True)

    # -- checks ------------------------------------------------------------------------
    def text_findings(self, text: str, role: str, *, guard: bool = False, meaning: bool = True) -> list[Finding]:
        """Return the findings of the rule and classifier layers (the meaning layer unless ``meaning`` is False,
        the guard model when asked)."""
        findings = list(self.text.check(text, role=role, meaning=meaning))
        if guard and self.guard is not None and text.strip():
            findings += self.guard(text, role)
        return findings

    def check_text(self, text: str, role: str = "output", *, guard: bool = False) -> Verdict:
        """Return the policy's verdict on ``text`` (role "prompt" or "output")."""
        return self.policy.decide(self.text_findings(text, role, guard=guard))

    @property
    def image(self) -> Any:
        """The image classifier (open-nsfw), made on first use."""
        with self._image_lock:
            if self._image is None:
                if self._image_factory is not None:
                    self._image = self._image_factory()
                else:
                    from engines.safety.image import ImageSafety

                    self._image = ImageSafety()
            return self._image

    def check_image(self, pixels: np.ndarray) -> Verdict:
        """Return the policy's verdict on one image (BLUR or BLOCK per the policy when unsafe)."""
        return self.policy.decide(self.image.check(pixels), image=True)

    def blur(self, pixels: np.ndarray) -> np.ndarray:
        return self.image.blur(pixels)

    # -- requests ----------------------------------------------------------------------
    def check_request(
        self, request: Any, *, guard_only: bool = False, rules_only: bool = False, job_id: int | None = None
    ) -> None:
        """Check what a person asked for; raise OutputBlocked (with a decision for them) to refuse it.

        Which texts those are, the request's modality says (:func:`prompt_texts`); a request
        no modality runs and that does not declare itself free of prompts is refused.
        ``guard_only`` asks only the guard model (on the worker, after the fast layers
        passed at submission). ``rules_only`` asks only the word rules, which load nothing (at
        submission while the learned layers still load; the whole filter then runs on the worker).
        """
        if guard_only and self.guard is None:
            return
        for text in prompt_texts(request):
            if guard_only and self.guard:
                findings = self.guard(text, "prompt")
            elif rules_only:
                findings = self.text.check(text, role="prompt", models=False)
            else:
                findings = self.text_findings(text, "prompt")
            verdict = self.policy.decide(findings)
            self.log(verdict, "prompt", job_id=job_id)
            if not verdict.allowed:
                raise OutputBlocked(decision_for(verdict, "Your request"))

    def log(self, verdict: Verdict, subject: str, *, job_id: int | None = None, output_id: str | None = None) -> None:
        """Append the decision to the audit log (never the content)."""
        if self.audit is None:
            return
        category = verdict.category
        level = self.policy.level(category).value if category is not None else ""
        self.audit.add(
            AuditEntry(
                time_utc=utc_now(),
                job_id=job_id,
                output_id=output_id,
                subject=subject,
                action=verdict.action.value,
                category=category.value if category is not None else "",
                score=verdict.score,
                checker=verdict.checker,
                rule=verdict.rule,
                level=level,
            )
        )


def decision_for(verdict: Verdict, what: str) -> StageDecision:
    """The pipeline decision for a verdict; its reason is the sentence the person reads."""
    action = {Action.ALLOW: "pass", Action.BLOCK: "blocked", Action.BLUR: "modified"}[verdict.action]
    return StageDecision(
        stage="safety",
        action=action,
        category=verdict.category.value if verdict.category is not None else "",
        score=round(float(verdict.score), 4),
        checker=verdict.checker,
        reason=verdict.message(what) if verdict.category is not None else "",
    )


def prompt_texts(request: Any) -> list[str]:
    """Return the texts in ``request`` that a person wrote and that must be checked as prompts.

    Each modality says which they are (``Modality.prompt_texts``). Requests that carry no text
    a person wrote say so with ``PROMPTLESS = True`` (file checks, downloads). Anything else
    cannot be read, so it is refused: the check fails closed.
    """
    from engines.modalities import modality_of

    modality = modality_of(request)
    if modality is not None:
        return [text for text in modality.prompt_texts(request) if text.strip()]
    if getattr(type(request), "PROMPTLESS", False):
        return []
    raise OutputBlocked(
        StageDecision(
            "safety",
            "blocked",
            "",
            None,
            "safety",
            f"Your request was stopped by the safety filter: Ember cannot check a {type(request).__name__}.",
        )
    )


def category_of(decision: StageDecision) -> Category | None:
    try:
        return Category(decision.category)
    except ValueError:
        return None
