"""Export a MusicGen checkpoint (transformers, safetensors) to the ONNX folder Ember runs, with optimum.

``main.py convert-music SOURCE`` calls :func:`export_musicgen`. SOURCE is a local folder
(``config.json`` with ``model_type: musicgen``, safetensors weights, the T5 tokenizer) such as
a downloaded ``facebook/musicgen-small``. The export is optimum-onnx's (task text-to-audio):
text_encoder.onnx, decoder_model.onnx, decoder_with_past_model.onnx, encodec_decode.onnx; the
merged decoder is not made (Ember runs the two). It is written into a temporary folder beside
the target and renamed when whole, so a failed export leaves nothing behind. Needs the
``[convert]`` extra (torch, transformers, optimum-onnx); Ember itself runs the result without torch.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from engines.errors import EmberError, ModelFileError

# Besides the graphs: what Ember reads from the folder (engines/music/musicgen.py).
KEPT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",
              "config.json", "generation_config.json", "preprocessor_config.json", "LICENSE", "README.md")  # fmt: skip
# Meta's published MusicGen weights (facebook/musicgen-*): said before a person uses the export.
WEIGHTS_LICENCE_NOTE = (
    "Meta's MusicGen weights (facebook/musicgen-small, -medium, -large, -melody) are licensed CC-BY-NC-4.0: "
    "non-commercial use only, with attribution. Check the licence of the checkpoint you converted."
)


def export_musicgen(source: Path | str, out: Path | str, progress: Callable[[str], None] | None = None) -> Path:
    """Export the MusicGen checkpoint folder ``source`` into ``out`` (which must not exist); return ``out``.

    Raises ModelFileError for a folder that is not a MusicGen checkpoint or holds pickle weights,
    EmberError when the converter is not installed, the target exists, or optimum fails.
    """
    source, out = Path(source), Path(out)
    say = progress or (lambda message: None)
    _check_checkpoint(source)
    if out.exists():
        raise EmberError(f"{out} already exists. Choose another folder, or delete it first.")
    try:
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise EmberError(
            "Converting needs the converter's libraries (torch, transformers, optimum-onnx): "
            "pip install 'ember-studio[convert]'."
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        work = Path(tmp) / "onnx"
        say(f"Exporting {source.name} to ONNX with optimum (text encoder, decoders, EnCodec)…")
        try:
            main_export(
                str(source),
                output=str(work),
                task="text-to-audio",
                device="cpu",
                # Validation runs every graph against torch a second time; Ember's tests prove the
                # decode loop equal to transformers'. The merged decoder is not what Ember runs.
                do_validation=False,
                no_post_process=True,
            )
        except Exception as exc:  # optimum and torch raise many types; the reason is what a person needs
            raise EmberError(f"optimum could not export {source.name} ({type(exc).__name__}: {exc}).") from None
        for name in KEPT_FILES:
            if (source / name).is_file() and not (work / name).is_file():
                shutil.copy2(source / name, work / name)
        if not (work / "tokenizer.json").is_file():
            raise ModelFileError(
                f"{source.name} has no tokenizer.json (the fast T5 tokenizer Ember reads). Download the "
                "checkpoint with its tokenizer files."
            )
        work.rename(out)
    say(WEIGHTS_LICENCE_NOTE)
    return out


def _check_checkpoint(source: Path) -> None:
    config = source / "config.json"
    if not config.is_file():
        raise ModelFileError(f"{source} is not a MusicGen checkpoint folder: it has no config.json.")
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"The config.json in {source} cannot be read ({exc}).") from None
    if kind not in ("musicgen", "musicgen_melody"):
        raise ModelFileError(f"{source.name} is a {kind or 'unknown'} model, not MusicGen (config.json model_type).")
    if kind == "musicgen_melody":
        raise ModelFileError("MusicGen-Melody needs a melody input Ember does not give yet; convert a MusicGen model.")
    if not any(source.glob("*.safetensors")):
        pickles = [p.name for p in source.glob("*.bin")]
        reason = f"only pickle weights ({', '.join(pickles)}), which can run code" if pickles else "no weights"
        raise ModelFileError(f"{source.name} has {reason}. Ember converts safetensors checkpoints only.")
