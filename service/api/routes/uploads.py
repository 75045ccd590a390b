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
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile
from starlette.routing import Match
from starlette.types import Scope

from indexer.collection import API_SOURCE
from indexer.formats.extracted import ExtractionError
from indexer.text.documents import Document, SourceError, document_from_file, file_doc_id, validate_doc_id
from service.api.dependencies import EngineDep, SettingsDep
from service.api.limits import is_multipart
from service.api.schemas import FailedFile, WriteResponse, WrittenDocument
from service.api.security import require_write_key
from service.settings import Settings


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


def _read_upload(name: str, data: bytes, settings: Settings) -> Document:
    doc_id = validate_doc_id(file_doc_id(PurePath(name)))
    document = document_from_file(data, doc_id, API_SOURCE, name, settings.file_limits())
    return Document(
        doc_id=document.doc_id,
        text=document.text,
        title=document.title,
        source=API_SOURCE,
        metadata={"file": name},
        layout=document.layout,
        original=document.original,
    )


@router.post("/documents", response_model=WriteResponse, status_code=status.HTTP_201_CREATED, include_in_schema=False)
async def upload_documents(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    replace: bool = Query(default=False, description="Replace documents whose doc_id exists (else they fail)."),
) -> WriteResponse:
    """Index uploaded files: each part named `file` is one document, its id the file name's stem."""
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
    documents: list[Document] = []
    failed: list[FailedFile] = []
    seen: set[str] = set()
    for upload in uploads:
        name = PurePath(upload.filename or "upload.txt").name  # never a client's path
        data = await upload.read()
        await upload.close()
        try:
            document = await run_in_threadpool(_read_upload, name, data, settings)
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
    return WriteResponse(
        documents=[WrittenDocument(doc_id=r.doc_id, passages=r.passages, created=r.created) for r in results],
        snapshot=engine.version,
        failed=failed,
    )
