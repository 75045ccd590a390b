"""Changes to a collection as pure functions: documents before → documents after an edit or a source sync.

Documents come from two places. Files and JSONL sources (`citeline index`, `CITELINE_SOURCES`) own the
documents they produce; documents written through the API have `source == API_SOURCE` and survive a
source sync. An edit never reorders the documents it does not touch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from indexer.documents import Document

API_SOURCE = "api"
logger = logging.getLogger(__name__)


class ConflictError(ValueError):
    """Documents to add already exist (replacing them needs an explicit update)."""

    def __init__(self, doc_ids: Sequence[str]) -> None:
        self.doc_ids = list(doc_ids)
        super().__init__(f"doc_id already exists: {', '.join(map(repr, self.doc_ids))}")


class UnknownDocumentError(KeyError):
    """A document to delete or replace is not in the collection."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(doc_id)


def derive_doc_id(text: str, title: str | None = None) -> str:
    """A stable id from the content, for documents written without one."""
    digest = hashlib.sha256(f"{title or ''}\n{text}".encode()).hexdigest()
    return f"doc-{digest[:16]}"


def add_documents(current: Sequence[Document], new: Sequence[Document]) -> list[Document]:
    """`current` plus `new` at the end; any id of `new` already in `current` is a `ConflictError`."""
    existing = {d.doc_id for d in current}
    clashes = [d.doc_id for d in new if d.doc_id in existing]
    if clashes:
        raise ConflictError(clashes)
    return [*current, *new]


def replace_document(current: Sequence[Document], document: Document) -> tuple[list[Document], bool]:
    """`current` with `document` in place of the one with its id (appended when new); True if it replaced one."""
    replaced = False
    after = []
    for existing in current:
        if existing.doc_id == document.doc_id:
            after.append(document)
            replaced = True
        else:
            after.append(existing)
    return (after, True) if replaced else ([*after, document], False)


def delete_document(current: Sequence[Document], doc_id: str) -> list[Document]:
    """`current` without the document `doc_id`; `UnknownDocumentError` if it is not there."""
    after = [d for d in current if d.doc_id != doc_id]
    if len(after) == len(current):
        raise UnknownDocumentError(doc_id)
    return after


def sync_sources(current: Sequence[Document], from_sources: Sequence[Document]) -> list[Document]:
    """The collection after re-reading the sources: their documents, plus those written through the API.

    A source document with the id of an API document takes its place (the files are the user's
    declared truth); that is logged.
    """
    source_ids = {d.doc_id for d in from_sources}
    kept = []
    for document in current:
        if document.source != API_SOURCE:
            continue
        if document.doc_id in source_ids:
            logger.warning(
                "document %r written through the API is replaced by the one from the sources", document.doc_id
            )
            continue
        kept.append(document)
    return [*from_sources, *kept]
