"""`POST /documents` with `multipart/form-data`: files (PDF, HTML, DOCX, Markdown, text) uploaded and indexed.

The same path and method as the JSON write, told apart by the body's media type (`UploadRoute`), and the
same response shape. Unlike a JSON batch, an upload is not all or nothing: a file that yields no document
(encrypted, damaged, too large, a clashing id) is listed under `failed` with its reason, and the rest are
written in one write.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile
from starlette.routing import Match
from starlette.types import Scope

from indexer.formats.extracted import ExtractionError
from indexer.text.documents import Document, SourceError
from service.api.dependencies import EngineDep, JobsDep, LiveDep, SettingsDep
from service.api.limits import is_multipart
from service.api.routes.jobs import job_status, prefix_of
from service.api.schemas import FailedFile, WriteResponse, WrittenDocument
from service.api.security import require_write_key
from service.jobs import read_upload


class UploadRoute(APIRoute):
    """A route that takes only `multipart/form-data` bodies: other requests fall through to the next route
    of the same path (the JSON write)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE and not is_multipart(scope):
            return Match.NONE, {}
        return match, child


router = APIRouter(tags=["documents"], route_class=UploadRoute, dependencies=[Depends(require_write_key)])

# How the JSON write's OpenAPI operation also describes uploads (one operation per path and method).
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "description": "One part per file; its file name gives the doc_id (its stem).",
                        }
                    },
                    "required": ["file"],
                }
            }
        }
    }
}


@router.post("/documents", response_model=WriteResponse, status_code=status.HTTP_201_CREATED, include_in_schema=False)
async def upload_documents(
    request: Request,
    live: LiveDep,
    engine: EngineDep,
    jobs: JobsDep,
    settings: SettingsDep,
    replace: bool = Query(default=False, description="Replace documents whose doc_id exists (else they fail)."),
    background: bool = Query(default=False, description="Answer 202 with a job at once (GET /jobs/{id})."),
) -> WriteResponse | JSONResponse:
    """Index uploaded files: each part named `file` is one document, its id the file name's stem. With
    `background`, the files are indexed by a job and the answer is the job (202, `Location: /jobs/{id}`)."""
    try:
        form = await request.form(max_files=settings.max_upload_files, max_fields=settings.max_upload_files)
    except HTTPException:
        raise
    except Exception as error:  # a malformed multipart body (python-multipart's errors vary by version)
        raise HTTPException(status_code=400, detail=f"multipart body cannot be read: {error}") from None
    uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not uploads:
        raise HTTPException(
            status_code=422, detail="body: a multipart upload needs at least one file part, e.g. curl -F file=@a.pdf"
        )
    files: list[tuple[str, bytes]] = []
    for upload in uploads:
        name = PurePath(upload.filename or "upload.txt").name  # never a client's path
        files.append((name, await upload.read()))
        await upload.close()
    if background:
        job = jobs.upload(files, settings.file_limits(), replace_existing=replace)
        return JSONResponse(
            status_code=status.HTTP_202_ACCEPTED,
            content=job_status(job).model_dump(),
            headers={"Location": f"{prefix_of(request)}/jobs/{job.id}"},
        )
    documents: list[Document] = []
    failed: list[FailedFile] = []
    seen: set[str] = set()
    limits = settings.file_limits()
    for name, data in files:
        try:
            document = await run_in_threadpool(read_upload, name, data, limits)
        except (ExtractionError, SourceError) as error:
            failed.append(FailedFile(file=name, reason=str(error)))
            continue
        clash = None
        if document.doc_id in seen:
            clash = f"doc_id {document.doc_id!r} is taken by another file of this upload"
        elif not replace and engine.document(document.doc_id) is not None:
            clash = f"doc_id {document.doc_id!r} exists: upload with ?replace=true to replace it"
        if clash is not None:
            failed.append(FailedFile(file=name, reason=clash))
            continue
        seen.add(document.doc_id)
        documents.append(document)
    if not documents:
        reasons = "; ".join(f"{f.file}: {f.reason}" for f in failed)
        clashes_only = all(" exists: upload with ?replace=true" in f.reason for f in failed)
        raise HTTPException(status_code=409 if clashes_only else 422, detail=f"no file was indexed: {reasons}")
    write = engine.put_documents if replace else engine.add_documents
    results = await run_in_threadpool(write, documents)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.files.labels(live.name, "upload", "indexed").inc(len(documents))
        metrics.files.labels(live.name, "upload", "failed").inc(len(failed))
    return WriteResponse(
        documents=[WrittenDocument(doc_id=r.doc_id, passages=r.passages, created=r.created) for r in results],
        snapshot=engine.version,
        failed=failed,
    )
