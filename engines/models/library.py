"""The models this machine has: imported in place, downloaded, and found where other apps keep theirs.

Importing records a model WHERE IT IS: Ember never copies a user's multi-gigabyte file, and never
deletes one. ``discover`` lists, besides the embedded defaults and the records, the models that
already sit in the Hugging Face cache (which transformers, diffusers, llama.cpp and Ember's own
downloads share), LM Studio's models folders and GPT4All's. It reads metadata only, and remembers
each inspection by (path, size, modification time) in the database, so a second scan costs a
``stat`` per file. An entry that cannot be read never stops a scan: it is skipped, logged, and
reported in ``problems``.

Every root can be given to the constructor; otherwise ``HF_HUB_CACHE`` / ``HF_HOME`` (as
huggingface_hub reads them), ``EMBER_LMSTUDIO_DIRS`` and ``EMBER_GPT4ALL_DIRS`` (lists separated
by ``os.pathsep``) and the apps' own settings files are used.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.database import Database
from engines.diffusion.folder import diffusion_roots, is_diffusion_folder
from engines.errors import EmberError, ModelFileError
from engines.models.catalog import CatalogEntry, CatalogError, load_catalog
from engines.models.embedded import EMBEDDED_PREFIX, EMBEDDED_TEXT_MODELS, EmbeddedModel, package_file
from engines.models.inspect import ModelInfo, UnsupportedModel, inspect_model
from engines.paths import cache_dir, data_dir

log = logging.getLogger(__name__)

SOURCES = ("embedded", "imported", "downloaded", "huggingface", "lmstudio", "gpt4all")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS model_library (
        id TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        source TEXT NOT NULL,
        added_at REAL NOT NULL,
        catalog_id TEXT,
        repo TEXT,
        info_json TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS model_inspections (
        path TEXT PRIMARY KEY,
        size_bytes INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        info_json TEXT,
        error TEXT,
        unsupported INTEGER NOT NULL DEFAULT 0,
        checked_at REAL NOT NULL
    )""",
)
_SCAN_DEPTH = 4  # LM Studio: publisher/repo/file.gguf, with room for one more level


@dataclass(frozen=True)
class InstalledModel:
    """A model Ember can open. ``path`` is what the engines take (a file, a folder, or
    ``embedded:<id>``); ``info.path`` is the file that was inspected."""

    id: str
    path: str
    kind: str
    name: str
    size_bytes: int
    source: str
    info: ModelInfo
    added_at: float | None = None
    catalog_id: str | None = None
    repo: str | None = None


@dataclass(frozen=True)
class DiscoveryProblem:
    """A model file that was found but could not be used, and why (for a person)."""

    path: str
    source: str
    reason: str


def model_id(path: str | Path) -> str:
    """Return the stable id of the model at ``path`` (the same for a record and a discovery)."""
    text = str(path)
    if text.startswith(EMBEDDED_PREFIX):
        return text
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class ModelLibrary:
    """Imported and downloaded models (recorded in ``db``) and the models found on disk."""

    def __init__(
        self,
        db: Database,
        *,
        hf_cache_dir: Path | str | None = None,
        lmstudio_dirs: Sequence[Path | str] | None = None,
        gpt4all_dirs: Sequence[Path | str] | None = None,
        home: Path | str | None = None,
        catalog: Sequence[CatalogEntry] | None = None,
        include_embedded: bool = True,
    ) -> None:
        self._db = db
        self._hf_cache = Path(hf_cache_dir) if hf_cache_dir is not None else None
        self._lmstudio = [Path(p) for p in lmstudio_dirs] if lmstudio_dirs is not None else None
        self._gpt4all = [Path(p) for p in gpt4all_dirs] if gpt4all_dirs is not None else None
        self._home = Path(home) if home is not None else None
        self._catalog = list(catalog) if catalog is not None else None
        self._include_embedded = include_embedded
        self.problems: list[DiscoveryProblem] = []
        self._discovered: dict[str, InstalledModel] = {}
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    # -- roots ------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self._home or Path.home()

    def hf_cache_dir(self) -> Path:
        """Return the Hugging Face hub cache: the constructor's, ``HF_HUB_CACHE``, ``HF_HOME``/hub, or the default."""
        if self._hf_cache is not None:
            return self._hf_cache
        env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
        if env:
            return Path(env).expanduser()
        hf_home = os.environ.get("HF_HOME")
        if hf_home:
            return Path(hf_home).expanduser() / "hub"
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg and self._home is None else self.home / ".cache"
        return base / "huggingface" / "hub"

    def lmstudio_dirs(self) -> list[Path]:
        """Return LM Studio's model folders: the constructor's, ``EMBER_LMSTUDIO_DIRS``, or LM Studio's own."""
        if self._lmstudio is not None:
            return self._lmstudio
        env = os.environ.get("EMBER_LMSTUDIO_DIRS")
        if env is not None:
            return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        dirs = [self.home / ".lmstudio" / "models", self.home / ".cache" / "lm-studio" / "models"]
        settings = self.home / ".lmstudio" / "settings.json"
        try:
            folder = json.loads(settings.read_text(encoding="utf-8")).get("downloadsFolder")
            if isinstance(folder, str) and folder:
                dirs.insert(0, Path(folder).expanduser())
        except (OSError, ValueError, AttributeError):
            pass
        return _unique(dirs)

    def gpt4all_dirs(self) -> list[Path]:
        """Return GPT4All's model folders: the constructor's, ``EMBER_GPT4ALL_DIRS``, or GPT4All's own."""
        if self._gpt4all is not None:
            return self._gpt4all
        env = os.environ.get("EMBER_GPT4ALL_DIRS")
        if env is not None:
            return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        home = self.home
        if sys.platform == "win32":
            local = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
            roaming = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
            dirs = [local / "nomic.ai" / "GPT4All"]
            inis = [roaming / "nomic.ai" / "GPT4All.ini", home / ".config" / "nomic.ai" / "GPT4All.ini"]
        elif sys.platform == "darwin":
            dirs = [home / "Library" / "Application Support" / "nomic.ai" / "GPT4All"]
            inis = [home / ".config" / "nomic.ai" / "GPT4All.ini"]
        else:
            dirs = [home / ".local" / "share" / "nomic.ai" / "GPT4All"]
            inis = [home / ".config" / "nomic.ai" / "GPT4All.ini"]
        for ini in inis:
            folder = _gpt4all_model_path(ini)
            if folder is not None:
                dirs.insert(0, folder)
        return _unique(dirs)

    # -- records ----------------------------------------------------------------------------
    def inspect(self, path: Path | str) -> ModelInfo:
        """Return the inspection of ``path``, from the cache when its size and time are unchanged.

        Raises ModelFileError (or its UnsupportedModel) as ``inspect_model`` does.
        """
        path = Path(path)
        cache = self._load_inspections([str(path)])
        info, error, pending = self._inspect_cached(path, cache)
        self._save_inspections(pending)
        if error is not None:
            raise error
        assert info is not None
        return info

    def import_path(self, path: Path | str) -> InstalledModel:
        """Record the model at ``path`` where it is (nothing is copied) and return it.

        Importing the same path again refreshes its record. Raises ModelFileError when the
        file or folder is not a model Ember can open, saying why.
        """
        return self._record(path, "imported")

    def record_download(
        self, path: Path | str, *, catalog_id: str | None = None, repo: str | None = None
    ) -> InstalledModel:
        """Record a model that Ember downloaded (into the Hugging Face cache) and return it.

        Raises ModelFileError when the downloaded file is not a model Ember can open.
        """
        return self._record(path, "downloaded", catalog_id=catalog_id, repo=repo)

    def _record(
        self, path: Path | str, source: str, *, catalog_id: str | None = None, repo: str | None = None
    ) -> InstalledModel:
        original = Path(path).expanduser()
        if not original.is_absolute():
            original = Path.cwd() / original
        info = self.inspect(original)
        text = str(original)
        existing = self._db.query("SELECT added_at, catalog_id, repo FROM model_library WHERE path = ?", (text,))
        added = float(existing[0]["added_at"]) if existing else time.time()
        if existing:
            catalog_id = catalog_id or existing[0]["catalog_id"]
            repo = repo or existing[0]["repo"]
        model = InstalledModel(
            id=model_id(text),
            path=text,
            kind=info.kind,
            name=info.name,
            size_bytes=info.size_bytes,
            source=source,
            info=info,
            added_at=added,
            catalog_id=catalog_id,
            repo=repo,
        )
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO model_library VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                "kind = excluded.kind, name = excluded.name, size_bytes = excluded.size_bytes, "
                "source = excluded.source, catalog_id = excluded.catalog_id, repo = excluded.repo, "
                "info_json = excluded.info_json",
                (
                    model.id,
                    text,
                    model.kind,
                    model.name,
                    model.size_bytes,
                    source,
                    added,
                    catalog_id,
                    repo,
                    json.dumps(info.to_json()),
                ),
            )
        return model

    def installed(self) -> list[InstalledModel]:
        """Return the imported and downloaded models as recorded, newest first (without checking the disk)."""
        rows = self._db.query("SELECT * FROM model_library ORDER BY added_at DESC")
        models = []
        for row in rows:
            try:
                info = ModelInfo.from_json(json.loads(row["info_json"]))
            except (ValueError, KeyError, TypeError):
                continue
            models.append(
                InstalledModel(
                    id=row["id"],
                    path=row["path"],
                    kind=row["kind"],
                    name=row["name"],
                    size_bytes=int(row["size_bytes"]),
                    source=row["source"],
                    info=info,
                    added_at=float(row["added_at"]),
                    catalog_id=row["catalog_id"],
                    repo=row["repo"],
                )
            )
        return models

    def get(self, model_id: str) -> InstalledModel:
        """Return the recorded or last-discovered model with this id. Raises EmberError when unknown."""
        for model in self.installed():
            if model.id == model_id:
                return model
        if model_id in self._discovered:
            return self._discovered[model_id]
        raise EmberError(f"Ember has no model with id {model_id}. It may have been removed; scan for models again.")

    def remove(self, model_id: str, delete_files: bool = False) -> bool:
        """Forget an imported or downloaded model. Returns True only if its files were deleted too.

        Files are deleted only when ``delete_files`` is set, the model was downloaded, and it
        lies inside a folder that Ember itself manages (its data or cache folder). An imported
        file is the person's own and is never deleted; downloads in the shared Hugging Face cache
        are removed by the download manager. Raises EmberError for an embedded or unknown model.
        """
        if model_id.startswith(EMBEDDED_PREFIX):
            raise EmberError("The embedded models come with Ember and cannot be removed.")
        rows = self._db.query("SELECT path, source FROM model_library WHERE id = ?", (model_id,))
        if not rows:
            found = self._discovered.get(model_id)
            if found is not None:
                raise EmberError(
                    f"'{found.name}' is not imported: Ember only found it in {_source_name(found.source)}. "
                    "Remove it there, or with the app that downloaded it."
                )
            raise EmberError(f"Ember has no imported model with id {model_id}; it may have been removed already.")
        path = Path(rows[0]["path"])
        deleted = False
        if delete_files and rows[0]["source"] == "downloaded" and _inside_managed(path):
            try:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                deleted = True
            except OSError as exc:
                raise EmberError(
                    f"Ember could not delete {path} ({exc.strerror or exc}); it is still recorded."
                ) from None
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM model_library WHERE id = ?", (model_id,))
        return deleted

    # -- discovery ------------------------------------------------------------------------------
    def discover(self) -> list[InstalledModel]:
        """Return every model Ember can open on this machine: embedded, recorded, and found on disk.

        Sources are listed in that order (embedded, imported/downloaded, Hugging Face cache,
        LM Studio, GPT4All); a file reachable from two places is listed once, under the first.
        Reads metadata only (cached by path, size and modification time). Never raises for a bad
        entry: it is left out and described in ``self.problems``.
        """
        problems: list[DiscoveryProblem] = []
        found: list[tuple[str, Path, str, dict[str, Any]]] = []  # (source, path, engine path, extras)
        if self._include_embedded:
            embedded = list(self._embedded(problems))
        else:
            embedded = []
        for model in self.installed():
            path = Path(model.path)
            if not path.exists():
                problems.append(
                    DiscoveryProblem(
                        model.path,
                        model.source,
                        f"'{model.name}' was {model.source} from {model.path}, which is no longer there "
                        "(moved, deleted, or on a drive that is not connected).",
                    )
                )
                continue
            found.append(
                (
                    model.source,
                    path,
                    model.path,
                    {"added_at": model.added_at, "catalog_id": model.catalog_id, "repo": model.repo},
                )
            )
        found.extend(self._scan_hf(problems))
        for root in self.lmstudio_dirs():
            found.extend(("lmstudio", p, str(p), {}) for p in self._scan_folder(root, problems, "lmstudio"))
        for root in self.gpt4all_dirs():
            found.extend(
                ("gpt4all", p, str(p), {})
                for p in self._scan_folder(root, problems, "gpt4all", depth=1)
                if not p.name.startswith("incomplete-")
            )

        cache = self._load_inspections([str(p) for _, p, _, _ in found])
        pending: list[tuple[str, int, int, str | None, str | None, bool]] = []
        models = list(embedded)
        seen = {_real(Path(m.info.path)) for m in embedded}
        for source, path, engine_path, extras in found:
            key = _real(path)
            if key in seen:
                continue
            info, error, writes = self._inspect_cached(path, cache)
            pending.extend(writes)
            if error is not None:
                if not isinstance(error, UnsupportedModel) or source in ("imported", "downloaded"):
                    problems.append(DiscoveryProblem(str(path), source, str(error)))
                log.info("Skipped %s (%s): %s", path, source, error)
                continue
            assert info is not None
            seen.add(key)
            models.append(
                InstalledModel(
                    id=model_id(engine_path),
                    path=engine_path,
                    kind=info.kind,
                    name=info.name,
                    size_bytes=info.size_bytes,
                    source=source,
                    info=info,
                    added_at=extras.get("added_at"),
                    catalog_id=extras.get("catalog_id"),
                    repo=extras.get("repo"),
                )
            )
        self._save_inspections(pending)
        self.problems = problems
        self._discovered = {m.id: m for m in models}
        return models

    def _embedded(self, problems: list[DiscoveryProblem]) -> Iterator[InstalledModel]:
        for model in EMBEDDED_TEXT_MODELS:
            if not model.installed:
                continue
            try:
                info = self._embedded_info(model)
            except ModelFileError as exc:
                problems.append(DiscoveryProblem(EMBEDDED_PREFIX + model.id, "embedded", str(exc)))
                continue
            yield InstalledModel(
                id=EMBEDDED_PREFIX + model.id,
                path=EMBEDDED_PREFIX + model.id,
                kind=info.kind,
                name=model.name,
                size_bytes=info.size_bytes,
                source="embedded",
                info=info,
            )

    def _embedded_info(self, model: EmbeddedModel) -> ModelInfo:
        """Inspect an embedded model; one that ships in parts and is not assembled yet is described
        from its package (assembling it writes hundreds of MB, which a scan must not do)."""
        if not model.parts:
            return self.inspect(model.path())
        target = cache_dir() / "models" / model.filename
        if target.exists() and target.stat().st_size > 0:
            return self.inspect(target)
        from engines.text.gguf_header import read_gguf_header

        parts = []
        for module, name in model.parts:
            part = package_file(module, f"data/{name}")
            if part is None:
                raise ModelFileError(
                    f"A part of the embedded model '{model.name}' is missing; reinstall {model.package}."
                )
            parts.append(part)
        header = read_gguf_header(target, parts=parts)  # read across the parts: nothing is written
        return ModelInfo(
            path=target,
            kind="text",
            format="gguf",
            name=model.name,
            architecture=header.architecture,
            parameter_count=header.parameter_count,
            context_length=header.context_length or None,
            quantisation=header.quantization,
            chat_template=header.chat_template,
            licence=model.license,
            size_bytes=header.file_bytes,
            details={
                "assembled": False,
                "package": model.package,
                "size_label": header.metadata.get("general.size_label"),
            },
        )

    def _catalog_index(self) -> dict[tuple[str, str], str]:
        if self._catalog is None:
            try:
                self._catalog = load_catalog()
            except CatalogError as exc:
                log.warning("No catalog to match downloads against: %s", exc)
                self._catalog = []
        index = {}
        for entry in self._catalog:
            if entry.format == "onnx-diffusers":
                index[(entry.repo, "")] = entry.id
            else:
                index[(entry.repo, entry.main_file.path)] = entry.id
        return index

    def _scan_hf(self, problems: list[DiscoveryProblem]) -> Iterator[tuple[str, Path, str, dict[str, Any]]]:
        cache = self.hf_cache_dir()
        if not cache.is_dir():
            return
        try:
            from huggingface_hub import scan_cache_dir  # imported here: it is not needed to start Ember

            scanned = scan_cache_dir(cache)
        except Exception as exc:  # a corrupted cache must not stop a scan
            problems.append(
                DiscoveryProblem(str(cache), "huggingface", f"The Hugging Face cache cannot be read: {exc}")
            )
            return
        for warning in scanned.warnings:
            log.info("Hugging Face cache: %s", warning)
        catalog = self._catalog_index()
        for repo in sorted(scanned.repos, key=lambda r: r.repo_id):
            if repo.repo_type != "model":
                continue
            # The revision a ref (main) points at first, then the newest.
            revisions = sorted(repo.revisions, key=lambda r: (not r.refs, -r.last_modified))
            for revision in revisions:
                snapshot = Path(revision.snapshot_path)
                names = [Path(f.file_path).relative_to(snapshot).as_posix() for f in revision.files]
                for rel in _model_candidates(names):
                    path = snapshot / rel if rel else snapshot
                    extras = {"repo": repo.repo_id, "catalog_id": catalog.get((repo.repo_id, rel))}
                    yield "huggingface", path, str(path), extras

    def _scan_folder(
        self, root: Path, problems: list[DiscoveryProblem], source: str, depth: int = _SCAN_DEPTH
    ) -> Iterator[Path]:
        if not root.is_dir():
            return
        base_depth = len(root.parts)
        for folder, dirs, files in os.walk(root, onerror=lambda e: log.info("Cannot read %s: %s", e.filename, e)):
            here = Path(folder)
            if len(here.parts) - base_depth >= depth:
                dirs[:] = []
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            names = sorted(files)
            if is_diffusion_folder(here):
                yield here
                dirs[:] = []
                continue
            for rel in _model_candidates(names, folders=False):
                yield here / rel

    # -- the inspection cache ---------------------------------------------------------------------
    def _load_inspections(self, paths: Iterable[str]) -> dict[str, Any]:
        wanted = set(paths)
        if not wanted:
            return {}
        rows = self._db.query("SELECT * FROM model_inspections")
        return {row["path"]: row for row in rows if row["path"] in wanted}

    def _inspect_cached(
        self, path: Path, cache: dict[str, Any]
    ) -> tuple[ModelInfo | None, ModelFileError | None, list[tuple[str, int, int, str | None, str | None, bool]]]:
        """Return (info, error, rows to save) for ``path``, inspecting only when it changed."""
        try:
            size, mtime = _signature(path)
        except OSError as exc:
            return None, ModelFileError(f"Ember cannot read '{path}' ({exc.strerror or exc})."), []
        row = cache.get(str(path))
        if row is not None and row["size_bytes"] == size and row["mtime_ns"] == mtime:
            if row["error"]:
                cls = UnsupportedModel if row["unsupported"] else ModelFileError
                return None, cls(row["error"]), []
            try:
                return ModelInfo.from_json(json.loads(row["info_json"])), None, []
            except (ValueError, KeyError, TypeError):
                pass  # an entry from an older Ember: inspect again
        try:
            info = inspect_model(path)
        except ModelFileError as exc:
            return None, exc, [(str(path), size, mtime, None, str(exc), isinstance(exc, UnsupportedModel))]
        except Exception as exc:  # a file that breaks the reader must not break the scan
            error = ModelFileError(f"Ember could not read '{path.name}' ({type(exc).__name__}: {exc}).")
            log.warning("Inspecting %s failed", path, exc_info=True)
            return None, error, [(str(path), size, mtime, None, str(error), False)]
        return info, None, [(str(path), size, mtime, json.dumps(info.to_json()), None, False)]

    def _save_inspections(self, rows: list[tuple[str, int, int, str | None, str | None, bool]]) -> None:
        if not rows:
            return
        now = time.time()
        try:
            with self._db.transaction() as conn:
                conn.executemany(
                    "INSERT INTO model_inspections VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                    "size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns, info_json = excluded.info_json, "
                    "error = excluded.error, unsupported = excluded.unsupported, checked_at = excluded.checked_at",
                    [(p, s, m, i, e, int(u), now) for p, s, m, i, e, u in rows],
                )
        except EmberError as exc:
            log.info("The inspection cache was not saved: %s", exc)  # only the next scan is slower


def _model_candidates(names: Sequence[str], folders: bool = True) -> list[str]:
    """Return the model files among the relative paths ``names`` of one folder tree, and (with
    ``folders``) its diffusers ONNX folders, each as its relative folder ("" for the root)."""
    roots = diffusion_roots(names) if folders else set()
    found = sorted(roots)
    for name in names:
        if any(r == "" or name.startswith(f"{r}/") for r in roots):
            continue  # a component of a diffusers folder, listed as the folder
        lower = name.lower()
        base = lower.rsplit("/", 1)[-1]
        if lower.endswith(".gguf"):
            # A projector goes with a model; the later parts of a split model open through the first.
            if base.startswith("mmproj") or ("-of-" in base and "-00001-of-" not in base):
                continue
            found.append(name)
        elif lower.endswith(".onnx"):
            found.append(name)
    return found


def _signature(path: Path) -> tuple[int, int]:
    """Return (size, newest modification time in ns) of a file, or of a folder's files two levels deep."""
    stat = path.stat()
    if not path.is_dir():
        return stat.st_size, stat.st_mtime_ns
    size, newest = 0, stat.st_mtime_ns
    for child in path.iterdir():
        entries = list(child.iterdir()) if child.is_dir() else [child]
        for entry in entries:
            try:
                s = entry.stat()
            except OSError:
                continue
            if not entry.is_dir():
                size += s.st_size
            newest = max(newest, s.st_mtime_ns)
    return size, newest


def _gpt4all_model_path(ini: Path) -> Path | None:
    """Return the ``modelPath`` set in GPT4All's settings file, or None."""
    if not ini.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(ini, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    for section in parser.sections():
        value = parser.get(section, "modelPath", fallback=None) or parser.get(section, "modelpath", fallback=None)
        if value:
            return Path(value.strip().strip('"')).expanduser()
    return None


def _unique(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for p in paths:
        if str(p) not in seen:
            seen.add(str(p))
            out.append(p)
    return out


def _real(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except OSError:
        return str(path)


def _inside_managed(path: Path) -> bool:
    real = Path(_real(path))
    for folder in (cache_dir() / "models", data_dir() / "models"):
        try:
            real.relative_to(Path(_real(folder)))
            return True
        except ValueError:
            continue
    return False


def _source_name(source: str) -> str:
    return {
        "huggingface": "the Hugging Face cache",
        "lmstudio": "LM Studio's models folder",
        "gpt4all": "GPT4All's models folder",
    }.get(source, source)


# -- the Hugging Face cache: what removing a model there deletes ----------------------------------
# ModelLibrary.remove deletes only inside Ember's own folders; a model in the shared cache is deleted
# with these, after the person has seen the files and confirmed.


def hf_cache_files(model: InstalledModel, cache: Path) -> list[tuple[Path, Path | None]]:
    """Return (snapshot entry, blob it points at or None) for every file of a model in the HF cache.

    Returns [] when the model does not lie in a ``models--*/snapshots/<commit>/`` folder of ``cache``.
    """
    path = Path(model.path)
    try:
        relative = path.relative_to(cache)
    except ValueError:
        return []
    if len(relative.parts) < 4 or relative.parts[1] != "snapshots":
        return []
    if path.is_dir():
        pointers = sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink())
    else:
        pointers = [path]
        details = model.info.details
        for name in [*(details.get("split_files") or []), details.get("config_file")]:
            if isinstance(name, str) and name and path.with_name(name) != path:
                pointers.append(path.with_name(name))
    found = []
    for pointer in pointers:
        if not (pointer.exists() or pointer.is_symlink()):
            continue
        blob = pointer.resolve() if pointer.is_symlink() else None
        found.append((pointer, blob if blob is not None and blob.exists() else None))
    return found


def delete_hf_cache_files(files: list[tuple[Path, Path | None]], cache: Path) -> int:
    """Delete the snapshot entries and the blobs no other snapshot uses; return the bytes freed.

    Raises EmberError when the disk refuses.
    """
    freed = 0
    try:
        for pointer, blob in files:
            if blob is None:
                freed += pointer.stat().st_size
            pointer.unlink()
            if blob is not None and not _blob_used(blob):
                freed += blob.stat().st_size
                blob.unlink()
            _remove_empty_parents(pointer.parent, cache)
    except OSError as exc:
        raise EmberError(f"Ember could not delete {exc.filename or 'a file'} ({exc.strerror or exc}).") from None
    return freed


def _blob_used(blob: Path) -> bool:
    snapshots = blob.parent.parent / "snapshots"
    for entry in snapshots.rglob("*"):
        if entry.is_symlink() and entry.resolve() == blob:
            return True
    return False


def _remove_empty_parents(folder: Path, cache: Path) -> None:
    while folder != cache and folder.name != "snapshots" and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
