"""Operations: `/health` (liveness plus what is served), `/ready` (fit for traffic), `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.dependencies import EngineDep
from service.api.observability import Metrics, ready
from service.api.schemas import OPTIONAL_KEY, Health, NotReady, Ready
from service.api.security import Credentials, caller_of
from service.collections import Collections

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Service status")
async def health(engine: EngineDep) -> Health:
    """`ok` once the index and the model are loaded: the process is alive (liveness)."""
    sizes = engine.sizes()
    return Health(
        status="ok",
        documents=sizes.documents,
        passages=sizes.passages,
        model=engine.embedder.info.name,
        snapshot=engine.version,
    )


@router.get(
    "/ready",
    response_model=Ready,
    responses={503: {"model": NotReady, "description": "Not fit for traffic: the index could not be followed."}},
    summary="Readiness",
)
def readiness(engine: EngineDep) -> Ready | JSONResponse:
    """200 when the index is loaded and up to date with the store; 503 (with why) when writes made by
    another process could not be taken in, so answers would be stale."""
    sizes = engine.sizes()
    if not ready(engine):
        detail = f"serving version {engine.version}, but {engine.not_ready_because()}"
        return JSONResponse(status_code=503, content=NotReady(status="not ready", detail=detail).model_dump())
    return Ready(status="ready", snapshot=engine.version, documents=sizes.documents, passages=sizes.passages)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."}},
    openapi_extra=OPTIONAL_KEY,
    summary="Prometheus metrics",
)
def metrics(request: Request, credentials: Credentials) -> Response:
    """Requests by collection, route and status, latency histograms, search time by stage, index size, writes
    by outcome. The series of private collections are shown only to the admin key (a scraper sends it as a
    bearer token): their names and sizes are theirs."""
    registry: Metrics = request.app.state.metrics
    text = generate_latest(registry.registry).decode()
    if not caller_of(request, credentials).admin:
        collections: Collections = request.app.state.collections
        hidden = tuple(f'collection="{c.name}"' for c in collections.all() if not c.info.public)
        if hidden:
            text = "".join(line for line in text.splitlines(keepends=True) if not any(h in line for h in hidden))
    return Response(text, media_type=CONTENT_TYPE_LATEST)
