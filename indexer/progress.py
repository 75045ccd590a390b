"""Progress of a long indexing run: a bar on a terminal, a log line now and then everywhere else.

A bar redrawn with carriage returns turns a log file or a container's output into one long unreadable
line, so where stderr is not a terminal the same figures (documents done, passages/s, time left) go to
the log at a fixed interval instead.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from tqdm import tqdm

logger = logging.getLogger("citeline.progress")
LOG_EVERY_SECONDS = 15.0


def format_seconds(seconds: float) -> str:
    """`1h02m`, `4m05s` or `12s`."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Documents and passages done out of `total` documents, shown as a bar (`interactive`) or logged.

    `interactive` defaults to whether `stream` (stderr) is a terminal; `enabled=False` shows nothing.
    """

    def __init__(
        self,
        total: int,
        desc: str = "indexing",
        enabled: bool = True,
        interactive: bool | None = None,
        stream: TextIO | None = None,
        every: float | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.documents = 0
        self.passages = 0
        self.enabled = enabled and total > 0
        stream = stream or sys.stderr
        self.interactive = stream.isatty() if interactive is None else interactive
        self._every = LOG_EVERY_SECONDS if every is None else every
        self._started = time.monotonic()
        self._logged = self._started
        self._bar = (
            tqdm(total=total, desc=desc, unit="doc", file=stream, dynamic_ncols=True)
            if self.enabled and self.interactive
            else None
        )

    def rate(self) -> float:
        """Passages per second since the start."""
        elapsed = time.monotonic() - self._started
        return self.passages / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the rate so far, by documents; None before the first is done."""
        if not self.documents:
            return None
        elapsed = time.monotonic() - self._started
        return elapsed / self.documents * (self.total - self.documents)

    def line(self) -> str:
        """The figures as one line of text."""
        eta = self.eta()
        left = "" if eta is None else f", {format_seconds(eta)} left"
        return (
            f"{self.desc}: {self.documents:,}/{self.total:,} documents, {self.passages:,} passages "
            f"({self.rate():.1f} passages/s){left}"
        )

    def update(self, documents: int, passages: int) -> None:
        self.documents += documents
        self.passages += passages
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.rate():.1f} passages/s", refresh=False)
            self._bar.update(documents)
            return
        now = time.monotonic()
        if now - self._logged >= self._every:
            self._logged = now
            self._log()

    def _log(self) -> None:
        eta = self.eta()
        fields = {
            "documents": self.documents,
            "total": self.total,
            "passages": self.passages,
            "passages_per_s": round(self.rate(), 1),
            "eta_s": None if eta is None else round(eta),
        }
        logger.info("%s", self.line(), extra={"fields": fields})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.documents:
            self._log()
