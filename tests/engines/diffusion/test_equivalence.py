"""The heart of the diffusion issue: Ember's torch-free pipeline makes diffusers' images.

For the tiny SD 1.x, SD-Turbo and SDXL pipelines, every sampler, text-to-image and
image-to-image: the same prompt, negative prompt, starting latents and (for the stochastic
samplers and the VAE's latent sampling) the same noise arrays go into diffusers' own torch
pipeline, loaded from the checkpoint, and into Ember's ONNX pipeline, exported from it. The
float images before 8-bit rounding must agree within 1e-3. Run with ``-s`` to see the table of
max abs differences.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engines.diffusion.pipeline import DiffusionPipeline
from engines.diffusion.requests import SCHEDULERS

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
PIL_Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

TOLERANCE = 1e-3
PROMPT = "a photo of a red cat"
NEGATIVE = "blurry, low quality"
SIZE = 64
# Ember's sampler names -> diffusers' class and what choosing the name sets.
DIFFUSERS_SCHEDULERS = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"},
    ),
    "ddim": ("DDIMScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
# Turbo runs as Turbo models do (no guidance: the unconditional half is skipped); the others guided.
GUIDANCE = {"sd": 7.5, "turbo": 0.0, "sdxl": 7.5}
STEPS = {"t2i": 5, "i2i": 8}
STRENGTH = 0.6

RESULTS: dict[tuple[str, str, str], float] = {}


@pytest.fixture(scope="module", autouse=True)
def equivalence_table() -> Iterator[None]:
    """Print the max abs difference of every (model, sampler, mode) when the module ends."""
    yield
    if RESULTS:
        print("\n\nEmber vs diffusers, max abs difference of the float images (64x64, fp32):")
        print(f"{'model':6} {'sampler':16} {'txt2img':>10} {'img2img':>10}")
        for kind in ("sd", "turbo", "sdxl"):
            for name in SCHEDULERS:
                cells = [RESULTS.get((kind, name, mode)) for mode in ("t2i", "i2i")]
                if any(c is not None for c in cells):
                    text = [f"{c:10.2e}" if c is not None else f"{'-':>10}" for c in cells]
                    print(f"{kind:6} {name:16} {text[0]} {text[1]}")


@pytest.fixture(scope="module")
def references(request: pytest.FixtureRequest) -> dict[str, tuple[object, object, Path]]:
    """Per kind: diffusers' text-to-image and image-to-image pipelines from the checkpoint, and the ONNX folder."""
    found = {}
    for kind in ("sd", "turbo", "sdxl"):
        checkpoint = request.getfixturevalue(f"tiny_{kind}_checkpoint")
        onnx_folder = request.getfixturevalue(f"tiny_{kind}")
        cls = diffusers.StableDiffusionXLPipeline if kind == "sdxl" else diffusers.StableDiffusionPipeline
        txt2img = cls.from_pretrained(str(checkpoint))
        txt2img.set_progress_bar_config(disable=True)
        img2img = diffusers.AutoPipelineForImage2Image.from_pipe(txt2img)
        img2img.set_progress_bar_config(disable=True)
        # The model's own scheduler config: every sampler is made from it, as Ember makes its own.
        txt2img.original_scheduler_config = dict(txt2img.scheduler.config)
        found[kind] = (txt2img, img2img, onnx_folder)
    return found


@pytest.fixture(scope="module")
def ember_pipelines(references: dict) -> dict[str, DiffusionPipeline]:
    return {kind: DiffusionPipeline(folder) for kind, (_, _, folder) in references.items()}


def starting_image() -> np.ndarray:
    """A 64x64 RGB picture with some structure (gradients and a disc)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.06).astype(np.float32)
    rgb = np.stack([x, y * 0.8 + disc * 0.2, 1 - x * y], axis=-1) * 0.8 + disc[..., None] * 0.2
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def diffusers_scheduler(name: str, config: dict):
    cls, overrides = DIFFUSERS_SCHEDULERS[name]
    return getattr(diffusers, cls).from_config(config, **overrides)


@pytest.mark.parametrize("mode", ["t2i", "i2i"])
@pytest.mark.parametrize("sampler", SCHEDULERS)
@pytest.mark.parametrize("kind", ["sd", "turbo", "sdxl"])
def test_ember_image_equals_diffusers(
    kind: str, sampler: str, mode: str, references: dict, ember_pipelines: dict, recorded_noise
) -> None:
    txt2img, img2img, _ = references[kind]
    reference = txt2img if mode == "t2i" else img2img
    reference.scheduler = diffusers_scheduler(sampler, txt2img.original_scheduler_config)
    guidance, steps = GUIDANCE[kind], STEPS[mode]
    common = {
        "negative_prompt": NEGATIVE,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "output_type": "np",
        "generator": torch.Generator().manual_seed(0),
    }
    ours_args = {"steps": steps, "guidance_scale": guidance, "scheduler": sampler, "output_type": "float"}
    if mode == "t2i":
        latents = np.random.default_rng(7).standard_normal((1, 4, SIZE // 8, SIZE // 8), dtype=np.float32)
        theirs = reference(PROMPT, width=SIZE, height=SIZE, latents=torch.from_numpy(latents.copy()), **common)
        ours_args["latents"] = latents
    else:
        picture = starting_image()
        theirs = reference(PROMPT, image=PIL_Image.fromarray(picture), strength=STRENGTH, **common)
        ours_args.update(init_image=picture, strength=STRENGTH)
    replay = recorded_noise.replay()
    ours = ember_pipelines[kind](PROMPT, NEGATIVE, width=SIZE, height=SIZE, noise=replay, **ours_args)

    assert not replay.arrays, "Ember drew less noise than diffusers"
    expected = theirs.images[0]
    assert ours.images[0].shape == expected.shape == (SIZE, SIZE, 3)
    difference = float(np.abs(ours.images[0] - expected).max())
    RESULTS[(kind, sampler, mode)] = difference
    print(f"\n{kind:6} {sampler:16} {mode}: max abs difference {difference:.2e}")
    assert difference < TOLERANCE
    # Not a trivially flat image: the tiny model's output varies across the picture.
    assert expected.std() > 1e-3


def test_sdxl_empty_negative_prompt_is_zeros_as_in_diffusers(references: dict, ember_pipelines: dict) -> None:
    txt2img, _, _ = references["sdxl"]
    txt2img.scheduler = diffusers_scheduler("euler", txt2img.original_scheduler_config)
    latents = np.random.default_rng(3).standard_normal((1, 4, 8, 8), dtype=np.float32)
    theirs = txt2img(
        PROMPT,
        num_inference_steps=4,
        guidance_scale=5.0,
        width=SIZE,
        height=SIZE,
        latents=torch.from_numpy(latents.copy()),
        output_type="np",
    ).images[0]
    ours = ember_pipelines["sdxl"](
        PROMPT,
        "",
        width=SIZE,
        height=SIZE,
        steps=4,
        guidance_scale=5.0,
        scheduler="euler",
        latents=latents,
        output_type="float",
    ).images[0]
    assert np.abs(ours - theirs).max() < TOLERANCE


def test_prompt_longer_than_77_tokens_is_cut_as_diffusers_cuts_it(references: dict, ember_pipelines: dict) -> None:
    txt2img, _, _ = references["sd"]
    txt2img.scheduler = diffusers_scheduler("euler", txt2img.original_scheduler_config)
    long_prompt = "a photo of the red cat and the red dog, " * 12
    latents = np.random.default_rng(5).standard_normal((1, 4, 8, 8), dtype=np.float32)
    theirs = txt2img(
        long_prompt,
        num_inference_steps=3,
        width=SIZE,
        height=SIZE,
        latents=torch.from_numpy(latents.copy()),
        output_type="np",
    ).images[0]
    out = ember_pipelines["sd"](
        long_prompt, width=SIZE, height=SIZE, steps=3, scheduler="euler", latents=latents, output_type="float"
    )
    assert np.abs(out.images[0] - theirs).max() < TOLERANCE
    assert any("cut at 77 tokens" in note for note in out.notes)


def test_lcm_guidance_embedding_equals_diffusers() -> None:
    # The tiny UNets have no timestep_cond input; LCM-distilled UNets read this embedding there.
    from engines.diffusion.pipeline import guidance_scale_embedding

    w = np.array([7.5, 1.0, 0.0], dtype=np.float32) - 1.0
    ours = guidance_scale_embedding(w, 256)
    pipe = diffusers.LatentConsistencyModelPipeline.__new__(diffusers.LatentConsistencyModelPipeline)
    theirs = pipe.get_guidance_scale_embedding(torch.from_numpy(w), embedding_dim=256).numpy()
    # Angles reach 6500 x a frequency: torch's float32 exp and numpy's differ by one ulp on a few
    # frequencies, which moves those sines by up to ~5e-4.
    assert np.abs(ours - theirs).max() < 1e-3
    assert np.median(np.abs(ours - theirs)) < 1e-6
