"""Sizes written for a person: one formatter, measured sizes to a decimal, estimates rounded."""

from __future__ import annotations

import pytest

from engines.models.downloads import human_bytes as downloads_human_bytes
from engines.units import human_bytes


@pytest.mark.parametrize(
    ("n", "measured", "estimate"),
    [
        (512, "512 bytes", "512 bytes"),
        (812_300, "812.3 KB", "812 KB"),
        (1_000_000, "1.0 MB", "1.0 MB"),
        (1_500_000, "1.5 MB", "1.5 MB"),
        (75_300_000, "75.3 MB", "75 MB"),
        (201_000_000, "201.0 MB", "201 MB"),
        (9_100_000_000, "9.1 GB", "9.1 GB"),
        (20 * 10**9, "20.0 GB", "20.0 GB"),
        (3.2e12, "3.2 TB", "3.2 TB"),
    ],
)
def test_measured_sizes_keep_a_decimal_and_estimates_round_megabytes(n: float, measured: str, estimate: str) -> None:
    assert human_bytes(n) == measured
    assert human_bytes(n, approximate=True) == estimate


def test_the_downloader_words_sizes_with_the_same_function() -> None:
    assert downloads_human_bytes is human_bytes
