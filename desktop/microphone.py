"""Recording from the microphone with miniaudio, behind a small interface the tests replace.

A :class:`Recorder` starts and stops; stopping returns what was heard as mono float32 samples
and their rate. miniaudio captures on its own thread (its callback keeps the buffers), so
neither call blocks the window. Where there is no capture device (a headless machine, a
laptop whose microphone is off), :meth:`MiniaudioRecorder.start` raises MicrophoneError
with a sentence a person can act on.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import Any, Protocol

import numpy as np

from engines.errors import EmberError

CAPTURE_RATE_HZ = 16000  # what Whisper hears; miniaudio converts from the device's own rate
MAX_SECONDS = 300  # a recording left running stops growing after five minutes


class MicrophoneError(EmberError):
    """The microphone cannot be used (none, busy, or refused); the message says what to do."""


class Recorder(Protocol):
    """Something that records: ``start`` begins, ``stop`` returns (samples, sample rate in Hz)."""

    def start(self) -> None:
        """Begin recording; raises MicrophoneError when there is nothing to record from."""

    def stop(self) -> tuple[np.ndarray, int]:
        """Stop and return everything heard since ``start``: mono float32 samples and their rate."""

    @property
    def recording(self) -> bool:
        """Whether a recording runs now."""


class MiniaudioRecorder:
    """The default microphone through miniaudio (ALSA/PulseAudio, Core Audio, WASAPI)."""

    def __init__(self, sample_rate_hz: int = CAPTURE_RATE_HZ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._device: Any = None
        self._chunks: list[np.ndarray] = []
        self._frames = 0
        self._lock = threading.Lock()

    @property
    def recording(self) -> bool:
        return self._device is not None

    def start(self) -> None:
        """Open the default capture device and begin; raises MicrophoneError when none can be opened."""
        if self._device is not None:
            return
        import miniaudio

        self._chunks, self._frames = [], 0
        try:
            device = miniaudio.CaptureDevice(
                input_format=miniaudio.SampleFormat.FLOAT32, nchannels=1, sample_rate=self.sample_rate_hz
            )
            collector = self._collect()
            next(collector)
            device.start(collector)
        except miniaudio.MiniaudioError as exc:
            raise MicrophoneError(
                "Ember found no microphone it can record from on this computer "
                f"({exc.args[0] if exc.args else exc}). Connect or unmute one and allow Ember to use it, "
                "or transcribe a recording instead: python main.py listen FILE.wav"
            ) from None
        self._device = device

    def _collect(self) -> Generator[None, bytes | memoryview, None]:
        """miniaudio's callback (on its thread): keep each buffer, up to :data:`MAX_SECONDS`."""
        limit = MAX_SECONDS * self.sample_rate_hz
        while True:
            data = yield
            samples = np.frombuffer(bytes(data), dtype=np.float32)
            with self._lock:
                if self._frames < limit:
                    self._chunks.append(samples)
                    self._frames += len(samples)

    def stop(self) -> tuple[np.ndarray, int]:
        """Close the device and return what it heard (empty if it was not recording)."""
        device, self._device = self._device, None
        if device is not None:
            device.close()
        with self._lock:
            chunks, self._chunks, self._frames = self._chunks, [], 0
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return samples, self.sample_rate_hz
