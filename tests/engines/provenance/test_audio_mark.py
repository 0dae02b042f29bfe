"""The audio watermark on speech-like clips at piper's 22.05 kHz, through the attacks a shared clip meets."""

from __future__ import annotations

import numpy as np
import pytest

from engines.benchmarks.file_provenance import SPEECH_RATE, attacks, synthetic_speech
from engines.provenance.audio_mark import P_THRESHOLD, detect, embed, mark_snr_db
from engines.provenance.keys import key_from_secret

KEY = key_from_secret(b"\x03" * 32).derive("audio-watermark")
OTHER_KEY = key_from_secret(b"\x04" * 32).derive("audio-watermark")
PAYLOAD = int("9f86d081", 16)  # the first 32 bits of an output id
ATTACKS = ["none", "resample_16k", "pcm16", "noise_30db", "all_three", "crop_0.5s"]


@pytest.fixture(scope="module", params=[2.0, 6.0], ids=["2s", "6s"])
def clip(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """(speech, the same speech marked with PAYLOAD under KEY)."""
    speech = synthetic_speech(request.param, SPEECH_RATE, seed=int(request.param * 10))
    return speech, embed(speech, SPEECH_RATE, PAYLOAD, KEY)


@pytest.fixture(scope="module")
def attacked(clip: tuple[np.ndarray, np.ndarray]) -> dict[str, tuple[np.ndarray, int]]:
    return attacks(clip[1], SPEECH_RATE, seed=7)


def test_marked_clip_keeps_rate_length_and_type(clip: tuple[np.ndarray, np.ndarray]) -> None:
    speech, marked = clip
    assert marked.dtype == np.float32 and marked.shape == speech.shape
    assert np.abs(marked).max() <= 1.0


def test_mark_is_at_least_30_db_below_the_speech(clip: tuple[np.ndarray, np.ndarray]) -> None:
    speech, marked = clip
    assert mark_snr_db(speech, marked) >= 30.0


def test_mark_follows_the_speech_envelope(clip: tuple[np.ndarray, np.ndarray]) -> None:
    speech, marked = clip
    frame = SPEECH_RATE // 20  # 50 ms
    count = len(speech) // frame
    signal = (speech[: count * frame].astype(np.float64).reshape(count, frame) ** 2).mean(axis=1)
    mark = ((marked - speech)[: count * frame].astype(np.float64).reshape(count, frame) ** 2).mean(axis=1)
    loud = signal > 1e-3 * signal.max()
    # Where there is speech the mark stays well under it; in the pauses there is (next to) none.
    assert np.all(mark[loud] <= signal[loud] * 10 ** (-12 / 10))
    assert np.all(mark[~loud] <= 1e-3 * signal.max() * 10 ** (-12 / 10))


@pytest.mark.parametrize("attack", ATTACKS)
def test_payload_reads_back_after_each_attack(attacked: dict[str, tuple[np.ndarray, int]], attack: str) -> None:
    samples, rate = attacked[attack]
    result = detect(samples, rate, KEY)
    assert result.found, f"{attack}: p={result.p_value:.2g}"
    assert result.payload == PAYLOAD
    assert result.p_value <= P_THRESHOLD


def test_payload_reads_back_after_scipy_resampling(clip: tuple[np.ndarray, np.ndarray]) -> None:
    signal = pytest.importorskip("scipy.signal")
    low = signal.resample_poly(clip[1].astype(np.float64), 320, 441)  # 22050 -> 16000 Hz
    result = detect(low, 16_000, KEY)
    assert result.found and result.payload == PAYLOAD


def test_crop_is_found_at_its_offset(attacked: dict[str, tuple[np.ndarray, int]]) -> None:
    samples, rate = attacked["crop_0.5s"]
    result = detect(samples, rate, KEY)
    # The grid of the mark starts every 64 ms; 0.5 s in, the next block starts 12 ms into the cut clip.
    assert result.offset_s == pytest.approx(0.012, abs=0.003)


def test_unmarked_speech_is_not_detected() -> None:
    for seed in range(6):
        result = detect(synthetic_speech(2.0 + seed, SPEECH_RATE, seed=300 + seed), SPEECH_RATE, KEY)
        assert not result.found and result.payload is None
        assert result.p_value > 1e-3  # corrected for every alignment tried, so it is conservative


def test_wrong_key_does_not_detect(attacked: dict[str, tuple[np.ndarray, int]]) -> None:
    for attack in ("none", "all_three"):
        samples, rate = attacked[attack]
        result = detect(samples, rate, OTHER_KEY)
        assert not result.found and result.p_value > 1e-3


def test_forty_other_keys_find_nothing_in_a_marked_clip() -> None:
    marked = embed(synthetic_speech(3.0, SPEECH_RATE, seed=21), SPEECH_RATE, PAYLOAD, KEY)
    p_values = [
        detect(marked, SPEECH_RATE, key_from_secret(bytes([i]) * 32).derive("audio-watermark")).p_value
        for i in range(10, 50)
    ]
    assert min(p_values) > 1e-4


def test_noise_silence_and_tones_are_not_detected() -> None:
    rng = np.random.default_rng(0)
    n = 3 * SPEECH_RATE
    t = np.arange(n) / SPEECH_RATE
    for samples in (
        np.zeros(n),
        0.1 * rng.standard_normal(n),
        0.3 * np.sin(2 * np.pi * 440 * t),
        (np.arange(n) % 2205 == 0) * 0.5,
    ):
        assert not detect(samples, SPEECH_RATE, KEY).found


def test_two_payloads_in_the_same_speech_read_apart() -> None:
    speech = synthetic_speech(3.0, SPEECH_RATE, seed=11)
    for payload in (0, 2**32 - 1, 0x12345678):
        assert detect(embed(speech, SPEECH_RATE, payload, KEY), SPEECH_RATE, KEY).payload == payload


def test_payload_wider_than_32_bits_is_refused() -> None:
    with pytest.raises(ValueError):
        embed(synthetic_speech(1.0), SPEECH_RATE, 2**32, KEY)


def test_silent_and_tiny_clips_come_back_unchanged() -> None:
    for samples in (np.zeros(SPEECH_RATE, dtype=np.float32), np.zeros(100, dtype=np.float32)):
        marked = embed(samples, SPEECH_RATE, PAYLOAD, KEY)
        assert np.array_equal(marked, samples)
        assert not detect(marked, SPEECH_RATE, KEY).found


def test_resampling_gives_the_exact_length_at_common_rates_and_stays_small_at_odd_ones() -> None:
    # Found by bench fuzz: padding to a multiple of an odd rate (a WAV header may claim 4,294,967,291 Hz)
    # asked for gigabytes; such rates keep the clip's own length.
    from engines.provenance.audio_mark import resample

    x = np.random.default_rng(0).standard_normal(44_101)
    assert len(resample(x, 44_100, 16_000)) == round(44_101 * 16_000 / 44_100)
    assert len(resample(x, 16_000, 44_100)) == round(44_101 * 44_100 / 16_000)
    for odd in (3_999, 4_294_967_291):
        assert len(resample(x[:5000], odd, 16_000)) == max(1, round(5000 * 16_000 / odd))
