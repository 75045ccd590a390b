"""`/health`: liveness plus what is being served."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.dependencies import get_engine
from service.engine import Engine
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Service status")
def health(engine: Annotated[Engine, Depends(get_engine)]) -> Health:
    """`ok` once the index and the model are loaded."""
    snapshot = engine.snapshot
    return Health(
        status="ok",
        documents=len(snapshot.documents),
        chunks=snapshot.num_chunks,
        model=engine.embedder.info.name,
        snapshot=snapshot.path.name,
    )
