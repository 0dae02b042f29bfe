"""What a search box's text becomes in an FTS5 query: every word quoted, the last one a prefix.

A search box gets anything: quotes, ``AND``/``OR``/``NOT``/``NEAR``, ``column:`` filters,
asterisks and brackets. None of it may reach FTS5 as syntax (a stray quote would be an error,
an operator a surprise), so the text is cut into the words the index itself knows (the
unicode61 tokenizer: letters and digits; everything else separates) and each word is written
as a quoted string. Words are ANDed; the last one matches as a prefix while it is being typed.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+")


def words_of(text: str) -> list[str]:
    """The words of ``text`` as the full-text index splits them (punctuation and spaces separate)."""
    return _WORD.findall(text)


def match_expression(text: str) -> str:
    """Return the FTS5 MATCH expression for what a person typed, or "" when it holds no word.

    The last word becomes a prefix (``"cas"*`` finds castle) unless the text ends with a space,
    which says the word is finished.
    """
    words = words_of(text)
    if not words:
        return ""
    terms = [f'"{word}"' for word in words]  # a word never holds a quote: nothing to escape
    if not text[-1:].isspace():
        terms[-1] += "*"
    return " ".join(terms)
