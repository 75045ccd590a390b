"""`/documents`: what is indexed, each document's original text, and writes (add, replace, delete)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from fastapi.responses import FileResponse

from indexer.collection import API_SOURCE, UnknownDocumentError, derive_doc_id
from indexer.store.originals import Originals
from indexer.text.documents import Document, SourceError, validate_doc_id
from service.api.dependencies import EngineDep, SettingsDep
from service.api.routes.uploads import UPLOAD_BODY
from service.api.schemas import (
    BAD_BODY,
    BAD_INPUT,
    DOC_ID_SCHEMA,
    LACKS_SCOPE,
    NEEDS_READ_KEY,
    OPTIONAL_KEY,
    TOO_LARGE,
    UNAVAILABLE,
    DocumentBatch,
    DocumentDetail,
    DocumentIn,
    DocumentList,
    DocumentSummary,
    DocumentWrite,
    ErrorMessage,
    WriteResponse,
    WrittenDocument,
)
from service.api.security import require_read_key, require_write_key
from service.engine import Engine, WriteResult
from service.settings import Settings

router = APIRouter(tags=["documents"])
reads = APIRouter(
    tags=["documents"],
    dependencies=[Depends(require_read_key)],
    responses={401: NEEDS_READ_KEY, 403: LACKS_SCOPE, 422: BAD_INPUT, 503: UNAVAILABLE},
)
writes = APIRouter(
    tags=["documents"],
    dependencies=[Depends(require_write_key)],
    responses={
        401: {"model": ErrorMessage, "description": "Missing or wrong bearer key."},
        403: {"model": ErrorMessage, "description": "Writes are off: no CITELINE_API_KEY configured."},
        413: TOO_LARGE,
        422: BAD_INPUT,
        503: UNAVAILABLE,
    },
)
DocId = Annotated[str, Path(description="The document's id, as listed by `GET /documents`.")]
NewDocId = Annotated[
    str, Path(description="The document's id (see `DocumentIn.doc_id` for the rule).", json_schema_extra=DOC_ID_SCHEMA)
]


def _summary(document: Document, passages: int) -> DocumentSummary:
    return DocumentSummary(
        doc_id=document.doc_id,
        title=document.title,
        source=document.source,
        length=len(document.text),
        passages=passages,
    )


@reads.get("/documents", response_model=DocumentList, openapi_extra=OPTIONAL_KEY, summary="List indexed documents")
def list_documents(engine: EngineDep) -> DocumentList:
    """Every document with its id, title, source, length and number of passages, by id."""
    return DocumentList(documents=[_summary(d, passages) for d, passages in engine.catalog()])


# An original is the user's file, not our page: HTML from it must never run or render as ours.
_ORIGINAL_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


@reads.get(
    "/documents/{doc_id}/source",
    response_class=Response,
    responses={
        200: {
            "content": {"application/pdf": {}, "text/html": {}, "text/plain": {}},
            "description": "The original file as it was indexed.",
        },
        404: {"model": ErrorMessage, "description": "No document has this id."},
    },
    openapi_extra=OPTIONAL_KEY,
    summary="Get the original file of a document",
)
def get_source(doc_id: DocId, engine: EngineDep) -> Response:
    """The file a document's text was extracted from (PDF, HTML, DOCX), with its media type; for a text
    document, its text. A PDF citation's `page` opens it there: `/documents/{doc_id}/source#page=N`."""
    document = engine.document(doc_id)
    if document is None:
        raise UnknownDocumentError(doc_id)
    layout = document.layout
    name = PurePath(document.source.split("#", 1)[0]).name or f"{doc_id}.txt"
    disposition = f"inline; filename*=UTF-8''{quote(name)}"
    headers = {**_ORIGINAL_HEADERS, "Content-Disposition": disposition}
    if layout is None or not layout.original:
        media_type = layout.media_type if layout is not None else "text/plain"
        return Response(document.text, media_type=f"{media_type}; charset=utf-8", headers=headers)
    path = Originals(engine.index_dir).path(layout.original)
    if not path.is_file():  # deleted by a write since this view was taken
        raise UnknownDocumentError(doc_id)
    return FileResponse(path, media_type=layout.media_type, headers=headers)


@reads.get(
    "/documents/{doc_id}",
    response_model=DocumentDetail,
    responses={404: {"model": ErrorMessage, "description": "No document has this id."}},
    openapi_extra=OPTIONAL_KEY,
    summary="Get one document with its original text",
)
def get_document(doc_id: DocId, engine: EngineDep) -> DocumentDetail:
    """The full original text: a result's citation is `text[start:end]`."""
    d = engine.document(doc_id)
    if d is None:
        raise UnknownDocumentError(doc_id)
    summary = _summary(d, engine.passage_count(doc_id))
    return DocumentDetail(**summary.model_dump(), text=d.text, metadata=d.metadata)


def _to_document(document: DocumentIn, settings: Settings, field: str, doc_id: str | None = None) -> Document:
    if len(document.text) > settings.max_document_chars:
        raise HTTPException(
            status_code=422,
            detail=f"{field}.text has {len(document.text)} characters; the limit is "
            f"{settings.max_document_chars} (CITELINE_MAX_DOCUMENT_CHARS)",
        )
    title = document.title.strip() or None if document.title else None
    return Document(
        doc_id=doc_id or document.doc_id or derive_doc_id(document.text, title),
        text=document.text,
        title=title,
        source=API_SOURCE,
        metadata=document.metadata,
    )


def _response(results: list[WriteResult], engine: Engine) -> WriteResponse:
    return WriteResponse(
        documents=[WrittenDocument(doc_id=r.doc_id, passages=r.passages, created=r.created) for r in results],
        snapshot=engine.version,
    )


@writes.post(
    "/documents",
    response_model=WriteResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        400: BAD_BODY,
        409: {"model": ErrorMessage, "description": "A doc_id already exists (nothing was written)."},
    },
    openapi_extra=UPLOAD_BODY,
    summary="Add one document or a batch, or upload files",
)
def add_documents(
    body: DocumentWrite,
    engine: EngineDep,
    settings: SettingsDep,
) -> WriteResponse:
    """Index new documents, `{"text": ...}` or `{"documents": [...]}`, in one atomic write.

    Or upload files as `multipart/form-data`, one `file` part each (`curl -F file=@report.pdf`): PDF, HTML,
    DOCX, Markdown or text, the doc_id from the file name; `?replace=true` replaces existing ids. Files that
    yield no document are listed under `failed` with their reasons and the rest are written.

    Returns once the documents are stored durably; the next search sees them. An id that
    exists already is a 409 and nothing is written: replace a document with `PUT /documents/{doc_id}`.
    """
    batch = body.documents if isinstance(body, DocumentBatch) else [body]
    field = "documents[{}]" if isinstance(body, DocumentBatch) else "body"
    documents = [_to_document(d, settings, field.format(i)) for i, d in enumerate(batch)]
    ids = [d.doc_id for d in documents]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise HTTPException(status_code=422, detail=f"documents: doc_id repeated in the batch: {', '.join(repeated)}")
    return _response(engine.add_documents(documents), engine)


@writes.put(
    "/documents/{doc_id}",
    response_model=WriteResponse,
    responses={201: {"model": WriteResponse, "description": "The document was created."}, 400: BAD_BODY},
    summary="Create or replace one document",
)
def put_document(
    doc_id: NewDocId,
    body: DocumentIn,
    response: Response,
    engine: EngineDep,
    settings: SettingsDep,
) -> WriteResponse:
    """Index `body` under `doc_id`, replacing the document with that id if there is one (200) or creating it (201)."""
    try:
        validate_doc_id(doc_id)
    except SourceError as error:
        raise HTTPException(status_code=422, detail=f"path doc_id: {error}") from None
    if body.doc_id is not None and body.doc_id != doc_id:
        raise HTTPException(status_code=422, detail=f"body doc_id {body.doc_id!r} differs from the path's {doc_id!r}")
    result = engine.put_document(_to_document(body, settings, "body", doc_id=doc_id))
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return _response([result], engine)


@writes.delete(
    "/documents/{doc_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": ErrorMessage, "description": "No document has this id."}},
    summary="Delete one document",
)
def delete_document(doc_id: DocId, engine: EngineDep) -> Response:
    """Remove the document and its passages; returns once the delete is stored durably."""
    engine.delete_document(doc_id)  # UnknownDocumentError: 404 (service/api/errors.py)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


router.include_router(reads)
router.include_router(writes)
