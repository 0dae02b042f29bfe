"""A whole session in Ember's real window, for the offline test: start, every panel, chat, an image, speech,
verify, settings, quit.

Run as ``python offline_session.py TINY_DIFFUSION_FOLDER`` with ``EMBER_HOME`` set; prints
``offline-session ok`` and what it made. The test puts an audit hook into every Python process
of the session (the window's and its engine processes) through ``sitecustomize``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

TIMEOUT_S = 300.0


def main(image_model: str) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from desktop.app import build_main_window, load_stylesheet
    from desktop.bench_window import Finished, run_loop_for, run_loop_until
    from engines.studio import Studio

    app = QApplication([])
    studio = Studio()
    finished = Finished()
    studio.subscribe(finished)
    window = build_main_window(studio)
    app.setStyleSheet(load_stylesheet())
    window.show()
    made: list[str] = []

    def job(start: object, what: str) -> object:
        before = finished.count()
        if not start:
            raise SystemExit(f"{what}: nothing started")
        if not run_loop_until(lambda: finished.count() > before, TIMEOUT_S):
            raise SystemExit(f"{what}: did not end in {TIMEOUT_S:.0f} s")
        event = finished.last()
        if event.kind.value != "result":
            raise SystemExit(f"{what}: ended {event.kind.value}: {event.data}")
        made.append(what)
        return event.data

    try:
        run_loop_until(lambda: studio.wait_warm(0), TIMEOUT_S)
        for panel in (window.chat, window.images, window.speech, window.music, window.library, window.models,
                      window.verify, window.evaluate):  # fmt: skip
            window.show_panel(panel)
            run_loop_for(0.5)
        window.show_panel(window.chat)
        window.chat.input.setPlainText("Say hello in five words.")
        job(window.chat.send(), "chat")
        window.show_panel(window.images)
        if not window.images.add_model_folder(image_model):
            raise SystemExit(f"the Images panel did not take {image_model}")
        window.images.set_size(64, 64)
        window.images.prompt.setPlainText("a red apple")
        job(window.images.generate(), "image")
        window.show_panel(window.speech)
        window.speech.text.setPlainText("Offline, always.")
        job(window.speech.speak(), "speech")
        outputs = sorted(Path(os.environ["EMBER_HOME"]).rglob("*.png"), key=lambda p: p.stat().st_mtime)
        window.show_panel(window.verify)
        if not outputs or not window.verify.verify_paths([str(outputs[-1])]):
            raise SystemExit("verify: nothing to verify")
        if not run_loop_until(lambda: not window.verify.busy, TIMEOUT_S):
            raise SystemExit("verify: did not end")
        made.append(f"verify ({len(window.verify.cards())} card)")
        window.show_settings()
        run_loop_for(1.0)
        made.append("settings")
    finally:
        window.shutdown()
        window.close()
        studio.close()
    time.sleep(0.5)
    print("offline-session ok: " + ", ".join(made), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
