"""Where documents come from, and the errors of editing a collection.

Documents come from two places. Files and JSONL sources (`citeline index`, `CITELINE_SOURCES`) own the
documents they produce; documents written through the API have `source == API_SOURCE` and survive a
source sync (`indexer.build.sync_index`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from indexer.errors import CitelineError

API_SOURCE = "api"
logger = logging.getLogger(__name__)


class ConflictError(CitelineError, ValueError):
    """Documents to add already exist (replacing them needs an explicit update)."""

    def __init__(self, doc_ids: Sequence[str]) -> None:
        self.doc_ids = list(doc_ids)
        super().__init__(
            f"doc_id already exists: {', '.join(self.doc_ids)}; nothing was written. "
            "Replace a document with PUT /documents/{doc_id}"
        )

    def __reduce__(self) -> tuple[type[ConflictError], tuple[list[str]]]:
        # Made again from its ids, not its message, when it crosses a process (a shard's answer on Ray).
        return (type(self), (self.doc_ids,))


class UnknownDocumentError(CitelineError, KeyError):
    """A document to delete or replace is not in the collection."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(doc_id)

    def __str__(self) -> str:  # KeyError's own quotes the id as a repr
        return f"doc_id {self.doc_id!r} is not in the index: GET /documents lists ids"


def derive_doc_id(text: str, title: str | None = None) -> str:
    """A stable id from the content, for documents written without one."""
    digest = hashlib.sha256(f"{title or ''}\n{text}".encode()).hexdigest()
    return f"doc-{digest[:16]}"
