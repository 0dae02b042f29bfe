"""Ember's numpy samplers against diffusers' own schedulers, on the same config and inputs.

Timesteps must be identical; sigmas, the img2img start and every step's output equal to
float32 rounding (relative 5e-6 of the values' size: random model outputs make the DPM
samples large). The stochastic samplers get the same noise arrays as diffusers.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.diffusion import requests
from engines.diffusion.schedulers import (
    SAMPLER_LABELS,
    SCHEDULERS,
    SeededNoise,
    make_scheduler,
    sampler_label,
    sampler_name,
    scheduler_for_config,
)
from engines.errors import EmberError

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

# diffusers' schedulers call np.array on torch tensors, which numpy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# SD 1.5's betas, as its model folders and the tiny test pipelines ship them.
SD15 = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
}
CONFIGS = {
    "sd15-leading": SD15,
    "turbo-trailing": {**SD15, "timestep_spacing": "trailing"},
    "linspace": {**SD15, "timestep_spacing": "linspace", "steps_offset": 0},
    "v-prediction-linear": {**SD15, "prediction_type": "v_prediction", "beta_schedule": "linear"},
    "cosine": {**SD15, "beta_schedule": "squaredcos_cap_v2"},
}
# Ember's name -> diffusers' class and what choosing that name sets.
SAMPLERS = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"},
    ),
    "ddim": ("DDIMScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
STEPS = (1, 2, 4, 8, 25)
RTOL = 5e-6


def close(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Max abs difference relative to the values' size (at least 1)."""
    theirs = np.asarray(theirs, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - theirs).max() / max(1.0, np.abs(theirs).max()))


def reference(name: str, config: dict, steps: int, strength: float | None):
    """diffusers' scheduler set up as its txt2img or img2img pipeline sets it; returns it and the timesteps.

    ``name`` "" is the class the config names, with the config's own settings.
    """
    cls, overrides = SAMPLERS[name] if name else (config["_class_name"], {})
    ref = getattr(diffusers, cls).from_config(config, **overrides)
    ref.set_timesteps(steps)
    timesteps = ref.timesteps
    start = 0
    if strength is not None:
        start = max(steps - min(int(steps * strength), steps), 0)
        timesteps = timesteps[start:]
    if hasattr(ref, "set_begin_index"):
        ref.set_begin_index(start)
    return ref, timesteps


def cases():
    for name in SAMPLERS:
        for config in CONFIGS:
            for steps in STEPS:
                for strength in (None, 0.6):
                    if strength is not None and int(steps * strength) == 0:
                        continue
                    yield pytest.param(name, config, steps, strength, id=f"{name}-{config}-{steps}-{strength or 't2i'}")


@pytest.mark.parametrize(("name", "config_name", "steps", "strength"), list(cases()))
def test_sampler_matches_diffusers_step_by_step(
    name: str, config_name: str, steps: int, strength: float | None
) -> None:
    run_both(name, CONFIGS[config_name], steps, strength)


# Model folders' own scheduler configs with settings the named samplers do not use.
OWN_CONFIGS = {
    "dpm-3rd-order": {**SD15, "_class_name": "DPMSolverMultistepScheduler", "solver_order": 3},
    "dpm-heun-karras": {
        **SD15,
        "_class_name": "DPMSolverMultistepScheduler",
        "solver_type": "heun",
        "use_karras_sigmas": True,
        "lower_order_final": False,
    },
    "dpm-sigma-min-final": {**SD15, "_class_name": "DPMSolverMultistepScheduler", "final_sigmas_type": "sigma_min"},
    "euler-karras": {**SD15, "use_karras_sigmas": True},
    "euler-v-zero-snr": {
        **SD15,
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
        "rescale_betas_zero_snr": True,
    },
    "ddim-defaults-v": {
        "_class_name": "DDIMScheduler",
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "prediction_type": "v_prediction",
    },
    "ddim-thresholding": {**SD15, "_class_name": "DDIMScheduler", "thresholding": True, "sample_max_value": 2.0},
    "lcm-own": {"_class_name": "LCMScheduler", "original_inference_steps": 50, "timestep_scaling": 10.0},
}


# Zero terminal SNR puts the first sigma at sqrt(2**24 - 1) = 4095.99988, halfway between two
# float32 values: torch's sqrt rounds it to 4096, numpy's to 4095.99976. The first step then
# cancels terms of size ~16000 down to a result of size ~10, which turns that last-bit
# difference into ~1e-4 of the result.
OWN_RTOL = {"euler-v-zero-snr": 5e-4}


@pytest.mark.parametrize("steps", (3, 12, 20))
@pytest.mark.parametrize("config_name", list(OWN_CONFIGS))
def test_models_own_scheduler_settings_match_diffusers(config_name: str, steps: int) -> None:
    rtol = OWN_RTOL.get(config_name, RTOL)
    run_both("", OWN_CONFIGS[config_name], steps, None, rtol)
    run_both("", OWN_CONFIGS[config_name], steps, 0.5, rtol)


def run_both(name: str, config: dict, steps: int, strength: float | None, rtol: float = RTOL) -> None:
    """Run diffusers' scheduler and Ember's side by side on the same random inputs; assert every output agrees."""
    ref, ref_timesteps = reference(name, config, steps, strength)
    ours = make_scheduler(name, config)
    ours.set_timesteps(steps, strength)

    ours_t, ref_t = np.asarray(ours.timesteps, np.float64), ref_timesteps.numpy().astype(np.float64)
    if np.issubdtype(ref_timesteps.numpy().dtype, np.integer) or np.all(ref_t == ref_t.round()):
        np.testing.assert_array_equal(ours_t, ref_t)
    else:  # Karras' fractional timesteps, interpolated from float32 sigmas
        np.testing.assert_allclose(ours_t, ref_t, rtol=1e-6, atol=1e-4)
    if hasattr(ref, "sigmas"):
        assert close(ours.sigmas, ref.sigmas.numpy()) < rtol
    assert ours.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-6)

    rng = np.random.default_rng(steps)
    sample = rng.standard_normal((2, 4, 8, 8), dtype=np.float32) * np.float32(ours.init_noise_sigma)
    if strength is not None:
        clean = rng.standard_normal(sample.shape, dtype=np.float32)
        noise = rng.standard_normal(sample.shape, dtype=np.float32)
        theirs_start = ref.add_noise(torch.from_numpy(clean), torch.from_numpy(noise), ref_timesteps[:1].repeat(2))
        ours_start = ours.add_noise(clean, noise, ours.timesteps[0])
        assert close(ours_start, theirs_start.numpy()) < rtol
        sample = theirs_start.numpy()

    module = __import__(type(ref).__module__, fromlist=["randn_tensor"])
    original_randn = module.randn_tensor
    theirs, mine = torch.from_numpy(sample.copy()), sample.copy()
    for i, (t_ref, t_ours) in enumerate(zip(ref_timesteps, ours.timesteps, strict=True)):
        model_output = rng.standard_normal(sample.shape, dtype=np.float32)
        step_noise = rng.standard_normal(sample.shape, dtype=np.float32)
        module.randn_tensor = lambda *_a, _n=step_noise, **_k: torch.from_numpy(_n.copy())
        try:
            scaled_ref = ref.scale_model_input(theirs, t_ref)
            assert close(ours.scale_model_input(mine, t_ours), scaled_ref.numpy()) < rtol, f"scaled input, step {i}"
            theirs = ref.step(torch.from_numpy(model_output), t_ref, theirs).prev_sample
        finally:
            module.randn_tensor = original_randn
        mine = ours.step(model_output, t_ours, mine, _Fixed(step_noise))
        assert close(mine, theirs.numpy()) < rtol, f"step {i} of {len(ours.timesteps)}"


class _Fixed:
    """A NoiseSource that always returns one array."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def randn(self, shape: tuple[int, ...]) -> np.ndarray:
        assert self.array.shape == shape
        return self.array.copy()


def test_names_map_to_the_configs_class() -> None:
    assert scheduler_for_config(SD15) == "euler"
    assert scheduler_for_config({**SD15, "_class_name": "PNDMScheduler"}) == "euler"
    assert scheduler_for_config({"_class_name": "LCMScheduler"}) == "lcm"
    assert scheduler_for_config({"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True}) == (
        "dpmpp_2m_karras"
    )
    assert make_scheduler("", {**SD15, "_class_name": "DDIMScheduler"}).name == "ddim"
    with pytest.raises(EmberError, match="no sampler named"):
        make_scheduler("heun", SD15)


def test_every_sampler_a_person_picks_has_a_label_and_runs() -> None:
    assert requests.SCHEDULERS is SCHEDULERS and SCHEDULERS == tuple(SAMPLER_LABELS)
    for name in SCHEDULERS:
        assert sampler_label(name) == SAMPLER_LABELS[name] and sampler_name(sampler_label(name)) == name
        make_scheduler(name, SD15)
    assert sampler_label("") == "Model default" and sampler_label("dpmpp_2m") == "DPM++ 2M"


@pytest.mark.parametrize(
    ("recorded", "name"),
    [
        ("Euler a", "euler_a"),  # A1111's infotext
        ("euler_ancestral", "euler_a"),  # ComfyUI
        ("Euler Ancestral", "euler_a"),
        ("euler_a", "euler_a"),
        ("DPM++ 2M Karras", "dpmpp_2m_karras"),
        ("dpmpp_2m_karras", "dpmpp_2m_karras"),
        (" DDIM ", "ddim"),
        ("LCM", "lcm"),
        ("Euler", "euler"),
        ("DPM++ 2M", ""),  # the model's own DPM-Solver: not one a person picks by name
        ("Heun", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_recorded_sampler_names_are_read_however_they_are_spelt(recorded: object, name: str) -> None:
    assert sampler_name(recorded) == name


def test_settings_diffusers_left_at_default_take_the_new_classes_default() -> None:
    # diffusers records keys a config left at their default; another class then uses its own default.
    config = {**SD15, "timestep_spacing": "linspace", "_use_default_values": ["timestep_spacing"]}
    ours = make_scheduler("ddim", config)
    ref = diffusers.DDIMScheduler.from_config(config)
    assert ours.config["timestep_spacing"] == ref.config.timestep_spacing == "leading"


def test_seeded_noise_gives_each_image_its_own_stream() -> None:
    batch = SeededNoise([7, 8]).randn((2, 4, 3, 3))
    alone = SeededNoise([8]).randn((1, 4, 3, 3))
    np.testing.assert_array_equal(batch[1], alone[0])
    assert batch.dtype == np.float32


def test_strength_too_low_for_the_steps_says_what_to_do() -> None:
    ours = make_scheduler("euler", SD15)
    with pytest.raises(EmberError, match="Raise the strength or the number of steps"):
        ours.set_timesteps(2, strength=0.3)
