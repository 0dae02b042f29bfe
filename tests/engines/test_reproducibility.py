"""Same seed, same output on one machine and backend; records say that much and no more."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engines.diffusion.requests import DiffusionOptions, ImageRequest
from engines.hardware import machine
from engines.jobs import EventKind
from engines.reproducibility import made_on, reproducibility
from engines.studio import Studio
from engines.text.prompt_cache import PromptCache
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling


def image(tiny_sd: Path, seed: int) -> ImageRequest:
    return ImageRequest(DiffusionOptions(str(tiny_sd)), "a red cat", seed=seed, steps=3, width=64, height=64)


def test_the_same_image_request_gives_the_same_pixels_first_and_later(studio: Studio, tiny_sd: Path) -> None:
    options = DiffusionOptions(str(tiny_sd))
    first = studio.engines.run("cpu", options, image(tiny_sd, 5)).output.images[0]
    other = studio.engines.run("cpu", options, image(tiny_sd, 6)).output.images[0]
    again = studio.engines.run("cpu", options, image(tiny_sd, 5)).output.images[0]
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    fresh = Studio()
    try:
        assert np.array_equal(fresh.engines.run("cpu", options, image(tiny_sd, 5)).output.images[0], first)
    finally:
        fresh.close()


def test_records_say_where_their_output_is_made_again(studio: Studio, smol: ModelOptions, tiny_sd: Path) -> None:
    chat = ChatRequest(smol, (Message("user", "Hi"),), sampling=Sampling(temperature=0.0, max_tokens=4))
    text = studio.submit(chat).wait(120)
    pictures = studio.submit(image(tiny_sd, 5)).wait(120)
    assert text is not None and text.kind is EventKind.RESULT
    assert pictures is not None and pictures.kind is EventKind.RESULT
    text_made = text.data.record.provenance.settings["made_on"]
    image_made = pictures.data.delivered[0].record.provenance.settings["made_on"]
    assert text_made["cpu"] == machine().cpu == image_made["cpu"]
    assert text_made["backend"] == "CPU" and text_made["kernels"].startswith("llama.cpp ")
    assert image_made["kernels"].startswith("onnxruntime ") and "ExecutionProvider" in image_made["kernels"]
    here = reproducibility(text.data.record.provenance.settings)
    assert here.startswith("Re-running with these settings and seed gives the same output on this machine")
    assert "on another CPU or backend it may differ" in here
    elsewhere = {"made_on": {**text_made, "cpu": "Some Other CPU"}}
    assert reproducibility(elsewhere).startswith("Made on another machine (Some Other CPU")
    assert "may give another output" in reproducibility(elsewhere)
    assert "does not say which machine" in reproducibility({})


def test_made_on_names_this_machine() -> None:
    made = made_on("CPU", "llama.cpp zen4 kernels")
    assert made["cpu"] == machine().cpu and made["backend"] == "CPU"


# -- the prompt cache's rules, on token lists (no model) ---------------------------------------------------
END = 0  # the end-of-turn token in these examples


def cache(block: int = 4) -> PromptCache:
    return PromptCache(block, lambda token: token == END)


def test_canonical_blocks_start_at_each_segment_and_end_at_its_end_of_turn() -> None:
    tokens = [5, 5, 5, 5, 5, 5, END, 7, 7, END, 9, 9, 9, 9, 9]
    assert cache().blocks(tokens) == [(0, 4), (4, 7), (7, 10), (10, 14), (14, 15)]
    assert cache().canonical_end(tokens) == 14  # the open segment's partial block is not reusable
    assert cache().canonical_end(tokens[:10]) == 10  # a closed turn is reusable to its end


def test_only_whole_blocks_are_reused_and_the_last_block_is_always_evaluated() -> None:
    c = cache()
    first = [5, 5, 5, 5, 5, 5, END, 7, 7]
    keep, blocks = c.plan(first)
    assert keep == 0 and blocks == c.blocks(first)
    c.evaluated(first)
    assert c.canonical == first[:7]
    # The same prompt again: everything but its last block is reused; the last block is evaluated as before.
    assert c.plan(first) == (7, [(7, 9)])
    # A prompt that differs inside the second block keeps only the first block.
    assert c.plan([5, 5, 5, 5, 5, 6, END])[0] == 4


def test_a_reply_is_made_canonical_in_idle_time_so_the_next_turn_reuses_it() -> None:
    c = cache()
    prompt = [5, 5, 5, 5, 5, END, 1, 1]
    c.plan(prompt)
    c.evaluated(prompt)
    assert c.canonical == prompt[:6]
    with_reply = [*prompt, 2, 2, 2, END]  # the reply and its end of turn
    c.generated(with_reply)
    done = []
    while (step := c.next_idle_block()) is not None:
        done.append(step[0])
        c.idle_block_done()
    assert done == [(6, 10), (10, 12)] and c.canonical == with_reply
    next_turn = [*with_reply, 3, 3, END, 1]
    assert c.plan(next_turn)[0] == len(with_reply)


def test_a_new_request_supersedes_pending_idle_work() -> None:
    c = cache()
    prompt = [5, 5, END, 1]
    c.plan(prompt)
    c.evaluated(prompt)
    c.generated([*prompt, 2, 2, 2, 2, 2])
    assert c.next_idle_block() is not None
    c.forget()
    c.evaluated([9, 9, END])
    assert c.next_idle_block() is None and c.canonical == [9, 9, END]


def test_a_settings_dict_without_made_on_is_not_promised_identity() -> None:
    record = replace(Sampling(), seed=1).as_dict()
    assert "does not say" in reproducibility(record)
