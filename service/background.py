"""Background work that yields the cores to searches."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def at_low_priority(work: Callable[[], T]) -> T:
    """`work()` on a thread of its own at the lowest CPU priority (Linux: a thread's nice value is its
    own), so that background work yields the cores to searches. Waits for it; its exception is raised."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        with contextlib.suppress(OSError):  # not permitted here: the work still runs, at normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            outcome.append(work())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, name="citeline-maintenance", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
