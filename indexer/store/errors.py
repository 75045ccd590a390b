"""What can go wrong with an index directory, one class per thing a caller handles differently."""

from __future__ import annotations

from indexer.errors import CitelineError


class StoreError(CitelineError, RuntimeError):
    """An index directory is missing, damaged, of another format, or busy."""


class NoIndexError(StoreError):
    """There is no index in the directory."""


class WriterBusyError(StoreError):
    """Another process held the index's writer lock for longer than the caller would wait."""


class SegmentError(StoreError):
    """A vector segment or the segment manifest is missing, truncated or damaged."""
