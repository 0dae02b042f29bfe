"""Euler Ancestral: diffusers' EulerAncestralDiscreteScheduler ("Euler a").

Each step goes a little further down than the next noise level (to ``sigma_down``) and then
adds fresh noise back up to it (``sigma_up``). That fresh noise makes it stochastic: it comes
from the run's NoiseSource, one draw a step, so an image is reproducible from its seed in Ember
but not bit-equal to a torch run with the same seed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engines.diffusion.schedulers.scheduler import NoiseSource, SigmaScheduler


class EulerAncestralDiscreteScheduler(SigmaScheduler):
    """Ancestral sampling with Euler steps, with diffusers' settings and defaults."""

    name = "euler_a"
    diffusers_class = "EulerAncestralDiscreteScheduler"
    stochastic = True
    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "prediction_type": "epsilon",
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if self.config["rescale_betas_zero_snr"]:
            self.alphas_cumprod[-1] = np.float32(2**-24)

    def _schedule(self, num_inference_steps: int) -> None:
        timesteps = self._spaced_timesteps(num_inference_steps, linspace_round=False).astype(np.float32)
        train_sigmas = self._train_sigmas()
        sigmas = np.interp(timesteps, np.arange(len(train_sigmas)), train_sigmas)
        self.sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.all_timesteps = timesteps

    def step(
        self, model_output: np.ndarray, timestep: float, sample: np.ndarray, noise: NoiseSource | None = None
    ) -> np.ndarray:
        """Return the next sample: an Euler step down to ``sigma_down``, plus fresh noise of ``sigma_up``.

        Draws one noise array of the sample's shape from ``noise`` at every step (the last too,
        where its weight is zero), as diffusers does.
        """
        sigma_from = self.sigmas[self.step_index]
        sigma_to = self.sigmas[self.step_index + 1]
        sample = sample.astype(np.float32, copy=False)
        x0 = self._predict_original(model_output, sample, sigma_from)
        sigma_up = np.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2)
        sigma_down = np.sqrt(sigma_to**2 - sigma_up**2)
        derivative = (sample - x0) / sigma_from
        prev = sample + derivative * (sigma_down - sigma_from)
        prev = prev + self._noise(noise, model_output.shape) * sigma_up
        self.pred_original_sample = x0
        self.step_index += 1
        return prev.astype(np.float32)
