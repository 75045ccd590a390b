"""What extraction yields, and the limits it works within."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.errors import CitelineError

SECTION_SEPARATOR = " › "


class ExtractionError(CitelineError, ValueError):
    """A file that yields no document: the reason says why (encrypted, no text layer, too large, damaged)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one file, so that a hostile or broken one costs bounded time and memory."""

    max_bytes: int = 100_000_000
    max_pages: int = 5_000
    max_chars: int = 10_000_000
    # A ZIP (DOCX) may expand to this many times its own size, and never beyond max_bytes * this.
    max_expansion: int = 100


@dataclass(frozen=True)
class Extracted:
    """A file's text and structure. `pages[i]` is where page i + 1 starts in `text` (PDF only); each of
    `sections` is (start, heading path) in text order, the path holding from `start` to the next one."""

    text: str
    media_type: str
    title: str | None = None
    pages: tuple[int, ...] = ()
    sections: tuple[tuple[int, str], ...] = ()


class Outline:
    """Heading paths as headings arrive in reading order: a heading of level n closes those of level >= n."""

    def __init__(self) -> None:
        self._open: list[tuple[int, str]] = []
        self.sections: list[tuple[int, str]] = []

    def heading(self, start: int, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        while self._open and self._open[-1][0] >= level:
            self._open.pop()
        self._open.append((level, text))
        path = SECTION_SEPARATOR.join(t for _, t in self._open)
        if self.sections and self.sections[-1][0] == start:
            self.sections[-1] = (start, path)
        else:
            self.sections.append((start, path))


def check_size(size: int, limits: Limits, what: str = "the file") -> None:
    if size > limits.max_bytes:
        raise ExtractionError(f"{what} has {size:,} bytes; the limit is {limits.max_bytes:,} (CITELINE_MAX_FILE_BYTES)")


def check_chars(chars: int, limits: Limits) -> None:
    if chars > limits.max_chars:
        raise ExtractionError(
            f"its text has over {limits.max_chars:,} characters, the limit (CITELINE_MAX_DOCUMENT_CHARS)"
        )
