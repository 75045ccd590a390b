"""The FastAPI application: loads the engine once at start (lifespan) and mounts the routers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api.errors import add_error_handlers
from service.api.limits import BodySizeLimit, RequestTimeout
from service.api.observability import Metrics, RequestObserver
from service.api.routes import documents, health, jobs, pages, search, uploads
from service.engine import Engine
from service.jobs import Jobs
from service.settings import Settings
from service.startup import prepare_index
from service.watch import FolderWatch

logger = logging.getLogger(__name__)

DESCRIPTION = """
Citeline answers a question over a collection of documents with ranked passages, each with a citation
a person can check: the document, its title and the exact character span in the original text
(`GET /documents/{doc_id}` → `text[start:end] == result.text`).
"""


async def _follow_index(engine: Engine, every_seconds: float) -> None:
    """Take in writes made by another process (`citeline index` on the served index), and keep the vector
    segments in shape (seal, merge) in the background."""
    if every_seconds <= 0:
        return
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await asyncio.to_thread(engine.refresh)
        except Exception:  # a write that cannot be loaded must not stop serving what is loaded
            logger.exception("could not take in the index's new writes; still serving version %s", engine.version)
            continue
        try:
            await asyncio.to_thread(engine.maintain)
        except Exception:  # a failed seal or merge leaves the segments as they were; the next round retries
            logger.exception("could not seal or merge the vector segments; still serving version %s", engine.version)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The app; at start it prepares and loads the index of `settings` unless an `engine` is given (tests,
    embedding)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if engine is None:
            app.state.engine = Engine.load(settings, embedder=prepare_index(settings))
        else:
            app.state.engine = engine
        view = app.state.engine.view
        logger.info("serving %d documents, %d passages from %s", view.num_documents, view.live_passages, settings.index)
        # What is loaded now (modules, model, index) lives as long as the process: keep it out of the cyclic
        # garbage collector's scans, which would otherwise walk it all in every full collection (a latency
        # spike for whichever request triggers one).
        gc.collect()
        gc.freeze()
        watcher = asyncio.create_task(_follow_index(app.state.engine, settings.reload_seconds))
        app.state.jobs = Jobs(app.state.engine, on_files=lambda k, o, n: app.state.metrics.files.labels(k, o).inc(n))
        folders = FolderWatch(settings.watch_list(), app.state.jobs, settings.file_limits())
        if settings.watch_list():
            folders.start()
        yield
        if settings.watch_list():
            folders.stop()
        await asyncio.to_thread(app.state.jobs.close)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if engine is None:
            app.state.engine.close()

    app = FastAPI(title="Citeline", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_seconds)
    app.state.metrics = Metrics(lambda: getattr(app.state, "engine", None))
    app.add_middleware(RequestObserver, metrics=app.state.metrics)  # outermost: sees every status, even 413/503
    add_error_handlers(app)
    # uploads before documents: the same path and method, told apart by the body (routes/uploads.py).
    for router in (search.router, uploads.router, documents.router, jobs.router, health.router):
        app.include_router(router)
    app.include_router(pages.router)
    app.mount("/static", pages.static_files(), name="static")
    return app
