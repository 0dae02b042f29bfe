"""The window's side of ``bench window``: the longest event-loop stall while each engine runs, and memory.

engines/benchmarks/window.py runs this module as its own process (``python -m desktop.bench_window``),
so that the memory it reads is the window's alone. It opens Ember's real window (offscreen unless
a display is set) on a fresh data folder and, for each engine, starts one job the way a person
does: the panel's own action for chat, images, speech and music; for upscaling and dictation,
whose panels need a picture or a microphone, the same request through the window's EventBridge.
While the job runs, a :class:`StallMeter` ticks every 5 ms on the GUI thread; its longest late
tick is the longest time the window could not repaint or answer a click.

With chat among the engines, a first message is sent 0.3 s after the window is shown, while the
safety filter's learned layers still load (the rest wait until they are loaded). Each job's
baseline is the same window left idle for as long as the job took (at most
:data:`IDLE_CAP_S`), measured just before it: the late ticks the loop shows with no engine
running. Idle memory is the resident size of the window's process and its engine processes once
the window has rested :data:`REST_S` seconds, first after start-up and then after each engine
(the engine processes keep their models loaded). Prints one JSON line (``ember-window-bench {...}``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REST_S = 2.0
IDLE_CAP_S = 5.0
TIMEOUT_S = 600.0
ENGINES = ("chat", "image", "speech", "music", "upscale", "dictation")
AT_START = "chat, sent 0.3 s after the window opens"
PROMPT = "Write four short sentences about a lighthouse keeper's evening."


class Finished:
    """The Studio's terminal events, collected on the queue's thread and read on the GUI thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Any] = []

    def __call__(self, event: Any) -> None:
        if event.kind.terminal:
            with self._lock:
                self._events.append(event)

    def count(self) -> int:
        with self._lock:
            return len(self._events)

    def last(self) -> Any:
        with self._lock:
            return self._events[-1] if self._events else None


def run_loop_for(seconds: float) -> None:
    """Run the Qt event loop for ``seconds``."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def run_loop_until(done: Callable[[], bool], timeout_s: float) -> bool:
    """Run the event loop until ``done()`` (asked every 20 ms) or the timeout; returns whether it came."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(20)
    poll.timeout.connect(lambda: loop.quit() if done() else None)
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    poll.start()
    deadline.start(int(timeout_s * 1000))
    if not done():
        loop.exec()
    poll.stop()
    deadline.stop()
    return done()


def _starters(window: Any, image_model: str | None) -> dict[str, Callable[[], Callable[[], object]]]:
    """How each engine's job is started in the window: each prepares what a person would already have (a
    picture, a recording) and returns the action that starts the job, which returns something false
    when nothing started. Only the action is measured."""
    import numpy as np

    def chat() -> Callable[[], object]:
        window.chat.input.setPlainText(PROMPT)
        return window.chat.send

    def image() -> Callable[[], object]:
        if not image_model:
            raise RuntimeError("no diffusion model: pass --image-model, or install diffusers to build a random one")
        panel = window.images
        if not panel.add_model_folder(image_model):
            raise RuntimeError(f"the Images panel did not take {image_model}")
        panel.set_size(256, 256)
        panel.steps.setValue(4)
        panel.prompt.setPlainText("a lighthouse at dusk, oil painting")
        return panel.generate

    def speech() -> Callable[[], object]:
        window.speech.text.setPlainText(PROMPT.replace("Write four", "Here are four") + " The lamp is lit.")
        return window.speech.speak

    def music() -> Callable[[], object]:
        return window.music.generate  # the built-in composer unless a MusicGen model is chosen

    def upscale() -> Callable[[], object]:
        from engines.benchmarks.upscale import photo
        from engines.upscale.requests import UpscaleOptions, UpscaleRequest

        request = UpscaleRequest(UpscaleOptions("animevideo-x2", device="cpu"), photo(256), scale=2, tile_size=192)
        return lambda: window.bridge.submit(request)

    def dictation() -> Callable[[], object]:
        from engines.dictation.audio import WHISPER_RATE_HZ, resample
        from engines.dictation.clips import SENTENCES, speak
        from engines.dictation.folder import embedded_whisper_folder
        from engines.dictation.requests import DictationOptions, DictationRequest

        samples, rate = speak(" ".join(SENTENCES[:3]))
        samples = np.asarray(resample(samples, rate, WHISPER_RATE_HZ), dtype=np.float32)
        options = DictationOptions(str(embedded_whisper_folder()), device="cpu", compute_type="int8")
        request = DictationRequest(options, samples=samples, sample_rate_hz=WHISPER_RATE_HZ, source="bench")
        return lambda: window.bridge.submit(request)

    return {"chat": chat, "image": image, "speech": speech, "music": music, "upscale": upscale,
            "dictation": dictation}  # fmt: skip


def measure(engines: tuple[str, ...], image_model: str | None) -> dict[str, Any]:
    """Open the window, run each engine once while the stall meter ticks; return the figures as a dict."""
    from PySide6.QtWidgets import QApplication

    from desktop.app import build_main_window, load_stylesheet
    from desktop.stall import StallMeter
    from engines.benchmarks.start import idle_memory_kb
    from engines.studio import Studio

    app = QApplication.instance() or QApplication([])
    studio = Studio()
    finished = Finished()
    studio.subscribe(finished)
    window = build_main_window(studio)
    app.setStyleSheet(load_stylesheet())
    window.resize(1280, 800)
    window.show()
    meter = StallMeter(interval_ms=5)
    result: dict[str, Any] = {"platform": app.platformName(), "engines": {}}

    def run(name: str, prepare: Callable[[], Callable[[], object]], settle_s: float) -> None:
        row: dict[str, Any] = {}
        result["engines"][name] = row
        try:
            start = prepare()
            run_loop_for(settle_s)  # what preparing queued for the loop is done before measuring
            before = finished.count()
            meter.start()
            began = time.perf_counter()
            if not start():
                raise RuntimeError("the panel started nothing")
            came = run_loop_until(lambda: finished.count() > before, TIMEOUT_S)
            took = time.perf_counter() - began
            row["stall_ms"] = meter.stop()
            event = finished.last()
            if not came or event is None:
                raise RuntimeError(f"the job did not end within {TIMEOUT_S:.0f} s")
            if event.kind.value != "result":
                raise RuntimeError(f"the job ended {event.kind.value}: {event.data}")
            row["job_s"] = took
            run_loop_for(REST_S)  # the panel shows the result; the engine process settles
            row["idle_mb"] = idle_memory_kb() / 1024
            meter.start()  # the baseline: the same window with nothing running, as long as the job took
            run_loop_for(min(took, IDLE_CAP_S))
            row["idle_stall_ms"] = meter.stop()
        except Exception as exc:  # one engine that cannot run here is recorded; the others still run
            meter.stop()
            row.clear()
            row["error"] = f"{type(exc).__name__}: {exc}"

    try:
        starters = _starters(window, image_model)
        if "chat" in engines:  # a message sent as soon as the window is there, while the safety filter loads
            run(AT_START, starters["chat"], 0.3)
        began = time.perf_counter()
        run_loop_until(lambda: studio.wait_warm(0), TIMEOUT_S)  # the safety filter's models are loaded
        result["warm_s"] = time.perf_counter() - began
        run_loop_for(REST_S)
        result["idle_mb"] = idle_memory_kb() / 1024
        for name in engines:
            if name == "chat" and AT_START in result["engines"]:
                window.chat.new_conversation()
            run(name, starters[name], REST_S / 4)
    finally:
        window.shutdown()
        window.close()
        studio.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m desktop.bench_window")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--image-model", help="a diffusion model folder for the Images panel")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    chosen = tuple(n.strip() for n in args.engines.split(",") if n.strip())
    unknown = set(chosen) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))}; there are {', '.join(ENGINES)}")
    folder = str(Path(args.image_model).resolve()) if args.image_model else None
    print("ember-window-bench " + json.dumps(measure(chosen, folder)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
