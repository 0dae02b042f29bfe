"""Playing a clip: the samples, the play head and pause, and the sound device behind a small interface.

:class:`Playback` holds the clip (it may grow while sentences arrive) and the position; the
device pulls samples from it on its own thread. :class:`MiniaudioOutput` is the real device
(miniaudio, MIT); tests and machines without sound give another :class:`OutputDevice`. A machine
without an audio device gets :class:`NoAudioDevice`, with a message a person can act on: the
clip can still be saved. Qt-free: the panel polls :attr:`Playback.position_s` with a timer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from engines.errors import EmberError

Pull = Callable[[int], np.ndarray]
"""Called by a device with how many frames it wants; returns at most that many float32 samples."""


class NoAudioDevice(EmberError):
    """There is no sound output to play on (or it cannot be opened)."""


class OutputDevice(Protocol):
    """A sound output that pulls mono float32 samples while it runs."""

    def start(self, sample_rate: int, pull: Pull) -> None:
        """Start pulling at ``sample_rate``; raises NoAudioDevice when there is no device."""

    def stop(self) -> None:
        """Stop pulling (idempotent)."""


class MiniaudioOutput:
    """The system's default sound output, through miniaudio."""

    def __init__(self) -> None:
        self._device: Any = None

    def start(self, sample_rate: int, pull: Pull) -> None:
        import miniaudio

        self.stop()

        def feed() -> Any:
            frames = yield b""
            while True:
                frames = yield np.ascontiguousarray(pull(int(frames or 1024)), np.float32).tobytes()

        try:
            device = miniaudio.PlaybackDevice(
                output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1, sample_rate=sample_rate
            )
        except Exception as exc:  # miniaudio.MiniaudioError and backend failures
            raise NoAudioDevice(
                f"No sound output could be opened on this computer ({exc}). "
                "Connect speakers or headphones, or save the clip and play it elsewhere."
            ) from None
        generator = feed()
        next(generator)
        device.start(generator)
        self._device = device

    def stop(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None


class Playback:
    """A clip being played: samples (growing while they are made), the position, playing or paused.

    Thread-safe: the device pulls from its thread, the panel changes it from the GUI thread.
    Reaching the end of the samples pauses, unless more are still coming (``complete`` False):
    then the device gets silence until the next sentence arrives.
    """

    def __init__(self, device: OutputDevice | None = None) -> None:
        self._device = device or MiniaudioOutput()
        self._lock = threading.Lock()
        self._samples = np.zeros(0, np.float32)
        self._rate = 0
        self._position = 0
        self._playing = False
        self._device_rate = 0
        self.complete = True

    # -- the clip --------------------------------------------------------------------------------
    def load(self, samples: np.ndarray, sample_rate: int, *, complete: bool = True) -> None:
        """Replace the clip (the position goes back to the start)."""
        with self._lock:
            self._samples = np.asarray(samples, np.float32).reshape(-1)
            self._rate = int(sample_rate)
            self._position = 0
            self.complete = complete

    def append(self, samples: np.ndarray, sample_rate: int) -> None:
        """Add samples at the end (the next sentence)."""
        with self._lock:
            if self._rate and sample_rate != self._rate:
                raise EmberError("A sentence of another sample rate cannot join this clip.")
            self._rate = int(sample_rate)
            self._samples = np.concatenate([self._samples, np.asarray(samples, np.float32).reshape(-1)])

    def replace_samples(self, samples: np.ndarray, sample_rate: int) -> None:
        """Swap in the finished clip at the same place (the play head stays where it is)."""
        with self._lock:
            self._samples = np.asarray(samples, np.float32).reshape(-1)
            self._rate = int(sample_rate)
            self._position = min(self._position, len(self._samples))
            self.complete = True

    @property
    def samples(self) -> np.ndarray:
        return self._samples

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def duration_s(self) -> float:
        return len(self._samples) / self._rate if self._rate else 0.0

    @property
    def position_s(self) -> float:
        return self._position / self._rate if self._rate else 0.0

    @property
    def playing(self) -> bool:
        return self._playing

    # -- the controls ------------------------------------------------------------------------------
    def play(self) -> None:
        """Start or go on playing; from the start when at the end. Raises NoAudioDevice."""
        with self._lock:
            if not len(self._samples) and self.complete:
                return
            if self._position >= len(self._samples) and self.complete:
                self._position = 0
            rate = self._rate
        if self._device_rate != rate:
            self._device.stop()
            self._device_rate = 0
            self._device.start(rate, self.pull)
            self._device_rate = rate
        self._playing = True

    def pause(self) -> None:
        self._playing = False

    def seek(self, seconds: float) -> None:
        """Move the play head to ``seconds`` (clamped to the clip)."""
        with self._lock:
            self._position = int(min(max(0.0, seconds) * self._rate, len(self._samples)))

    def close(self) -> None:
        """Stop and let the device go."""
        self._playing = False
        self._device.stop()
        self._device_rate = 0

    def pull(self, frames: int) -> np.ndarray:
        """What the device plays next: ``frames`` samples (silence when paused or waiting for more)."""
        out = np.zeros(frames, np.float32)
        if not self._playing:
            return out
        with self._lock:
            chunk = self._samples[self._position : self._position + frames]
            out[: len(chunk)] = chunk
            self._position += len(chunk)
            if self._position >= len(self._samples) and self.complete:
                self._playing = False
        return out
