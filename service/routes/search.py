"""`/search`: ranked passages with citations, by GET query string or POST body."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from service.dependencies import get_engine, get_metrics
from service.engine import Engine
from service.observability import Metrics
from service.retrieval import Hit
from service.schemas import (
    BAD_BODY,
    BAD_INPUT,
    NEEDS_READ_KEY,
    OPTIONAL_KEY,
    TOO_LARGE,
    UNAVAILABLE,
    Citation,
    Highlight,
    Scores,
    SearchBase,
    SearchBody,
    SearchQuery,
    SearchResponse,
    SearchResult,
)
from service.security import require_read_key

# Only doc_id and filter repeat; each other query parameter takes one value.
SINGLE_VALUED = ("q", "k", "mode", "source", "date_from", "date_to")
router = APIRouter(
    tags=["search"],
    dependencies=[Depends(require_read_key)],
    responses={401: NEEDS_READ_KEY, 422: BAD_INPUT, 503: UNAVAILABLE},
)


def _result(hit: Hit) -> SearchResult:
    return SearchResult(
        rank=hit.rank,
        score=hit.score,
        text=hit.text,
        citation=Citation(doc_id=hit.doc_id, title=hit.title, source=hit.source, start=hit.start, end=hit.end),
        highlight=Highlight(text=hit.highlight_text, start=hit.highlight.start, end=hit.highlight.end),
        scores=Scores(dense=hit.dense, bm25=hit.bm25, fused=hit.fused),
        duplicates=[
            Citation(doc_id=d.doc_id, title=d.title, source=d.source, start=d.start, end=d.end) for d in hit.duplicates
        ],
    )


def search_response(request: SearchBase, engine: Engine, metrics: Metrics | None = None) -> SearchResponse:
    """Run the search; with `metrics`, its time per stage is recorded."""
    started = time.perf_counter()
    timings: dict[str, float] | None = {} if metrics is not None else None
    hits = engine.search(request.q, request.k, request.mode, request.search_filter(), timings=timings)
    took_ms = (time.perf_counter() - started) * 1000
    if metrics is not None and timings is not None:
        metrics.observe_search(timings)
    return SearchResponse(
        query=request.q, mode=request.mode, took_ms=round(took_ms, 3), results=[_result(h) for h in hits]
    )


def single_valued(request: Request) -> None:
    """A parameter that takes one value given twice is ambiguous (FastAPI would silently keep the last): 422."""
    for name in SINGLE_VALUED:
        count = len(request.query_params.getlist(name))
        if count > 1:
            raise HTTPException(status_code=422, detail=f"query parameter {name} is given {count} times: give it once")


@router.get(
    "/search",
    response_model=SearchResponse,
    dependencies=[Depends(single_valued)],
    openapi_extra=OPTIONAL_KEY,
    summary="Search with a query string",
)
def search_get(
    request: Annotated[SearchQuery, Query()],
    engine: Annotated[Engine, Depends(get_engine)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
) -> SearchResponse:
    """Rank passages for `q`. Every result's citation satisfies `document.text[start:end] == text`.

    Filters (`doc_id`, `source`, `filter=field:value`, `date_from`, `date_to`) apply before the top-k
    cut: `k` results come back when that many passages match.
    """
    return search_response(request, engine, metrics)


@router.post(
    "/search",
    response_model=SearchResponse,
    responses={400: BAD_BODY, 413: TOO_LARGE},
    openapi_extra=OPTIONAL_KEY,
    summary="Search with a JSON body",
)
def search_post(
    request: SearchBody,
    engine: Annotated[Engine, Depends(get_engine)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
) -> SearchResponse:
    """Same as `GET /search`, for clients that prefer a JSON body."""
    return search_response(request, engine, metrics)
