"""How an error reaches an HTTP client: one table from error type to status, one handler.

Routes raise the domain's errors (or FastAPI's `HTTPException` for a rule of the HTTP layer itself);
nothing else turns an exception into a status. An error not in the table is a bug: FastAPI answers 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from indexer.collection import ConflictError, UnknownDocumentError
from indexer.errors import CitelineError
from indexer.store.archive import ArchiveError
from indexer.store.bm25 import BM25Error
from indexer.store.errors import StoreError
from indexer.store.legacy import LegacyIndexError
from indexer.store.records import DiskFullError, RecordsError
from indexer.text.documents import SourceError
from service.admission import WriteQueueFullError, WriteTimeoutError
from service.api.limits import RETRY_AFTER_SECONDS
from service.collections import (
    CollectionError,
    CollectionExistsError,
    CollectionStorageError,
    UnknownCollectionError,
)
from service.reindex import ReindexError
from service.shards import ShardUnavailableError

logger = logging.getLogger(__name__)

# The first class an error is an instance of decides (subclasses before their bases).
STATUS: tuple[tuple[type[CitelineError], int], ...] = (
    (DiskFullError, 507),  # the disk refused a write: nothing was written
    (ArchiveError, 422),  # a damaged, truncated or foreign archive: nothing was imported
    (ConflictError, 409),  # an added doc_id exists: nothing was written
    (UnknownDocumentError, 404),
    (UnknownCollectionError, 404),
    (CollectionExistsError, 409),
    (CollectionError, 422),  # a name or setting that breaks a rule
    (CollectionStorageError, 503),
    (ReindexError, 409),  # not now: no questions to judge by, no previous index to roll back to
    (SourceError, 422),  # a document that breaks a rule (its id, its text)
    (ShardUnavailableError, 503),  # a shard's process or node is gone until Ray restarts it
    (WriteQueueFullError, 503),  # busy: try again shortly
    (WriteTimeoutError, 503),
    (StoreError, 503),  # the index cannot be written or read now (read-only, busy, damaged)
    (RecordsError, 503),
    (BM25Error, 503),
    (LegacyIndexError, 503),
)


def status_of(error: CitelineError) -> int | None:
    return next((status for kind, status in STATUS if isinstance(error, kind)), None)


async def _answer(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, CitelineError)
    status = status_of(error)
    if status is None:
        raise error  # not meant for a client: a bug, answered 500 and logged by the server
    if status >= 500:
        logger.warning("%s %s answered %d: %s", request.method, request.url.path, status, error)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(status_code=status, content={"detail": str(error)}, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CitelineError, _answer)
