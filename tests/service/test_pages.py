"""The HTML pages through TestClient: results, exact marked spans, escaping, friendly errors with 4xx statuses."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient

from indexer.model.embedding import Embedder
from service.api.app import create_app
from service.engine import Engine
from service.settings import Settings
from service.startup import index_sources
from tests.hostile import CRLF_ID, CRLF_TEXT, HOSTILE_ID, HOSTILE_QUESTION, HOSTILE_TEXT, write_hostile_documents

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "how many US troops were sent"


class Elements(HTMLParser):
    """Text (character references decoded) and attributes of the elements of a page, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[dict] = []
        self.found: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"meta", "link", "input", "img", "br", "hr"}:
            self.found.append({"tag": tag, "attrs": dict(attrs), "text": ""})
            return
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.open.append(element)
        self.found.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i]["tag"] == tag:
                del self.open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element["text"] += data


def elements(html: str, tag: str | None = None, cls: str | None = None) -> list[dict]:
    parser = Elements()
    parser.feed(html)
    return [
        e
        for e in parser.found
        if (tag is None or e["tag"] == tag) and (cls is None or cls in (e["attrs"].get("class") or "").split())
    ]


def document_text(client: TestClient, doc_id: str) -> str:
    return client.get(f"/documents/{doc_id}").json()["text"]


def span_of(href: str) -> tuple[str, int, int]:
    parts = urlsplit(href)
    query = parse_qs(parts.query)
    assert parts.fragment == "cited"
    return unquote(parts.path.removeprefix("/view/")), int(query["start"][0]), int(query["end"][0])


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[TestClient]:
    folder = write_hostile_documents(tmp_path_factory.mktemp("hostile-docs"))
    index_dir = tmp_path_factory.mktemp("hostile-index")
    index_sources(Settings(index=index_dir, sources=str(folder)), embedder, show_progress=False)
    engine = Engine.load(Settings(index=index_dir), embedder=embedder)
    with TestClient(create_app(engine=engine)) as test_client:
        yield test_client


def test_search_page_without_a_question_is_the_form(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert '<meta name="viewport"' in html
    assert [e["attrs"]["for"] for e in elements(html, "label") if "for" in e["attrs"]] == ["q"]
    assert {e["attrs"]["name"] for e in elements(html, "input")} == {"q", "k"}
    assert [e["attrs"]["value"] for e in elements(html, "option")] == ["hybrid", "dense", "bm25"]
    assert elements(html, "form")[0]["attrs"] == {"class": "search", "method": "get", "action": "/", "role": "search"}
    assert not elements(html, "li", "result")


def test_results_page_shows_the_api_results_with_the_highlight_marked(client):
    api = client.get("/search", params={"q": QUESTION}).json()["results"]
    response = client.get("/", params={"q": QUESTION})
    assert response.status_code == 200
    html = response.text
    passages = elements(html, "p", "passage")
    assert [p["text"] for p in passages] == [r["text"] for r in api]
    marks = [m["text"] for m in elements(html, "mark")]
    assert marks == [r["highlight"]["text"] for r in api]
    assert "200" in marks[0]
    doc_ids = [e["text"] for e in elements(html, "code", "doc-id")]
    assert doc_ids == [r["citation"]["doc_id"] for r in api] and doc_ids[0] == "001_2c0b17beeba9964b"
    links = [span_of(a["attrs"]["href"]) for a in elements(html, "a", "cite")]
    assert links == [(r["citation"]["doc_id"], r["citation"]["start"], r["citation"]["end"]) for r in api]
    assert "Score breakdown" in elements(html, "details")[0]["text"]
    assert " ms" in elements(html, "span", "took")[0]["text"]


def test_results_page_reads_mode_and_k_and_blank_fields_mean_defaults(client):
    html = client.get("/", params={"q": QUESTION, "mode": "bm25", "k": "2"}).text
    assert len(elements(html, "li", "result")) == 2
    assert [e["attrs"]["value"] for e in elements(html, "option") if "selected" in e["attrs"]] == ["bm25"]
    # a form submitted with k and mode cleared searches with the defaults (5, hybrid)
    response = client.get("/", params={"q": QUESTION, "mode": "", "k": ""})
    assert response.status_code == 200
    assert len(elements(response.text, "li", "result")) == 5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": ""}, "Type a question to search"),
        ({"q": "   "}, "Type a question to search"),
        ({"q": "x" * 1001}, "The question is too long: 1001 characters, the limit is 1000."),
        ({"q": QUESTION, "k": "0"}, "Number of results (k) must be a whole number from 1 to 100, not '0'."),
        ({"q": QUESTION, "k": "101"}, "from 1 to 100, not '101'"),
        ({"q": QUESTION, "k": "many"}, "from 1 to 100, not 'many'"),
        ({"q": QUESTION, "mode": "magic"}, "Mode must be one of hybrid, dense, bm25, not 'magic'."),
    ],
)
def test_bad_search_input_is_a_friendly_message_with_a_4xx(client, params, message):
    response = client.get("/", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    alert = elements(response.text, "div", "alert")
    assert len(alert) == 1 and message in alert[0]["text"]
    assert not elements(response.text, "li", "result")
    # the form keeps what was typed, so it can be corrected
    assert elements(response.text, "input")[0]["attrs"]["value"] == params["q"]


@pytest.mark.parametrize("question", [QUESTION, "who is the russian foreign minister", "Lavrov coordination"])
def test_view_marks_exactly_the_cited_span_of_every_result(client, question):
    for result in client.get("/search", params={"q": question, "k": 10}).json()["results"]:
        c = result["citation"]
        response = client.get(f"/view/{c['doc_id']}", params={"start": c["start"], "end": c["end"]})
        assert response.status_code == 200
        text = document_text(client, c["doc_id"])
        (mark,) = elements(response.text, "mark")
        assert mark["attrs"]["id"] == "cited"
        assert mark["text"] == text[c["start"] : c["end"]] == result["text"]
        (body,) = elements(response.text, "div", "document-text")
        assert body["text"] == text


def test_view_without_a_span_shows_the_whole_document_unmarked(client):
    response = client.get("/view/001_2c0b17beeba9964b")
    assert response.status_code == 200
    assert not elements(response.text, "mark")
    assert elements(response.text, "div", "document-text")[0]["text"] == document_text(client, "001_2c0b17beeba9964b")


def test_view_marks_an_empty_span_and_the_whole_text(client):
    text = document_text(client, "001_2c0b17beeba9964b")
    (whole,) = elements(client.get("/view/001_2c0b17beeba9964b", params={"start": 0, "end": len(text)}).text, "mark")
    assert whole["text"] == text
    (empty,) = elements(client.get("/view/001_2c0b17beeba9964b", params={"start": 7, "end": 7}).text, "mark")
    assert empty["text"] == ""


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "10", "end": "5"}, "The span 10:5 is not inside this document: it needs 0 ≤ start ≤ end ≤ 4439."),
        ({"start": "0", "end": "4440"}, "it needs 0 ≤ start ≤ end ≤ 4439"),
        ({"start": "-1", "end": "5"}, "start must be a whole number (a character offset), not '-1'."),
        ({"start": "1.5", "end": "5"}, "start must be a whole number"),
        ({"start": " 5", "end": "9"}, "start must be a whole number"),
        ({"start": "5", "end": "nine"}, "end must be a whole number (a character offset), not 'nine'."),
        ({"start": "", "end": ""}, "start must be a whole number"),
        ({"start": "5"}, "start and end go together"),
        ({"end": "5"}, "start and end go together"),
    ],
)
def test_view_with_a_bad_span_is_a_friendly_message_with_a_4xx(client, params, message):
    response = client.get("/view/001_2c0b17beeba9964b", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    alert = elements(response.text, "div", "alert")
    assert len(alert) == 1 and message in alert[0]["text"]
    assert not elements(response.text, "mark")
    assert "/view/001_2c0b17beeba9964b" in [a["attrs"]["href"] for a in elements(response.text, "a")]


def test_view_of_an_unknown_document_is_a_friendly_404(client):
    response = client.get("/view/no-such-doc", params={"start": 0, "end": 1})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert (
        "No document in this collection has the id 'no-such-doc'." in elements(response.text, "div", "alert")[0]["text"]
    )


def test_documents_are_escaped_everywhere(hostile_client):
    response = hostile_client.get("/", params={"q": HOSTILE_QUESTION})
    assert response.status_code == 200
    html = response.text
    first_link = elements(html, "a", "cite")[0]["attrs"]["href"]
    doc_id, start, end = span_of(first_link)
    assert doc_id == HOSTILE_ID
    assert first_link.startswith("/view/zebra%3Cb%3E%26%22%3F%231?")
    view = hostile_client.get(first_link)
    assert view.status_code == 200
    assert elements(view.text, "mark")[0]["text"] == HOSTILE_TEXT[start:end]
    assert "<script>alert(1)</script>" in HOSTILE_TEXT[start:end]
    for page in (html, view.text):
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>&" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=alert(2)&gt;" in page
        # the only elements are the page's own: one script (app.js), no image, no bold from the doc id
        assert [e["attrs"].get("src") for e in elements(page, "script")] == ["/static/app.js"]
        assert not elements(page, "img") and not elements(page, "b")
    assert elements(view.text, "div", "document-text")[0]["text"] == HOSTILE_TEXT


def test_carriage_returns_survive_into_the_marked_text(hostile_client):
    response = hostile_client.get(f"/view/{CRLF_ID}", params={"start": 0, "end": len(CRLF_TEXT)})
    assert "&#13;" in response.text  # a raw CR would reach the DOM as LF
    assert elements(response.text, "mark")[0]["text"] == CRLF_TEXT


def test_static_files_are_served_and_shipped_as_package_data(client):
    for name, kind in (("style.css", "text/css"), ("app.js", "javascript"), ("favicon.svg", "image/svg+xml")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    package = ROOT / "service" / "api"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service.api"]
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert set((package / "templates").iterdir()) | set((package / "static").iterdir()) <= shipped
