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
        cpu=_cpu_name(),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=os.cpu_count() or 1,
        ram_total_bytes=psutil.virtual_memory().total,
    )


def _cpu_name() -> str:
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
