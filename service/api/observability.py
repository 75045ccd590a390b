"""What the service tells about itself: Prometheus metrics, request ids, access and error log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.limits import RETRY_AFTER_SECONDS, send_json
from service.logs import REQUEST_ID_HEADER, request_id, request_id_from

if TYPE_CHECKING:  # metrics read the engine they are handed; they do not depend on it
    from service.engine import Engine

access_logger = logging.getLogger("citeline.access")
audit_logger = logging.getLogger("citeline.audit")
logger = logging.getLogger(__name__)

# Searches take milliseconds to a second; writes up to tens of seconds.
LABEL = ["collection"]
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
WRITE_OPERATIONS = {("POST", "/documents"): "add", ("PUT", "/documents/{doc_id}"): "put"}
WRITE_OPERATIONS[("DELETE", "/documents/{doc_id}")] = "delete"
COLLECTION_PREFIX, PAGES_PREFIX = "/collections/{name}", "/c/{name}"
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_CHANGES = frozenset({"/search"})  # POST routes that only read
UNMATCHED = "unmatched"  # the route label of requests no route matched (a scanner's paths must not become labels)


def write_outcome(status: int) -> str:
    """A write's outcome from its status code."""
    if status < 300:
        return "ok"
    return {401: "unauthorized", 403: "unauthorized", 404: "not_found", 409: "conflict", 503: "unavailable"}.get(
        status, "rejected" if status < 500 else "error"
    )


class IndexCollector(Collector):
    """Index gauges read from each collection's engine at scrape time, labelled by collection: documents,
    passages, when the view last changed, readiness."""

    def __init__(self, engines: Callable[[], Iterable[tuple[str, Engine]]]) -> None:
        self._engines = engines

    def collect(self) -> Iterator[Metric]:
        families = {
            "documents": GaugeMetricFamily("citeline_index_documents", "Documents in the served index.", labels=LABEL),
            "passages": GaugeMetricFamily("citeline_index_passages", "Passages in the served index.", labels=LABEL),
            "chunks": GaugeMetricFamily(
                "citeline_index_chunks",
                "Deprecated: the old name of citeline_index_passages, to be removed in a future release.",
                labels=LABEL,
            ),
            "dead": GaugeMetricFamily(
                "citeline_index_dead_passages",
                "Passages of deleted or replaced documents still held in memory (dropped at the next start).",
                labels=LABEL,
            ),
            "written": GaugeMetricFamily(
                "citeline_index_last_write_timestamp_seconds",
                "When the served index last changed (a load, an API write or another process's write), Unix time.",
                labels=LABEL,
            ),
            "ready": GaugeMetricFamily(
                "citeline_index_ready", "1 when the served index is up to date with the store, else 0.", labels=LABEL
            ),
        }
        for name, engine in self._engines():
            sizes = engine.sizes()
            values = {
                "documents": sizes.documents,
                "passages": sizes.passages,
                "chunks": sizes.passages,
                "dead": sizes.dead_passages,
                "written": sizes.loaded_at,
                "ready": int(ready(engine)),
            }
            for key, family in families.items():
                family.add_metric([name], values[key])
        yield from families.values()


def ready(engine: Engine) -> bool:
    return engine.not_ready_because() is None


class Metrics:
    """The app's own registry (one per app, so test apps do not share counters) and its instruments."""

    def __init__(self, engines: Callable[[], Iterable[tuple[str, Engine]]]) -> None:
        """`engines()`: each served collection's name and engine, at scrape time."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "citeline_http_requests",
            "HTTP requests by collection, route template and status.",
            ["collection", "method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "citeline_http_request_duration_seconds",
            "HTTP request latency by collection and route template.",
            ["collection", "method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge(
            "citeline_http_requests_in_progress", "HTTP requests being answered.", ["method"], registry=r
        )
        self.search_stages = Histogram(
            "citeline_search_stage_seconds",
            "Search time by stage: filter, bm25, encode, dense, fuse, highlight.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.writes = Counter(
            "citeline_writes",
            "Document writes by collection, operation and outcome.",
            ["collection", "operation", "outcome"],
            registry=r,
        )
        self.files = Counter(
            "citeline_files",
            "Files read into documents by uploads and folder syncs, by collection, way in and outcome.",
            ["collection", "kind", "outcome"],
            registry=r,
        )
        self.reindexes = Counter(
            "citeline_reindexes",
            "Reindex jobs by collection and how they ended: switched, forced, refused or failed.",
            ["collection", "decision"],
            registry=r,
        )
        r.register(IndexCollector(engines))
        ProcessCollector(registry=r)

    def observe_search(self, timings: dict[str, float]) -> None:
        for stage, seconds in timings.items():
            self.search_stages.labels(stage).observe(seconds)


def audit(state: dict[str, object], method: str, route: str, path: str, status: int) -> None:
    """One line for every write and every change of collections or keys: who (a key's id, never its
    secret), what, on which collection, and how it ended."""
    caller = state.get("caller")
    who = getattr(caller, "id", "anonymous")
    fields = {
        "key": who,
        "action": f"{method} {route}",
        "path": path,
        "collection": state.get("collection", ""),
        "status": status,
        "outcome": write_outcome(status),
    }
    if "key_created" in state:
        fields["key_created"] = state["key_created"]
    audit_logger.info("%s %s by %s: %d", method, path, who, status, extra={"fields": fields})


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/collections/{name}/documents/{doc_id}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    if "name" in (scope.get("path_params") or {}) and "{name}" not in path:
        # Some FastAPI versions keep an included route's own path: put back the prefix it is mounted under.
        path = (PAGES_PREFIX if scope["path"].startswith("/c/") else COLLECTION_PREFIX) + path
    return path


class RequestObserver:
    """Outermost ASGI middleware: request id in and out, metrics, one access line per request, no bare 500s.

    An exception that escapes the app is logged with its traceback and the request id, and answered with
    a 500 that carries the id, so a user's report can be matched with the log line.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_id = headers.get(REQUEST_ID_HEADER.lower().encode())
        rid = request_id_from(raw_id.decode("latin-1") if raw_id is not None else None)
        token = request_id.set(rid)
        method = scope["method"]
        status = 500
        started = time.perf_counter()
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        state = scope.setdefault("state", {})  # what the routes learn: the collection, the caller
        self.metrics.in_progress.labels(method).inc()
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when CITELINE_SHUTDOWN_SECONDS are over: say so, instead of its 500.
            status = 503
            if not response_started:
                detail = "the server is shutting down (CITELINE_SHUTDOWN_SECONDS passed): retry"
                if scope["method"] in ("POST", "PUT", "DELETE"):
                    detail += "; a write that had started may still have been applied"
                with contextlib.suppress(Exception):
                    await send_json(send_with_id, 503, detail, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except Exception:
            logger.exception("unhandled error in %s %s", method, scope["path"])
            status = 500
            if not response_started:
                await send_json(send_with_id, 500, f"internal error: quote request id {rid} when reporting it")
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            collection = state.get("collection", "")  # known collections only: a scanner's names are no labels
            self.metrics.in_progress.labels(method).dec()
            self.metrics.requests.labels(collection, method, route, str(status)).inc()
            self.metrics.latency.labels(collection, method, route).observe(seconds)
            operation = WRITE_OPERATIONS.get((method, route.removeprefix(COLLECTION_PREFIX)))
            if operation is not None:
                self.metrics.writes.labels(collection, operation, write_outcome(status)).inc()
            if method in CHANGES and route != UNMATCHED and route.removeprefix(COLLECTION_PREFIX) not in NOT_CHANGES:
                audit(state, method, route, scope["path"], status)
            # The path, not the query string: questions may be private.
            access_logger.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={"fields": {"route": route, "status": status, "duration_ms": round(seconds * 1000, 2)}},
            )
            request_id.reset(token)
