"""`/collections`: create, list, describe and delete collections (the admin key creates and deletes).

Every route of the API is also mounted under `/collections/{name}` (search, documents, uploads, jobs,
pages under `/c/{name}/`); the same routes at the root serve the `default` collection.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.api.dependencies import CollectionsDep, LiveDep, collection_name
from service.api.schemas import (
    BAD_INPUT,
    LACKS_SCOPE,
    NEEDS_ADMIN_KEY,
    NEEDS_READ_KEY,
    NOT_ADMIN,
    OPTIONAL_KEY,
    CollectionIn,
    CollectionInfoOut,
    CollectionList,
    ErrorMessage,
    ImportResponse,
)
from service.api.security import Credentials, caller_of, require_admin_key, require_read_key
from service.collections import EXPORTING, Live
from service.keys import READ, WRITE
from service.settings import Settings

router = APIRouter(tags=["collections"], responses={422: BAD_INPUT})
UNKNOWN = {"model": ErrorMessage, "description": "No collection has this name."}


def collection_info(live: Live) -> CollectionInfoOut:
    engine = live.engine
    sizes = engine.sizes()
    return CollectionInfoOut(
        name=live.name,
        public=live.info.public,
        created=live.info.created,
        documents=sizes.documents,
        passages=sizes.passages,
        model=engine.embedder.info.name,
        passage_tokens=engine.store.settings.chunker.passage_tokens,
        vector_index=engine.segments.index,
        last_write=sizes.loaded_at,
    )


@router.post(
    "/collections",
    response_model=CollectionInfoOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_admin_key)],
    responses={401: NEEDS_ADMIN_KEY, 403: NOT_ADMIN, 409: {"model": ErrorMessage, "description": "The name is taken."}},
    summary="Create a collection",
)
async def create_collection(
    body: CollectionIn, request: Request, collections: CollectionsDep, response: Response
) -> CollectionInfoOut:
    """An empty collection, private unless `public`; then create a key for it with `POST /keys`."""
    request.state.collection = body.name
    live = await run_in_threadpool(collections.create, body.name, body.public, body.passage_tokens)
    response.headers["Location"] = f"/collections/{live.name}"
    return collection_info(live)


@router.get("/collections", response_model=CollectionList, openapi_extra=OPTIONAL_KEY, summary="List collections")
async def list_collections(request: Request, collections: CollectionsDep, credentials: Credentials) -> CollectionList:
    """The collections this caller may see: the public ones and those its key opens (all, for the admin key)."""
    caller = caller_of(request, credentials)
    visible = [
        live
        for live in collections.all()
        if live.info.public or caller.may(live.name, READ) or caller.may(live.name, WRITE)
    ]
    return CollectionList(collections=[collection_info(live) for live in visible])


@router.get(
    "/collections/{name}",
    response_model=CollectionInfoOut,
    dependencies=[Depends(collection_name), Depends(require_read_key)],
    responses={401: NEEDS_READ_KEY, 403: LACKS_SCOPE, 404: UNKNOWN},
    openapi_extra=OPTIONAL_KEY,
    summary="Describe a collection",
)
async def get_collection(live: LiveDep) -> CollectionInfoOut:
    """Its documents and passages, model, index type and last write."""
    return collection_info(live)


@router.delete(
    "/collections/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(collection_name), Depends(require_admin_key)],
    responses={401: NEEDS_ADMIN_KEY, 403: NOT_ADMIN, 404: UNKNOWN},
    summary="Delete a collection and its files",
)
async def delete_collection(name: str, request: Request, collections: CollectionsDep) -> Response:
    """Removes its documents, its files and its name from every key (a key left with none is revoked)."""
    keys = request.app.state.keys
    request.state.collection = collections.get(name).name  # 404 before anything changes
    if keys is not None:
        await run_in_threadpool(keys.forget_collection, name)
    await run_in_threadpool(collections.delete, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/collections/{name}/import",
    response_model=ImportResponse,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(collection_name), Depends(require_admin_key)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        401: NEEDS_ADMIN_KEY,
        403: NOT_ADMIN,
        409: {"model": ErrorMessage, "description": "The name is taken."},
        413: {"model": ErrorMessage, "description": "Larger than CITELINE_MAX_IMPORT_BYTES."},
    },
    summary="Create a collection from an export",
)
async def import_collection(
    name: str,
    request: Request,
    collections: CollectionsDep,
    public: bool | None = Query(default=None, description="Override the exported collection's visibility."),
) -> ImportResponse:
    """The body is an archive from `GET /collections/{name}/export` (or `citeline export`): `curl
    --data-binary @wire.citeline.tar -H 'content-type: application/x-tar'`. It is checked whole (every
    file's SHA-256, then the index verified) before the collection exists; a damaged, truncated or foreign
    archive is a 422 and nothing is imported. Vectors of another model are embedded again (`reembedded`)."""
    request.state.collection = name
    settings: Settings = request.app.state.settings
    collections.folder.mkdir(parents=True, exist_ok=True)
    descriptor, raw = tempfile.mkstemp(prefix=f"{EXPORTING}import-", suffix=".tar", dir=collections.folder)
    archive = Path(raw)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            async for chunk in request.stream():
                await run_in_threadpool(handle.write, chunk)
        imported = await run_in_threadpool(collections.import_archive, name, archive, public, settings.max_import_bytes)
    finally:
        archive.unlink(missing_ok=True)
    return ImportResponse(collection=collection_info(imported.live), reembedded=imported.reembedded)
