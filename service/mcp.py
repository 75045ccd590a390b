"""`citeline mcp`: Citeline as a Model Context Protocol server over stdio, for agents (the official SDK, `mcp`).

Two tools: `search` (passages that answer a question, each with the citation an agent quotes) and
`get_document` (a document's text, or the exact span of a citation). Both return structured output with a
schema (the REST API's own models). The engine is the one `citeline serve` would load for the same index.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from pydantic import BaseModel, Field

from indexer.collection import UnknownDocumentError
from service.api.results import search_response
from service.api.schemas import SearchRequest, SearchResponse
from service.engine import Engine

INSTRUCTIONS = """Citeline searches a fixed collection of documents and answers with passages quoted exactly from
them. Use `search` whenever a question may be answered by these documents; cite what you use by its
`citation` (doc_id, title, start, end: the passage is document_text[start:end], character offsets), and call
`get_document` with doc_id, start and end to quote it, or without them to read the whole document."""

SEARCH = """Find the passages of the collection that answer a question, best first.

Each result has `text` (the passage, verbatim), `citation` (doc_id, title, source, start and end, the
character span of the passage in its document, and page/section where known), `highlight` (the sentence
that best answers, also with exact offsets) and `scores`. Ask in natural language; `k` is how many passages
(1-100, default 5); `mode` is hybrid (default), dense (meaning) or bm25 (exact words). Quote a passage as its
`text` and name its source by `citation.title` and `citation.doc_id`."""

GET_DOCUMENT = """Read a document of the collection by its doc_id (from a search result's citation). With
`start` and `end` (a citation's offsets) it returns exactly that span, the text to quote; without them, the
whole text. Offsets are characters of the document's text, end exclusive."""


class DocumentText(BaseModel):
    """A document's text, or the span of it that was asked for."""

    doc_id: str
    title: str | None
    source: str
    start: int = Field(description="Where `text` starts in the document (0 for the whole document).")
    end: int = Field(description="Where `text` ends in the document, exclusive.")
    length: int = Field(description="The whole document's length in characters.")
    text: str


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


def build_server(engine: Engine) -> MCPServer[Any]:
    """The MCP server over `engine`'s collection."""
    server: MCPServer[Any] = MCPServer(name="citeline", instructions=INSTRUCTIONS)

    @server.tool(description=SEARCH, structured_output=True)
    def search(question: str, k: int = 5, mode: str = "hybrid") -> SearchResponse:
        request = SearchRequest.model_validate({"q": question, "k": k, "mode": mode})
        return search_response(request, engine)

    @server.tool(description=GET_DOCUMENT, structured_output=True)
    def get_document(doc_id: str, start: int | None = None, end: int | None = None) -> DocumentText:
        return document_text(engine, doc_id, start, end)

    return server


def run_stdio(engine: Engine) -> None:
    """Serve MCP on stdin/stdout until the client closes it."""
    import anyio

    anyio.run(build_server(engine).run_stdio_async)
