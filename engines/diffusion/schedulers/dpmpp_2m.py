"""DPM-Solver++ multistep (Lu et al. 2022): diffusers' DPMSolverMultistepScheduler.

"DPM++ 2M" is its second-order, midpoint form; "DPM++ 2M Karras" the same on Karras et al.'s
noise levels, which spend more steps at low noise. It is a multistep method: each step
combines the model's clean-image estimate now with the one from the step before, so it gets
good images in 15-25 steps. Deterministic.

Implemented: algorithm "dpmsolver++", orders 1-3, midpoint and heun, Karras sigmas,
``lower_order_final``/``euler_at_final``, ``final_sigmas_type``, ``lambda_min_clipped``,
thresholding. A model config naming the older "dpmsolver" or the SDE variants runs as
"dpmsolver++" (the nearest deterministic solver); Lu lambdas, exponential, beta and flow
sigmas are refused.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engines.diffusion.schedulers.scheduler import (
    AlphaScheduler,
    NoiseSource,
    UnsupportedSchedulerSetting,
    karras_sigmas,
    sigma_to_t,
    threshold_sample,
)

_ONE = np.float32(1.0)


def _alpha_sigma(sigma: np.float32) -> tuple[np.float32, np.float32]:
    """The sample's signal and noise weights at noise level ``sigma`` (x = alpha x0 + sigma_t eps)."""
    alpha_t = _ONE / np.sqrt(sigma**2 + _ONE)
    return alpha_t, sigma * alpha_t


def _lambda(alpha_t: np.float32, sigma_t: np.float32) -> np.float32:
    """Half the log signal-to-noise ratio, the solver's time variable."""
    return np.log(alpha_t) - np.log(sigma_t)


class DPMSolverMultistepScheduler(AlphaScheduler):
    """DPM-Solver++ (multistep), with diffusers' settings and defaults."""

    name = "dpmpp_2m"
    diffusers_class = "DPMSolverMultistepScheduler"
    defaults: ClassVar[dict[str, Any]] = {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "trained_betas": None,
        "solver_order": 2,
        "prediction_type": "epsilon",
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_lu_lambdas": False,
        "use_flow_sigmas": False,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -float("inf"),
        "variance_type": None,
        "timestep_spacing": "linspace",
        "steps_offset": 0,
        "rescale_betas_zero_snr": False,
    }

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        for key in ("use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas"):
            if self.config[key]:
                raise UnsupportedSchedulerSetting(f"Ember's DPM-Solver++ sampler does not implement '{key}'.")
        if self.config["solver_type"] not in ("midpoint", "heun"):
            self.config["solver_type"] = "midpoint"  # diffusers maps the other names to midpoint too
        self.config["algorithm_type"] = "dpmsolver++"
        self.order = max(1, min(3, int(self.config["solver_order"])))
        karras = "_karras" if self.config["use_karras_sigmas"] else ""
        self.name = f"dpmpp_{self.order}m{karras}"  # type: ignore[misc]
        if self.config["rescale_betas_zero_snr"]:
            self.alphas_cumprod[-1] = np.float32(2**-24)
        alpha_t = np.sqrt(self.alphas_cumprod)
        sigma_t = np.sqrt(_ONE - self.alphas_cumprod)
        self.lambda_t = (np.log(alpha_t) - np.log(sigma_t)).astype(np.float32)
        self._reset_state()

    def _reset_state(self) -> None:
        self.model_outputs: list[np.ndarray | None] = [None] * self.order
        self.lower_order_nums = 0

    def _schedule(self, num_inference_steps: int) -> None:
        n = num_inference_steps
        train = self.num_train_timesteps
        clipped = int(np.searchsorted(self.lambda_t[::-1], np.float32(self.config["lambda_min_clipped"])))
        last = train - clipped
        spacing = self.config["timestep_spacing"]
        if spacing == "linspace":
            timesteps = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        elif spacing == "leading":
            ratio = last // (n + 1)
            timesteps = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64)
            timesteps += self.config["steps_offset"]
        elif spacing == "trailing":
            timesteps = np.arange(last, 0, -train / n).round().copy().astype(np.int64) - 1
        else:
            raise UnsupportedSchedulerSetting(f"Unknown timestep spacing '{spacing}' in the scheduler config.")
        ac = self.alphas_cumprod
        train_sigmas = np.sqrt((_ONE - ac) / ac).astype(np.float32)
        log_sigmas = np.log(train_sigmas)
        if self.config["use_karras_sigmas"]:
            flipped = train_sigmas[::-1].copy()
            sigmas = karras_sigmas(float(flipped[-1]), float(flipped[0]), n)
            t = sigma_to_t(sigmas, log_sigmas)
            if self.config["beta_schedule"] != "squaredcos_cap_v2":
                t = t.round()
            timesteps = t.astype(np.int64)
        else:
            sigmas = np.interp(timesteps, np.arange(len(train_sigmas)), train_sigmas)
        kind = self.config["final_sigmas_type"]
        if kind == "zero":
            final = 0.0
        elif kind == "sigma_min":
            final = float(np.sqrt((_ONE - ac[0]) / ac[0]))
        else:
            raise UnsupportedSchedulerSetting(f"Unknown final_sigmas_type '{kind}' in the scheduler config.")
        self.sigmas = np.concatenate([sigmas, [final]]).astype(np.float32)
        self.all_timesteps = timesteps
        self.num_inference_steps = len(timesteps)

    def _clean_estimate(self, model_output: np.ndarray, sample: np.ndarray) -> np.ndarray:
        """The model's estimate of the clean latents (DPM-Solver++ works on those)."""
        if self.prediction_type == "sample":
            x0 = model_output
        else:
            alpha_t, sigma_t = _alpha_sigma(self.sigmas[self.step_index])
            if self.prediction_type == "epsilon":
                x0 = (sample - sigma_t * model_output) / alpha_t
            else:  # v_prediction
                x0 = alpha_t * sample - sigma_t * model_output
        if self.config["thresholding"]:
            x0 = threshold_sample(x0, self.config["dynamic_thresholding_ratio"], self.config["sample_max_value"])
        return x0

    def step(
        self, model_output: np.ndarray, timestep: float, sample: np.ndarray, noise: NoiseSource | None = None
    ) -> np.ndarray:
        """Return the next sample from this and the previous steps' clean estimates (``noise`` unused).

        The first step is first order (there is no earlier estimate yet), and so are the last
        steps of short runs, which keeps them stable.
        """
        total = len(self.all_timesteps)
        i = self.step_index
        cfg = self.config
        lower_order_final = i == total - 1 and (
            cfg["euler_at_final"] or (cfg["lower_order_final"] and total < 15) or cfg["final_sigmas_type"] == "zero"
        )
        lower_order_second = i == total - 2 and cfg["lower_order_final"] and total < 15

        x0 = self._clean_estimate(model_output, sample)
        self.model_outputs = [*self.model_outputs[1:], x0]
        sample = sample.astype(np.float32, copy=False)
        # The last sigma is 0: its log-SNR is +inf and exp(-inf) = 0 is the intended limit.
        with np.errstate(divide="ignore"):
            if self.order == 1 or self.lower_order_nums < 1 or lower_order_final:
                prev = self._first_order(x0, sample)
            elif self.order == 2 or self.lower_order_nums < 2 or lower_order_second:
                prev = self._second_order(sample)
            else:
                prev = self._third_order(sample)
        if self.lower_order_nums < self.order:
            self.lower_order_nums += 1
        self.pred_original_sample = x0
        self.step_index += 1
        return prev.astype(np.float32)

    def _first_order(self, x0: np.ndarray, sample: np.ndarray) -> np.ndarray:
        # DPM-Solver++(1) is DDIM in the log-SNR variable.
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[self.step_index + 1])
        alpha_s, sigma_s = _alpha_sigma(self.sigmas[self.step_index])
        h = _lambda(alpha_t, sigma_t) - _lambda(alpha_s, sigma_s)
        return sigma_t / sigma_s * sample - alpha_t * (np.exp(-h) - _ONE) * x0

    def _second_order(self, sample: np.ndarray) -> np.ndarray:
        i = self.step_index
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[i + 1])
        alpha_s0, sigma_s0 = _alpha_sigma(self.sigmas[i])
        alpha_s1, sigma_s1 = _alpha_sigma(self.sigmas[i - 1])
        lambda_t, lambda_s0, lambda_s1 = (
            _lambda(alpha_t, sigma_t),
            _lambda(alpha_s0, sigma_s0),
            _lambda(alpha_s1, sigma_s1),
        )
        m0, m1 = self.model_outputs[-1], self.model_outputs[-2]
        h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
        r0 = h_0 / h
        d0, d1 = m0, _ONE / r0 * (m0 - m1)
        if self.config["solver_type"] == "midpoint":
            return (
                sigma_t / sigma_s0 * sample
                - alpha_t * (np.exp(-h) - _ONE) * d0
                - np.float32(0.5) * (alpha_t * (np.exp(-h) - _ONE)) * d1
            )
        return (
            sigma_t / sigma_s0 * sample
            - alpha_t * (np.exp(-h) - _ONE) * d0
            + alpha_t * ((np.exp(-h) - _ONE) / h + _ONE) * d1
        )

    def _third_order(self, sample: np.ndarray) -> np.ndarray:
        i = self.step_index
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[i + 1])
        alpha_s0, sigma_s0 = _alpha_sigma(self.sigmas[i])
        alpha_s1, sigma_s1 = _alpha_sigma(self.sigmas[i - 1])
        alpha_s2, sigma_s2 = _alpha_sigma(self.sigmas[i - 2])
        lambda_t = _lambda(alpha_t, sigma_t)
        lambda_s0, lambda_s1, lambda_s2 = (
            _lambda(alpha_s0, sigma_s0),
            _lambda(alpha_s1, sigma_s1),
            _lambda(alpha_s2, sigma_s2),
        )
        m0, m1, m2 = self.model_outputs[-1], self.model_outputs[-2], self.model_outputs[-3]
        h, h_0, h_1 = lambda_t - lambda_s0, lambda_s0 - lambda_s1, lambda_s1 - lambda_s2
        r0, r1 = h_0 / h, h_1 / h
        d1_0, d1_1 = _ONE / r0 * (m0 - m1), _ONE / r1 * (m1 - m2)
        d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
        d2 = _ONE / (r0 + r1) * (d1_0 - d1_1)
        return (
            sigma_t / sigma_s0 * sample
            - alpha_t * (np.exp(-h) - _ONE) * m0
            + alpha_t * ((np.exp(-h) - _ONE) / h + _ONE) * d1
            - alpha_t * ((np.exp(-h) - _ONE + h) / h**2 - np.float32(0.5)) * d2
        )

    def add_noise(self, original: np.ndarray, noise: np.ndarray, timestep: float) -> np.ndarray:
        """Return the img2img start: ``alpha * original + sigma_t * noise`` at the run's first sigma."""
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[self.begin_index])
        return (alpha_t * original + sigma_t * noise).astype(np.float32)
