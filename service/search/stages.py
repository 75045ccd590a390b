"""Per-stage wall time of one search, for the metrics: a stopwatch that costs nothing when nobody asks."""

from __future__ import annotations

import time


class StageClock:
    """`lap(stage)` adds the seconds since the previous lap (or the start) to `timings[stage]`; no-op without one."""

    __slots__ = ("_last", "timings")

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self._last = time.perf_counter() if timings is not None else 0.0

    def lap(self, stage: str) -> None:
        if self.timings is None:
            return
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now
