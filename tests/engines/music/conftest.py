"""The tiny MusicGen (tests/tools/tiny_musicgen.py) and transformers' own generation on it, for the music tests.

The models are built once per source version into ~/.cache/ember-tests/tiny-musicgen (or
$EMBER_TINY_MUSICGEN_CACHE); tests that use them skip where torch, transformers or optimum are missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# tiny_musicgen_checkpoint and tiny_musicgen_onnx are in tests/conftest.py (the enforcement test uses them too).


@pytest.fixture(scope="session")
def tiny_musicgen(tiny_musicgen_onnx: Path):
    """Ember's MusicGen on the tiny export, loaded once (CPU, one thread)."""
    from engines.music.musicgen import MusicGen

    engine = MusicGen(tiny_musicgen_onnx, threads=1)
    engine.load()
    return engine


class TransformersMusicGen:
    """transformers' ``MusicgenForConditionalGeneration.generate`` on the same tiny model: the reference.

    ``generate`` returns the codes transformers hands to EnCodec (caught on their way in) and
    the audio it returns.
    """

    def __init__(self, checkpoint: Path) -> None:
        import torch
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        self.torch = torch
        self.model = MusicgenForConditionalGeneration.from_pretrained(str(checkpoint)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.num_codebooks = self.model.decoder.num_codebooks
        self._caught: list[np.ndarray] = []
        decode = self.model.audio_encoder.decode

        def catching_decode(audio_codes, *args, **kwargs):
            self._caught.append(audio_codes[0, 0].numpy().copy())
            return decode(audio_codes, *args, **kwargs)

        self.model.audio_encoder.decode = catching_decode

    def input_ids(self, prompt: str) -> np.ndarray:
        return self.tokenizer([prompt], return_tensors="np", return_token_type_ids=False)["input_ids"]

    def generate(
        self, prompt: str, *, frames: int, guidance_scale: float, prompt_codes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Greedy codes (codebooks, prompt + frames) and mono audio for ``prompt``."""
        torch = self.torch
        inputs = self.tokenizer([prompt], return_tensors="pt", return_token_type_ids=False)
        extra = {}
        if prompt_codes is not None:
            extra["decoder_input_ids"] = torch.from_numpy(np.ascontiguousarray(prompt_codes, dtype=np.int64))
        self._caught.clear()
        with torch.no_grad():
            audio = self.model.generate(
                **inputs,
                do_sample=False,
                guidance_scale=guidance_scale,
                max_new_tokens=frames + self.num_codebooks - 1,
                **extra,
            )
        (codes,) = self._caught
        return codes, audio[0, 0].numpy()


@pytest.fixture(scope="session")
def transformers_musicgen(tiny_musicgen_checkpoint: Path) -> TransformersMusicGen:
    """transformers' MusicGen on the tiny checkpoint, for the equivalence tests."""
    return TransformersMusicGen(tiny_musicgen_checkpoint)
