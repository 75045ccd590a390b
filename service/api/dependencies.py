"""FastAPI dependencies: the collection a request is about (its engine and jobs), the app's settings and
metrics, as `Annotated` aliases that routes name in their signatures (`engine: EngineDep`).

A route mounted at `/collections/{name}/...` serves that collection; the same route at the root serves
`default`. They are `async def` because they do no blocking work: FastAPI runs a plain `def` dependency in
its threadpool, and each such hop costs a request about 0.1 ms on two cores.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request

from service.api.observability import Metrics
from service.api.security import collection_of
from service.collections import NAME_RULE, Collections, Live
from service.engine import Engine
from service.jobs import Jobs
from service.settings import Settings


async def get_live(request: Request) -> Live:
    return collection_of(request)


async def get_engine(request: Request) -> Engine:
    return collection_of(request).engine


async def get_jobs(request: Request) -> Jobs:
    return collection_of(request).jobs


async def get_collections(request: Request) -> Collections:
    collections: Collections = request.app.state.collections
    return collections


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def collection_name(
    name: Annotated[str, Path(description=f"The collection's name: {NAME_RULE}.", max_length=64)],
) -> None:
    """Documents `{name}` for the routes mounted under `/collections/{name}` (they read it from the path)."""


_QUERY_NAMES: dict[int, frozenset[str]] = {}  # by id(route): routes live as long as the app


def _query_names(route: Any) -> frozenset[str]:
    """The query parameters a route takes: its own and its dependencies', and those it documents itself."""
    known = _QUERY_NAMES.get(id(route))
    if known is not None:
        return known
    names: set[str] = set()
    todo = [route.dependant]
    while todo:
        dependant = todo.pop()
        names.update(p.alias for p in dependant.query_params)
        todo.extend(dependant.dependencies)
    extra = getattr(route, "openapi_extra", None) or {}
    names.update(p["name"] for p in extra.get("parameters", []) if p.get("in") == "query")
    _QUERY_NAMES[id(route)] = frozenset(names)
    return _QUERY_NAMES[id(route)]


async def known_query_only(request: Request) -> None:
    """A query parameter the route does not take is a 422 naming it, not silently ignored: a misspelt
    filter (`?doc_ids=`) must not return unfiltered results."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    allowed = _query_names(route)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise HTTPException(
            status_code=422, detail=f"query parameter {unknown[0]!r} is not one this endpoint takes ({takes})"
        )


LiveDep = Annotated[Live, Depends(get_live)]
EngineDep = Annotated[Engine, Depends(get_engine)]
JobsDep = Annotated[Jobs, Depends(get_jobs)]
CollectionsDep = Annotated[Collections, Depends(get_collections)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
