"""Word error rate: normalised words aligned by Levenshtein distance."""

from __future__ import annotations

import pytest

from engines.dictation.wer import normalise_words, word_error_rate, word_errors


def test_the_same_words_in_another_case_and_punctuation_have_no_errors() -> None:
    assert word_error_rate("The lamp, lit at dusk!", "the LAMP lit at dusk.") == 0.0
    assert normalise_words("Don't stop—it’s fine.") == ["don't", "stop", "it's", "fine"]


def test_each_kind_of_edit_is_counted_once() -> None:
    said = "the keeper lights the lamp"
    assert word_errors(said, "the keeper light the lamp").substitutions == 1
    assert word_errors(said, "the keeper lights lamp").deletions == 1
    assert word_errors(said, "the old keeper lights the lamp").insertions == 1
    errors = word_errors(said, "a keeper lights the big lamp")
    assert (errors.substitutions, errors.deletions, errors.insertions) == (1, 0, 1)
    assert errors.rate == pytest.approx(2 / 5)


def test_nothing_heard_is_every_word_missed_and_nothing_said_counts_inventions() -> None:
    assert word_errors("one two three", "").rate == 1.0
    assert word_errors("", "").rate == 0.0
    assert word_errors("", "hallucinated words").rate == 2.0


def test_the_rate_is_symmetric_in_edits_but_not_in_length() -> None:
    # Swapping the texts turns deletions into insertions; the edit count stays, the divisor changes.
    a, b = "one two three four", "one three four"
    assert word_errors(a, b).errors == word_errors(b, a).errors == 1
    assert word_error_rate(a, b) == pytest.approx(1 / 4)
    assert word_error_rate(b, a) == pytest.approx(1 / 3)
