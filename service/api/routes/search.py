"""`/search`: ranked passages with citations, by GET query string or POST body."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.dependencies import EngineDep, MetricsDep
from service.api.observability import Metrics
from service.api.results import search_response
from service.api.schemas import (
    BAD_BODY,
    BAD_INPUT,
    LACKS_SCOPE,
    NEEDS_READ_KEY,
    OPTIONAL_KEY,
    TOO_LARGE,
    UNAVAILABLE,
    SearchBase,
    SearchBody,
    SearchQuery,
    SearchResponse,
)
from service.api.security import require_read_key
from service.engine import Engine

# Only doc_id and filter repeat; each other query parameter takes one value.
REPEATABLE = frozenset({"doc_id", "filter"})
router = APIRouter(
    tags=["search"],
    dependencies=[Depends(require_read_key)],
    responses={401: NEEDS_READ_KEY, 403: LACKS_SCOPE, 422: BAD_INPUT, 503: UNAVAILABLE},
)


async def search_json(request: SearchBase, engine: Engine, metrics: Metrics) -> Response:
    """The search's JSON response, built in one worker-thread hop.

    The endpoints are `async def` on purpose: FastAPI runs a plain `def` endpoint in its threadpool and then
    validates the returned model again, costing a request about 0.4 ms on two cores. Here the search and
    the serialisation of a model that was valid by construction share one hop off the event loop.
    """

    def run() -> bytes:
        return search_response(request, engine, metrics).model_dump_json().encode()

    return Response(await run_in_threadpool(run), media_type="application/json")


def parse_search_query(request: Request) -> SearchQuery:
    """The query string as a `SearchQuery`, or a 422 naming the parameter and the rule.

    Parsed here rather than by FastAPI's query-model dependency, which costs a search about 0.15 ms more
    for the same validation; the errors keep FastAPI's shape (`loc` starts with "query").
    """
    values: dict[str, str | list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name in REPEATABLE:
            repeated = values.setdefault(name, [])
            assert isinstance(repeated, list)
            repeated.append(value)
        elif name in values:
            # FastAPI would silently keep the last: a parameter given twice is ambiguous.
            count = len(request.query_params.getlist(name))
            raise HTTPException(status_code=422, detail=f"query parameter {name} is given {count} times: give it once")
        else:
            values[name] = value
    try:
        return SearchQuery.model_validate(values)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI `parameters` (in: query) for each field of `model`, as FastAPI would document a query model."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field,
            **({"description": field["description"]} if "description" in field else {}),
        }
        for name, field in schema["properties"].items()
    ]


@router.get(
    "/search",
    response_model=SearchResponse,
    openapi_extra={**OPTIONAL_KEY, "parameters": query_parameters(SearchQuery)},
    summary="Search with a query string",
)
async def search_get(
    request: Request,
    engine: EngineDep,
    metrics: MetricsDep,
) -> Response:
    """Rank passages for `q`. Every result's citation satisfies `document.text[start:end] == text`.

    Filters (`doc_id`, `source`, `filter=field:value`, `date_from`, `date_to`) apply before the top-k
    cut: `k` results come back when that many passages match.
    """
    return await search_json(parse_search_query(request), engine, metrics)


@router.post(
    "/search",
    response_model=SearchResponse,
    responses={400: BAD_BODY, 413: TOO_LARGE},
    openapi_extra=OPTIONAL_KEY,
    summary="Search with a JSON body",
)
async def search_post(
    request: SearchBody,
    engine: EngineDep,
    metrics: MetricsDep,
) -> Response:
    """Same as `GET /search`, for clients that prefer a JSON body."""
    return await search_json(request, engine, metrics)
