"""What every sampler shares: the :class:`Scheduler` base classes, the noise they draw, and the
noise-schedule math (betas, sigmas, Karras spacing, thresholding), as diffusers computes them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from engines.errors import EmberError


class NoiseSource(Protocol):
    """Where a sampler's random numbers come from."""

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        """Return standard-normal float32 noise of ``shape`` (batch first)."""


class SeededNoise:
    """Noise for a batch: image i draws from its own numpy generator, seeded ``seeds[i]``.

    So an image's noise depends only on its own seed, and a batch of two with seeds s and
    s+1 makes the same images as two single runs.
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = list(seeds)
        self.generators = [np.random.Generator(np.random.PCG64(s)) for s in self.seeds]

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        """Return noise of ``shape``; ``shape[0]`` must be the number of seeds."""
        if shape[0] != len(self.generators):
            raise ValueError(f"noise for {shape[0]} images asked from {len(self.generators)} generators")
        return np.stack([g.standard_normal(shape[1:], dtype=np.float32) for g in self.generators])


class UnsupportedSchedulerSetting(EmberError):
    """A scheduler_config.json setting Ember's samplers do not implement."""


# -- the noise schedule ---------------------------------------------------------------------
def _linspace_float32(start: float, end: float, count: int) -> np.ndarray:
    """torch.linspace(start, end, count, dtype=float32), bit for bit.

    torch computes ``start + step * i`` (first half) and ``end - step * (count - 1 - i)``
    (second half) with a float32 step and a fused multiply-add, rounding once.
    """
    s, e = np.float32(start), np.float32(end)
    if count == 1:
        return np.array([s], dtype=np.float32)
    step = float((e - s) / np.float32(count - 1))
    i = np.arange(count, dtype=np.float64)
    values = np.where(i < count // 2, float(s) + step * i, float(e) - step * (count - 1 - i))
    return values.astype(np.float32)


def _betas_for_alpha_bar(count: int, max_beta: float = 0.999) -> np.ndarray:
    """The cosine schedule ("squaredcos_cap_v2") of Nichol & Dhariwal."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / count) / alpha_bar(i / count), max_beta) for i in range(count)]
    return np.array(betas, dtype=np.float32)


def _rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Rescale betas so that the last timestep is pure noise (Lin et al. 2023)."""
    alphas_cumprod = _cumprod(1.0 - betas)
    root = np.sqrt(alphas_cumprod)
    first, last = root[0].copy(), root[-1].copy()
    root = (root - last) * (first / (first - last))
    bar = root**2
    alphas = np.concatenate([bar[:1], bar[1:] / bar[:-1]])
    return (1 - alphas).astype(np.float32)


def _cumprod(values: np.ndarray) -> np.ndarray:
    # torch's CPU cumprod accumulates float32 in double and rounds each partial product.
    return np.cumprod(values.astype(np.float64)).astype(np.float32)


def make_betas(config: dict[str, Any]) -> np.ndarray:
    """Return the training noise schedule's betas (float32) from a scheduler config.

    Raises UnsupportedSchedulerSetting for an unknown ``beta_schedule``.
    """
    count = int(config["num_train_timesteps"])
    trained = config.get("trained_betas")
    schedule = config["beta_schedule"]
    if trained is not None:
        betas = np.asarray(trained, dtype=np.float32)
    elif schedule == "linear":
        betas = _linspace_float32(config["beta_start"], config["beta_end"], count)
    elif schedule == "scaled_linear":
        betas = _linspace_float32(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, count) ** 2
    elif schedule == "squaredcos_cap_v2":
        betas = _betas_for_alpha_bar(count)
    else:
        raise UnsupportedSchedulerSetting(
            f"The model's scheduler uses the beta schedule '{schedule}', which Ember does not support "
            "(it knows linear, scaled_linear and squaredcos_cap_v2)."
        )
    if config.get("rescale_betas_zero_snr"):
        betas = _rescale_zero_terminal_snr(betas)
    return betas


def sigma_to_t(sigma: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Return the (fractional) training timesteps whose noise level is ``sigma``, by interpolation."""
    sigma = np.asarray(sigma)
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low_idx = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = np.clip((low - log_sigma) / (low - high), 0, 1)
    return ((1 - w) * low_idx + w * high_idx).reshape(sigma.shape)


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> np.ndarray:
    """Return Karras et al.'s (2022) noise levels from ``sigma_max`` down to ``sigma_min`` (float64)."""
    ramp = np.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def threshold_sample(sample: np.ndarray, ratio: float, max_value: float) -> np.ndarray:
    """Dynamic thresholding (Imagen): clip each sample at its ``ratio`` quantile of |x|, then rescale."""
    batch = sample.shape[0]
    flat = sample.reshape(batch, -1).astype(np.float32)
    s = np.quantile(np.abs(flat), ratio, axis=1).astype(np.float32)
    s = np.clip(s, 1, max_value)[:, None]
    return (np.clip(flat, -s, s) / s).reshape(sample.shape).astype(sample.dtype)


# -- the shared base ------------------------------------------------------------------------
class Scheduler:
    """What every sampler shares: settings, the training noise schedule, and the step counter.

    A subclass sets ``name``, ``diffusers_class`` and ``defaults`` (diffusers' defaults for that
    class), fills in ``_schedule`` (the timesteps, and sigmas where it uses them) and ``step``.
    """

    name: ClassVar[str] = ""
    diffusers_class: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # Whether step() draws fresh noise (these cannot repeat a torch run from its seed).
    stochastic: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any] | None = None, **overrides: Any) -> None:
        config = dict(config or {})
        # Keys diffusers recorded as "left at the default" take this class's default instead.
        for key in config.pop("_use_default_values", None) or []:
            config.pop(key, None)
        self.config: dict[str, Any] = {**self.defaults}
        self.config.update({k: v for k, v in config.items() if k in self.defaults})
        self.config.update(overrides)
        self.prediction_type: str = self.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise UnsupportedSchedulerSetting(
                f"The model predicts '{self.prediction_type}', which Ember's samplers do not support "
                "(they know epsilon, v_prediction and sample)."
            )
        self.num_train_timesteps = int(self.config["num_train_timesteps"])
        self.betas = make_betas(self.config)
        self.alphas = (1.0 - self.betas).astype(np.float32)
        self.alphas_cumprod = _cumprod(self.alphas)
        self.timesteps: np.ndarray = np.zeros(0)
        self.all_timesteps: np.ndarray = np.zeros(0)
        self.sigmas: np.ndarray = np.zeros(0, dtype=np.float32)
        self.num_inference_steps = 0
        self.begin_index = 0
        self.step_index = 0
        # The model's estimate of the clean latents at the last step, for live previews.
        self.pred_original_sample: np.ndarray | None = None

    @property
    def init_noise_sigma(self) -> float:
        """The standard deviation of the starting noise (1 for the alpha-parameterised samplers)."""
        return 1.0

    def set_timesteps(self, num_inference_steps: int, strength: float | None = None) -> None:
        """Choose the timesteps for ``num_inference_steps`` steps, from the noisiest down.

        With ``strength`` (image-to-image), only the last ``int(steps * strength)`` timesteps
        are run (``self.timesteps``); the schedule itself stays that of the full run.
        Raises EmberError when ``strength`` leaves no step to run.
        """
        if num_inference_steps < 1:
            raise EmberError("A run needs at least one step.")
        self.num_inference_steps = num_inference_steps
        self._schedule(num_inference_steps)
        start = 0
        if strength is not None:
            init = min(int(num_inference_steps * strength), num_inference_steps)
            start = max(num_inference_steps - init, 0)
            if start >= len(self.all_timesteps):
                raise EmberError(
                    f"At strength {strength:g}, {num_inference_steps} steps leave no step to run. "
                    "Raise the strength or the number of steps."
                )
        self.begin_index = start
        self.step_index = start
        self.timesteps = self.all_timesteps[start:]
        self._reset_state()

    def scale_model_input(self, sample: np.ndarray, timestep: float) -> np.ndarray:
        """Return what the UNet reads at this step (the sample itself, unless the sampler scales it)."""
        return sample

    def step(
        self, model_output: np.ndarray, timestep: float, sample: np.ndarray, noise: NoiseSource | None = None
    ) -> np.ndarray:
        """Return the sample at the next timestep. ``noise`` feeds the stochastic samplers."""
        raise NotImplementedError

    def add_noise(self, original: np.ndarray, noise: np.ndarray, timestep: float) -> np.ndarray:
        """Return ``original`` noised to ``timestep`` (the first timestep of an img2img run)."""
        raise NotImplementedError

    # -- for subclasses ------------------------------------------------------------------
    def _schedule(self, num_inference_steps: int) -> None:
        raise NotImplementedError

    def _reset_state(self) -> None:
        """Forget what a multistep sampler remembers from earlier steps."""

    def _noise(self, noise: NoiseSource | None, shape: tuple[int, ...]) -> np.ndarray:
        if noise is None:  # an unseeded draw: only for callers that do not care to reproduce it
            return np.random.default_rng().standard_normal(shape, dtype=np.float32)
        return np.asarray(noise.randn(shape), dtype=np.float32)

    def _spaced_timesteps(self, steps: int, *, linspace_round: bool) -> np.ndarray:
        """Training timesteps for ``steps`` steps, spaced as ``timestep_spacing`` says (float64).

        "leading" (SD 1.x/2.x, SDXL): multiples of ``1000 // steps`` plus ``steps_offset``;
        "trailing" (Turbo, zero-SNR models): counted down from the last training timestep;
        "linspace": evenly spread over the whole range (rounded for the integer samplers).
        """
        spacing = self.config["timestep_spacing"]
        train = self.num_train_timesteps
        if spacing == "linspace":
            timesteps = np.linspace(0, train - 1, steps, dtype=np.float32 if not linspace_round else np.float64)
            if linspace_round:
                timesteps = timesteps.round()
            return timesteps[::-1].copy()
        if spacing == "leading":
            ratio = train // steps
            return (np.arange(0, steps) * ratio).round()[::-1].copy() + self.config["steps_offset"]
        if spacing == "trailing":
            return np.arange(train, 0, -train / steps).round() - 1
        raise UnsupportedSchedulerSetting(
            f"The model's scheduler uses timestep spacing '{spacing}'; Ember knows leading, trailing and linspace."
        )


class SigmaScheduler(Scheduler):
    """The Euler family: samples live at noise level sigma (x = x0 + sigma * eps)."""

    @property
    def init_noise_sigma(self) -> float:
        max_sigma = float(np.max(self.sigmas)) if len(self.sigmas) else 1.0
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            return max_sigma
        return float(np.sqrt(np.float32(max_sigma) ** 2 + np.float32(1)))

    def _train_sigmas(self) -> np.ndarray:
        ac = self.alphas_cumprod
        return np.sqrt((1 - ac) / ac).astype(np.float32)

    def scale_model_input(self, sample: np.ndarray, timestep: float) -> np.ndarray:
        """Divide by sqrt(sigma² + 1), so that the UNet reads unit-variance input."""
        sigma = self.sigmas[self.step_index]
        return (sample / np.sqrt(sigma**2 + np.float32(1))).astype(np.float32)

    def add_noise(self, original: np.ndarray, noise: np.ndarray, timestep: float) -> np.ndarray:
        """Return ``original + noise * sigma`` at the run's first step."""
        sigma = self.sigmas[self.begin_index]
        return (original + noise * sigma).astype(np.float32)

    def _predict_original(self, model_output: np.ndarray, sample: np.ndarray, sigma: np.float32) -> np.ndarray:
        if self.prediction_type == "epsilon":
            return sample - sigma * model_output
        if self.prediction_type == "v_prediction":
            return model_output * (-sigma / np.sqrt(sigma**2 + np.float32(1))) + sample / (sigma**2 + np.float32(1))
        return model_output


class AlphaScheduler(Scheduler):
    """DDIM, LCM and DPM-Solver: samples are sqrt(a) x0 + sqrt(1 - a) eps for cumulative alpha a."""

    def add_noise(self, original: np.ndarray, noise: np.ndarray, timestep: float) -> np.ndarray:
        """Return ``sqrt(a) * original + sqrt(1 - a) * noise`` for ``timestep``'s cumulative alpha."""
        a = self.alphas_cumprod[int(timestep)]
        return (np.sqrt(a) * original + np.sqrt(np.float32(1) - a) * noise).astype(np.float32)
