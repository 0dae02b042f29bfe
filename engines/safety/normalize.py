"""Text normalisation for the safety rules, robust to the usual obfuscations.

People who want a filter to miss something write "k.i.l.l", "s e x", "s3x",
"ｐｏｒｎ", "pоrn" with a Cyrillic "о", "p\u200bo\u200brn" with zero-width spaces,
or "fuuuuck". :func:`normalize` undoes all of these and returns lower-case text
in which words are separated by single spaces, together with a map from every
normalised character back to the original text, because findings carry offsets
in the ORIGINAL text (the stream guard withholds a reply from there).

Pure Python and table driven: one call on a 300-character window takes about
0.1 ms, so the stream guard can call it at every word boundary.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Look-alike letters that NFKC leaves alone (it does not fold scripts into each
# other): Cyrillic and Greek letters drawn like Latin ones, plus a few symbols.
# Keys are lower case; text is case-folded before the lookup.
# fmt: off
_CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "е": "e", "ё": "e", "з": "3", "и": "u", "і": "i", "ї": "i",
    "ј": "j", "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c",
    "т": "t", "у": "y", "ф": "f", "х": "x", "ц": "u", "ч": "4", "ш": "w", "щ": "w", "ъ": "b",
    "ы": "bi", "ь": "b", "э": "e", "ю": "io", "я": "r", "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "ү": "y", "ұ": "y", "қ": "k", "ң": "h", "ӏ": "l", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o", "ι": "i",
    "κ": "k", "λ": "l", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n", "ρ": "p", "σ": "o",
    "ς": "c", "τ": "t", "υ": "u", "φ": "f", "χ": "x", "ψ": "w", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Latin and symbol look-alikes
    "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ß": "ss", "æ": "ae",
    "œ": "oe", "þ": "p", "ƒ": "f", "€": "e", "£": "l", "¢": "c", "¡": "!", "×": "x",
}

# Digits and symbols people write for letters. Applied only inside words (see
# _LEET_TOKEN) so that "12 year old", "$5" and "I'm 18!" keep their meaning.
_LEET: dict[str, str] = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "l", "+": "t",
}
# fmt: on

# A "word" for leetspeak purposes: letters, digits and leet symbols.
_LEET_TOKEN = re.compile(r"[a-z0-9@$!|+*]+")
# Numbers written with a unit or an age suffix stay numbers: "12yo", "14yrs", "3rd", "4k".
_NUMBER_WITH_SUFFIX = re.compile(
    r"\d+(?:yo|y/o|yrs?|years?|th|st|nd|rd|s|am|pm|k|m|mm|cm|km|kg|g|mg|ml|l|x|d|p|gb|mb|hz|fps|v|w)?"
)
# Three or more single characters separated by spacing or punctuation: "k.i.l.l", "s e x".
_SPACED_LETTERS = re.compile(r"(?<![a-z0-9@$])[a-z0-9@$](?:[\s.\-_*·•,~|/\\]{1,3}[a-z0-9@$](?![a-z0-9@$])){2,}")
_SPACED_SEPARATOR = re.compile(r"[\s.\-_*·•,~|/\\]+")
# Letters drawn out: three or more of the same become two ("fuuuuck" -> "fuuck"); no
# English word has a letter three times in a row, and two keeps "kill" and "shoot".
_REPEATS = re.compile(r"([a-z])\1{2,}")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class NormalizedText:
    """Normalised text and where each of its characters came from in the original."""

    text: str
    starts: tuple[int, ...]  # starts[i]: offset in the original of the character text[i] came from
    ends: tuple[int, ...]  # ends[i]: offset just past that original character

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Return the original ``(start, end)`` offsets of the normalised slice ``text[start:end]``.

        Raises IndexError when the slice is empty or outside the text.
        """
        if not 0 <= start < end <= len(self.text):
            raise IndexError(f"slice {start}:{end} is outside the normalised text of length {len(self.text)}")
        return self.starts[start], self.ends[end - 1]


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """Return what one original character becomes: "" for invisible ones, else lower-case Latin."""
    if ch.isascii():
        return ch.lower()
    cat = unicodedata.category(ch)
    # Format characters (zero-width space/joiner, soft hyphen, bidi marks), combining
    # marks (accents and the marks used to "zalgo" text), and variation selectors.
    if cat in ("Cf", "Mn", "Me") or "\ufe00" <= ch <= "\ufe0f":
        return ""
    if cat.startswith("Z"):  # the many Unicode spaces
        return " "
    folded = unicodedata.normalize("NFKC", ch).casefold()
    out = []
    for c in folded:
        c = _CONFUSABLES.get(c, c)
        # Strip accents: "é" -> "e"; keep the character when it has no ASCII base.
        base = "".join(b for b in unicodedata.normalize("NFKD", c) if not unicodedata.combining(b))
        out.append(base or c)
    return "".join(out)


def _edit(text: str, starts: list[int], ends: list[int], edits: dict[int, str]):
    """Return (text, starts, ends) with ``text[i]`` replaced by ``edits[i]`` ("" deletes it).

    A replaced character keeps the original offsets of the character it replaces,
    so offsets stay right however much a step removes.
    """
    if not edits:
        return text, starts, ends
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    for i, c in enumerate(text):
        c = edits.get(i, c)
        if c:
            out.append(c)
            new_starts.append(starts[i])
            new_ends.append(ends[i])
    return "".join(out), new_starts, new_ends


def _unleet(token: str) -> str:
    """Return ``token`` with leetspeak digits and symbols turned into letters, or unchanged."""
    if not any(c.isalpha() for c in token) or _NUMBER_WITH_SUFFIX.fullmatch(token):
        return token
    chars = list(token)
    n = len(chars)
    for i, c in enumerate(chars):
        if c not in _LEET:
            continue
        prev_c = token[i - 1] if i > 0 else ""
        next_c = token[i + 1] if i + 1 < n else ""
        if c in "!|+" and not (prev_c.isalnum() and next_c.isalnum()):
            continue  # "wow!" and "c++" are punctuation, "b!tch" is not
        if c in "@$" and not (next_c.isalnum() or next_c in "@$" or prev_c.isalnum()):
            continue
        if c == "1" and ("1" in (prev_c, next_c) or prev_c == "i"):
            chars[i] = "l"  # "ki11", "ki1l"; but "k1ll" and "sh1t" are an i
        else:
            chars[i] = _LEET[c]
    return "".join(chars)


def normalize(text: str) -> NormalizedText:
    """Return ``text`` normalised for matching, with offsets back into ``text``.

    The result is lower case, ASCII where a look-alike exists, without invisible
    characters, with letters spelled out one by one joined back into words, with
    leetspeak undone inside words, runs of a letter shortened to two, and all
    whitespace as single spaces. Never raises.
    """
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, ch in enumerate(text):
        folded = _fold_char(ch)
        for c in folded:
            out.append(c)
            starts.append(i)
            ends.append(i + 1)
    s = "".join(out)

    # Letters spelled out one by one: "k.i.l.l", "s e x", "f-u-c-k".
    edits: dict[int, str] = {}
    for m in _SPACED_LETTERS.finditer(s):
        first = m.start()
        # "i m u r d e r", "a s e x scene": a leading "i" or "a" is the word before.
        if s[first] in "ai" and sum(c.isalnum() for c in m.group()) >= 4:
            first = m.start() + 1 + len(_SPACED_SEPARATOR.match(s, m.start() + 1).group())
            edits[first - 1] = " "
        for i in range(first, m.end()):
            if _SPACED_SEPARATOR.match(s[i]) and s[i] not in "$@":
                edits[i] = ""
    s, starts, ends = _edit(s, starts, ends, edits)

    # Leetspeak is a one-for-one substitution: offsets do not move.
    if any(c in _LEET for c in s):
        s = _LEET_TOKEN.sub(lambda m: _unleet(m.group()), s)

    edits = {}
    for m in _REPEATS.finditer(s):
        for i in range(m.start() + 2, m.end()):
            edits[i] = ""
    for m in _SPACES.finditer(s):
        edits[m.start()] = " "
        for i in range(m.start() + 1, m.end()):
            edits[i] = ""
    s, starts, ends = _edit(s, starts, ends, edits)
    return NormalizedText(s, tuple(starts), tuple(ends))
