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
    """Items (documents, or files being read) and passages done out of `total` items, shown as a bar
    (`interactive`) or logged; a count of failed items when there are any.

    `interactive` defaults to whether `stream` (stderr) is a terminal; `enabled=False` shows nothing.
    """

    def __init__(
        self,
        total: int,
        desc: str = "indexing",
        unit: str = "documents",
        enabled: bool = True,
        interactive: bool | None = None,
        stream: TextIO | None = None,
        every: float | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.documents = 0
        self.passages = 0
        self.failed = 0
        self.enabled = enabled and total > 0
        stream = stream or sys.stderr
        self.interactive = stream.isatty() if interactive is None else interactive
        self._every = LOG_EVERY_SECONDS if every is None else every
        self._started = time.monotonic()
        self._logged = self._started
        self._bar = (
            tqdm(total=total, desc=desc, unit=unit.rstrip("s"), file=stream, dynamic_ncols=True)
            if self.enabled and self.interactive
            else None
        )

    def rate(self) -> float:
        """Passages per second since the start (items per second while no passages are counted)."""
        elapsed = time.monotonic() - self._started
        done = self.passages or self.documents
        return done / elapsed if elapsed > 0 else 0.0

    def _rate_text(self) -> str:
        return f"{self.rate():.1f} {'passages' if self.passages else self.unit}/s"

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
        passages = f", {self.passages:,} passages" if self.passages else ""
        failed = f", {self.failed:,} failed" if self.failed else ""
        return (
            f"{self.desc}: {self.documents:,}/{self.total:,} {self.unit}{passages}{failed} ({self._rate_text()}){left}"
        )

    def update(self, documents: int, passages: int, failed: int | None = None) -> None:
        """`documents` and `passages` more done; `failed`, when given, is the count of failures so far."""
        self.documents += documents
        self.passages += passages
        if failed is not None:
            self.failed = failed
        if not self.enabled:
            return
        if self._bar is not None:
            postfix = f"{self._rate_text()}" + (f", {self.failed} failed" if self.failed else "")
            self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(documents)
            return
        now = time.monotonic()
        if now - self._logged >= self._every:
            self._logged = now
            self._log()

    def _log(self) -> None:
        eta = self.eta()
        fields = {
            self.unit: self.documents,
            "total": self.total,
            "passages": self.passages,
            "failed": self.failed,
            f"{'passages' if self.passages else self.unit}_per_s": round(self.rate(), 1),
            "eta_s": None if eta is None else round(eta),
        }
        logger.info("%s", self.line(), extra={"fields": fields})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.documents:
            self._log()
