"""The self-test's tiny diffusion model: built with onnx alone, run through Ember's real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines.diffusion.engine import DiffusionEngine
from engines.diffusion.requests import DiffusionOptions, ImageRequest
from engines.diffusion.selftest_model import MARKER, SELFTEST_VERSION, write_selftest_model
from engines.jobs import CancelToken

GRAPHS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")


class QuietProgress:
    """A Progress that counts steps and keeps notices, and asks for no previews."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []
        self.notices: list[str] = []

    def token(self, text: str) -> None:
        raise AssertionError("an image engine streams no text")

    def step(self, done: int, total: int) -> None:
        self.steps.append((done, total))

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def preview(self, image: Any, index: int = 0) -> None:
        raise AssertionError("no preview was asked for")

    def wants_preview(self) -> bool:
        return False


@pytest.fixture(scope="module")
def selftest_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-test model, written once for this module's tests."""
    return write_selftest_model(tmp_path_factory.mktemp("selftest") / "ember-selftest")


def run_once(folder: Path, prompt: str = "a red cat", seed: int = 1, **changes: Any) -> np.ndarray:
    options = DiffusionOptions(str(folder))
    request = ImageRequest(options, prompt, seed=seed, steps=1, width=64, height=64, **changes)
    output = DiffusionEngine(options).run(request, QuietProgress(), CancelToken())
    assert len(output.images) == 1
    return output.images[0]


def folder_state(folder: Path) -> dict[str, tuple[int, bytes]]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def test_one_step_makes_one_64x64_rgb_image(selftest_folder: Path, ember_home: Path) -> None:
    options = DiffusionOptions(str(selftest_folder))
    request = ImageRequest(options, "a red cat", seed=1, steps=1, width=64, height=64)
    progress = QuietProgress()
    output = DiffusionEngine(options).run(request, progress, CancelToken())
    assert len(output.images) == 1
    image = output.images[0]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert progress.steps == [(1, 1)]
    # Real computation, not a constant: the pixels spread over most of the range.
    assert image.std() > 10 and image.min() < 64 and image.max() > 192


def test_the_same_seed_gives_the_same_pixels_and_another_seed_others(selftest_folder: Path, ember_home: Path) -> None:
    first = run_once(selftest_folder, seed=1)
    assert np.array_equal(first, run_once(selftest_folder, seed=1))
    assert not np.array_equal(first, run_once(selftest_folder, seed=2))


def test_the_prompt_reaches_the_image(selftest_folder: Path, ember_home: Path) -> None:
    assert not np.array_equal(run_once(selftest_folder, "a red cat"), run_once(selftest_folder, "a photo of the dog"))


def test_image_to_image_runs_through_the_vae_encoder(selftest_folder: Path, ember_home: Path) -> None:
    start = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = run_once(selftest_folder, init_image=start, strength=1.0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_the_model_manager_sees_a_diffusion_folder(selftest_folder: Path) -> None:
    from engines.models.inspect import inspect_model

    info = inspect_model(selftest_folder)
    assert (info.kind, info.format, info.architecture) == ("diffusion", "onnx-diffusers", "StableDiffusionPipeline")
    assert info.details["base"] == "sd1" and info.details["vae_scale_factor"] == 8
    assert info.details["unet_inputs"] == ["sample", "timestep", "encoder_hidden_states"]
    assert info.details["components"] == sorted(GRAPHS)
    assert info.details["cuda_only_operators"] == []


def test_the_folder_is_small_and_its_graphs_valid_opset_17(selftest_folder: Path) -> None:
    import onnx

    total = sum(p.stat().st_size for p in selftest_folder.rglob("*") if p.is_file())
    assert total < 500_000
    for name in GRAPHS:
        model = onnx.load(str(selftest_folder / name / "model.onnx"))
        onnx.checker.check_model(model, full_check=True)  # with strict shape inference
        assert model.ir_version == 8
        assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


def test_the_graphs_declare_what_optimum_exports(selftest_folder: Path, tiny_sd: Path) -> None:
    from tiny_diffusion import describe_onnx

    # Names, dtypes and (named) dimensions of every input and output, equal to optimum's export.
    assert describe_onnx(selftest_folder) == describe_onnx(tiny_sd)


def test_writing_into_a_current_folder_changes_nothing(selftest_folder: Path) -> None:
    before = folder_state(selftest_folder)
    assert write_selftest_model(selftest_folder) == selftest_folder
    assert folder_state(selftest_folder) == before
    leftovers = [p.name for p in selftest_folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_every_build_writes_the_same_bytes(tmp_path: Path, selftest_folder: Path) -> None:
    again = write_selftest_model(tmp_path / "again")
    for name in GRAPHS:
        assert (again / name / "model.onnx").read_bytes() == (selftest_folder / name / "model.onnx").read_bytes()


@pytest.mark.parametrize("damage", ["old version", "missing graph", "no marker"])
def test_an_outdated_or_damaged_folder_is_rebuilt(tmp_path: Path, damage: str) -> None:
    folder = write_selftest_model(tmp_path / "selftest")
    marker = folder / MARKER
    if damage == "old version":
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "version": "0"}), encoding="utf-8")
    elif damage == "missing graph":
        (folder / "unet" / "model.onnx").unlink()
    else:
        marker.unlink()
    (folder / "stale.txt").write_text("from an old build", encoding="utf-8")

    write_selftest_model(folder)
    assert json.loads(marker.read_text(encoding="utf-8"))["version"] == SELFTEST_VERSION
    assert (folder / "unet" / "model.onnx").is_file()
    assert not (folder / "stale.txt").exists()  # replaced whole, not patched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["selftest"]  # no staging folders left


def test_writing_and_running_never_imports_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from engines.diffusion.engine import DiffusionEngine
        from engines.diffusion.requests import DiffusionOptions, ImageRequest
        from engines.diffusion.selftest_model import write_selftest_model
        from engines.jobs import CancelToken

        class Quiet:
            def token(self, text): pass
            def step(self, done, total): pass
            def notice(self, message): pass
            def preview(self, image, index=0): pass
            def wants_preview(self): return False

        folder = write_selftest_model(Path({str(tmp_path / "model")!r}))
        options = DiffusionOptions(str(folder))
        request = ImageRequest(options, "a red cat", seed=1, steps=1, width=64, height=64)
        out = DiffusionEngine(options).run(request, Quiet(), CancelToken())
        assert out.images[0].shape == (64, 64, 3)
        heavy = [n for n in sys.modules if n.split(".")[0] in ("torch", "diffusers", "transformers", "optimum")]
        assert not heavy, f"imported: {{heavy[:5]}}"
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "EMBER_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
