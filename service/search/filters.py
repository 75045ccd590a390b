"""Search filters: which documents a search may return, as a pure predicate and masks over a view's rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np

from indexer.store.view import View
from indexer.text.documents import Document

DATE_FIELD = "date"


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions on the documents a search may return; all given conditions must hold.

    - `doc_ids`: the document is one of these (empty: any).
    - `source_prefix`: the document's `source` starts with it.
    - `metadata`: each field equals the value (non-string metadata compares by its JSON text: `3`, `true`).
    - `date_from` / `date_to`: the metadata `date` (ISO 8601) falls in the range, both ends inclusive;
      a document without a readable date does not match a date range.
    """

    doc_ids: frozenset[str] = frozenset()
    source_prefix: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    date_from: date | None = None
    date_to: date | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.doc_ids
            or self.source_prefix
            or self.metadata
            or self.date_from is not None
            or self.date_to is not None
        )


def metadata_text(value: object) -> str:
    """How a metadata value compares with a filter value given as text."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_date(raw: object) -> date | None:
    """The calendar date of an ISO 8601 date or date-time string, or None when it is not one."""
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.strip().replace("Z", "+00:00")).date()
    except ValueError:
        return None


def document_date(document: Document) -> date | None:
    """The calendar date of the document's metadata `date`, or None when absent or not ISO 8601."""
    return parse_date(document.metadata.get(DATE_FIELD))


def document_matches(document: Document, search_filter: SearchFilter) -> bool:
    """True when `document` satisfies every condition of `search_filter`."""
    if search_filter.doc_ids and document.doc_id not in search_filter.doc_ids:
        return False
    if search_filter.source_prefix and not document.source.startswith(search_filter.source_prefix):
        return False
    for key, expected in search_filter.metadata.items():
        if key not in document.metadata or metadata_text(document.metadata[key]) != expected:
            return False
    if search_filter.date_from is not None or search_filter.date_to is not None:
        when = document_date(document)
        if when is None:
            return False
        if search_filter.date_from is not None and when < search_filter.date_from:
            return False
        if search_filter.date_to is not None and when > search_filter.date_to:
            return False
    return True


def allowed_documents(view: View, search_filter: SearchFilter | None) -> np.ndarray | None:
    """Boolean mask over the view's document rows that the filter allows (live ones only); None: no filter."""
    if search_filter is None or search_filter.is_empty:
        return None
    documents = view.documents
    if search_filter.doc_ids and len(search_filter.doc_ids) < len(view.doc_rows):
        rows = [view.doc_rows[d] for d in search_filter.doc_ids if d in view.doc_rows]
    else:
        rows = sorted(view.doc_rows.values())
    allowed = np.zeros(len(documents), dtype=bool)
    allowed[[r for r in rows if document_matches(documents[r], search_filter)]] = True
    return allowed


def allowed_passages(view: View, allowed_docs: np.ndarray | None) -> np.ndarray | None:
    """Boolean mask over the view's passage rows: live, and of an allowed document; None when all may be returned."""
    if allowed_docs is None:
        return view.live_mask()
    return allowed_docs[view.passage_docs]
