"""Pure collection edits and search filters, on small hand-made documents."""

from __future__ import annotations

from datetime import date

import pytest

from indexer.collection import (
    API_SOURCE,
    ConflictError,
    UnknownDocumentError,
    add_documents,
    delete_document,
    derive_doc_id,
    replace_document,
    sync_sources,
)
from indexer.documents import Document
from service.filters import SearchFilter, document_matches, parse_date


def doc(doc_id: str, source: str = "files/x.txt", **metadata: object) -> Document:
    return Document(doc_id=doc_id, text=f"text of {doc_id}", source=source, metadata=dict(metadata))


def ids(documents: list[Document]) -> list[str]:
    return [d.doc_id for d in documents]


def test_add_appends_and_refuses_existing_ids():
    current = [doc("a"), doc("b")]
    assert ids(add_documents(current, [doc("c")])) == ["a", "b", "c"]
    with pytest.raises(ConflictError) as error:
        add_documents(current, [doc("c"), doc("b")])
    assert error.value.doc_ids == ["b"]


def test_replace_keeps_order_and_says_whether_it_replaced():
    current = [doc("a"), doc("b")]
    new_b = Document(doc_id="b", text="new")
    after, replaced = replace_document(current, new_b)
    assert replaced and ids(after) == ["a", "b"] and after[1].text == "new"
    after, replaced = replace_document(current, doc("z"))
    assert not replaced and ids(after) == ["a", "b", "z"]


def test_delete_removes_or_raises():
    assert ids(delete_document([doc("a"), doc("b")], "a")) == ["b"]
    with pytest.raises(UnknownDocumentError):
        delete_document([doc("a")], "b")


def test_sync_sources_keeps_api_documents_unless_a_file_takes_the_id():
    current = [doc("file-old"), doc("api-1", API_SOURCE), doc("clash", API_SOURCE)]
    after = sync_sources(current, [doc("file-new"), doc("clash")])
    assert ids(after) == ["file-new", "clash", "api-1"]
    assert after[1].source != API_SOURCE


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
