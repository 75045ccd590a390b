"""Keep folders in sync while serving (`serve --watch DIR`): a change under a folder (a file added, changed
or deleted) queues a sync job for it, so the collection follows the folder within seconds, no restart.

Changes come from the kernel (inotify, through watchfiles), grouped: a burst of writes (a copy of many
files) is one sync. A sync already waiting for a folder is not queued twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from indexer.formats.extracted import Limits
from service.jobs import SYNC, Jobs

logger = logging.getLogger(__name__)
# Milliseconds watchfiles waits for a burst of changes to end before reporting it.
DEBOUNCE_MS = 800


class FolderWatch:
    """A thread that watches `folders` and queues a sync job for each one that changes; one sync of each
    is queued at the start, for what changed while nothing watched."""

    def __init__(self, folders: Sequence[Path], jobs: Jobs, limits: Limits) -> None:
        self.folders = [f.resolve() for f in folders]
        self.jobs = jobs
        self.limits = limits
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="citeline-watch", daemon=True)

    def start(self) -> None:
        for folder in self.folders:
            self.queue_sync(folder)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def queue_sync(self, folder: Path) -> None:
        if not self.jobs.pending(SYNC, str(folder)):
            self.jobs.sync(folder, self.limits)

    def _run(self) -> None:
        from watchfiles import watch

        try:
            for changes in watch(*self.folders, stop_event=self._stop, debounce=DEBOUNCE_MS, raise_interrupt=False):
                paths = [Path(path) for _, path in changes]
                touched = {folder for folder in self.folders if any(p.is_relative_to(folder) for p in paths)}
                for folder in sorted(touched):
                    logger.info("%s changed: syncing it", folder)
                    self.queue_sync(folder)
        except Exception:  # a watch that fails (a folder removed, inotify limits) must not stop serving
            logger.exception("stopped watching %s; restart to watch again", ", ".join(map(str, self.folders)))
