"""The FastAPI application: loads the engine once at start (lifespan) and mounts the routers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from fastapi import APIRouter, Depends, FastAPI

from service.api.dependencies import collection_name, known_query_only
from service.api.errors import add_error_handlers
from service.api.limits import BodySizeLimit, RequestTimeout
from service.api.mcp import mount_mcp
from service.api.observability import Metrics, RequestObserver
from service.api.routes import collections, documents, health, jobs, keys, pages, reindex, search, transfer, uploads
from service.api.schemas import BAD_BODY, BAD_INPUT, LACKS_SCOPE, TOO_LARGE, UNKNOWN_COLLECTION
from service.collections import DEFAULT, Collections
from service.engine import Engine
from service.keys import KEYS_FILE, KeyStore
from service.settings import Settings
from service.shards import ShardedEngine
from service.startup import prepare_index
from service.watch import FolderWatch

logger = logging.getLogger(__name__)

DESCRIPTION = """
Citeline answers a question over a collection of documents with ranked passages, each with a citation
a person can check: the document, its title and the exact character span in the original text
(`GET /documents/{doc_id}` → `text[start:end] == result.text`).
"""


async def _follow_index(collections: Collections, every_seconds: float) -> None:
    """Take in writes made by another process (`citeline index` on a served index), and keep the vector
    segments in shape (seal, merge) in the background, for every collection."""
    if every_seconds <= 0:
        return
    while True:
        await asyncio.sleep(every_seconds)
        for live in collections.all():
            engine = live.engine
            try:
                await asyncio.to_thread(engine.refresh)
            except Exception:  # a write that cannot be loaded must not stop serving what is loaded
                logger.exception(
                    "collection %s: could not take in the index's new writes; still serving version %s",
                    live.name,
                    engine.version,
                )
                continue
            try:
                await asyncio.to_thread(engine.maintain)
            except Exception:  # a failed seal or merge leaves the segments as they were; the next round retries
                logger.exception(
                    "collection %s: could not seal or merge the vector segments; still serving version %s",
                    live.name,
                    engine.version,
                )


def _open_keys(settings: Settings, admin_key: str) -> KeyStore | None:
    """The key file, when there is an admin key to make keys or keys made before (else None)."""
    path = settings.collections_path() / KEYS_FILE
    return KeyStore(path) if admin_key or path.exists() else None


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The app; at start it prepares and loads the index of `settings` unless an `engine` is given (tests,
    embedding)."""
    settings = settings or Settings.from_env()

    admin_key = settings.admin_secret()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        default = engine or Engine.load(settings, embedder=prepare_index(settings))
        sizes = default.sizes()
        logger.info("serving %d documents, %d passages from %s", sizes.documents, sizes.passages, settings.index)
        # An app handed an engine (tests, embedding) keeps its collections beside that engine's index.
        where = settings if settings.collections_dir or engine is None else replace(settings, index=default.index_dir)
        metrics: Metrics = app.state.metrics
        app.state.engine = default  # the default collection's, for code that serves one collection
        app.state.keys = _open_keys(where, admin_key)
        app.state.collections = served = Collections(
            where, default.embedder, default, on_files=lambda c, k, o, n: metrics.files.labels(c, k, o).inc(n)
        )
        # What is loaded now (modules, model, index) lives as long as the process: keep it out of the cyclic
        # garbage collector's scans, which would otherwise walk it all in every full collection (a latency
        # spike for whichever request triggers one).
        gc.collect()
        gc.freeze()
        watcher = asyncio.create_task(_follow_index(served, settings.reload_seconds))
        folders = FolderWatch(settings.watch_list(), served.get(DEFAULT).jobs, settings.file_limits())
        if settings.watch_list():
            folders.start()
        async with app.state.mcp.running():
            yield
        if settings.watch_list():
            folders.stop()
        await asyncio.to_thread(served.close)
        if app.state.keys is not None:
            app.state.keys.close()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if engine is None:
            default.close()

    app = FastAPI(title="Citeline", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.admin_key = admin_key
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_import_bytes=settings.max_import_bytes,
    )
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_seconds)

    def engines() -> list[tuple[str, Engine]]:
        served: Collections | None = getattr(app.state, "collections", None)
        return [] if served is None else [(c.name, c.engine) for c in served.all()]

    app.state.metrics = Metrics(engines)
    app.add_middleware(RequestObserver, metrics=app.state.metrics)  # outermost: sees every status, even 413/503
    add_error_handlers(app)
    strict = [Depends(known_query_only)]
    # uploads before documents: the same path and method, told apart by the body (routes/uploads.py).
    per_collection: tuple[APIRouter, ...] = (
        search.router,
        uploads.router,
        documents.router,
        jobs.router,
        transfer.router,
        reindex.router,
    )
    sharded = isinstance(engine, ShardedEngine)
    if sharded:
        # One collection split over shards (service/shards.py): searches, documents and their JSON writes;
        # what works on one store as a whole (uploads' jobs, export, reindex, named collections) is not offered.
        per_collection = (search.router, documents.router)
    for router in per_collection:
        app.include_router(router, dependencies=strict)
    app.include_router(health.router, dependencies=strict, responses={422: BAD_INPUT})
    for router in (keys.router,) if sharded else (collections.router, keys.router):
        app.include_router(router, dependencies=strict, responses={400: BAD_BODY, 413: TOO_LARGE, 422: BAD_INPUT})
    for router in () if sharded else per_collection:  # the same routes for a named collection
        app.include_router(
            router,
            prefix="/collections/{name}",
            dependencies=[Depends(collection_name), *strict],
            responses={403: LACKS_SCOPE, 404: UNKNOWN_COLLECTION},
        )
    app.state.mcp = mount_mcp(app, settings)
    app.include_router(pages.router)
    app.include_router(pages.router, prefix="/c/{name}", dependencies=[Depends(collection_name)])
    app.mount("/static", pages.static_files(), name="static")
    return app
