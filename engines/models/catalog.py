"""Ember's curated model catalog: what can be downloaded, from where, under which licence, and what it needs.

The catalog is ``resources/catalog.json`` (its shape is also written down as a JSON Schema in
``resources/catalog.schema.json``). It is read strictly: an unknown key, a missing field, a
kind Ember does not know, a size that is not a positive number, a SHA-256 that is not 64 hex
digits, a duplicate id or a pickle file (``.bin``, ``.ckpt``, ``.pt``, ``.pth``) stops loading
with a message that names the entry, so a bad edit never reaches a person as a broken download.

Sizes are exact (``size_exact``) only where the published size is known; the downloader checks
exact sizes and known SHA-256s against what the hub serves and treats the others as a guide.
An entry with ``include`` patterns names a whole folder (a diffusers ONNX export): the files to
fetch are those of the repository that match the patterns, ``files`` lists the main ones, and
``download_size_bytes`` is the folder's approximate total.

The kinds an entry may have, with the panel, the format and the defaults that go with each, are
the modalities' and the tools' (``engines.modalities.model_kinds``: a CLIP model for Evaluate, say);
``KINDS``, ``PANELS`` and ``FORMATS`` are read from there whenever they are asked for, so a modality
registered at run time is in them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.errors import EmberError
from engines.modalities import model_kinds
from engines.modality import ModelKind
from engines.models.downloads import DownloadRequest, files_with_included
from engines.models.formats import is_pickle

BACKENDS = frozenset({"cpu", "cuda", "metal", "vulkan", "rocm", "directml", "coreml"})
_REQUIRED = (
    "id",
    "name",
    "family",
    "kind",
    "panel",
    "format",
    "repo",
    "revision",
    "files",
    "licence",
    "licence_name",
    "licence_url",
    "gated",
    "purpose",
    "needs",
    "defaults",
    "quantisation",
    "parameters",
    "backends",
)
_OPTIONAL = ("include", "download_size_bytes", "notes")
_FILE_KEYS = ("path", "size_bytes", "size_exact", "sha256")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,80}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CatalogError(EmberError):
    """The model catalog file is damaged or does not follow its schema."""


def _kinds() -> dict[str, ModelKind]:
    return {k.kind: k for k in model_kinds()}


def __getattr__(name: str) -> Any:
    """``KINDS`` (the kind names), ``PANELS`` and ``FORMATS`` (kind to panel, kind to format), as now registered."""
    if name == "KINDS":
        return tuple(_kinds())
    if name == "PANELS":
        return {k.kind: k.panel for k in model_kinds()}
    if name == "FORMATS":
        return {k.kind: k.format for k in model_kinds()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class CatalogFile:
    """One file of a catalog entry, as a path inside the repository."""

    path: str
    size_bytes: int
    size_exact: bool
    sha256: str | None

    @property
    def expected_size_bytes(self) -> int | None:
        """Return the size a download must have, or None when the size is only approximate."""
        return self.size_bytes if self.size_exact else None


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable model. ``ram_bytes``/``vram_bytes`` are estimates at the entry's defaults."""

    id: str
    name: str
    family: str
    kind: str
    panel: str
    format: str
    repo: str
    revision: str
    files: tuple[CatalogFile, ...]
    licence: str
    licence_name: str
    licence_url: str
    gated: bool
    purpose: str
    ram_bytes: int
    vram_bytes: int
    quantisation: str
    parameters: int
    backends: tuple[str, ...]
    context_tokens: int | None = None
    image_width: int | None = None
    image_height: int | None = None
    steps: int | None = None
    scale: int | None = None
    tile: int | None = None
    sample_rate_hz: int | None = None
    include: tuple[str, ...] = ()
    download_size_bytes: int | None = None
    notes: str = ""

    @property
    def size_bytes(self) -> int:
        """Return how much the download takes on disk (approximate for folders)."""
        return self.download_size_bytes or sum(f.size_bytes for f in self.files)

    @property
    def main_file(self) -> CatalogFile:
        """Return the file a model is opened by: the .gguf, the voice's or upscaler's .onnx, or the first."""
        for suffix in (".gguf", ".onnx", "model_index.json"):
            for f in self.files:
                if f.path.endswith(suffix):
                    return f
        return self.files[0]

    def files_to_fetch(self, repo_files: Iterable[str] | None = None) -> tuple[str, ...]:
        """Return the repository paths to download: ``files``, and for an entry with ``include``
        patterns every path of ``repo_files`` (the repository's listing at ``revision``) that matches.

        Without a listing it returns ``files`` alone, which for a folder entry may lack weights kept
        in external data files: list the repository first (``HfApi.list_repo_files``).
        """
        wanted = tuple(f.path for f in self.files)
        if self.include and repo_files is not None:
            return files_with_included(wanted, self.include, repo_files)
        return wanted

    def expected_sha256(self) -> dict[str, str]:
        """Return {repository path: SHA-256} for the files whose published hash is known."""
        return {f.path: f.sha256 for f in self.files if f.sha256}

    def expected_sizes(self) -> dict[str, int]:
        """Return {repository path: size} for the files whose exact size is known."""
        return {f.path: f.size_bytes for f in self.files if f.size_exact}


def default_catalog_path() -> Path:
    """Return the catalog shipped with Ember (``resources/catalog.json``)."""
    return Path(__file__).resolve().parents[2] / "resources" / "catalog.json"


def load_catalog(path: Path | str | None = None) -> list[CatalogEntry]:
    """Return the entries of the catalog at ``path`` (Ember's own when None), in file order.

    Raises CatalogError, naming the entry and the field, when the file cannot be read, is
    not JSON, or breaks the schema in any way.
    """
    path = Path(path) if path is not None else default_catalog_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"Ember cannot read its model catalog {path} ({exc.strerror or exc}).") from None
    except ValueError as exc:
        raise CatalogError(f"The model catalog {path.name} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise CatalogError(f"The model catalog {path.name} must be a JSON object with 'schema' and 'entries'.")
    unknown = set(data) - {"schema", "entries", "description"}
    if unknown:
        raise CatalogError(f"The model catalog {path.name} has unknown top-level keys: {', '.join(sorted(unknown))}.")
    if data.get("schema") != 1:
        raise CatalogError(f"The model catalog {path.name} is schema {data.get('schema')!r}; Ember reads schema 1.")
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise CatalogError(f"The model catalog {path.name} has no entries.")
    entries: list[CatalogEntry] = []
    seen: set[str] = set()
    for number, raw in enumerate(raw_entries, start=1):
        entry = _entry(raw, number, path.name)
        if entry.id in seen:
            raise CatalogError(f"Model catalog {path.name}: entry '{entry.id}' (#{number}) repeats an id.")
        seen.add(entry.id)
        entries.append(entry)
    return entries


def find_entry(entries: list[CatalogEntry], entry_id: str) -> CatalogEntry:
    """Return the entry called ``entry_id``. Raises CatalogError when there is none."""
    for entry in entries:
        if entry.id == entry_id:
            return entry
    raise CatalogError(f"The model catalog has no model '{entry_id}'.")


def download_request(entry: CatalogEntry, token: str | None = None) -> DownloadRequest:
    """Return the download of ``entry``: its files, its include patterns (the rest of a folder, found
    by listing the repository when it runs), and the sizes and hashes the catalog knows.

    ``token`` (an empty one counts as none) is sent to the hub, never stored. Raises nothing for an
    entry that :func:`load_catalog` returned.
    """
    return DownloadRequest(
        repo_id=entry.repo,
        files=tuple(f.path for f in entry.files),
        revision=entry.revision,
        expected_sha256=entry.expected_sha256(),
        expected_size_bytes=entry.expected_sizes(),
        token=token or None,
        label=entry.name,
        include=entry.include,
    )


class _Problem(Exception):
    pass


def _entry(raw: Any, number: int, catalog: str) -> CatalogEntry:
    label = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else "?"
    try:
        return _parse(raw)
    except _Problem as exc:
        raise CatalogError(f"Model catalog {catalog}: entry '{label}' (#{number}): {exc}") from None


def _parse(raw: Any) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise _Problem("it is not a JSON object")
    unknown = set(raw) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise _Problem(f"unknown key(s) {', '.join(sorted(unknown))}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _Problem(f"missing field(s) {', '.join(missing)}")
    entry_id = _text(raw, "id")
    if not _ID.match(entry_id):
        raise _Problem("'id' must be lowercase letters, digits, '.', '_' or '-'")
    kinds = _kinds()
    kind = _text(raw, "kind")
    if kind not in kinds:
        raise _Problem(f"kind '{kind}' is not one of {', '.join(kinds)}")
    known = kinds[kind]
    panel = _text(raw, "panel")
    if panel != known.panel:
        raise _Problem(f"a {kind} model belongs to the {known.panel} panel, not '{panel}'")
    fmt = _text(raw, "format")
    if fmt != known.format:
        raise _Problem(f"a {kind} model is in format '{known.format}', not '{fmt}'")
    repo = _text(raw, "repo")
    if not _REPO.match(repo):
        raise _Problem(f"repo '{repo}' is not an 'owner/name' Hugging Face repository")
    files = _files(raw["files"], fmt)
    url = _text(raw, "licence_url")
    if not url.startswith("https://"):
        raise _Problem("'licence_url' must be an https:// address")
    if not isinstance(raw["gated"], bool):
        raise _Problem("'gated' must be true or false")
    purpose = _text(raw, "purpose")
    if len(purpose) > 200:
        raise _Problem("'purpose' must be one line (200 characters at most)")
    needs = raw["needs"]
    if not isinstance(needs, dict) or set(needs) != {"ram_bytes", "vram_bytes"}:
        raise _Problem("'needs' must hold exactly 'ram_bytes' and 'vram_bytes'")
    defaults = _defaults(raw["defaults"], known)
    backends = raw["backends"]
    if not isinstance(backends, list) or not backends or not all(isinstance(b, str) for b in backends):
        raise _Problem("'backends' must be a non-empty list of names")
    strange = set(backends) - BACKENDS
    if strange:
        raise _Problem(f"unknown backend(s) {', '.join(sorted(strange))}")
    include = raw.get("include", [])
    if not isinstance(include, list) or not all(isinstance(p, str) and p.strip() for p in include):
        raise _Problem("'include' must be a list of file patterns")
    download_size = raw.get("download_size_bytes")
    if download_size is not None:
        download_size = _positive(download_size, "download_size_bytes")
    notes = raw.get("notes", "")
    if not isinstance(notes, str):
        raise _Problem("'notes' must be text")
    return CatalogEntry(
        id=entry_id,
        name=_text(raw, "name"),
        family=_text(raw, "family"),
        kind=kind,
        panel=panel,
        format=fmt,
        repo=repo,
        revision=_text(raw, "revision"),
        files=files,
        licence=_text(raw, "licence"),
        licence_name=_text(raw, "licence_name"),
        licence_url=url,
        gated=raw["gated"],
        purpose=purpose,
        ram_bytes=_positive(needs["ram_bytes"], "needs.ram_bytes"),
        vram_bytes=_positive(needs["vram_bytes"], "needs.vram_bytes"),
        quantisation=_text(raw, "quantisation"),
        parameters=_positive(raw["parameters"], "parameters"),
        backends=tuple(backends),
        context_tokens=defaults.get("context_tokens"),
        image_width=defaults.get("width"),
        image_height=defaults.get("height"),
        steps=defaults.get("steps"),
        scale=defaults.get("scale"),
        tile=defaults.get("tile"),
        sample_rate_hz=defaults.get("sample_rate_hz"),
        include=tuple(include),
        download_size_bytes=download_size,
        notes=notes,
    )


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise _Problem(f"'{key}' must be non-empty text")
    return value


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Problem(f"'{what}' must be a whole number above 0, not {value!r}")
    return value


def _files(raw: Any, fmt: str) -> tuple[CatalogFile, ...]:
    if not isinstance(raw, list) or not raw:
        raise _Problem("'files' must be a non-empty list")
    files = []
    for item in raw:
        if not isinstance(item, dict):
            raise _Problem("each file must be an object with path, size_bytes, size_exact and sha256")
        unknown = set(item) - set(_FILE_KEYS)
        missing = [k for k in _FILE_KEYS if k not in item]
        if unknown or missing:
            detail = f"unknown {', '.join(sorted(unknown))}" if unknown else f"missing {', '.join(missing)}"
            raise _Problem(f"a file entry is wrong ({detail})")
        path = item["path"]
        if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
            raise _Problem(f"file path {path!r} is not a path inside the repository")
        if any(part in ("", ".", "..") for part in path.split("/")):
            raise _Problem(f"file path {path!r} is not a path inside the repository")
        if is_pickle(path):
            raise _Problem(f"'{path}' is a pickle-based file, which can run code when loaded; Ember lists none")
        size = _positive(item["size_bytes"], f"size_bytes of {path}")
        if not isinstance(item["size_exact"], bool):
            raise _Problem(f"'size_exact' of {path} must be true or false")
        sha = item["sha256"]
        if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
            raise _Problem(f"the sha256 of {path} must be 64 lowercase hex digits or null")
        files.append(CatalogFile(path, size, item["size_exact"], sha))
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise _Problem("a file is listed twice")
    if fmt == "gguf" and not any(p.lower().endswith(".gguf") for p in paths):
        raise _Problem("a GGUF model must list its .gguf file")
    if fmt == "piper" and not any(p.endswith(".onnx") and p + ".json" in paths for p in paths):
        raise _Problem("a piper voice must list its .onnx file and the .onnx.json beside it")
    if fmt == "onnx" and not any(p.endswith(".onnx") for p in paths):
        raise _Problem("an ONNX model must list its .onnx file")
    return tuple(files)


def _defaults(raw: Any, kind: ModelKind) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise _Problem("'defaults' must be an object")
    unknown = set(raw) - kind.defaults
    if unknown:
        raise _Problem(f"'defaults' has key(s) a {kind.kind} model does not use: {', '.join(sorted(unknown))}")
    missing = kind.required_defaults - set(raw)
    if missing:
        raise _Problem(f"'defaults' must give {', '.join(sorted(missing))}")
    return {k: _positive(v, f"defaults.{k}") for k, v in raw.items()}
