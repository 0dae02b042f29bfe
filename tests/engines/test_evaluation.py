"""Diversity and quality proxies: known values for each metric, and a real evaluation of the embedded model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines.evaluation import metrics


def test_distinct_n_counts_unique_n_grams_over_all_of_them() -> None:
    assert metrics.distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert metrics.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    assert metrics.distinct_n(["the sea", "The sea!"], 1) == pytest.approx(3 / 5)  # the, sea, !
    assert metrics.distinct_n([""], 2) == 0.0


def test_self_bleu_is_one_for_copies_and_near_zero_for_unrelated_texts() -> None:
    same = ["the cat sat on the mat today"] * 3
    assert metrics.self_bleu(same) == pytest.approx(1.0)
    unrelated = ["the cat sat on the mat", "quarterly taxes are due soon", "a rocket climbs into orbit"]
    assert metrics.self_bleu(unrelated) < 0.1
    partly = ["the cat sat on the mat", "the cat sat on the rug", "a dog ran in the park"]
    assert metrics.self_bleu(unrelated) < metrics.self_bleu(partly) < 1.0
    with pytest.raises(ValueError):
        metrics.self_bleu(["one"])


def test_pairwise_distances_are_zero_for_copies_and_grow_with_difference() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    same = metrics.pairwise_distances([a, a.copy()])
    assert same["luma_ssim_distance"] == pytest.approx(0.0, abs=1e-9) and same["histogram_l1"] == 0.0
    red, blue = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    assert metrics.pairwise_distances([red, blue])["histogram_l1"] == pytest.approx(2.0)
    assert metrics.pairwise_distances([a, b])["luma_ssim_distance"] > 0.5


def test_no_reference_image_measures() -> None:
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    assert metrics.sharpness(sharp) > 100 * metrics.sharpness(smooth)
    grey = np.full((32, 32, 3), 128, np.uint8)
    assert metrics.colourfulness(grey) == 0.0
    colourful = np.zeros((32, 32, 3), np.uint8)
    colourful[:16, :, 0] = 255
    colourful[16:, :, 1] = 255
    assert metrics.colourfulness(colourful) > 100
    black = np.zeros((16, 16), np.uint8)
    assert metrics.exposure(black) == {"mean_luma": 0.0, "crushed": 1.0, "blown": 0.0}


def test_audio_levels_and_pitch_class_entropy() -> None:
    t = np.arange(48_000) / 48_000
    sine = np.sin(2 * math.pi * 440 * t)
    levels = metrics.audio_levels(np.concatenate([sine, np.zeros(48_000)]))
    assert levels["peak_dbfs"] == pytest.approx(0.0, abs=0.01)
    assert levels["rms_dbfs"] == pytest.approx(-3.01 - 3.01, abs=0.05)  # a sine's -3 dB, over twice the time
    assert levels["silence"] == pytest.approx(0.5, abs=0.02) and levels["clipped"] > 0
    assert metrics.pitch_class_entropy([60, 72, 48]) == 0.0  # all C
    assert metrics.pitch_class_entropy(list(range(60, 72))) == pytest.approx(math.log2(12))
    assert metrics.pitch_class_entropy([60, 62], durations=[3.0, 1.0]) == pytest.approx(
        -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    )


def test_evaluating_the_embedded_model_measures_real_samples_kept_like_any_reply(
    studio, smollm2_path, monkeypatch
) -> None:
    from engines.evaluation.text import evaluate_text
    from engines.text import cpu_backend

    def not_here() -> None:
        raise AssertionError("llama.cpp loaded in the caller's process: the reference model belongs in an engine")

    monkeypatch.setattr(cpu_backend, "ready_llama_cpp", not_here)  # the engine processes do not see this

    kept = len(studio.library.search(kinds=("text",)))
    result = evaluate_text(studio, smollm2_path, "Name a fruit and say why you like it.", samples=3, max_tokens=16)
    assert len(result.samples) == 3 and all(text.strip() for text in result.samples)
    assert len(set(result.samples)) > 1  # three seeds: not one reply three times
    assert 0.0 < result.distinct_1 <= 1.0 and 0.0 <= result.self_bleu < 1.0
    assert all(1.0 < p < 1000 for p in result.perplexity)
    low, median, high = result.spread["generation tokens/s"]
    assert 0 < low <= median <= high
    assert "self-BLEU" in result.table()
    assert len(studio.library.search(kinds=("text",))) == kept + 3  # kept in the library, like any reply


def test_evaluating_an_image_model_measures_real_images_with_their_safety_scores(studio, tiny_sd) -> None:
    from engines.evaluation.image import ALIGNMENT, evaluate_image

    result = evaluate_image(studio, str(tiny_sd), "a red cat", samples=3, steps=3, size=128)
    assert len(result.paths) == 3 and len(set(result.paths)) == 3
    assert result.distances["luma_ssim_distance"] > 0 and 0 < result.distances["histogram_l1"] <= 2
    low, median, high = result.spread["seconds per step"]
    assert 0 < low <= median <= high
    assert "safety score (image classifier)" in result.spread
    assert ALIGNMENT in result.table() and len(studio.library.search(kinds=("image",))) == 3


def test_evaluating_a_voice_hears_it_back_with_whisper(studio) -> None:
    from engines.evaluation.audio import evaluate_speech

    texts = ["The ferry leaves at nine in the morning.", "Please bring a warm coat and some water."]
    result = evaluate_speech(studio, "heart", texts)
    assert len(result.heard) == 2 and all(said.strip() for said in result.heard)
    low, median, high = result.spread["round-trip word error rate (Whisper tiny.en)"]
    assert 0.0 <= low <= median <= high < 0.5  # an intelligible voice: most words come back
    peak = result.spread["peak (dBFS)"]
    assert -30 < peak[0] <= peak[2] <= 0.0
    assert "round-trip" in result.table()


def test_evaluating_the_composer_measures_its_pieces_notes_and_levels(studio) -> None:
    from engines.evaluation.audio import evaluate_music

    result = evaluate_music(studio, ("pop", "lofi"), seeds=1, bars=4)
    assert result.items == ("pop seed 1", "lofi seed 1")
    low, _, high = result.spread["pitch-class entropy (bits, of 3.58)"]
    assert 1.0 < low <= high <= math.log2(12) + 1e-9  # a key's notes: several pitch classes, never all equally
    assert result.spread["clipped samples (share)"][2] < 0.01


def test_the_shipped_prompt_sets_cover_every_kind_and_a_broken_file_is_explained(tmp_path) -> None:
    from engines.errors import EmberError
    from engines.evaluation.sets import KINDS, prompt_sets

    sets = prompt_sets()
    assert set(sets) == set(KINDS) and all(prompts for kind in sets.values() for prompts in kind.values())
    broken = tmp_path / "sets.json"
    broken.write_text('{"video": {"x": ["a"]}}', encoding="utf-8")
    with pytest.raises(EmberError, match="must map text, image, speech, music"):
        prompt_sets(broken)
    with pytest.raises(EmberError, match="cannot be read"):
        prompt_sets(tmp_path / "missing.json")
