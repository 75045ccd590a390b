"""Search results as every caller shows them: the HTTP API, the search page and `citeline search` all build
their response here, from the retriever's plain `Hit`s."""

from __future__ import annotations

import time
from dataclasses import asdict

from service.api.observability import Metrics
from service.api.schemas import Citation, Highlight, Scores, SearchBase, SearchResponse, SearchResult
from service.engine import Engine
from service.search.retrieval import Hit


def search_result(hit: Hit) -> SearchResult:
    """One ranked passage as the API shows it."""
    return SearchResult(
        rank=hit.rank,
        score=hit.score,
        text=hit.text,
        citation=Citation(**asdict(hit.reference)),
        highlight=Highlight(text=hit.highlight_text, start=hit.highlight.start, end=hit.highlight.end),
        scores=Scores(dense=hit.dense, bm25=hit.bm25, fused=hit.fused),
        duplicates=[Citation(**asdict(d)) for d in hit.duplicates],
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
        query=request.q, mode=request.mode, took_ms=round(took_ms, 3), results=[search_result(h) for h in hits]
    )
