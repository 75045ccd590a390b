"""Citeline as a Model Context Protocol server, for agents (the official SDK, `mcp`).

Two tools: `search` (passages that answer a question, each with the citation an agent quotes) and
`get_document` (a document's text, or the exact span of a citation), both with structured output (the REST
API's own models); and every document as a resource, `citeline://{collection}/documents/{doc_id}`. Which
collections a request may read is the `Scope`'s business: `citeline mcp` over stdio serves one collection
to whoever started it (`OneCollection`); the HTTP server's `/mcp` checks the caller's key per request, as
the REST API does (service/api/mcp.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol
from urllib.parse import quote

import anyio
from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import ListResourcesResult, PaginatedRequestParams, Resource
from pydantic import BaseModel, Field, ValidationError

from indexer.collection import UnknownDocumentError
from service.api.results import search_response
from service.api.schemas import MetadataValue, SearchRequest, SearchResponse
from service.collections import DEFAULT
from service.engine import Engine

INSTRUCTIONS = """Citeline searches collections of documents and answers with passages quoted exactly from
them. Use `search` whenever a question may be answered by these documents; cite what you use by its
`citation` (doc_id, title, start, end: the passage is document_text[start:end], character offsets), and call
`get_document` with doc_id, start and end to quote it, or without them to read the whole document."""

SEARCH = """Find the passages of the collection that answer a question, best first.

Each result has `text` (the passage, verbatim), `citation` (doc_id, title, source, start and end, the
character span of the passage in its document, and page/section where known), `highlight` (the sentence
that best answers, also with exact offsets) and `scores`. Ask in natural language; `k` is how many passages
(1-100, default 5); `mode` is hybrid (default), dense (meaning) or bm25 (exact words). `collection` picks
which collection to search (default: the server's default one). Optional filters: `doc_ids` (only these
documents), `metadata` (every field must equal its value, e.g. {"publisher": "RT"}), `date_from`/`date_to`
(ISO days, on the document's date). Quote a passage as its `text` and name its source by `citation.title`
and `citation.doc_id`."""

GET_DOCUMENT = """Read a document of the collection by its doc_id (from a search result's citation). With
`start` and `end` (a citation's offsets) it returns exactly that span, the text to quote; without them, the
whole text. Offsets are characters of the document's text, end exclusive. `collection` as for `search`."""

DOCUMENT_URI = "citeline://{collection}/documents/{doc_id}"
PAGE = 500  # resources per `resources/list` page


class DocumentText(BaseModel):
    """A document's text, or the span of it that was asked for."""

    doc_id: str
    title: str | None
    source: str
    start: int = Field(description="Where `text` starts in the document (0 for the whole document).")
    end: int = Field(description="Where `text` ends in the document, exclusive.")
    length: int = Field(description="The whole document's length in characters.")
    text: str


class ScopeError(Exception):
    """A collection the caller may not read, or that does not exist: the message says which and why."""


class Scope(Protocol):
    """Which collections a request may read."""

    def engine(self, context: Context, collection: str | None) -> Engine:
        """The engine of `collection` (None: the default one), or ScopeError."""
        ...

    def readable(self, context: Context) -> list[tuple[str, Engine]]:
        """Every collection the request may read, by name."""
        ...


@dataclass(frozen=True)
class OneCollection:
    """One collection, open to whoever runs the process (stdio: the agent started it)."""

    name: str
    served: Engine

    def engine(self, context: Context, collection: str | None) -> Engine:
        if collection is not None and collection != self.name:
            raise ScopeError(
                f"collection {collection!r}: this server serves collection {self.name!r} only "
                "(`citeline mcp --collection NAME` serves another)"
            )
        return self.served

    def readable(self, context: Context) -> list[tuple[str, Engine]]:
        return [(self.name, self.served)]


def document_text(engine: Engine, doc_id: str, start: int | None = None, end: int | None = None) -> DocumentText:
    """The document `doc_id`, or its span [start, end); ValueError names what is wrong."""
    document = engine.document(doc_id)
    if document is None:
        raise ValueError(str(UnknownDocumentError(doc_id)))
    length = len(document.text)
    low = 0 if start is None else start
    high = length if end is None else end
    if not 0 <= low < high <= length:
        raise ValueError(f"start and end must satisfy 0 <= start < end <= {length} (the document's length)")
    return DocumentText(
        doc_id=doc_id,
        title=document.title,
        source=document.source,
        start=low,
        end=high,
        length=length,
        text=document.text[low:high],
    )


def document_uri(collection: str, doc_id: str) -> str:
    return f"citeline://{quote(collection, safe='')}/documents/{quote(doc_id, safe='')}"


def _invalid(error: ValidationError) -> ToolError:
    """The arguments' first broken rule, named by field (as the REST API's 422 does)."""
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "arguments"
    return ToolError(f"{field}: {first['msg']}")


class CitelineMCP(MCPServer[Any]):
    """The MCP server; `resources/list` pages through the documents of the collections the caller may read
    (the SDK's own list holds only fixed resources)."""

    def __init__(self, scope: Scope) -> None:
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        super().__init__(name="citeline", instructions=INSTRUCTIONS)
        # The SDK sets up the process's root logging when none is (a handler of its own on stderr): that is
        # the application's call (service/logs.py), not a library's.
        root.handlers[:] = handlers
        root.setLevel(level)
        self.scope = scope

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        context = Context(request_context=ctx, mcp_server=self)
        try:
            offset = int(params.cursor) if params is not None and params.cursor else 0
        except ValueError:
            offset = -1
        if offset < 0:
            raise ResourceError("cursor: use the nextCursor of the previous page")

        def page() -> ListResourcesResult:
            listed = list(_resources(self.scope.readable(context), offset, PAGE + 1))
            more = str(offset + PAGE) if len(listed) > PAGE else None
            return ListResourcesResult(resources=listed[:PAGE], next_cursor=more)

        return await anyio.to_thread.run_sync(page)


def _resources(readable: list[tuple[str, Engine]], offset: int, limit: int) -> Iterator[Resource]:
    """Documents as resources, collections by name and documents by id, from `offset` on."""
    skipped = 0
    given = 0
    for name, engine in sorted(readable, key=lambda pair: pair[0]):
        documents = [document for document, _ in engine.catalog()]
        if skipped + len(documents) <= offset:
            skipped += len(documents)
            continue
        for document in documents[max(0, offset - skipped) :]:
            yield Resource(
                uri=document_uri(name, document.doc_id),
                name=document.doc_id,
                title=document.title,
                description=f"{document.source} (collection {name}, {len(document.text)} characters)",
                mime_type="text/plain",
            )
            given += 1
            if given == limit:
                return
        skipped += len(documents)


def build_server(scope: Scope) -> CitelineMCP:
    """The MCP server over the collections `scope` lets a request read."""
    server = CitelineMCP(scope)

    def engine_of(context: Context, collection: str | None) -> Engine:
        try:
            return scope.engine(context, collection)
        except ScopeError as error:
            raise ToolError(str(error)) from None

    @server.tool(description=SEARCH, structured_output=True)
    async def search(
        question: str,
        context: Context,
        k: int = 5,
        mode: Literal["hybrid", "dense", "bm25"] = "hybrid",
        collection: str | None = None,
        doc_ids: list[str] | None = None,
        metadata: dict[str, MetadataValue] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> SearchResponse:
        fields = {"q": question, "k": k, "mode": mode, "doc_id": doc_ids or [], "filter": metadata or {}}
        fields |= {"date_from": date_from, "date_to": date_to}
        try:
            request = SearchRequest.model_validate(fields)
        except ValidationError as error:
            raise _invalid(error) from None
        engine = engine_of(context, collection)
        return await anyio.to_thread.run_sync(search_response, request, engine)

    @server.tool(description=GET_DOCUMENT, structured_output=True)
    async def get_document(
        doc_id: str, context: Context, start: int | None = None, end: int | None = None, collection: str | None = None
    ) -> DocumentText:
        engine = engine_of(context, collection)
        try:
            return await anyio.to_thread.run_sync(document_text, engine, doc_id, start, end)
        except ValueError as error:
            raise ToolError(str(error)) from None

    @server.resource(DOCUMENT_URI, name="document", description="A document's whole text.", mime_type="text/plain")
    async def document(collection: str, doc_id: str, context: Context) -> str:
        try:
            engine = scope.engine(context, collection or DEFAULT)
        except ScopeError as error:
            raise ResourceError(str(error)) from None
        found = engine.document(doc_id)
        if found is None:
            raise ResourceNotFoundError(str(UnknownDocumentError(doc_id)))
        return found.text

    return server


def run_stdio(engine: Engine, collection: str = DEFAULT) -> None:
    """Serve MCP on stdin/stdout until the client closes it."""
    anyio.run(build_server(OneCollection(collection, engine)).run_stdio_async)
