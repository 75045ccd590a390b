"""Write admission: which write may go now, which waits, and which is refused before anything is written.

One write at a time in this process (`lock`) and across processes (the index's writer lock); at most
`max_queued` writes wait for their turn, each for at most `wait_seconds`. A write refused here has
written nothing; one admitted is carried out within its response, however long it takes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.errors import CitelineError
from indexer.store.store import writer_lock


class WriteQueueFullError(CitelineError, RuntimeError):
    """More writes are waiting than `max_queued_writes` allows: this one was refused, nothing written."""


class WriteTimeoutError(CitelineError, RuntimeError):
    """A write could not start within the allowed wait (others were writing): nothing written."""


class WriteAdmission:
    """The queue in front of one index's writer."""

    def __init__(self, index_dir: Path, max_queued: int = 0, wait_seconds: float = 0.0) -> None:
        """`max_queued`: writes that may wait for the one in progress (0: any number); `wait_seconds`: how
        long a write waits to start before it gives up (0: as long as it takes)."""
        self.index_dir = index_dir
        self.max_queued = max_queued
        self.wait_seconds = wait_seconds
        self.lock = threading.Lock()  # held by the write in progress (and by whatever swaps the view)
        self.queued = 0  # writes waiting to start
        self._queue_lock = threading.Lock()

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Join the queue (or be refused when it is full), wait for the turn, hold both writer locks."""
        with self._queue_lock:
            if self.max_queued and self.queued >= self.max_queued:
                raise WriteQueueFullError(
                    f"{self.queued} writes are already waiting (CITELINE_MAX_QUEUED_WRITES={self.max_queued}): "
                    "nothing was written, try again shortly"
                )
            self.queued += 1
        wait = self.wait_seconds or None
        deadline = time.monotonic() + (wait or 0.0)
        try:
            started = self.lock.acquire(timeout=wait if wait is not None else -1)
        finally:
            with self._queue_lock:
                self.queued -= 1
        if not started:
            raise WriteTimeoutError(
                f"the write could not start within {wait:g} s (CITELINE_REQUEST_TIMEOUT_SECONDS) while others "
                "were written: nothing was written, try again shortly"
            )
        try:
            # Another process (citeline index) may hold the index's lock: wait only for what is left.
            with writer_lock(self.index_dir, timeout=None if wait is None else max(0.0, deadline - time.monotonic())):
                yield
        finally:
            self.lock.release()
