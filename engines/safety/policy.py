"""What the safety filter decides, and the person's policy that decides it.

Checkers (rules, the profanity classifier, an optional guard model, the image
classifiers) report :class:`Finding` objects: a category and a score in [0, 1].
The :class:`Policy` turns findings into one :class:`Verdict` using the level the
person chose for each category. Sexual content involving minors is always
blocked: no level allows it.

Neither findings nor verdicts hold the content they judged, so they can be kept
in records and the audit log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class Category(str, Enum):
    """The categories the filter knows, in the order they are shown in Settings."""

    MINORS = "sexual_minors"
    SEXUAL = "sexual"
    VIOLENCE = "violence"
    SELF_HARM = "self_harm"
    HATE = "hate"
    DANGEROUS = "dangerous"
    PROFANITY = "profanity"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def advice(self) -> str:
        """What a person can do when this category blocks something."""
        return _ADVICE[self]


_LABELS = {
    Category.MINORS: "sexual content involving minors",
    Category.SEXUAL: "sexual content",
    Category.VIOLENCE: "graphic violence",
    Category.SELF_HARM: "self-harm",
    Category.HATE: "hate or harassment",
    Category.DANGEROUS: "weapons or dangerous instructions",
    Category.PROFANITY: "profanity",
}

_ADVICE = {
    Category.MINORS: "Ember never makes this, whatever the settings.",
    Category.SEXUAL: "Rephrase without explicit sexual detail, or change the level for this category in Settings.",
    Category.VIOLENCE: "Describe the scene with less graphic detail, or change the level in Settings.",
    Category.SELF_HARM: (
        "If you are struggling, please reach out to someone you trust or a local crisis line. "
        "You can also rephrase, or change the level in Settings."
    ),
    Category.HATE: "Rephrase without attacking a person or group, or change the level in Settings.",
    Category.DANGEROUS: (
        "Ask about safety or history rather than step-by-step instructions, or change the level in Settings."
    ),
    Category.PROFANITY: "Rephrase without the strong language, or set profanity to 'minimal' in Settings.",
}


class Level(str, Enum):
    """How strict the filter is for one category."""

    STRICT = "strict"
    STANDARD = "standard"
    MINIMAL = "minimal"


class Action(str, Enum):
    ALLOW = "allow"
    BLOCK = "block"  # text: stop and withhold; image: withhold
    BLUR = "blur"  # images only: shown blurred, with the reason


@dataclass(frozen=True)
class Finding:
    """One checker's view of one category in one text or image; never the content itself."""

    category: Category
    score: float  # 0..1, how sure the checker is that the content is in this category
    checker: str  # "rules", "profanity-model", "guard:<model>", "open-nsfw", "nudenet"
    rule: str = ""  # which rule or label matched (a name, never the matched text)
    start: int = -1  # text only: where the evidence starts in the checked text, or -1
    end: int = -1


@dataclass(frozen=True)
class Verdict:
    """The policy's decision on one text or image."""

    action: Action
    category: Category | None = None
    score: float = 0.0
    checker: str = ""
    rule: str = ""
    start: int = -1  # text: where the withheld part starts

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW

    def message(self, what: str = "This") -> str:
        """A calm sentence for the person: what was stopped, why, and what to do."""
        if self.category is None or self.allowed:
            return f"{what} passed the safety filter."
        verb = "was blurred" if self.action is Action.BLUR else "was stopped"
        return f"{what} {verb} by the safety filter ({self.category.label}). {self.category.advice}"


# Score at or above which a finding blocks, per level. None: the level lets the category through.
_THRESHOLDS: dict[Level, float | None] = {Level.STRICT: 0.35, Level.STANDARD: 0.6, Level.MINIMAL: 0.9}
_MINIMAL_OFF = {Category.PROFANITY}  # at "minimal" these pass entirely


@dataclass(frozen=True)
class Policy:
    """A level per category and what happens to unsafe images."""

    levels: dict[Category, Level] = field(default_factory=lambda: {c: Level.STANDARD for c in Category})
    image_action: Action = Action.BLUR  # BLUR or BLOCK for images over the threshold

    def level(self, category: Category) -> Level:
        if category is Category.MINORS:
            return Level.STRICT
        return self.levels.get(category, Level.STANDARD)

    def threshold(self, category: Category) -> float | None:
        """The score at which ``category`` blocks, or None when the level lets it through."""
        if category is Category.MINORS:
            return 0.2
        level = self.level(category)
        if level is Level.MINIMAL and category in _MINIMAL_OFF:
            return None
        return _THRESHOLDS[level]

    def decide(self, findings: list[Finding] | tuple[Finding, ...], *, image: bool = False) -> Verdict:
        """Return the verdict for one item: the most severe finding over its threshold, or allow."""
        worst: Finding | None = None
        for f in findings:
            limit = self.threshold(f.category)
            if limit is None or f.score < limit:
                continue
            if worst is None or _severity(f) > _severity(worst):
                worst = f
        if worst is None:
            top = max(findings, key=lambda f: f.score, default=None)
            return Verdict(Action.ALLOW, None, top.score if top else 0.0, top.checker if top else "")
        action = Action.BLOCK
        if image and worst.category is not Category.MINORS:
            action = self.image_action
        return Verdict(action, worst.category, worst.score, worst.checker, worst.rule, worst.start)

    def with_level(self, category: Category, level: Level) -> Policy:
        if category is Category.MINORS:
            return self
        return replace(self, levels={**self.levels, category: level})

    def to_json(self) -> str:
        return json.dumps(
            {"levels": {c.value: lv.value for c, lv in self.levels.items()}, "image": self.image_action.value}
        )

    @classmethod
    def from_json(cls, text: str) -> Policy:
        """Parse a saved policy; unknown or broken entries fall back to 'standard'."""
        try:
            data: Any = json.loads(text)
        except (TypeError, ValueError):
            return cls()
        levels = {c: Level.STANDARD for c in Category}
        for key, value in (data.get("levels") or {}).items() if isinstance(data, dict) else ():
            try:
                levels[Category(key)] = Level(value)
            except ValueError:
                continue
        levels[Category.MINORS] = Level.STRICT
        image = Action.BLOCK if isinstance(data, dict) and data.get("image") == "block" else Action.BLUR
        return cls(levels, image)


_ORDER = list(Category)


def _severity(f: Finding) -> tuple[bool, float, int]:
    # Minors above all; then the checker's surest finding; then the earlier (more severe) category.
    return (f.category is Category.MINORS, f.score, len(_ORDER) - _ORDER.index(f.category))
