"""Ember's MusicGen runner against transformers' own generation, on the tiny random-weight model."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engines.errors import Cancelled, ContextOverflowError, EmberError, ModelFileError
from engines.jobs import CancelToken
from engines.music.musicgen import (
    MAX_SECONDS,
    MusicGen,
    MusicSettings,
    apply_delay_pattern_mask,
    build_delay_pattern_mask,
    undelay,
)

PROMPT = "lo-fi hip hop beat with warm piano"
OTHER_PROMPT = "epic orchestral strings"
FRAMES_2S = 100  # the tiny EnCodec is 32 kHz with 640 samples a frame, as the real one: 50 frames a second
SAMPLES_PER_FRAME = 640
WAVEFORM_TOLERANCE = 1e-4


def greedy(seconds: float, guidance_scale: float) -> MusicSettings:
    return MusicSettings(seconds=seconds, guidance_scale=guidance_scale, greedy=True)


# -- the delay pattern --------------------------------------------------------------------------


@pytest.mark.parametrize("prompt_len", [0, 3])
@pytest.mark.parametrize("audio_channels", [1, 2])
def test_delay_pattern_is_transformers_own(prompt_len: int, audio_channels: int) -> None:
    torch = pytest.importorskip("torch")
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    num_codebooks = 4 * audio_channels
    config = MusicgenDecoderConfig(
        vocab_size=16,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=8,
        num_codebooks=num_codebooks,
        audio_channels=audio_channels,
        pad_token_id=16,
        bos_token_id=16,
    )
    decoder = MusicgenForCausalLM(config)
    rng = np.random.default_rng(0)
    batch, max_length = 2, prompt_len + 10
    ids = np.concatenate(
        [np.full((batch * num_codebooks, 1), 16), rng.integers(0, 16, (batch * num_codebooks, prompt_len))], axis=1
    )
    want_ids, want_mask = decoder.build_delay_pattern_mask(
        torch.from_numpy(ids), pad_token_id=16, max_length=max_length
    )
    got_ids, got_mask = build_delay_pattern_mask(ids, 16, max_length, num_codebooks, audio_channels)
    np.testing.assert_array_equal(got_ids, want_ids.numpy())
    np.testing.assert_array_equal(got_mask, want_mask.numpy())

    generated = rng.integers(0, 16, (batch * num_codebooks, max_length))
    want = decoder.apply_delay_pattern_mask(torch.from_numpy(generated), want_mask).numpy()
    np.testing.assert_array_equal(apply_delay_pattern_mask(generated, got_mask), want)


def test_undelay_reads_each_codebook_k_frames_late() -> None:
    codes = np.arange(12).reshape(4, 3)
    start = 99
    _, pattern = build_delay_pattern_mask(np.full((4, 1), start), start, 3 + 4, 4)
    delayed = apply_delay_pattern_mask(np.zeros((4, 7), dtype=np.int64), pattern)
    for k in range(4):
        delayed[k, k + 1 : k + 4] = codes[k]
    np.testing.assert_array_equal(undelay(delayed, 4, 3), codes)
    # what transformers does instead: drop the pads
    np.testing.assert_array_equal(delayed[delayed != start].reshape(4, 3), codes)


# -- equivalence with transformers -----------------------------------------------------------------


def test_tokenizer_gives_transformers_ids(tiny_musicgen: MusicGen, transformers_musicgen) -> None:
    for prompt in (PROMPT, "Jazz  piano, 90s!", ""):
        np.testing.assert_array_equal(tiny_musicgen.tokenize(prompt), transformers_musicgen.input_ids(prompt))


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0], ids=["no-guidance", "guidance-3"])
def test_greedy_codes_and_audio_equal_transformers(
    tiny_musicgen: MusicGen, transformers_musicgen, guidance_scale: float
) -> None:
    want_codes, want_audio = transformers_musicgen.generate(PROMPT, frames=FRAMES_2S, guidance_scale=guidance_scale)

    result = tiny_musicgen.generate(PROMPT, greedy(2.0, guidance_scale))

    assert result.codes.dtype == np.int64
    assert result.codes.shape == (4, FRAMES_2S)
    np.testing.assert_array_equal(result.codes, want_codes)
    assert result.sample_rate == 32000
    assert result.audio.dtype == np.float32
    assert result.audio.shape == want_audio.shape == (FRAMES_2S * SAMPLES_PER_FRAME,)
    assert float(np.abs(result.audio - want_audio).max()) < WAVEFORM_TOLERANCE
    assert result.windows == 1


def test_guidance_and_prompt_change_the_music(tiny_musicgen: MusicGen) -> None:
    # Without this, the equivalence above could pass on a model that ignores its conditioning.
    plain = tiny_musicgen.generate(PROMPT, greedy(1.0, 1.0))
    guided = tiny_musicgen.generate(PROMPT, greedy(1.0, 3.0))
    other = tiny_musicgen.generate(OTHER_PROMPT, greedy(1.0, 3.0))
    assert (plain.codes != guided.codes).mean() > 0.2
    assert (guided.codes != other.codes).mean() > 0.2
    # and EnCodec's output depends on the codes
    assert float(np.abs(plain.audio - guided.audio).max()) > 100 * WAVEFORM_TOLERANCE


def test_window_primed_with_codes_equals_transformers_decoder_prompt(
    tiny_musicgen: MusicGen, transformers_musicgen
) -> None:
    rng = np.random.default_rng(3)
    prompt_codes = rng.integers(0, tiny_musicgen.config.codebook_size, (4, 7))
    want_codes, _ = transformers_musicgen.generate(PROMPT, frames=20, guidance_scale=3.0, prompt_codes=prompt_codes)

    states, mask = tiny_musicgen.encode_text(tiny_musicgen.tokenize(PROMPT))
    got = tiny_musicgen.generate_codes(states, mask, 20, greedy(1.0, 3.0), prompt_codes=prompt_codes)

    assert got.shape == (4, 27)
    np.testing.assert_array_equal(got[:, :7], prompt_codes)
    np.testing.assert_array_equal(got, want_codes)


def test_long_piece_continues_each_window_from_the_last(tiny_musicgen_onnx: Path, transformers_musicgen) -> None:
    # Windows of 1 s with a 0.6 s stride: each next window is primed with the last 0.4 s (20 frames).
    engine = MusicGen(tiny_musicgen_onnx, window_s=1.0, extend_stride_s=0.6)
    assert [(w.context, w.frames) for w in engine.plan(2.0)] == [(0, 50), (20, 30), (20, 20)]

    result = engine.generate(PROMPT, greedy(2.0, 3.0))

    made, _ = transformers_musicgen.generate(PROMPT, frames=50, guidance_scale=3.0)
    for frames in (30, 20):
        window, _ = transformers_musicgen.generate(
            PROMPT, frames=frames, guidance_scale=3.0, prompt_codes=made[:, -20:]
        )
        made = np.concatenate([made, window[:, 20:]], axis=1)
    assert result.windows == 3
    np.testing.assert_array_equal(result.codes, made)
    assert result.audio.shape == (FRAMES_2S * SAMPLES_PER_FRAME,)


# -- sampling ---------------------------------------------------------------------------------------


def test_sampling_with_a_seed_is_repeatable_and_another_seed_differs(tiny_musicgen: MusicGen) -> None:
    settings = MusicSettings(seconds=1.0, guidance_scale=3.0, temperature=1.2, top_k=20, top_p=0.9, seed=7)
    first = tiny_musicgen.generate(PROMPT, settings)
    again = tiny_musicgen.generate(PROMPT, settings)
    other = tiny_musicgen.generate(PROMPT, replace(settings, seed=8))
    np.testing.assert_array_equal(first.codes, again.codes)
    np.testing.assert_array_equal(first.audio, again.audio)
    assert (first.codes != other.codes).mean() > 0.2


def test_sampling_keeps_only_the_top_codes(tiny_musicgen: MusicGen) -> None:
    want = tiny_musicgen.generate(PROMPT, greedy(1.0, 3.0)).codes
    top_one = tiny_musicgen.generate(PROMPT, MusicSettings(seconds=1.0, top_k=1, seed=5)).codes
    tiny_nucleus = tiny_musicgen.generate(PROMPT, MusicSettings(seconds=1.0, top_k=0, top_p=1e-6, seed=5)).codes
    np.testing.assert_array_equal(top_one, want)
    np.testing.assert_array_equal(tiny_nucleus, want)


# -- progress and cancel ------------------------------------------------------------------------


def test_progress_is_reported_once_per_decoder_step(tiny_musicgen: MusicGen) -> None:
    calls: list[tuple[int, int]] = []
    result = tiny_musicgen.generate(PROMPT, greedy(1.0, 3.0), progress=lambda done, total: calls.append((done, total)))
    steps = 50 + 4 - 1  # one a frame, and the delay's three extra steps for the last codebooks
    assert tiny_musicgen.total_steps(1.0) == steps
    assert calls == [(i, steps) for i in range(1, steps + 1)]
    assert result.timings.frames == 50
    assert result.timings.steps == steps
    assert result.timings.frames_per_s > 0
    assert result.timings.total_s >= result.timings.decode_s > 0


def test_cancel_stops_between_frames(tiny_musicgen: MusicGen) -> None:
    checks = 0

    def cancel() -> bool:
        nonlocal checks
        checks += 1
        return checks > 5

    steps: list[int] = []
    with pytest.raises(Cancelled):
        tiny_musicgen.generate(PROMPT, greedy(1.0, 3.0), progress=lambda done, total: steps.append(done), cancel=cancel)
    assert steps == [1, 2, 3, 4, 5]


def test_cancel_token_stops_the_next_frame(tiny_musicgen: MusicGen) -> None:
    token = CancelToken()
    steps: list[int] = []

    def progress(done: int, total: int) -> None:
        steps.append(done)
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        tiny_musicgen.generate(PROMPT, greedy(1.0, 1.0), progress=progress, cancel=token.raise_if_cancelled)
    assert steps == [1, 2, 3]


# -- errors a person reads -----------------------------------------------------------------------


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "musicgen"
    shutil.copytree(folder, target)
    return target


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"no config\.json"):
        MusicGen(tmp_path)


def test_another_architecture_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ModelFileError, match="'t5' model, not MusicGen"):
        MusicGen(tmp_path)


def test_a_missing_graph_is_named(tiny_musicgen_onnx: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_musicgen_onnx, tmp_path)
    (folder / "decoder_with_past_model.onnx").unlink()
    with pytest.raises(ModelFileError, match=r"decoder_with_past_model\.onnx missing"):
        MusicGen(folder)


def test_a_graph_with_the_wrong_inputs_is_refused(tiny_musicgen_onnx: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_musicgen_onnx, tmp_path)
    shutil.copy2(folder / "text_encoder.onnx", folder / "encodec_decode.onnx")
    engine = MusicGen(folder)
    with pytest.raises(ModelFileError, match="no 'audio_codes' input"):
        engine.load()


def test_a_prompt_longer_than_the_encoder_takes_is_refused(tiny_musicgen: MusicGen) -> None:
    limit = tiny_musicgen.config.max_prompt_tokens
    with pytest.raises(ContextOverflowError, match=f"at most {limit}"):
        tiny_musicgen.generate("piano " * limit, greedy(1.0, 1.0))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (MusicSettings(seconds=0), "positive number of seconds"),
        (MusicSettings(seconds=-2), "positive number of seconds"),
        (MusicSettings(seconds=math.nan), "positive number of seconds"),
        (MusicSettings(seconds=MAX_SECONDS + 1), "longer than Ember makes"),
        (MusicSettings(guidance_scale=0.5), "guidance scale must be 1 or more"),
        (MusicSettings(temperature=0), "temperature must be above 0"),
        (MusicSettings(top_k=-1), "top-k"),
        (MusicSettings(top_p=0), "top-p"),
    ],
)
def test_settings_out_of_range_are_refused(tiny_musicgen: MusicGen, settings: MusicSettings, message: str) -> None:
    with pytest.raises(EmberError, match=message):
        tiny_musicgen.generate(PROMPT, settings)
