"""The text safety checker: normalisation, category rules, the profanity model, extra checkers.

:class:`TextSafety` is what the prompt check and the stream guard call. The
rules (:mod:`engines.safety.text_rules`) run on normalised text
(:mod:`engines.safety.normalize`) and are cheap enough to run at every word
boundary of a streaming reply; the profanity classifier
(:mod:`engines.safety.profanity`) is loaded on first use and fails soft.
Further checkers (a guard model) can be added with :meth:`TextSafety.add_checker`.

Findings carry offsets in the text that was passed in, so the stream guard can
withhold a reply from the first offending character.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from engines.safety.normalize import NormalizedText, normalize
from engines.safety.policy import Category, Finding
from engines.safety.profanity import CHECKER as MODEL_CHECKER
from engines.safety.profanity import ProfanityModel, shared_model
from engines.safety.text_rules import OUTPUT, PROMPT, check_normalized, domain_factor, real_person_finding

if TYPE_CHECKING:
    from engines.safety.semantic import SemanticLayer

Checker = Callable[[str, str], list[Finding]]
"""An extra checker: ``fn(text, role) -> findings``; offsets, if any, are in ``text``."""

# The classifier is a general "offensive language" model: on its own it flags
# "kill shot" or "cock a doodle doo". It may raise the rules' profanity score by
# at most _MODEL_LIFT, and without any profanity word in the text it reaches at
# most _MODEL_ALONE, under every level's threshold: the words decide whether
# there is profanity, the model how strongly a mild word ("hell") is meant.
_MODEL_LIFT = 0.3
_MODEL_ALONE = 0.3
_MODEL_LIFTS_FROM = 0.3  # rules' profanity score (a mild word, not discounted) from which the model may lift it
_SENTENCE_END = (".", "!", "?", "\n")


class TextSafety:
    """Checks prompts and replies: rules always, the profanity model when installed, extra checkers."""

    def __init__(
        self,
        *,
        profanity: ProfanityModel | None = None,
        use_profanity_model: bool = True,
        semantic: SemanticLayer | None = None,
    ) -> None:
        """``profanity``: the model to use (default: the process-wide one); off with ``use_profanity_model``.

        ``semantic``: the meaning layer (:mod:`engines.safety.semantic`); None leaves it out.
        """
        self._profanity = (profanity or shared_model()) if use_profanity_model else None
        self.semantic = semantic
        self._checkers: list[Checker] = []
        self._lock = threading.Lock()

    # --- configuration --------------------------------------------------------------

    def add_checker(self, fn: Checker) -> None:
        """Add a checker that :meth:`check` also runs (not :meth:`check_window`: it is meant to be slower)."""
        with self._lock:
            self._checkers = [*self._checkers, fn]

    @property
    def profanity_available(self) -> bool:
        """Whether the profanity classifier is in use (loads it on first access)."""
        return self._profanity is not None and self._profanity.available

    @property
    def profanity_unavailable_reason(self) -> str | None:
        """Why the profanity classifier is not in use, for a person; None when it is."""
        if self._profanity is None:
            return "The profanity model is turned off; only the word rules are used."
        return self._profanity.unavailable_reason

    # --- checking -------------------------------------------------------------------

    def check(self, text: str, *, role: str = OUTPUT, meaning: bool = True, models: bool = True) -> list[Finding]:
        """Return every finding for ``text``: rules, the models, then the extra checkers.

        ``meaning``: whether the meaning layer runs too (the stream guard asks for it at the
        end of a sentence only; about 8 ms a check). ``models`` False leaves out both learned
        layers (the meaning layer and the profanity model), which never then load.

        ``role`` is "prompt" (a person's request: asking for dangerous instructions
        counts) or "output" (a reply: giving them counts). Offsets are in ``text``.
        An extra checker that raises is skipped (the others still decide); raises
        ValueError for an unknown role.
        """
        norm = normalize(text)
        findings = self._layers(norm, role, classify=True, meaning=meaning, models=models)
        if role == PROMPT:
            person = real_person_finding(text, norm)
            if person is not None:
                findings.append(person)
        for fn in self._checkers:
            try:
                findings.extend(fn(text, role))
            except Exception:  # one broken add-on checker must not stop the filter
                continue
        return findings

    def check_window(
        self, text: str, start: int = 0, *, role: str = OUTPUT, classify: bool | None = None
    ) -> list[Finding]:
        """Return the rules' (and maybe the model's) findings for ``text[start:]``, offsets in ``text``.

        Meant for the stream guard, on the last few hundred characters of a growing
        reply at each word boundary: about 0.4 ms for 300 characters. A window that
        starts inside a word starts at that word's end instead, so "class" cut to
        "ass" is not a finding. The classifier runs when ``classify`` is True, or,
        when it is None, if the window ends a sentence or the rules saw a profanity
        word (alone it cannot block at any level, so nothing is lost by skipping
        it otherwise). Extra checkers do not run here. Raises ValueError for an
        unknown role.
        """
        start = max(0, min(start, len(text)))
        if 0 < start < len(text) and text[start - 1].isalnum() and text[start].isalnum():
            while start < len(text) and text[start].isalnum():
                start += 1
        window = text[start:]
        if classify is None:
            classify = window.rstrip(" \t\"')").endswith(_SENTENCE_END)
        findings = self._layers(normalize(window), role, classify=classify, meaning=classify)
        if start == 0:
            return findings
        return [
            Finding(
                f.category,
                f.score,
                f.checker,
                f.rule,
                f.start + start if f.start >= 0 else -1,
                f.end + start if f.end >= 0 else -1,
            )
            for f in findings
        ]

    def _layers(
        self, norm: NormalizedText, role: str, *, classify: bool, meaning: bool, models: bool = True
    ) -> list[Finding]:
        """Return the rules' findings, the meaning layer's when asked, and when useful the gated profanity finding."""
        if role not in (PROMPT, OUTPUT):
            raise ValueError(f"role must be 'prompt' or 'output', not {role!r}")
        findings = check_normalized(norm, role)
        if not models:
            return findings
        if meaning and self.semantic is not None and norm.text.strip():
            findings.extend(_in_domain(norm, f) for f in self.semantic.findings(norm.text, role))
        profane = next((f for f in findings if f.category is Category.PROFANITY), None)
        if self._profanity is None or not (classify or profane is not None) or not norm.text.strip():
            return findings
        if not self._profanity.available:
            return findings
        p = self._profanity.probabilities([norm.text])[0]
        if profane is None:
            cap = _MODEL_ALONE
        elif profane.score >= _MODEL_LIFTS_FROM:
            cap = max(_MODEL_ALONE, profane.score + _MODEL_LIFT)
        else:  # a context rule said the word is discussed, not used: the model may not undo that
            cap = profane.score
        score = round(min(p, cap), 4)
        if score > 0.05:
            start, end = (profane.start, profane.end) if profane else (-1, -1)
            findings.append(Finding(Category.PROFANITY, score, MODEL_CHECKER, MODEL_CHECKER, start, end))
        return findings


def _in_domain(norm: NormalizedText, finding: Finding) -> Finding:
    """The meaning layer's ``finding`` scaled by the domain contexts of ``norm`` (a game, an idiom)."""
    factor = domain_factor(norm, finding.category)
    if factor == 1.0:
        return finding
    return Finding(finding.category, round(finding.score * factor, 4), finding.checker, finding.rule,
                   finding.start, finding.end)  # fmt: skip
