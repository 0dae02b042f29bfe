"""Euler (Karras et al. 2022, Algorithm 2 without churn): diffusers' EulerDiscreteScheduler.

The default sampler of SD 1.x front ends and of SDXL and SD-Turbo model folders: one UNet call
a step, deterministic. The sample lives at noise level sigma; each step follows the
denoising direction ``(x - x0) / sigma`` down to the next sigma.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engines.diffusion.schedulers.scheduler import (
    NoiseSource,
    SigmaScheduler,
    UnsupportedSchedulerSetting,
    karras_sigmas,
    sigma_to_t,
)


class EulerDiscreteScheduler(SigmaScheduler):
    """Euler's method on the probability-flow ODE, with diffusers' settings and defaults."""

    name = "euler"
    diffusers_class = "EulerDiscreteScheduler"
    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "prediction_type": "epsilon",
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "sigma_min": None,
        "sigma_max": None,
        "timestep_spacing": "linspace",
        "timestep_type": "discrete",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
        "final_sigmas_type": "zero",
    }

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        for key in ("use_exponential_sigmas", "use_beta_sigmas"):
            if self.config[key]:
                raise UnsupportedSchedulerSetting(f"Ember's Euler sampler does not implement '{key}'.")
        if self.config["interpolation_type"] != "linear":
            raise UnsupportedSchedulerSetting(
                f"Ember's Euler sampler does not implement interpolation '{self.config['interpolation_type']}'."
            )
        if self.config["timestep_type"] == "continuous" and self.prediction_type == "v_prediction":
            raise UnsupportedSchedulerSetting("Ember's Euler sampler does not implement continuous timesteps.")
        if self.config["rescale_betas_zero_snr"]:
            # Zero terminal SNR makes the last sigma infinite; diffusers keeps it finite this way.
            self.alphas_cumprod[-1] = np.float32(2**-24)

    def _schedule(self, num_inference_steps: int) -> None:
        timesteps = self._spaced_timesteps(num_inference_steps, linspace_round=False).astype(np.float32)
        train_sigmas = self._train_sigmas()
        log_sigmas = np.log(train_sigmas)
        sigmas = np.interp(timesteps, np.arange(len(train_sigmas)), train_sigmas)
        if self.config["use_karras_sigmas"]:
            low = self.config["sigma_min"] if self.config["sigma_min"] is not None else float(sigmas[-1])
            high = self.config["sigma_max"] if self.config["sigma_max"] is not None else float(sigmas[0])
            sigmas = karras_sigmas(low, high, num_inference_steps)
            timesteps = sigma_to_t(sigmas, log_sigmas)
        last = self._final_sigma()
        self.sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)
        self.all_timesteps = timesteps.astype(np.float32)

    def _final_sigma(self) -> float:
        kind = self.config["final_sigmas_type"]
        if kind == "zero":
            return 0.0
        if kind == "sigma_min":
            a = self.alphas_cumprod[0]
            return float(np.sqrt((np.float32(1) - a) / a))
        raise UnsupportedSchedulerSetting(f"Unknown final_sigmas_type '{kind}' in the scheduler config.")

    def step(
        self, model_output: np.ndarray, timestep: float, sample: np.ndarray, noise: NoiseSource | None = None
    ) -> np.ndarray:
        """Return the sample one Euler step on, at the next sigma (``noise`` is not used)."""
        sigma = self.sigmas[self.step_index]
        sample = sample.astype(np.float32, copy=False)
        x0 = self._predict_original(model_output, sample, sigma)
        derivative = (sample - x0) / sigma
        dt = self.sigmas[self.step_index + 1] - sigma
        self.pred_original_sample = x0
        self.step_index += 1
        return (sample + derivative * dt).astype(np.float32)
