"""What this machine has: cores, memory, and which accelerated backends are usable."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from functools import lru_cache

import psutil


@dataclass(frozen=True)
class Machine:
    """A description of the machine, for benchmarks and the status bar."""

    os: str
    cpu: str
    physical_cores: int
    logical_cores: int
    ram_total_bytes: int


@lru_cache(maxsize=1)
def machine() -> Machine:
    """Return this machine's description (cheap; no inference library is imported)."""
    return Machine(
        os=f"{platform.system()} {platform.release()}",
        cpu=cpu_name(),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=os.cpu_count() or 1,
        ram_total_bytes=psutil.virtual_memory().total,
    )


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 9B14"), or the platform's word for it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_ram_bytes() -> int:
    return psutil.virtual_memory().available


def default_threads() -> int:
    """Return the thread count for CPU inference: the physical cores but one, at least one.

    One core stays free for the window and the event dispatcher: llama.cpp's threads
    spin while they wait, and on a 2-core machine two of them beside a busy core made
    generation 10-40 times slower.
    """
    return max(1, min(16, machine().physical_cores - 1))


@lru_cache(maxsize=1)
def llama_gpu_backend() -> str | None:
    """Return "CUDA", "Metal", "Vulkan" or similar when llama.cpp can offload here, else None.

    Imports llama_cpp, so call it only from a worker thread.
    """
    import llama_cpp

    if not llama_cpp.llama_supports_gpu_offload():
        return None
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    for name in ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL"):
        if name.lower() in info.lower():
            return name
    return "Metal" if sys.platform == "darwin" else "GPU"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU that Ember could offload to. ``vram_free_bytes`` is None where the driver does not say.

    On Apple Silicon the GPU shares the machine's memory (``unified_memory``): its "VRAM" is the
    RAM, and only part of it can be wired for the GPU.
    """

    name: str
    vram_total_bytes: int
    vram_free_bytes: int | None
    backend: str  # "CUDA" or "Metal"
    unified_memory: bool = False


_NVIDIA_SMI_TIMEOUT_S = 3.0


def gpus() -> list[GpuInfo]:
    """Return the GPUs of this machine, found cheaply: ``nvidia-smi`` for NVIDIA cards (3 s at most),
    the unified memory of an Apple Silicon Mac, else an empty list.

    Imports no inference library and never raises: a missing or failing tool means "no GPU found".
    """
    found = _nvidia_gpus()
    if sys.platform == "darwin" and platform.machine() == "arm64":
        found.append(_apple_gpu())
    return found


def _nvidia_gpus() -> list[GpuInfo]:
    import shutil
    import subprocess

    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        done = subprocess.run(
            [tool, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Return the GPUs in ``nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits``
    output (memory in MiB); lines that do not parse are skipped."""
    found = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3:
            continue
        name, total, free = parts
        try:
            total_bytes = int(float(total)) * 2**20
        except ValueError:
            continue
        try:
            free_bytes: int | None = int(float(free)) * 2**20
        except ValueError:
            free_bytes = None  # "[N/A]" on some cards
        found.append(GpuInfo(name, total_bytes, free_bytes, "CUDA"))
    return found


def _apple_gpu() -> GpuInfo:
    name = platform.processor() or "Apple Silicon"
    try:
        import subprocess

        done = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=1.0, check=False
        )
        if done.returncode == 0 and done.stdout.strip():
            name = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    memory = psutil.virtual_memory()
    return GpuInfo(f"{name} GPU", memory.total, memory.available, "Metal", unified_memory=True)
