"""The folder watch: while Ember runs, an indexed folder that changes is indexed again, without a click.

Every ``every_s`` seconds a thread looks over each indexed folder with a stat of each document
(:meth:`Documents.changed`: no file is read) and queues an :class:`IndexFolderRequest` for each
one that changed and has no run queued or running already; the run itself reads only what changed.
Polling, not inotify or FSEvents: it works the same on every platform and on network drives,
needs no watch per subfolder (Linux allows 8,192 by default), and a missed event cannot leave
the index stale. A folder of 10,000 documents costs about 30 ms a look.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from engines.documents.service import WATCH_EVERY_S, Documents, IndexFolderRequest

log = logging.getLogger(__name__)


class FolderWatch:
    """Queues an index run for each indexed folder that changes; :meth:`start`, then :meth:`stop`."""

    def __init__(
        self, documents: Documents, submit: Callable[[IndexFolderRequest], Any], every_s: float = WATCH_EVERY_S
    ) -> None:
        self.documents = documents
        self.every_s = every_s
        self._submit = submit
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start looking, first after ``every_s`` (the Studio's start has queued a refresh of every folder)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ember-folder-watch", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def look(self) -> list[str]:
        """Look over the folders now; returns those an index run was queued for."""
        changed = self.documents.changed_folders()
        for folder in changed:
            self._submit(IndexFolderRequest(folder))
        return changed

    def _loop(self) -> None:
        while not self._stopped.wait(self.every_s):
            try:
                queued = self.look()
            except Exception as exc:  # a database being closed, a drive going away: look again next time
                log.warning("The documents' folders could not be looked over: %s", exc)
                continue
            if queued:
                log.info("Indexing again, as files changed: %s", ", ".join(queued))
