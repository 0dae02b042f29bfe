"""The diffusion pipeline: a prompt (and optionally a starting image) to images, without torch.

It runs the ONNX graphs of a diffusers-ONNX model folder (as optimum exports it) with
onnxruntime, and does everything between them in numpy, step for step as diffusers'
StableDiffusionPipeline, StableDiffusionXLPipeline and their img2img variants do:

1. tokenize the prompt and the negative prompt and run the text encoder(s);
2. pick the timesteps with the scheduler (the last part of them for img2img);
3. start from seeded noise, or from the starting image's latents noised to the first timestep;
4. at each step run the UNet on the conditional and unconditional halves in one batch, mix
   them with the guidance scale, and let the scheduler step;
5. decode the latents with the VAE (in tiles for large images) to pixels.

The tests prove the result equal to diffusers' own on the same model, seed and noise.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engines.diffusion.folder import layout_problem, missing_parts, text_encoders
from engines.diffusion.onnx_graph import CPU, CUDA, OnnxGraph
from engines.diffusion.preview import latent_preview
from engines.diffusion.schedulers import NoiseSource, Scheduler, SeededNoise, make_scheduler
from engines.diffusion.tiling import decode_tiled
from engines.engine import Progress
from engines.errors import IMAGE_DECODE_ERRORS, EmberError, ModelFileError
from engines.jobs import CancelToken

# Folder names that say nothing about the model; such a folder is named with its parent too.
_GENERIC_NAMES = {"onnx", "fp16", "fp32", "int8", "model", "models", "optimized"}

# Images above this many pixels are decoded in tiles (when memory is short, smaller ones too).
TILE_ABOVE_PIXELS = 1024 * 1024
TILE_LATENTS = 96  # 768-pixel tiles
TILE_OVERLAP_LATENTS = 16  # sharing 128 pixels with each neighbour

# onnxruntime's own buffers and arenas beyond weights and activations.
_RUNTIME_OVERHEAD_BYTES = 300 * 2**20


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"Ember cannot read '{path}' ({exc}). The model folder may be damaged.") from None
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ModelFolder:
    """What a diffusers-ONNX folder holds, read from its files without loading a graph.

    ``family`` decides the defaults: "turbo" (1 step, no guidance), "lcm" (4 steps) or
    "standard" (25 steps, guidance 7.5). ``encoders`` pairs each tokenizer folder with its
    text encoder graph's name, in the order their embeddings are concatenated.
    """

    path: Path
    name: str
    xl: bool
    family: Literal["standard", "turbo", "lcm"]
    encoders: tuple[tuple[str, str], ...]
    model_index: dict[str, Any] = field(repr=False)
    scheduler_config: dict[str, Any] = field(repr=False)
    unet_config: dict[str, Any] = field(repr=False)
    vae_config: dict[str, Any] = field(repr=False)

    @property
    def scaling_factor(self) -> float:
        """The VAE's latent scale: from its config, else SDXL's 0.13025 or SD's 0.18215."""
        value = self.vae_config.get("scaling_factor")
        return float(value) if isinstance(value, (int, float)) else (0.13025 if self.xl else 0.18215)

    @property
    def vae_scale(self) -> int:
        """Image pixels per latent pixel (8 for every SD-family VAE)."""
        blocks = self.vae_config.get("block_out_channels")
        return 2 ** (len(blocks) - 1) if isinstance(blocks, list) and blocks else 8

    @property
    def latent_channels(self) -> int:
        return int(self.unet_config.get("in_channels") or self.vae_config.get("latent_channels") or 4)

    @property
    def has_guidance_embedding(self) -> bool:
        """Whether the UNet takes the guidance scale as an input (LCM-distilled models) instead of CFG."""
        return self.unet_config.get("time_cond_proj_dim") is not None

    def defaults(self, strength: float | None = None) -> tuple[int, float]:
        """Return the default (steps, guidance scale) for this model's family.

        With an img2img ``strength``, the steps grow until at least one of them runs (Turbo's
        single step at strength 0.5 would run none; diffusers asks for steps x strength >= 1).
        """
        if self.family == "turbo":
            steps, guidance = 1, 0.0
        elif self.family == "lcm":
            # diffusers' LCM pipeline uses 8.5 as the embedded guidance; without the embedding
            # (an LCM LoRA merged into an ordinary UNet), guidance above ~2 burns the image.
            steps, guidance = 4, 8.5 if self.has_guidance_embedding else 1.0
        else:
            steps, guidance = 25, 7.5
        while strength is not None and strength > 0 and int(steps * strength) < 1:
            steps += 1
        return steps, guidance


def read_model_folder(folder: Path | str) -> ModelFolder:
    """Return what the diffusers-ONNX folder ``folder`` holds.

    Raises ModelFileError when it is not such a folder, or a component it needs is missing.
    """
    path = Path(folder).expanduser()
    problem = layout_problem(path)
    if problem:
        raise ModelFileError(problem)
    model_index = _read_json(path / "model_index.json")
    missing = missing_parts(path, model_index)
    if missing:
        raise ModelFileError(
            f"The model folder '{path}' is incomplete: it has no {', '.join(missing)}. "
            "Re-download or re-convert the model."
        )
    pairs = text_encoders(path, model_index)
    encoders = tuple((tokenizer, encoder) for encoder, tokenizer in pairs)
    xl = any(encoder == "text_encoder_2" for encoder, _ in pairs) or "XL" in str(model_index.get("_class_name", ""))
    scheduler_config = _read_json(path / "scheduler" / "scheduler_config.json")
    if not scheduler_config:
        raise ModelFileError(
            f"The model folder '{path}' has no scheduler/scheduler_config.json. Re-download or re-convert the model."
        )
    unet_config = _read_json(path / "unet" / "config.json")
    vae_config = _read_json(path / "vae_decoder" / "config.json")

    name = path.name if path.name.lower() not in _GENERIC_NAMES else f"{path.parent.name}-{path.name}"
    words = " ".join([*[p.lower() for p in path.parts[-3:]], str(model_index.get("_name_or_path", "")).lower()])
    family: Literal["standard", "turbo", "lcm"] = "standard"
    if scheduler_config.get("_class_name") == "LCMScheduler" or unet_config.get("time_cond_proj_dim") is not None:
        family = "lcm"
    elif re.search(r"(?<![a-z])lcm(?![a-z])", words):
        family = "lcm"
    elif "turbo" in words:
        family = "turbo"
    return ModelFolder(path, name, xl, family, encoders, model_index, scheduler_config, unet_config, vae_config)


def guidance_scale_embedding(w: np.ndarray, dim: int) -> np.ndarray:
    """Return the sinusoidal embedding of guidance scales ``w`` (shape N) that LCM UNets read as ``timestep_cond``."""
    w = w.astype(np.float32) * np.float32(1000.0)
    half = dim // 2
    scale = np.log(np.float32(10000.0)) / np.float32(half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * -scale)
    angles = w[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2 == 1:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb.astype(np.float32)


def load_init_image(image: str | Path | np.ndarray, width: int, height: int) -> np.ndarray:
    """Return the starting image as 1x3xHxW float32 in [-1, 1], resized to ``width`` x ``height``.

    ``image`` is a file path or an HxWx3 (or HxWx4, HxW) uint8 array. Resizing uses Lanczos,
    as diffusers does. Raises EmberError when the file cannot be read as an image.
    """
    from PIL import Image

    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise EmberError(f"The starting image must be an HxWx3 RGB array; it has shape {array.shape}.")
        if array.dtype != np.uint8:
            raise EmberError(f"The starting image must hold 8-bit pixels (uint8); it holds {array.dtype}.")
        picture = Image.fromarray(np.ascontiguousarray(array[:, :, :3]))
    else:
        try:
            with Image.open(image) as opened:
                picture = opened.convert("RGB")
        except FileNotFoundError:
            raise EmberError(f"The starting image '{image}' does not exist. Pick another file.") from None
        except (*IMAGE_DECODE_ERRORS, Image.DecompressionBombError) as exc:
            raise EmberError(
                f"Ember cannot read the starting image '{image}' ({exc}). Pick a PNG, JPEG or WebP file."
            ) from None
    if picture.size != (width, height):
        picture = picture.resize((width, height), resample=Image.Resampling.LANCZOS)
    pixels = np.asarray(picture).astype(np.float32) / 255.0
    return (2.0 * pixels - 1.0).transpose(2, 0, 1)[None].astype(np.float32)


@dataclass
class Conditioning:
    """What the UNet reads besides the latents, for the whole (guided) batch."""

    encoder_hidden_states: np.ndarray
    text_embeds: np.ndarray | None = None
    time_ids: np.ndarray | None = None
    timestep_cond: np.ndarray | None = None

    def feeds(self) -> dict[str, np.ndarray]:
        items = {
            "encoder_hidden_states": self.encoder_hidden_states,
            "text_embeds": self.text_embeds,
            "time_ids": self.time_ids,
            "timestep_cond": self.timestep_cond,
        }
        return {k: v for k, v in items.items() if v is not None}


@dataclass
class PipelineOutput:
    """Images (HxWx3 uint8, or float32 in [0, 1] for ``output_type="float"``) and how they were made."""

    images: list[np.ndarray]
    steps: int
    guidance_scale: float
    sampler: str
    step_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tiled_decode: bool = False


class DiffusionPipeline:
    """A diffusers-ONNX model folder, ready to make images.

    ``device`` is "cpu" or "cuda"; ``threads`` the CPU threads for onnxruntime. Graphs load on
    first use (the VAE encoder only for img2img); :meth:`unload_component` and :meth:`unload`
    free them again. ``io_binding`` None uses it on CUDA only; tests force it on the CPU to
    check that path.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        device: Literal["cpu", "cuda"] = "cpu",
        threads: int = 1,
        io_binding: bool | None = None,
    ) -> None:
        self.model = read_model_folder(folder)
        self.device = device
        providers = [CUDA, CPU] if device == "cuda" else [CPU]
        root = self.model.path
        names = [enc for _, enc in self.model.encoders] + ["unet", "vae_decoder", "vae_encoder"]
        self.graphs: dict[str, OnnxGraph] = {
            name: OnnxGraph(name.replace("_", " "), root / name / "model.onnx", providers, threads) for name in names
        }
        self.io_binding = io_binding
        self._tokenizers: dict[str, Any] = {}

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the tokenizers and every graph text-to-image needs. Raises ModelFileError for damaged files."""
        for tok, enc in self.model.encoders:
            self.tokenizer(tok)
            self.graphs[enc].load()
        self.graphs["unet"].load()
        self.graphs["vae_decoder"].load()

    def unload_component(self, name: str) -> None:
        """Free one graph ("unet", "vae_decoder", "text_encoder", ...); it loads again when next needed."""
        graph = self.graphs.get(name)
        if graph is not None:
            graph.unload()

    def unload(self) -> None:
        """Free every graph and tokenizer."""
        for graph in self.graphs.values():
            graph.unload()
        self._tokenizers.clear()

    @property
    def provider(self) -> str:
        """The execution provider the UNet runs on ("CUDAExecutionProvider" or "CPUExecutionProvider")."""
        return self.graphs["unet"].provider or (CUDA if self.device == "cuda" else CPU)

    def tokenizer(self, folder_name: str) -> Any:
        """Return the CLIP tokenizer of ``folder_name`` ("tokenizer" or "tokenizer_2"), loading it once."""
        if folder_name not in self._tokenizers:
            from engines.diffusion.tokenizer import ClipTokenizer

            self._tokenizers[folder_name] = ClipTokenizer.from_folder(self.model.path / folder_name)
        return self._tokenizers[folder_name]

    # -- memory -----------------------------------------------------------------------------
    @property
    def weights_bytes(self) -> int:
        """Bytes of the graph files text-to-image loads (the VAE encoder is added for img2img)."""
        return sum(g.file_bytes for name, g in self.graphs.items() if name != "vae_encoder")

    def memory_estimate(self, width: int = 512, height: int = 512, batch: int = 1, *, img2img: bool = False) -> int:
        """Return the bytes a run of ``batch`` images of ``width`` x ``height`` needs: weights plus activations.

        An estimate from the UNet's and VAE's configs: the UNet's largest attention scores and
        feature maps for the guided batch, and the VAE decoder's full-resolution feature maps
        for one image (or one tile, where the image is decoded in tiles).
        """
        scale = self.model.vae_scale
        latent_pixels = (width // scale) * (height // scale)
        rows = 2 * batch  # conditional + unconditional
        unet = self.model.unet_config
        channels = list(unet.get("block_out_channels") or [320, 640, 1280, 1280])
        blocks = list(unet.get("down_block_types") or ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"])
        level = next((i for i, b in enumerate(blocks) if "Attn" in b), len(blocks) - 1)
        heads_cfg = unet.get("num_attention_heads") or unet.get("attention_head_dim") or 8
        heads = heads_cfg[level] if isinstance(heads_cfg, list) else heads_cfg
        tokens = latent_pixels / 4**level
        # onnxruntime keeps the scores and their softmax: two float32 tensors of heads x tokens².
        attention = rows * heads * tokens * tokens * 4 * 2
        features = rows * latent_pixels * channels[0] * 4 * 24
        vae_side = TILE_LATENTS * scale if width * height > TILE_ABOVE_PIXELS else max(width, height)
        vae_channels = list(self.model.vae_config.get("block_out_channels") or [128, 256, 512, 512])
        vae_pixels = min(width * height, vae_side * vae_side)
        vae_tokens = vae_pixels / (scale * scale)
        vae = vae_pixels * vae_channels[0] * 4 * 6 + vae_tokens * vae_tokens * 4 * 2
        weights = self.weights_bytes + (self.graphs["vae_encoder"].file_bytes if img2img else 0)
        return int(weights + max(attention + features, vae) + _RUNTIME_OVERHEAD_BYTES)

    # -- the pipeline -----------------------------------------------------------------------
    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        *,
        width: int = 512,
        height: int = 512,
        steps: int | None = None,
        guidance_scale: float | None = None,
        scheduler: str = "",
        seeds: Sequence[int] = (0,),
        init_image: str | Path | np.ndarray | None = None,
        strength: float = 0.75,
        latents: np.ndarray | None = None,
        noise: NoiseSource | None = None,
        progress: Progress | None = None,
        cancel: CancelToken | None = None,
        output_type: Literal["uint8", "float"] = "uint8",
        tiled_decode: bool | None = None,
    ) -> PipelineOutput:
        """Make ``len(seeds)`` images of ``prompt``; image i is made from seed ``seeds[i]``.

        With ``init_image`` it is image-to-image: the image is encoded, noised to the timestep
        ``strength`` says, and denoised from there. ``latents`` (Nx4xH/8xW/8) replaces the
        starting noise (text-to-image) or the noise added to the image (img2img); ``noise``
        replaces every other random draw (the tests feed diffusers' noise through both).
        ``output_type="float"`` returns float32 images in [0, 1] before 8-bit rounding.

        Raises Cancelled (before the next step) when ``cancel`` is set, EmberError for bad
        inputs, ModelFileError for damaged model files, OutOfMemoryError when a graph cannot
        allocate.
        """
        model = self.model
        default_steps, default_guidance = model.defaults(strength if init_image is not None else None)
        steps = steps or default_steps
        guidance = default_guidance if guidance_scale is None else float(guidance_scale)
        batch = len(seeds)
        noise = noise or SeededNoise(seeds)
        sampler = make_scheduler(scheduler, model.scheduler_config)
        unet = self.graphs["unet"]
        # Guidance-distilled (LCM) UNets take the guidance as an input; otherwise guidance > 1
        # means classifier-free guidance: a second, unconditional half of the batch.
        embedded_guidance = unet.has_input("timestep_cond")
        use_cfg = guidance > 1.0 and not embedded_guidance
        notes: list[str] = []

        # 1. The prompt (and negative prompt) as text embeddings.
        cond = self.encode_prompt(prompt, negative_prompt, batch=batch, cfg=use_cfg, notes=notes)
        if model.xl:
            cond.time_ids = self._time_ids(width, height, batch, use_cfg)
        if embedded_guidance:
            dim = self._timestep_cond_dim()
            cond.timestep_cond = guidance_scale_embedding(np.full(batch, guidance - 1.0, dtype=np.float32), dim)

        # 2. The timesteps: all of them, or the last `strength` part for img2img.
        img2img = init_image is not None
        sampler.set_timesteps(steps, strength if img2img else None)
        timesteps = sampler.timesteps

        # 3. The starting latents.
        shape = (batch, model.latent_channels, height // model.vae_scale, width // model.vae_scale)
        if latents is not None:
            latents = np.asarray(latents, dtype=np.float32)
            if latents.size != math.prod(shape):
                raise EmberError(f"The starting latents have shape {latents.shape}; this request needs {shape}.")
            latents = latents.reshape(shape)
        if img2img:
            assert init_image is not None
            image_latents = self.encode_image(load_init_image(init_image, width, height), noise, batch)
            added = latents if latents is not None else noise.randn(shape)
            latents = sampler.add_noise(image_latents, added, timesteps[0])
        else:
            start = latents if latents is not None else noise.randn(shape)
            latents = (start * np.float32(sampler.init_noise_sigma)).astype(np.float32)

        # 4. The denoising loop.
        use_binding = self.io_binding if self.io_binding is not None else unet.provider == CUDA
        if use_binding:
            unet.bind(cond.feeds())
        step_s: list[float] = []
        try:
            for i, t in enumerate(timesteps):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                started = time.perf_counter()
                model_input = np.concatenate([latents, latents]) if use_cfg else latents
                model_input = sampler.scale_model_input(model_input, t)
                noise_pred = self.predict_noise(model_input, t, cond, bound=use_binding)
                if use_cfg:
                    uncond, text = noise_pred[:batch], noise_pred[batch:]
                    noise_pred = uncond + guidance * (text - uncond)
                latents = sampler.step(noise_pred, t, latents, noise)
                step_s.append(time.perf_counter() - started)
                if progress is not None:
                    progress.step(i + 1, len(timesteps))
                    if progress.wants_preview():
                        self._previews(sampler, latents, progress)
        finally:
            if use_binding:
                unet.unbind()

        # 5. Latents to pixels.
        if cancel is not None:
            cancel.raise_if_cancelled()
        tiled = tiled_decode if tiled_decode is not None else self.should_tile(width, height)
        images = []
        for j in range(batch):
            pixels = self.decode(latents[j : j + 1], tiled=tiled, cancel=cancel)[0].transpose(1, 2, 0)
            images.append(pixels if output_type == "float" else (pixels * 255.0).round().astype(np.uint8))
        return PipelineOutput(images, len(timesteps), guidance, sampler.name, step_s, notes, tiled)

    # -- the steps, one by one ----------------------------------------------------------------
    def predict_noise(self, sample: np.ndarray, t: float, cond: Conditioning, *, bound: bool = False) -> np.ndarray:
        """Return the UNet's prediction for ``sample`` at timestep ``t`` (noise, v or x0, as the model was trained).

        ``bound``: the conditioning was bound to the device with ``OnnxGraph.bind`` and only the
        sample and timestep are sent now.
        """
        unet = self.graphs["unet"]
        feeds = {"sample": sample, "timestep": self._timestep(t, len(sample))}
        outputs = unet.run_bound(feeds) if bound else unet.run({**feeds, **cond.feeds()})
        return outputs.get("out_sample", next(iter(outputs.values())))

    def encode_prompt(
        self, prompt: str, negative_prompt: str, *, batch: int, cfg: bool, notes: list[str]
    ) -> Conditioning:
        """Return the text conditioning for ``batch`` images: [negative x N, prompt x N] with guidance.

        SD 1.x/2.x read the text encoder's last hidden state. SDXL reads the penultimate hidden
        states of both encoders side by side, and the second encoder's pooled ``text_embeds``;
        its empty negative prompt is all zeros (``force_zeros_for_empty_prompt``), as in diffusers.
        """
        model = self.model
        zero_negative = model.xl and not negative_prompt and model.model_index.get("force_zeros_for_empty_prompt", True)
        texts = [prompt] if not cfg or zero_negative else [negative_prompt, prompt]
        hidden, pooled = [], None
        for tok_name, enc_name in model.encoders:
            tokenizer = self.tokenizer(tok_name)
            encoded = [tokenizer.encode(t) for t in texts]
            cut = encoded[-1]
            if cut.truncated and not any(f"cut at {tokenizer.max_length}" in n for n in notes):
                notes.append(
                    f"The prompt was cut at {tokenizer.max_length} tokens: the model does not see "
                    f"“{cut.dropped_text}”. Shorten it to keep every word."
                )
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            outputs = self.graphs[enc_name].run({"input_ids": ids})
            if model.xl:
                hidden.append(self._penultimate(outputs, enc_name))
                if "text_embeds" in outputs:
                    pooled = outputs["text_embeds"]
            else:
                hidden.append(outputs.get("last_hidden_state", next(iter(outputs.values()))))
        states = np.concatenate(hidden, axis=-1)
        if model.xl and pooled is None:
            raise ModelFileError(
                "This SDXL folder's second text encoder has no 'text_embeds' output. Re-export the model with optimum."
            )
        if cfg and zero_negative:
            states = np.concatenate([np.zeros_like(states), states])
            pooled = np.concatenate([np.zeros_like(pooled), pooled]) if pooled is not None else None
        # One row per text -> N rows each, negatives first (diffusers' order).
        states = np.repeat(states, batch, axis=0)
        pooled = np.repeat(pooled, batch, axis=0) if pooled is not None else None
        return Conditioning(states, pooled)

    @staticmethod
    def _penultimate(outputs: dict[str, np.ndarray], encoder: str) -> np.ndarray:
        layers = sorted(
            (int(name.rsplit(".", 1)[1]), value) for name, value in outputs.items() if name.startswith("hidden_states.")
        )
        if len(layers) < 2:
            raise ModelFileError(
                f"This SDXL folder's {encoder} has no hidden_states outputs, which SDXL reads. "
                "Re-export the model with optimum."
            )
        return layers[-2][1]

    def _time_ids(self, width: int, height: int, batch: int, cfg: bool) -> np.ndarray:
        """SDXL's size conditioning: original size, crop corner, target size (or aesthetic score for refiners)."""
        if self.model.model_index.get("requires_aesthetics_score"):
            positive, negative = [height, width, 0, 0, 6.0], [height, width, 0, 0, 2.5]
        else:
            positive = negative = [height, width, 0, 0, height, width]
        rows = [negative] * batch + [positive] * batch if cfg else [positive] * batch
        return np.array(rows, dtype=np.float32)

    def _timestep_cond_dim(self) -> int:
        shape = self.graphs["unet"].input_shape("timestep_cond")
        if len(shape) == 2 and isinstance(shape[1], int):
            return shape[1]
        return int(self.model.unet_config.get("time_cond_proj_dim") or 256)

    def _timestep(self, t: float, rows: int) -> np.ndarray:
        """The timestep as the UNet graph declares it: a scalar (optimum's export), [1] or [batch]."""
        shape = self.graphs["unet"].input_shape("timestep")
        value = np.float64(t)
        if not shape:
            return np.array(value)
        if isinstance(shape[0], int) and shape[0] == 1:
            return np.array([value])
        return np.full(rows, value)

    def encode_image(self, image: np.ndarray, noise: NoiseSource, batch: int) -> np.ndarray:
        """Return the starting image's latents for each of ``batch`` images (scaled for the UNet).

        The VAE encoder gives a mean and a log-variance; each image samples its own latents
        from them with its own noise, as diffusers' ``retrieve_latents`` does by default.
        Raises EmberError when the folder has no VAE encoder.
        """
        encoder = self.graphs["vae_encoder"]
        if not encoder.path.is_file():
            raise EmberError(
                "This model folder has no vae_encoder, so it cannot start from an image. Make the image from "
                "text, or re-export the model with optimum (which writes vae_encoder/)."
            )
        outputs = encoder.run({"sample": image})
        parameters = outputs.get("latent_parameters", next(iter(outputs.values())))
        mean, logvar = np.split(parameters, 2, axis=1)
        std = np.exp(np.float32(0.5) * np.clip(logvar, -30.0, 20.0))
        sample = mean + std * noise.randn((batch, *mean.shape[1:]))
        return self._to_unet_latents(sample)

    def _to_unet_latents(self, vae_latents: np.ndarray) -> np.ndarray:
        vae = self.model.vae_config
        factor = self.model.scaling_factor
        if vae.get("latents_mean") is not None and vae.get("latents_std") is not None:
            mean = np.array(vae["latents_mean"], dtype=np.float32).reshape(1, -1, 1, 1)
            std = np.array(vae["latents_std"], dtype=np.float32).reshape(1, -1, 1, 1)
            return ((vae_latents - mean) * factor / std).astype(np.float32)
        return (factor * vae_latents).astype(np.float32)

    def _to_vae_latents(self, latents: np.ndarray) -> np.ndarray:
        vae = self.model.vae_config
        factor = self.model.scaling_factor
        if vae.get("latents_mean") is not None and vae.get("latents_std") is not None:
            mean = np.array(vae["latents_mean"], dtype=np.float32).reshape(1, -1, 1, 1)
            std = np.array(vae["latents_std"], dtype=np.float32).reshape(1, -1, 1, 1)
            return (latents * std / factor + mean).astype(np.float32)
        return (latents / factor).astype(np.float32)

    def should_tile(self, width: int, height: int) -> bool:
        """Whether to decode in tiles: above 1024x1024, or when a whole decode would not fit in free memory."""
        if width * height > TILE_ABOVE_PIXELS:
            return True
        from engines.hardware import available_ram_bytes

        channels = list(self.model.vae_config.get("block_out_channels") or [128])
        whole_decode = width * height * channels[0] * 4 * 6
        return whole_decode > available_ram_bytes() // 2

    def decode(
        self,
        latents: np.ndarray,
        *,
        tiled: bool = False,
        tile: int = TILE_LATENTS,
        overlap: int = TILE_OVERLAP_LATENTS,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """Return one image's latents (1x4xhxw, UNet scale) as 1x3xHxW float32 pixels in [0, 1].

        ``tiled`` decodes ``tile`` x ``tile`` latent tiles sharing ``overlap`` latent pixels
        (see engines/diffusion/tiling.py), checking ``cancel`` between tiles.
        """
        decoder = self.graphs["vae_decoder"]

        def run(part: np.ndarray) -> np.ndarray:
            outputs = decoder.run({"latent_sample": part})
            return outputs.get("sample", next(iter(outputs.values())))

        vae_latents = self._to_vae_latents(latents)
        if tiled:
            check = cancel.raise_if_cancelled if cancel is not None else None
            scale = self.model.vae_scale
            image = decode_tiled(run, vae_latents, tile=tile, overlap=overlap, scale=scale, between_tiles=check)
        else:
            image = run(vae_latents)
        return np.clip(image * 0.5 + 0.5, 0.0, 1.0).astype(np.float32)

    def _previews(self, sampler: Scheduler, latents: np.ndarray, progress: Progress) -> None:
        estimate = sampler.pred_original_sample if sampler.pred_original_sample is not None else latents
        for j in range(len(latents)):
            picture = latent_preview(estimate[j], xl=self.model.xl)
            if picture is not None:
                progress.preview(picture, j)
