"""DDIM (Song et al. 2021): diffusers' DDIMScheduler.

A deterministic (eta = 0) sampler on the alpha parameterisation: each step estimates the
clean latents and the noise, then re-mixes them at the next timestep's noise level. SD 2.x
model folders name it as their default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engines.diffusion.schedulers.scheduler import AlphaScheduler, NoiseSource, threshold_sample

_ONE = np.float32(1.0)


class DDIMScheduler(AlphaScheduler):
    """Denoising diffusion implicit models, with diffusers' settings and defaults.

    ``eta`` (default 0, as in diffusers' pipelines) above zero adds fresh noise at each step.
    """

    name = "ddim"
    diffusers_class = "DDIMScheduler"
    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "clip_sample": True,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0,
        "sample_max_value": 1.0,
        "timestep_spacing": "leading",
        "rescale_betas_zero_snr": False,
        "eta": 0.0,
    }

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        # The alpha "before" the first training step: 1 (no noise) or the first step's own.
        self.final_alpha_cumprod = _ONE if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        self.eta = float(self.config["eta"])
        self.stochastic = self.eta > 0  # type: ignore[misc]

    def _schedule(self, num_inference_steps: int) -> None:
        self.all_timesteps = self._spaced_timesteps(num_inference_steps, linspace_round=True).astype(np.int64)

    def step(
        self, model_output: np.ndarray, timestep: float, sample: np.ndarray, noise: NoiseSource | None = None
    ) -> np.ndarray:
        """Return the sample at the previous timestep (``timestep - 1000 // steps``).

        Draws noise from ``noise`` only when ``eta`` > 0.
        """
        t = int(timestep)
        prev_t = t - self.num_train_timesteps // self.num_inference_steps
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        beta_t = _ONE - a_t
        if self.prediction_type == "epsilon":
            x0 = (sample - np.sqrt(beta_t) * model_output) / np.sqrt(a_t)
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (sample - np.sqrt(a_t) * x0) / np.sqrt(beta_t)
        else:  # v_prediction
            x0 = np.sqrt(a_t) * sample - np.sqrt(beta_t) * model_output
            eps = np.sqrt(a_t) * model_output + np.sqrt(beta_t) * sample
        cfg = self.config
        if cfg["thresholding"]:
            x0 = threshold_sample(x0, cfg["dynamic_thresholding_ratio"], cfg["sample_max_value"])
        elif cfg["clip_sample"]:
            x0 = np.clip(x0, -cfg["clip_sample_range"], cfg["clip_sample_range"])
        variance = (_ONE - a_prev) / beta_t * (_ONE - a_t / a_prev)
        std = np.float32(self.eta) * np.sqrt(variance)
        direction = np.sqrt(_ONE - a_prev - std**2) * eps
        prev = np.sqrt(a_prev) * x0 + direction
        if self.eta > 0:
            prev = prev + std * self._noise(noise, model_output.shape)
        self.pred_original_sample = x0
        self.step_index += 1
        return prev.astype(np.float32)
