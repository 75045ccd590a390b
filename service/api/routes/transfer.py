"""`GET /export`: a collection as one portable archive (documents, original files, vectors, BM25 index,
settings, checksums), for `POST /collections/{name}/import` on another server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from indexer.store.archive import write_archive
from service.api.dependencies import CollectionsDep, LiveDep
from service.api.schemas import LACKS_SCOPE, NEEDS_READ_KEY, OPTIONAL_KEY
from service.api.security import require_read_key

router = APIRouter(
    tags=["collections"], dependencies=[Depends(require_read_key)], responses={401: NEEDS_READ_KEY, 403: LACKS_SCOPE}
)
ARCHIVE_TYPE = "application/x-tar"


@router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {ARCHIVE_TYPE: {}}, "description": "The collection as a tar archive."}},
    openapi_extra=OPTIONAL_KEY,
    summary="Export the collection as one archive",
)
async def export_collection(live: LiveDep, collections: CollectionsDep) -> FileResponse:
    """A consistent copy as of one write (writes go on meanwhile), with a manifest of every file's SHA-256 and
    the model that embedded the vectors. Import it with `POST /collections/{name}/import` or `citeline import`:
    nothing is parsed or embedded again when the model is the same."""
    # Beside the collections (writable, and where the space for them is), not in a small /tmp.
    collections.folder.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".export-", dir=collections.folder))
    archive = folder / f"{live.name}.citeline.tar"
    meta = {"collection": live.name, "public": live.info.public}
    try:
        await run_in_threadpool(write_archive, live.engine.index_dir, archive, meta)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        archive,
        media_type=ARCHIVE_TYPE,
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
