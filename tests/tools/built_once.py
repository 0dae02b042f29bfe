"""What the test-model builders of tests/tools share: a cache folder per source version, and building into it
atomically (tiny_diffusion.py, tiny_musicgen.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any


def version_hash(source: Path, dists: Iterable[str]) -> str:
    """A short hash of a builder's ``source`` file and the versions of the libraries that build with it."""
    h = hashlib.sha256(Path(source).read_bytes())
    for dist in dists:
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=missing".encode())
    return h.hexdigest()[:16]


def cache_root(name: str, env: str, version: str) -> Path:
    """``$<env>`` or ``~/.cache/ember-tests/<name>``, then the builder's ``version``."""
    base = os.environ.get(env)
    root = Path(base) if base else Path.home() / ".cache" / "ember-tests" / name
    return root / version


def build_once(final: Path, build: Callable[[Path], object]) -> Path:
    """Build into a temporary folder beside ``final``, then rename it into place.

    Two processes racing both build; the first rename wins and the loser throws its copy away,
    so a reader never sees a half-built folder.
    """
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        target = tmp / final.name
        build(target)
        try:
            os.rename(target, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


Signature = dict[str, dict[str, list[tuple[str, str, list]]]]


def describe_onnx(graphs: Iterable[Path], name_of: Callable[[Path], str]) -> Signature:
    """Every graph's inputs and outputs: ``{name_of(path): {"inputs": [(name, dtype, shape)], "outputs": [...]}}``."""
    import onnx

    def rows(values: Any) -> list[tuple[str, str, list]]:
        result = []
        for v in values:
            t = v.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
            shape = [d.dim_param or d.dim_value for d in t.shape.dim]
            result.append((v.name, dtype, shape))
        return result

    out: Signature = {}
    for path in graphs:
        model = onnx.load(str(path), load_external_data=False)
        out[name_of(path)] = {"inputs": rows(model.graph.input), "outputs": rows(model.graph.output)}
    return out
