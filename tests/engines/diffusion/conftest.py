"""Shared helpers for the diffusion tests: the same random numbers for diffusers and for Ember."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest


class RecordedNoise:
    """Standard-normal arrays drawn once and handed out again in the same order.

    diffusers' ``randn_tensor`` is patched to draw through :meth:`draw` (recording each
    array); :meth:`replay` then gives Ember a NoiseSource that returns the same arrays in the
    same order, checking that each has the shape diffusers asked for. So the stochastic
    samplers (Euler Ancestral, LCM) and the VAE's latent sampling see identical noise in both.
    """

    def __init__(self, seed: int = 1234) -> None:
        self.rng = np.random.default_rng(seed)
        self.arrays: list[np.ndarray] = []

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        array = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        self.arrays.append(array)
        return array

    def replay(self) -> _Replay:
        return _Replay(list(self.arrays))


class _Replay:
    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.used = 0

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        assert self.arrays, f"Ember drew more noise than diffusers did (shape {shape})"
        array = self.arrays.pop(0)
        assert array.shape == tuple(shape), f"noise draw {self.used}: diffusers drew {array.shape}, Ember {shape}"
        self.used += 1
        return array.copy()


_DIFFUSERS_CLASSES = (
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DDIMScheduler",
    "LCMScheduler",
)


@pytest.fixture
def recorded_noise(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordedNoise]:
    """A RecordedNoise that every diffusers module's ``randn_tensor`` draws from while the test runs."""
    import diffusers
    import torch

    # diffusers imports its modules lazily: load every one whose randn_tensor must be patched.
    for name in (*_DIFFUSERS_CLASSES, "AutoencoderKL"):
        getattr(diffusers, name)
    import diffusers.models.autoencoders.vae

    noise = RecordedNoise()

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):  # diffusers' signature
        return torch.from_numpy(noise.draw(tuple(shape)).copy()).to(dtype=dtype or torch.float32)

    for name, module in list(sys.modules.items()):
        if name.startswith("diffusers") and module is not None and hasattr(module, "randn_tensor"):
            monkeypatch.setattr(module, "randn_tensor", randn_tensor)
    yield noise
