"""Pure collection edits and search filters, on small hand-made documents."""

from __future__ import annotations

from datetime import date

import pytest

from indexer.collection import API_SOURCE, derive_doc_id
from indexer.text.documents import Document
from service.search.filters import SearchFilter, document_matches, parse_date


def doc(doc_id: str, source: str = "files/x.txt", **metadata: object) -> Document:
    return Document(doc_id=doc_id, text=f"text of {doc_id}", source=source, metadata=dict(metadata))


def ids(documents: list[Document]) -> list[str]:
    return [d.doc_id for d in documents]


def test_derived_ids_are_stable_and_depend_on_content():
    assert derive_doc_id("x") == derive_doc_id("x") != derive_doc_id("y") != derive_doc_id("y", "title")
    assert derive_doc_id("x").startswith("doc-") and len(derive_doc_id("x")) == 20


@pytest.mark.parametrize(
    ("search_filter", "expected"),
    [
        (SearchFilter(), ["a", "b", "c"]),
        (SearchFilter(doc_ids=frozenset({"a", "c"})), ["a", "c"]),
        (SearchFilter(source_prefix="news/"), ["a", "b"]),
        (SearchFilter(metadata={"publisher": "RT"}), ["a", "c"]),
        (SearchFilter(metadata={"rank": "2"}), ["b"]),
        (SearchFilter(metadata={"paid": "true"}), ["c"]),
        (SearchFilter(date_from=date(2017, 3, 2)), ["b"]),
        (SearchFilter(date_to=date(2017, 3, 1)), ["a"]),
        (SearchFilter(date_from=date(2017, 3, 1), date_to=date(2017, 3, 1)), ["a"]),
        (SearchFilter(metadata={"publisher": "RT"}, source_prefix="news/"), ["a"]),
    ],
)
def test_filter_predicate(search_filter: SearchFilter, expected: list[str]):
    documents = [
        doc("a", "news/a.txt", publisher="RT", date="2017-03-01"),
        doc("b", "news/b.txt", publisher="BBC", date="2017-06-01T12:00:00+02:00", rank=2),
        doc("c", API_SOURCE, publisher="RT", paid=True, date="not a date"),
    ]
    assert [d.doc_id for d in documents if document_matches(d, search_filter)] == expected


def test_parse_date_accepts_iso_8601_only():
    assert parse_date("2017-03-09") == date(2017, 3, 9)
    assert parse_date("2017-03-09T23:30:00Z") == date(2017, 3, 9)
    assert parse_date("09/03/2017") is None and parse_date(20170309) is None
