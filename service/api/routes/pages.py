"""HTML pages: the search page (`GET /`) and the document view (`GET /view/{doc_id}`), rendered on the server.

They run the API's own code (`SearchRequest`, `search_response`, the engine), so a page shows what `/search`
returns; documents are untrusted text and every template escapes what it shows.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from indexer.formats.docx import DOCX
from service.api.dependencies import EngineDep
from service.api.presentation import (
    PageInputError,
    Place,
    cited_span,
    document_url,
    original_url,
    result_view,
    search_request,
    split_around,
)
from service.api.results import search_response
from service.api.schemas import MAX_QUERY_CHARS, SearchRequest
from service.api.security import require_read_key
from service.search.retrieval import Mode

MEDIA_NAMES = {"application/pdf": "PDF", "text/html": "web page", DOCX: "Word file"}

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Pages load nothing but this server's own CSS and JS; inline script (an injected one included) never runs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# The pages show what the read API shows: with CITELINE_READ_KEY set they need the key too.
router = APIRouter(include_in_schema=False, dependencies=[Depends(require_read_key)])


def exact_text(value: str) -> Markup:
    """Escaped text that the browser reads back character for character (HTML parsing turns a raw CR into LF)."""
    return Markup(str(escape(value)).replace("\r", "&#13;"))


@cache
def templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["exact"] = exact_text
    return Jinja2Templates(env=environment)


def static_files() -> StaticFiles:
    """The pages' CSS, JS and icon, for the app to mount at `/static`."""
    return StaticFiles(directory=STATIC)


def place_of(request: Request) -> Place:
    """Where the page's collection lives: the root for `default`, `/c/{name}/` for a named one."""
    return Place.of(request.path_params.get("name"))


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    place = place_of(request)
    collection = request.path_params.get("name")
    context = {"home": place.home, "api": place.api, "collection": collection, **context}
    return templates().TemplateResponse(request, name, context, status_code=status_code, headers=SECURITY_HEADERS)


def _error_page(
    request: Request, status_code: int, heading: str, messages: list[str], links: list[tuple[str, str]]
) -> HTMLResponse:
    """A page that says what went wrong, with links (text, href) to go on from there."""
    context = {"heading": heading, "messages": messages, "links": links}
    return _page(request, "error.html", context, status_code)


@router.get("/", response_class=HTMLResponse, response_model=None)
def search_page(
    request: Request,
    engine: EngineDep,
    q: str | None = None,
    k: str | None = None,
    mode: str | None = None,
    collection: str | None = None,
) -> HTMLResponse | RedirectResponse:
    """The search form; with `q` in the URL, that search's results (so a search can be linked).
    `/?collection=name` is the page of that collection, `/c/name/`."""
    if collection is not None and "name" not in request.path_params:
        kept = {key: value for key, value in (("q", q), ("k", k), ("mode", mode)) if value is not None}
        query = f"?{urlencode(kept)}" if kept else ""
        return RedirectResponse(f"/c/{quote(collection, safe='')}/{query}", status_code=307)
    context: dict[str, Any] = {
        "q": q or "",
        "k": k or SearchRequest.model_fields["k"].default,
        "mode": mode or Mode.hybrid.value,
        "modes": list(Mode),
        "max_chars": MAX_QUERY_CHARS,
        "documents": engine.sizes().documents,
        "passages": engine.sizes().passages,
        "errors": [],
        "response": None,
        "results": [],
    }
    if q is None:
        return _page(request, "search.html", context)
    try:
        search = search_request(q, k, mode)
    except PageInputError as error:
        return _page(request, "search.html", {**context, "errors": error.messages}, status_code=422)
    response = search_response(search, engine)
    results = [result_view(r, place_of(request)) for r in response.results]
    return _page(request, "search.html", {**context, "response": response, "results": results})


@router.get("/view/{doc_id}", response_class=HTMLResponse)
def document_view(
    request: Request,
    doc_id: str,
    engine: EngineDep,
    start: str | None = None,
    end: str | None = None,
) -> HTMLResponse:
    """A document's whole original text with `text[start:end]` marked (id `cited`) for the link's `#cited`."""
    document = engine.document(doc_id)
    if document is None:
        messages = [f"No document in this collection has the id {doc_id!r}."]
        return _error_page(request, 404, "Document not found", messages, [("New search", place_of(request).home)])
    try:
        span = cited_span(start, end, len(document.text))
    except PageInputError as error:
        where = place_of(request)
        links = [("Read the whole document", document_url(doc_id, where)), ("New search", where.home)]
        return _error_page(request, 422, "That citation does not fit this document", error.messages, links)
    marked = None if span is None else split_around(document.text, span.start, span.end)
    layout = document.layout
    pages = layout.page_range(span.start, span.end) if layout is not None and span is not None else None
    section = layout.section_at(span.start) if layout is not None and span is not None else None
    place = ", ".join(
        ([f"page {pages[0]}" + (f"–{pages[1]}" if pages[1] != pages[0] else "")] if pages else [])
        + ([f"§ {section}"] if section else [])
    )
    has_original = layout is not None and layout.original
    original = original_url(doc_id, pages[0] if pages else None, place_of(request)) if has_original else None
    kind = MEDIA_NAMES.get(layout.media_type, "file") if layout is not None else ""
    context = {"document": document, "span": span, "marked": marked, "place": place, "original": original, "kind": kind}
    return _page(request, "view.html", context)
