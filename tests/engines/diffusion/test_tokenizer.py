"""Ember's CLIP tokenizer gives transformers' CLIPTokenizer's ids (as diffusers uses it) from the folder's own files."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from engines.diffusion.tokenizer import ClipTokenizer, load_clip_tokenizer
from engines.errors import ModelFileError

transformers = pytest.importorskip("transformers")

PROMPTS = [
    "a photo of a cat",
    "",
    "  The   RED dog\tat\nnight  ",
    "İstanbul café naïve Ünïcödé ß",
    "東京の猫 と 犬, 猫猫",
    "emoji 🐱🔥 !!! ??? ...",
    "it's don't we'll I'm you're they've he'd",
    "a<|endoftext|>b",
    "A <|ENDOFTEXT|> b <|startoftext|>x",
    "aaaa tttt thethe catcat 1234567 3.14 -5e3",
    "x\u200by\u00a0z\u0085w\u2028v\x00u\ufffd\x1b[0m",
    "masterpiece, (best quality:1.2), [photo], {red}, <lora:x:0.5>",
    "word " * 100,
    "photo of the red cat, " * 20,
]


def _random_prompts(count: int) -> list[str]:
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ  ,.!?'-:;()[]0123456789éüñçøåß東京猫🐱\t\n"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90))) for _ in range(count)]


@pytest.fixture(scope="module", params=["sd/tokenizer", "turbo/tokenizer", "sdxl/tokenizer", "sdxl/tokenizer_2"])
def tokenizer_dir(request: pytest.FixtureRequest) -> Path:
    kind, folder = request.param.split("/")
    return request.getfixturevalue(f"tiny_{kind}") / folder


def test_ids_equal_transformers_on_varied_prompts(tokenizer_dir: Path) -> None:
    ours = ClipTokenizer.from_folder(tokenizer_dir)
    theirs = transformers.CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    assert ours.max_length == theirs.model_max_length == 77
    for prompt in PROMPTS + _random_prompts(300):
        expected = theirs(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        assert list(ours.encode(prompt).ids) == expected, repr(prompt)


def test_pad_token_is_the_one_the_config_names(tiny_sdxl: Path) -> None:
    first = ClipTokenizer.from_folder(tiny_sdxl / "tokenizer")
    second = ClipTokenizer.from_folder(tiny_sdxl / "tokenizer_2")
    assert first.pad_id == first.eos_id  # SD 1.x style: <|endoftext|>
    assert second.pad_id == second.vocab["!"] != second.eos_id  # SDXL's second tokenizer: "!"
    assert second.encode("a cat").ids[-1] == second.vocab["!"]


def test_long_prompt_is_cut_keeping_the_end_token_and_says_so(tiny_sd: Path) -> None:
    tokenizer = load_clip_tokenizer(tiny_sd / "tokenizer")
    short = tokenizer.encode("a photo of a cat")
    assert not short.truncated and short.dropped_text == ""
    long = tokenizer.encode("the red cat " * 40)
    assert len(long.ids) == 77
    assert long.ids[0] == tokenizer.bos_id and long.ids[-1] == tokenizer.eos_id
    assert long.truncated and long.truncated_tokens == len(tokenizer.tokenize("the red cat " * 40)) - 75
    assert "red cat" in long.dropped_text


def test_tokenizer_json_alone_gives_the_same_ids(tiny_sd: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tokenizer"
    shutil.copytree(tiny_sd / "tokenizer", folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = (folder / "merges.txt").read_text(encoding="utf-8").strip().split("\n")[1:]
    (folder / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": merges}}), encoding="utf-8"
    )
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    reference = ClipTokenizer.from_folder(tiny_sd / "tokenizer")
    alone = ClipTokenizer.from_folder(folder)
    for prompt in PROMPTS:
        assert alone.encode(prompt).ids == reference.encode(prompt).ids


def test_missing_tokenizer_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no tokenizer files"):
        ClipTokenizer.from_folder(tmp_path)
