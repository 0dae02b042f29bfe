"""Word error rate: how far a transcription is from what was said, in words.

Both texts are normalised the same way first (lower case, punctuation dropped, apostrophes
inside words kept, hyphens split), then aligned by Levenshtein distance over words:
WER = (substitutions + deletions + insertions) / words said.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def normalise_words(text: str) -> list[str]:
    """The words of ``text`` as WER compares them: NFKC, lower case, no punctuation ("don't" stays one word)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return _WORD.findall(text)


@dataclass(frozen=True)
class WordErrors:
    """The edit counts between what was said (``reference_words``) and what was heard."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per word said (0 is perfect; more than 1 is possible when much was invented)."""
        if self.reference_words == 0:
            return 0.0 if self.insertions == 0 else float(self.insertions)
        return self.errors / self.reference_words


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Align ``hypothesis`` (what was heard) with ``reference`` (what was said) and count the edits."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    # One row of the edit table at a time; each cell keeps (cost, substitutions, deletions, insertions).
    previous = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, said in enumerate(ref, 1):
        current = [(i, 0, i, 0)]
        for j, heard in enumerate(hyp, 1):
            diagonal = previous[j - 1]
            if said == heard:
                best = diagonal
            else:
                up, left = previous[j], current[j - 1]
                best = min(
                    (diagonal[0] + 1, diagonal[1] + 1, diagonal[2], diagonal[3]),
                    (up[0] + 1, up[1], up[2] + 1, up[3]),
                    (left[0] + 1, left[1], left[2], left[3] + 1),
                )
            current.append(best)
        previous = current
    _, substitutions, deletions, insertions = previous[-1]
    return WordErrors(substitutions, deletions, insertions, len(ref))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """The word error rate of ``hypothesis`` against ``reference`` (see :class:`WordErrors`)."""
    return word_errors(reference, hypothesis).rate
