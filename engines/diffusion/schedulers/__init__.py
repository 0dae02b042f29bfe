"""Samplers (schedulers) for the diffusion loop, in numpy, equal to diffusers' own.

Every scheduler is one file with the same calls, as in diffusers:

- ``set_timesteps(steps, strength=None)``: pick the timesteps for a run of ``steps`` steps; with
  ``strength`` (image-to-image) only the last ``int(steps * strength)`` of them run, as diffusers'
  img2img pipelines do;
- ``scale_model_input(sample, timestep)``: what the UNet reads at this step;
- ``step(model_output, timestep, sample, noise)``: the sample for the next step;
- ``add_noise(original, noise, timestep)``: noise an image's latents to ``timestep`` (img2img);
- ``init_noise_sigma``: the scale of the starting noise.

Each reads its settings from the model folder's ``scheduler/scheduler_config.json`` the way
diffusers' ``from_config`` does (keys the class knows; its own defaults for the rest), and
computes in float32 as diffusers does, so that a run matches diffusers to about 1e-6.

Randomness: Euler Ancestral and LCM add fresh noise at each step. It comes from a
:class:`NoiseSource` (normally :class:`SeededNoise`: one numpy generator per image, seeded
with the image's seed). numpy's generator is not torch's, so these two samplers cannot
reproduce a diffusers run from the same seed bit for bit; the tests prove them equal by
feeding both the same noise arrays.

This module is their index: the names a person picks (:data:`SCHEDULERS`, the names requests,
records and the command line use), the names a person reads (:func:`sampler_label`), the
reading of a sampler name another front end recorded (:func:`sampler_name`), and the choice of
one by name or by the model's config (:func:`make_scheduler`). What they share is in
``scheduler.py``.
"""

from __future__ import annotations

from typing import Any

from engines.diffusion.schedulers.scheduler import (
    AlphaScheduler,
    NoiseSource,
    Scheduler,
    SeededNoise,
    SigmaScheduler,
    UnsupportedSchedulerSetting,
)
from engines.errors import EmberError

__all__ = [
    "SAMPLER_LABELS",
    "SCHEDULERS",
    "AlphaScheduler",
    "NoiseSource",
    "Scheduler",
    "SeededNoise",
    "SigmaScheduler",
    "UnsupportedSchedulerSetting",
    "make_scheduler",
    "sampler_label",
    "sampler_name",
    "scheduler_for_config",
]

# -- the names ------------------------------------------------------------------------------
SAMPLER_LABELS: dict[str, str] = {
    "euler": "Euler",
    "euler_a": "Euler Ancestral",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "lcm": "LCM",
}
"""The samplers a person picks, by the name Ember uses, with the name a person reads."""

SCHEDULERS: tuple[str, ...] = tuple(SAMPLER_LABELS)
"""The names a request, the Images panel and ``main.py image --scheduler`` accept ("" is the model's own)."""

# A record can also name the model's own DPM-Solver (picked by "" from its config).
_RECORDED_LABELS = {**SAMPLER_LABELS, "dpmpp_2m": "DPM++ 2M"}
# How other front ends write them, reduced as _spelling reduces them: A1111's "Euler a",
# ComfyUI's "euler_ancestral" (which the labels already cover) and the like.
_OTHER_SPELLINGS = {"eulera": "euler_a"}


def sampler_label(name: str) -> str:
    """Return the name a person reads for the sampler ``name`` ("Euler Ancestral"); "" is
    "Model default" (the one the model folder's config names), an unknown name is title-cased."""
    if not name:
        return "Model default"
    return _RECORDED_LABELS.get(name, name.replace("_", " ").title())


def sampler_name(recorded: Any) -> str:
    """Return the name in :data:`SCHEDULERS` of a recorded sampler however it is spelt ("Euler a",
    "euler_a", "Euler Ancestral", "DPM++ 2M Karras"), or "" when it is none of them."""
    text = str(recorded or "").strip()
    if text in SAMPLER_LABELS:
        return text
    wanted = _spelling(text)
    for name, label in SAMPLER_LABELS.items():
        if wanted in (_spelling(name), _spelling(label)):
            return name
    return _OTHER_SPELLINGS.get(wanted, "")


def _spelling(text: str) -> str:
    return text.lower().replace(" ", "").replace("_", "").replace("+", "p")


# -- choosing one by name -------------------------------------------------------------------
# diffusers' class names, for "" (the model's own) and for the names Ember offers.
_BY_CLASS: dict[str, str] = {
    "EulerDiscreteScheduler": "euler",
    "EulerAncestralDiscreteScheduler": "euler_a",
    "DPMSolverMultistepScheduler": "dpmpp_2m",
    "DDIMScheduler": "ddim",
    "LCMScheduler": "lcm",
    # Samplers Ember does not implement run with the nearest one it has, from the same config.
    # PNDM (SD 1.x's original default) and LMS/Heun/DPM2 are deterministic ODE solvers like
    # Euler, which needs one UNet call a step and is what SD front ends commonly run instead.
    "PNDMScheduler": "euler",
    "LMSDiscreteScheduler": "euler",
    "HeunDiscreteScheduler": "euler",
    "KDPM2DiscreteScheduler": "euler",
    "DDPMScheduler": "ddim",
    "UniPCMultistepScheduler": "dpmpp_2m",
    "DEISMultistepScheduler": "dpmpp_2m",
    "DPMSolverSinglestepScheduler": "dpmpp_2m",
    "KDPM2AncestralDiscreteScheduler": "euler_a",
    "TCDScheduler": "lcm",
}


def scheduler_for_config(config: dict[str, Any]) -> str:
    """Return the Ember sampler name that stands for the config's ``_class_name``."""
    name = config.get("_class_name", "")
    sampler = _BY_CLASS.get(name)
    if sampler is None:
        return "euler"
    if sampler == "dpmpp_2m" and config.get("use_karras_sigmas"):
        return "dpmpp_2m_karras"
    return sampler


def make_scheduler(name: str, config: dict[str, Any]) -> Scheduler:
    """Return the sampler ``name`` configured from a model's ``scheduler_config.json`` dict.

    ``name`` is one of :data:`SCHEDULERS`, or "" for the class the config
    names (samplers Ember lacks map to their nearest: PNDM, LMS and Heun to Euler, UniPC to
    DPM++ 2M, DDPM to DDIM). Raises EmberError for an unknown name and
    UnsupportedSchedulerSetting for settings none of them implements.
    """
    from engines.diffusion.schedulers.ddim import DDIMScheduler
    from engines.diffusion.schedulers.dpmpp_2m import DPMSolverMultistepScheduler
    from engines.diffusion.schedulers.euler import EulerDiscreteScheduler
    from engines.diffusion.schedulers.euler_ancestral import EulerAncestralDiscreteScheduler
    from engines.diffusion.schedulers.lcm import LCMScheduler

    chosen = name
    name = name or scheduler_for_config(config)
    if name == "euler":
        return EulerDiscreteScheduler(config)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler(config)
    if name in ("dpmpp_2m", "dpmpp_2m_karras"):
        # The model's own DPM-Solver ("") keeps its settings; chosen by name it is the 2M (2nd
        # order, midpoint) form of DPM-Solver++, the one A1111 and ComfyUI call "DPM++ 2M".
        fixed: dict[str, Any] = {}
        if chosen:
            fixed = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}
            fixed["use_karras_sigmas"] = name == "dpmpp_2m_karras"
        return DPMSolverMultistepScheduler(config, **fixed)
    if name == "ddim":
        return DDIMScheduler(config)
    if name == "lcm":
        return LCMScheduler(config)
    raise EmberError(f"There is no sampler named '{name}'. Pick one of {', '.join(SCHEDULERS)}.")
