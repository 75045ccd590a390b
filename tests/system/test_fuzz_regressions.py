"""What the API fuzz (tests/system/test_fuzz.py) found, each pinned by a test: the schema and the validators agree."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from indexer.text.documents import SourceError, validate_doc_id
from service.api.schemas import DOC_ID_PATTERN, FILTER_PATTERN, HAS_CONTENT, SearchQuery


def openapi(client: TestClient) -> dict:
    return dict(client.get("/openapi.json").json())


def test_reads_declare_the_key_optional_and_writes_require_it(client: TestClient):
    paths = openapi(client)["paths"]
    for path, method in [
        ("/search", "get"),
        ("/search", "post"),
        ("/documents", "get"),
        ("/documents/{doc_id}", "get"),
    ]:
        assert {} in paths[path][method]["security"], f"{method} {path}: open unless CITELINE_READ_KEY is set"
        url = path.replace("{doc_id}", "001_2c0b17beeba9964b")
        query = {"q": "x"} if path == "/search" and method == "get" else None  # others take no query: a 422
        response = client.request(method.upper(), url, params=query, json={"q": "x"})
        assert response.status_code == 200, f"{method} {path} without a key: {response.text}"
    for path, method in [("/documents", "post"), ("/documents/{doc_id}", "put"), ("/documents/{doc_id}", "delete")]:
        assert paths[path][method]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize("path", ["/search", "/documents"])
def test_a_body_that_is_not_utf8_is_a_declared_400(client: TestClient, path: str):
    response = client.post(path, content=b'{"q": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert response.status_code in (400, 403), response.text  # /documents: writes are off in this app
    responses = openapi(client)["paths"][path]["post"]["responses"]
    assert {"400", "413", "422", "503"} <= set(responses)


@pytest.mark.parametrize("blank", ["\x1c\x1d", "\x85", "\ufeff", "\u00a0\u3000", " \t\n"])
def test_whitespace_by_either_definition_is_no_question(client: TestClient, blank: str):
    """JSON Schema's \\s (ECMA-262) and Python's str.isspace differ: the rule is their union, in both places."""
    assert not re.search(HAS_CONTENT, blank)
    response = client.get("/search", params={"q": blank})
    assert response.status_code == 422 and "non-whitespace" in response.text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=210))
@example("a.b")
@example("a.")
@example("x" * 200)
@example("x" * 201)
@example("..")
@example(".a")
@example("a..b")
@example("a b")
@example("a/b")
@example("a\ufeff")
@example("a\x85")
@example("é-1")
def test_doc_id_schema_pattern_is_the_validator(doc_id: str):
    by_schema = re.fullmatch(DOC_ID_PATTERN, doc_id) is not None and 1 <= len(doc_id) <= 200
    try:
        validate_doc_id(doc_id)
        by_validator = True
    except SourceError:
        by_validator = False
    assert by_schema == by_validator


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(" :ab\t\x1d\ufeff"), max_size=8))
def test_filter_schema_pattern_is_the_validator(value: str):
    by_schema = re.search(FILTER_PATTERN, value) is not None
    try:
        SearchQuery(q="x", filter=[value])
        by_validator = True
    except ValueError:
        by_validator = False
    assert by_schema == by_validator


@pytest.mark.parametrize("name", ["q", "k", "mode", "source", "date_from"])
def test_a_single_valued_parameter_given_twice_is_422(client: TestClient, name: str):
    values = {"q": "troops", "k": "3", "mode": "bm25", "source": "seeds/", "date_from": "2017-01-01"}
    query = "&".join(f"{key}={value}" for key, value in values.items()) + f"&{name}={values[name]}"
    response = client.get(f"/search?{query}")
    assert response.status_code == 422 and f"{name} is given 2 times" in response.json()["detail"]
    assert client.get("/search?q=troops&doc_id=a&doc_id=b&filter=x:1&filter=y:2").status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"q": "x", "k": "5"}, "k must be a valid integer"),
        ({"q": "x", "k": True}, "k must be a valid integer"),
        ({"q": "x", "date_from": 0.0}, "ISO 8601 strings"),
        ({"q": "x", "date_to": 1488931200}, "ISO 8601 strings"),
    ],
)
def test_json_body_types_are_not_coerced(client: TestClient, body: dict, message: str):
    response = client.post("/search", json=body)
    assert response.status_code == 422 and message in response.text
    assert client.post("/search", json={"q": "x", "k": 2, "date_from": "2017-01-01"}).status_code == 200
