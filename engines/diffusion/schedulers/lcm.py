"""Latent Consistency Models (Luo et al. 2023): diffusers' LCMScheduler.

LCM-distilled models jump from any noise level straight to a clean estimate, so 2-8 steps
make an image. Between steps the estimate is noised again to the next (lower) timestep with
fresh noise from the run's NoiseSource, which makes the sampler stochastic: reproducible
from its seed in Ember, but not bit-equal to a torch run with the same seed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engines.diffusion.schedulers.scheduler import AlphaScheduler, NoiseSource, threshold_sample
from engines.errors import EmberError

_ONE = np.float32(1.0)


class LCMScheduler(AlphaScheduler):
    """Multistep consistency sampling, with diffusers' settings and defaults."""

    name = "lcm"
    diffusers_class = "LCMScheduler"
    stochastic = True
    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "original_inference_steps": 50,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "timestep_spacing": "leading",
        "timestep_scaling": 10.0,
        "rescale_betas_zero_snr": False,
    }

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.final_alpha_cumprod = _ONE if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]

    def _schedule(self, num_inference_steps: int) -> None:
        # The model was distilled on `original_inference_steps` evenly spaced timesteps; a run
        # takes an evenly spread subset of them, from the noisiest.
        original = int(self.config["original_inference_steps"])
        k = self.num_train_timesteps // original
        origin = np.asarray(list(range(1, original + 1))) * k - 1
        if num_inference_steps > original or len(origin) // num_inference_steps < 1:
            raise EmberError(
                f"The LCM sampler can take at most {original} steps with this model; "
                f"{num_inference_steps} were asked. Lower the number of steps."
            )
        origin = origin[::-1].copy()
        indices = np.floor(np.linspace(0, len(origin), num=num_inference_steps, endpoint=False)).astype(np.int64)
        self.all_timesteps = origin[indices].astype(np.int64)

    def _boundary_scalings(self, timestep: int) -> tuple[np.float32, np.float32]:
        """The consistency model's skip and output weights at ``timestep``."""
        sigma_data = 0.5
        scaled = np.float32(timestep) * np.float32(self.config["timestep_scaling"])
        c_skip = np.float32(sigma_data**2) / (scaled**2 + np.float32(sigma_data**2))
        c_out = scaled / np.sqrt(scaled**2 + np.float32(sigma_data**2))
        return c_skip, c_out

    def step(
        self, model_output: np.ndarray, timestep: float, sample: np.ndarray, noise: NoiseSource | None = None
    ) -> np.ndarray:
        """Return the clean estimate, re-noised to the next timestep (except at the last step).

        Draws one noise array from ``noise`` at every step but the last, as diffusers does.
        """
        t = int(timestep)
        nxt = self.step_index + 1
        prev_t = int(self.all_timesteps[nxt]) if nxt < len(self.all_timesteps) else t
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        beta_t, beta_prev = _ONE - a_t, _ONE - a_prev
        c_skip, c_out = self._boundary_scalings(t)
        if self.prediction_type == "epsilon":
            x0 = (sample - np.sqrt(beta_t) * model_output) / np.sqrt(a_t)
        elif self.prediction_type == "sample":
            x0 = model_output
        else:  # v_prediction
            x0 = np.sqrt(a_t) * sample - np.sqrt(beta_t) * model_output
        cfg = self.config
        if cfg["thresholding"]:
            x0 = threshold_sample(x0, cfg["dynamic_thresholding_ratio"], cfg["sample_max_value"])
        elif cfg["clip_sample"]:
            x0 = np.clip(x0, -cfg["clip_sample_range"], cfg["clip_sample_range"])
        denoised = c_out * x0 + c_skip * sample
        if self.step_index != self.num_inference_steps - 1:
            prev = np.sqrt(a_prev) * denoised + np.sqrt(beta_prev) * self._noise(noise, model_output.shape)
        else:
            prev = denoised
        self.pred_original_sample = denoised
        self.step_index += 1
        return prev.astype(np.float32)
