"""`/documents`: what is indexed, and each document's original text for checking citations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from service.dependencies import get_engine
from service.engine import Engine
from service.schemas import DocumentDetail, DocumentList, DocumentSummary, ErrorMessage

router = APIRouter(tags=["documents"])


@router.get("/documents", response_model=DocumentList, summary="List indexed documents")
def list_documents(engine: Annotated[Engine, Depends(get_engine)]) -> DocumentList:
    """Every document with its id, title, source, length and number of passages."""
    return DocumentList(
        documents=[
            DocumentSummary(
                doc_id=d.doc_id,
                title=d.title,
                source=d.source,
                length=len(d.text),
                chunks=engine.chunk_counts.get(d.doc_id, 0),
            )
            for d in engine.snapshot.documents
        ]
    )


@router.get(
    "/documents/{doc_id}",
    response_model=DocumentDetail,
    responses={404: {"model": ErrorMessage, "description": "No document has this id."}},
    summary="Get one document with its original text",
)
def get_document(doc_id: str, engine: Annotated[Engine, Depends(get_engine)]) -> DocumentDetail:
    """The full original text: a result's citation is `text[start:end]`."""
    d = engine.document(doc_id)
    if d is None:
        raise HTTPException(status_code=404, detail=f"doc_id {doc_id!r} is not in the index: GET /documents lists ids")
    return DocumentDetail(
        doc_id=d.doc_id,
        title=d.title,
        source=d.source,
        length=len(d.text),
        chunks=engine.chunk_counts.get(d.doc_id, 0),
        text=d.text,
        metadata=d.metadata,
    )
