"""Loaded models: loaded lazily in a worker, kept, and unloaded on request or for memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engines.engine import Engine
from engines.errors import OutOfMemoryError
from engines.hardware import available_ram_bytes

# Memory left free for the system and the window when deciding whether a model fits.
_HEADROOM_BYTES = 512 * 2**20


@dataclass
class _Slot:
    engine: Engine
    users: int = 0
    last_used_s: float = 0.0
    loaded: bool = False


class ModelRegistry:
    """Engines by their load options, with least-recently-used eviction under memory pressure."""

    def __init__(
        self,
        factory: Callable[[Any], Engine],
        free_bytes: Callable[[], int] = available_ram_bytes,
    ) -> None:
        self._factory = factory
        self._free_bytes = free_bytes
        self._slots: dict[Any, _Slot] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[Any, threading.Lock] = {}

    @contextmanager
    def use(self, key: Any, on_loading: Callable[[Engine], None] | None = None) -> Iterator[Engine]:
        """Yield the loaded engine for ``key``, loading it first if needed.

        Other idle models are unloaded when this one would not fit otherwise.
        Raises OutOfMemoryError when it cannot fit even then, and whatever the
        engine's ``load`` raises.
        """
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = _Slot(self._factory(key))
                self._slots[key] = slot
            slot.users += 1
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        try:
            with load_lock:
                if not slot.loaded:
                    self._make_room(key, slot.engine.memory_estimate())
                    if on_loading:
                        on_loading(slot.engine)
                    slot.engine.load()
                    slot.loaded = True
            yield slot.engine
        finally:
            with self._lock:
                slot.users -= 1
                slot.last_used_s = time.monotonic()
                if not slot.loaded and slot.users == 0 and self._slots.get(key) is slot:
                    del self._slots[key]

    def _make_room(self, key: Any, needed: int) -> None:
        free = self._free_bytes() - _HEADROOM_BYTES
        if needed <= free:
            return
        with self._lock:
            idle = sorted(
                ((k, s) for k, s in self._slots.items() if k != key and s.loaded and s.users == 0),
                key=lambda item: item[1].last_used_s,
            )
        for other, _slot in idle:
            self.unload(other)
            free = self._free_bytes() - _HEADROOM_BYTES
            if needed <= free:
                return
        raise OutOfMemoryError(
            f"This model needs about {needed / 2**30:.1f} GB of memory, but only {max(free, 0) / 2**30:.1f} GB "
            "is free. Close other programs, choose a smaller quantisation, or lower the context length."
        )

    def unload(self, key: Any) -> bool:
        """Unload the model for ``key`` if it is loaded and idle; returns whether it was unloaded."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None or slot.users > 0:
                return False
            del self._slots[key]
        if slot.loaded:
            slot.engine.unload()
        return slot.loaded

    def unload_all(self) -> None:
        """Unload every idle model."""
        with self._lock:
            keys = list(self._slots)
        for key in keys:
            self.unload(key)

    def loaded(self) -> list[tuple[Any, Engine]]:
        """Return (key, engine) for every loaded model."""
        with self._lock:
            return [(k, s.engine) for k, s in self._slots.items() if s.loaded]
