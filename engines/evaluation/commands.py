"""``main.py evaluate text|image|speech|music``: diversity, quality proxies and speed, measured on samples."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from engines.errors import EmberError
from engines.modality import Command


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=("text", "image", "speech", "music"), help="what to evaluate")
    parser.add_argument(
        "prompt",
        help="text and image: the prompt every sample answers; speech: the text to speak (one clip a seed); "
        "music: the styles to compose in, comma-separated (pop,lofi,...)",
    )
    parser.add_argument(
        "--model",
        help="text: a .gguf file or an embedded model id (default: smollm2-135m-instruct); "
        "image: a diffusers-ONNX folder (required); speech: a voice (default: heart)",
    )
    parser.add_argument("--reference", help="text: the model perplexity is scored under (default: the same model)")
    parser.add_argument("--samples", type=int, default=None, help="how many samples, seeds 1..N (text 8, image 4)")
    parser.add_argument("--steps", type=int, default=None, help="image: denoising steps (default: the model's)")
    parser.add_argument("--size", type=int, default=512, help="image: width and height")
    parser.add_argument(
        "--clip",
        help="image: the CLIP model that scores the images against the prompt, a folder or its text_model*.onnx "
        "(default: the installed one; download 'CLIP ViT-B/32' with main.py models --download "
        "clip-vit-base-patch32-int8)",
    )
    parser.add_argument("--bars", type=int, default=8, help="music: bars a piece")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--json", action="store_true", help="print the figures and the samples as JSON")


def _run(args: argparse.Namespace) -> int:
    from engines.studio import Studio

    samples = args.samples or {"text": 8, "image": 4, "speech": 3, "music": 2}[args.kind]
    if samples < (2 if args.kind in ("text", "image") else 1) or args.max_tokens < 1:
        raise EmberError("--samples must be at least 2 (1 for speech and music) and --max-tokens at least 1.")
    if args.kind == "image" and not args.model:
        raise EmberError("Give the image model's folder with --model (main.py models lists them).")
    studio = Studio()
    try:
        if args.kind == "text":
            from engines.evaluation.text import evaluate_text
            from engines.text.commands import model_path

            path = model_path(args.model)
            reference = model_path(args.reference) if args.reference else path
            result: object = evaluate_text(
                studio,
                path,
                args.prompt,
                samples=samples,
                max_tokens=args.max_tokens,
                temperature=args.temperature,
                reference_path=reference,
            )
        elif args.kind == "image":
            from engines.evaluation.image import evaluate_image

            result = evaluate_image(
                studio, args.model, args.prompt, samples=samples, steps=args.steps, size=args.size, clip=args.clip
            )
        elif args.kind == "speech":
            from engines.evaluation.audio import evaluate_speech

            result = evaluate_speech(studio, args.model or "heart", [args.prompt] * samples)
        else:
            from engines.evaluation.audio import evaluate_music

            styles = tuple(s.strip() for s in args.prompt.split(",") if s.strip())
            result = evaluate_music(studio, styles, seeds=samples, bars=args.bars)
    finally:
        studio.close()
    print(json.dumps(asdict(result), indent=2) if args.json else result.table())  # type: ignore[call-overload, attr-defined]
    sys.stdout.flush()
    return 0


EVALUATE = Command(
    name="evaluate",
    help="diversity, quality proxies and speed of a text, image, speech or music model",
    description="Make N samples of one prompt through the Studio (safety, watermark and library as always) and "
    "measure them. Text: distinct-1/2 and self-BLEU, perplexity under a reference model, tokens/s and time to "
    "first token. Images: mean pairwise distance (luma SSIM, colour histograms), sharpness, colourfulness, "
    "exposure, the safety score, the CLIP score against the prompt when a CLIP model is installed (download "
    "'CLIP ViT-B/32' in Models), seconds per image and per step. Speech: the round-trip word error rate through "
    "Whisper, levels, real-time factor. Music: pitch-class entropy, levels, real-time factor. Proxies, named as "
    "such; min, median and max.",
    arguments=_arguments,
    run=_run,
)
