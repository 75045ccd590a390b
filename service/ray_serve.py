"""`citeline serve --ray --shards N`: one collection split over N shards, served on Ray Serve.

```
 HTTP ──► Serve proxy ──► Router (the FastAPI app: routes, auth, page, /mcp)
                            │ encodes the question once, fans out, merges (service/shards.py)
                            ├──► ShardServer 0 ── <index>/shards/0 (a store: records, BM25, segments)
                            ├──► ShardServer 1 ── <index>/shards/1
                            └──► ...
```

Each shard is one Serve deployment with one replica: the one writer of its store. A write goes to the shard
that owns the document and is acknowledged once that shard stored it durably, so when a shard's process or
node dies, Serve starts it again (elsewhere if need be), it reopens its directory and replays what its BM25
index missed, and no acknowledged write is lost: the directory must be reachable from wherever it restarts
(a shared file system, or a single host). Meanwhile requests that need it are answered 503 with
Retry-After. This is capacity and throughput scale-out, not replicated storage.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from indexer.errors import CitelineError
from indexer.text.documents import Document
from service.engine import Engine, Sizes, WriteResult
from service.logs import configure_logging
from service.search.filters import SearchFilter
from service.search.retrieval import Bounds, Candidates, Hit, Mode, Statistics
from service.settings import Settings
from service.shards import LocalShard, ShardedEngine, ShardUnavailableError
from service.startup import index_shards, load_embedder

logger = logging.getLogger(__name__)
T = TypeVar("T")
APP = "citeline"
# A replica that stops answering its health check is replaced; a restart replays the shard's log.
SHARD_OPTIONS: dict[str, Any] = {
    "health_check_period_s": 2.0,
    "health_check_timeout_s": 20.0,
    "max_ongoing_requests": 64,
}
ROUTER_OPTIONS: dict[str, Any] = {"max_ongoing_requests": 256}


def _follow(engine: Engine, every_seconds: float, stop: threading.Event) -> None:
    """A shard's own upkeep, as `serve` does for its index: take in other writers' writes, seal and merge."""
    while not stop.wait(every_seconds):
        try:
            engine.refresh()
            engine.maintain()
        except Exception:  # the next round retries; searches go on with the view they have
            logger.exception("shard %s: upkeep failed; still serving version %s", engine.index_dir, engine.version)


class ShardServer:
    """One shard: an engine over its own store, answering the router (a Serve deployment, one replica)."""

    def __init__(self, settings: Settings, folder: str) -> None:
        configure_logging(settings.log_level, settings.log_format)
        # One encoder thread unless told: the shards of a node share its cores.
        self.engine = Engine.load(replace(settings, index=Path(folder), threads=settings.threads or 1))
        self.shard = LocalShard(self.engine)
        self._stop = threading.Event()
        if settings.reload_seconds > 0:
            threading.Thread(
                target=_follow, args=(self.engine, settings.reload_seconds, self._stop), daemon=True
            ).start()

    def search(
        self,
        query: str,
        vector: np.ndarray | None,
        k: int,
        mode: Mode,
        search_filter: SearchFilter | None,
        statistics: Statistics | None = None,
        bounds: Bounds | None = None,
    ) -> list[Hit]:
        return self.shard.search(query, vector, k, mode, search_filter, statistics, bounds)

    def statistics(self, query: str) -> Statistics:
        return self.shard.statistics(query)

    def candidates(
        self, query: str, k: int, vector: np.ndarray, search_filter: SearchFilter | None, statistics: Statistics
    ) -> Candidates:
        return self.shard.candidates(query, k, vector, search_filter, statistics)

    def where(self) -> tuple[str, int]:
        """The Ray node and the process this shard runs in (operations, the node-loss test)."""
        return ray.get_runtime_context().get_node_id(), os.getpid()

    def document(self, doc_id: str) -> Document | None:
        return self.shard.document(doc_id)

    def catalog(self) -> list[tuple[Document, int]]:
        return self.shard.catalog()

    def passage_count(self, doc_id: str) -> int:
        return self.shard.passage_count(doc_id)

    def sizes(self) -> Sizes:
        return self.shard.sizes()

    def version(self) -> str:
        return self.shard.version()

    def not_ready_because(self) -> str | None:
        return self.shard.not_ready_because()

    def put_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        return self.shard.put_documents(documents)

    def add_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        return self.shard.add_documents(documents)

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        self.shard.delete_documents(doc_ids)

    def delete_document(self, doc_id: str) -> None:
        self.shard.delete_document(doc_id)


class RayShard:
    """A shard reached through its Serve deployment handle (`Shard` for `ShardedEngine`)."""

    def __init__(self, number: int, handle: DeploymentHandle, timeout_seconds: float) -> None:
        self.number = number
        self.handle = handle
        self.timeout = timeout_seconds or None

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.handle, method).remote(*args).result(timeout_s=self.timeout)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause
            if isinstance(cause, CitelineError):  # the shard's answer (unknown document, conflict): as is
                raise cause from None
            raise
        except CitelineError:
            raise
        except Exception as error:  # its replica or node is gone, or it did not answer in time
            raise ShardUnavailableError(self.number, type(error).__name__) from error

    def search(
        self,
        query: str,
        vector: np.ndarray | None,
        k: int,
        mode: Mode,
        search_filter: SearchFilter | None,
        statistics: Statistics | None = None,
        bounds: Bounds | None = None,
    ) -> list[Hit]:
        result: list[Hit] = self._call("search", query, vector, k, mode, search_filter, statistics, bounds)
        return result

    def statistics(self, query: str) -> Statistics:
        result: Statistics = self._call("statistics", query)
        return result

    def candidates(
        self, query: str, k: int, vector: np.ndarray, search_filter: SearchFilter | None, statistics: Statistics
    ) -> Candidates:
        result: Candidates = self._call("candidates", query, k, vector, search_filter, statistics)
        return result

    def document(self, doc_id: str) -> Document | None:
        result: Document | None = self._call("document", doc_id)
        return result

    def catalog(self) -> list[tuple[Document, int]]:
        result: list[tuple[Document, int]] = self._call("catalog")
        return result

    def passage_count(self, doc_id: str) -> int:
        return int(self._call("passage_count", doc_id))

    def sizes(self) -> Sizes:
        result: Sizes = self._call("sizes")
        return result

    def version(self) -> str:
        return str(self._call("version"))

    def not_ready_because(self) -> str | None:
        result: str | None = self._call("not_ready_because")
        return result

    def put_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        result: list[WriteResult] = self._call("put_documents", list(documents))
        return result

    def add_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        result: list[WriteResult] = self._call("add_documents", list(documents))
        return result

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        self._call("delete_documents", list(doc_ids))

    def delete_document(self, doc_id: str) -> None:
        self._call("delete_document", doc_id)


class Router:
    """The API in front of the shards (a Serve deployment with the FastAPI app as its ingress)."""

    def __init__(self, settings: Settings, shards: list[DeploymentHandle]) -> None:
        configure_logging(settings.log_level, settings.log_format)
        self.settings = settings
        timeout = settings.request_timeout_seconds
        calls = [RayShard(number, handle, timeout) for number, handle in enumerate(shards)]
        self.engine = ShardedEngine(load_embedder(settings), calls, settings.index)

    def __serve_build_asgi_app__(self) -> Any:
        from service.api.app import create_app

        return create_app(self.settings, engine=self.engine)


def application(
    settings: Settings,
    folders: Sequence[Path],
    shard_options: dict[str, Any] | None = None,
    router_options: dict[str, Any] | None = None,
) -> Any:
    """The Serve application: a `ShardServer` deployment per folder and the `Router` in front of them.
    `*_options` are Serve deployment options (`ray_actor_options` for CPUs and resources)."""
    shard = serve.deployment(ShardServer, **{**SHARD_OPTIONS, **(shard_options or {})})
    router = serve.deployment(serve.ingress()(Router), **{**ROUTER_OPTIONS, **(router_options or {})})
    shards = [
        shard.options(name=f"shard-{number}").bind(settings, str(folder)) for number, folder in enumerate(folders)
    ]
    return router.bind(settings, shards)


def replica_cpus(shards: int) -> float:
    """CPUs each replica (the shards and the router) reserves: one each where the cluster has them, else an
    equal part of what it has (one host: the replicas share its cores)."""
    total = float(ray.cluster_resources().get("CPU", 1.0))
    return min(1.0, total / (shards + 1))


def deploy(
    settings: Settings,
    shards: int,
    shard_options: dict[str, Any] | None = None,
    router_options: dict[str, Any] | None = None,
) -> DeploymentHandle:
    """Index `settings.sources` into the shards (here), then run the application on the connected Ray,
    its one HTTP proxy on the head node at `settings.host:port`. `*_options`: Serve deployment options
    (default: `replica_cpus` each)."""
    folders = index_shards(settings, load_embedder(settings), shards)
    cpus = {"ray_actor_options": {"num_cpus": replica_cpus(shards)}}
    serve.start(proxy_location="HeadOnly", http_options={"host": settings.host, "port": settings.port})
    app = application(settings, folders, shard_options or cpus, router_options or cpus)
    handle: DeploymentHandle = serve.run(app, name=APP, route_prefix="/")
    return handle


def serve_sharded(settings: Settings, connect: Callable[[], None]) -> int:
    """`citeline serve --ray --shards N`: deploy, then serve until SIGTERM or SIGINT."""
    started = not ray.is_initialized()
    connect()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        deploy(settings, settings.shards)
        logger.info(
            "serving %d shards of %s on Ray Serve at http://%s:%d",
            settings.shards,
            settings.index,
            settings.host,
            settings.port,
        )
        stop.wait()
    finally:
        if started:
            # Ray was started here: stopping it stops the replicas (a shard's writes are durable when
            # acknowledged, so this is as safe as a crash), and needs no answer from processes that a
            # terminal's Ctrl-C may already have stopped.
            logger.info("stopping the Ray started for this server")
            ray.shutdown()
        else:
            logger.info("deleting Serve application %s from the cluster", APP)
            deleting = threading.Thread(target=serve.delete, args=(APP,), daemon=True)
            deleting.start()
            deleting.join(timeout=60)
    return 0
