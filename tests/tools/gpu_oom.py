"""GPU out-of-memory faults in the engine processes a Studio starts: armed and disarmed from a test.

The faults themselves live in ``gpu_oom_site/sitecustomize.py`` (see its docstring for what each
one raises and why it is what onnxruntime-gpu and llama.cpp's CUDA build do): a monkeypatch in the
test process would not reach the engine processes, which are started fresh with ``spawn``, so the
wrappers go in at their start-up through PYTHONPATH. Use::

    oom = GpuOom(tmp_path / "gpu-oom")
    for name, value in oom.environment().items():
        monkeypatch.setenv(name, value)  # before the Studio starts its engine processes
    with oom.armed("ort-arena", match="unet"):
        ...  # the next UNet run in an engine process fails as a GPU out of memory does
    assert oom.fired()
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SITE = Path(__file__).resolve().parent / "gpu_oom_site"
FAULTS = ("ort-arena", "ort-cuda", "llama-model", "llama-context", "llama-decode")


class GpuOom:
    """The control file of the faults, at ``control`` (made empty: nothing armed)."""

    def __init__(self, control: Path) -> None:
        self.control = control
        control.parent.mkdir(parents=True, exist_ok=True)
        control.write_text("", encoding="utf-8")

    def environment(self) -> dict[str, str]:
        """What engine processes need in their environment for the faults to reach them."""
        path = os.environ.get("PYTHONPATH", "")
        return {"PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), path])), "EMBER_GPU_OOM": str(self.control)}

    @contextmanager
    def armed(self, fault: str, *, match: str = "", after: int = 0, times: int | None = None) -> Iterator[None]:
        """Make ``fault`` happen in the engine processes while the block runs (see sitecustomize.py): on calls
        whose model path holds ``match``, after ``after`` of them went through, ``times`` times (None: every time)."""
        if fault not in FAULTS:
            raise ValueError(f"no GPU fault {fault!r}; there are {', '.join(FAULTS)}")
        self._write(json.dumps({"fault": fault, "match": match, "after": after, "times": times}))
        try:
            yield
        finally:
            self._write("")

    def fired(self) -> list[str]:
        """The faults raised so far, one "pid fault" line each."""
        fired = self.control.with_name(self.control.name + ".fired")
        return fired.read_text(encoding="utf-8").splitlines() if fired.exists() else []

    def _write(self, text: str) -> None:
        temporary = self.control.with_name(self.control.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.control)  # an engine process never reads half a fault
