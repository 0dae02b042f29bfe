"""Hostile ONNX graphs: a real graph changed in one way, to prove that no ONNX file a person adds takes Ember down.

Each variant starts from a real graph (a diffusion UNet, an upscaler, a piper voice) and changes
one thing: its largest weight is moved into an external-data file that lies outside the graph's
folder (``../``, or an absolute path), that is missing, or that is shorter than the weight; or the
weight declares an absurd shape (4 PiB of float32, a few KB stored); or the file is cut in half or
is not ONNX at all. The file outside the folder is a named pipe: opening it to read would block,
so a job that ends is proof that nothing read it.

Use from tests (after ``sys.path.insert(0, "tests/tools")``)::

    from hostile_onnx import VARIANTS, write_hostile
    outside = write_hostile(source_graph, target_graph, "escapes_folder", tmp_path / "outside.bin")

or as a script: ``python tests/tools/hostile_onnx.py SOURCE.onnx OUTDIR`` writes every variant of
SOURCE into OUTDIR/VARIANT/ and prints what Ember's header reader says of each.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import onnx
from onnx import TensorProto

VARIANTS = (
    "escapes_folder",  # external data at ../outside.bin
    "absolute_path",  # external data at /.../outside.bin
    "linked_outside",  # external data beside the graph, but a symbolic link to the pipe outside
    "missing_weights",  # external data in a file that is not there
    "short_weights",  # external data a quarter of the size the weight needs
    "absurd_shape",  # a weight declaring 2**20 x 2**20 x 2**10 float32 (4 PiB), a few KB stored
    "cut_in_half",  # the file's first half
    "not_onnx",  # bytes that are no ONNX model at all
)
OUTSIDE_THE_FOLDER = ("escapes_folder", "absolute_path", "linked_outside")
BOUND_S = 60  # for one hostile graph at one door: refused in milliseconds, a read of the pipe never ends

_PYTHON_ERROR = re.compile(r"\b(Traceback|[A-Z]\w*(Error|Exception))\b")
_WHAT_TO_DO = re.compile(r"re-?download|download it again|re-convert|memory", re.IGNORECASE)


def assert_refused_plainly(message: object, variant: str) -> None:
    """Assert that ``message`` is for a person: no Python error in it, what to do, and for a graph whose
    weights are outside its folder, that it says so."""
    assert isinstance(message, str) and message.strip(), (variant, message)
    assert not _PYTHON_ERROR.search(message), f"{variant}: a Python error reached the person: {message}"
    assert _WHAT_TO_DO.search(message), f"{variant}: the message does not say what to do: {message}"
    if variant in OUTSIDE_THE_FOLDER:
        assert "outside its folder" in message, f"{variant}: {message}"


def largest_weight(model: onnx.ModelProto) -> TensorProto:
    """The initializer with the most bytes stored in the file."""
    return max(model.graph.initializer, key=lambda t: len(t.raw_data))


def make_external(tensor: TensorProto, location: str, offset: int = 0, length: int | None = None) -> None:
    """Point ``tensor`` at ``location`` for its bytes (and drop the bytes it held)."""
    data = tensor.raw_data
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length or len(data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.ClearField("raw_data")


def outside_pipe(path: Path) -> Path:
    """A named pipe at ``path`` (made once): what the hostile graphs point at outside their folder."""
    if not path.exists():
        os.mkfifo(path)
    return path


def write_hostile(source: Path, target: Path, variant: str, outside: Path) -> Path:
    """Write ``variant`` of the graph ``source`` at ``target`` (files it needs go beside it); returns ``target``.

    ``outside`` is the named pipe (see :func:`outside_pipe`) that the variants leaving the folder point at;
    it must not be inside ``target``'s folder.
    """
    if variant not in VARIANTS:
        raise ValueError(f"no hostile variant {variant!r}; there are {', '.join(VARIANTS)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if variant == "not_onnx":
        target.write_bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n" * 40)
        return target
    if variant == "cut_in_half":
        data = source.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        return target
    model = onnx.load(str(source))
    tensor = largest_weight(model)
    if variant == "escapes_folder":
        make_external(tensor, os.path.relpath(outside, target.parent))
    elif variant == "absolute_path":
        make_external(tensor, str(outside.resolve()))
    elif variant == "linked_outside":
        link = target.parent / f"{target.stem}.weights"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(outside.resolve())
        make_external(tensor, link.name)
    elif variant == "missing_weights":
        make_external(tensor, f"{target.stem}.weights")
    elif variant == "short_weights":
        weights = tensor.raw_data
        (target.parent / f"{target.stem}.weights").write_bytes(weights[: len(weights) // 4])
        make_external(tensor, f"{target.stem}.weights")
    elif variant == "absurd_shape":
        del tensor.dims[:]
        tensor.dims.extend([2**20, 2**20, 2**10])
    onnx.save(model, str(target))
    return target


def copy_beside(source: Path, target: Path, suffixes: tuple[str, ...]) -> None:
    """Copy the files that go with ``source`` (``source`` + each suffix, e.g. a voice's ".json") beside ``target``."""
    for suffix in suffixes:
        shutil.copyfile(source.with_name(source.name + suffix), target.with_name(target.name + suffix))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/tools/hostile_onnx.py SOURCE.onnx OUTDIR", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from engines.errors import EmberError
    from engines.models.onnx_header import read_onnx_header

    source, folder = Path(argv[0]), Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    outside = outside_pipe(folder / "outside.bin")
    for variant in VARIANTS:
        target = write_hostile(source, folder / variant / source.name, variant, outside)
        try:
            read_onnx_header(target)
            verdict = "read"
        except EmberError as exc:
            verdict = str(exc)
        print(f"{variant}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
