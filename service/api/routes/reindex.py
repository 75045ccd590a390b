"""`/eval`, `/reindex`, `/rollback` of a collection: its evaluation questions, a shadow reindex gated by
them, and the way back (service/reindex.py). Mounted at the root (default) and under /collections/{name}."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from indexer.errors import CitelineError
from service.api.dependencies import CollectionsDep, LiveDep, MetricsDep
from service.api.routes.collections import collection_info
from service.api.routes.jobs import job_status, prefix_of
from service.api.schemas import (
    BAD_BODY,
    BAD_INPUT,
    LACKS_SCOPE,
    NEEDS_READ_KEY,
    OPTIONAL_KEY,
    TOO_LARGE,
    CollectionInfoOut,
    ErrorMessage,
    JobStatus,
    ReindexIn,
)
from service.api.security import require_read_key, require_write_key
from service.evaluation.evaluate import load_qa
from service.jobs import REINDEX, Job
from service.reindex import EVAL_FILE, Plan, Report

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: BAD_BODY,
    401: NEEDS_READ_KEY,
    403: LACKS_SCOPE,
    413: TOO_LARGE,
    422: BAD_INPUT,
}
NOT_NOW = {"model": ErrorMessage, "description": "No questions to judge a reindex by, or no index to roll back to."}
reads = APIRouter(tags=["reindex"], dependencies=[Depends(require_read_key)], responses=WRITE_ERRORS)
writes = APIRouter(tags=["reindex"], dependencies=[Depends(require_write_key)], responses=WRITE_ERRORS)
QA_EXAMPLE = '{"q": "how many US troops were sent", "doc_id": "001_2c0b17beeba9964b", "answer": "200"}'
QA_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-ndjson": {"schema": {"type": "string"}, "example": QA_EXAMPLE}},
    }
}
MAX_EVAL_BYTES = 10_000_000


@writes.put(
    "/eval",
    status_code=status.HTTP_204_NO_CONTENT,
    openapi_extra=QA_BODY,
    responses={413: {"model": ErrorMessage, "description": "Larger than 10 MB."}},
    summary="Set the collection's evaluation questions",
)
async def put_questions(request: Request, live: LiveDep) -> Response:
    """JSON lines `{"q", "doc_id", "answer"?}`, the QA format `citeline eval` reads: a reindex switches only
    if the new index does no worse on them. Replaces the questions there were."""
    body = await request.body()
    if len(body) > MAX_EVAL_BYTES:
        raise HTTPException(status_code=413, detail=f"body: more than {MAX_EVAL_BYTES} bytes of questions")
    home = live.engine.index_dir
    descriptor, raw = tempfile.mkstemp(prefix=".eval-", suffix=".jsonl", dir=home)
    path = Path(raw)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            questions = load_qa(path)
        except (CitelineError, ValueError) as error:
            raise HTTPException(status_code=422, detail=f"body: not QA lines ({error})") from None
        if not questions.queries:
            raise HTTPException(status_code=422, detail="body: no questions (one JSON object per line)")
        path.replace(home / EVAL_FILE)
    finally:
        path.unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@reads.get(
    "/eval",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "The questions, one JSON object per line."},
        404: {"model": ErrorMessage, "description": "The collection has no questions."},
    },
    openapi_extra=OPTIONAL_KEY,
    summary="Get the collection's evaluation questions",
)
async def get_questions(live: LiveDep) -> FileResponse:
    path = live.engine.index_dir / EVAL_FILE
    if not path.is_file():
        raise HTTPException(status_code=404, detail="this collection has no evaluation questions: PUT them to .../eval")
    return FileResponse(path, media_type="application/x-ndjson")


@writes.post(
    "/reindex",
    response_model=JobStatus,
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: NOT_NOW},
    summary="Build the collection again with new settings, and switch if it is no worse",
)
async def start_reindex(
    body: ReindexIn, request: Request, live: LiveDep, collections: CollectionsDep, metrics: MetricsDep
) -> JSONResponse:
    """A job (`GET .../jobs/{id}`): the new index is built from the stored documents beside the live one,
    which keeps serving reads and writes; writes made meanwhile are carried over; both are evaluated on the
    collection's questions, and the switch happens only if no chosen metric drops by more than `threshold`
    (`force` switches anyway, and without questions). A refused index is kept for inspection."""
    plan = Plan(body.passage_tokens, body.overlap_sentences, tuple(body.metrics), body.threshold, body.force)
    if not body.force and not (live.engine.index_dir / EVAL_FILE).is_file():
        raise HTTPException(
            status_code=409,
            detail=f"collection {live.name!r} has no evaluation questions to judge a reindex by: PUT them to "
            f"{prefix_of(request)}/eval first, or reindex with force",
        )

    def work(job: Job) -> None:
        assert job.reindex is not None

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            report = collections.reindex(live.name, plan, job.reindex, progress)
        except Exception:
            metrics.reindexes.labels(live.name, "failed").inc()
            raise
        metrics.reindexes.labels(live.name, report.decision or "failed").inc()

    job = live.jobs.submit(REINDEX, live.name, work, reindex=Report())
    return JSONResponse(
        status_code=status.HTTP_202_ACCEPTED,
        content=job_status(job).model_dump(),
        headers={"Location": f"{prefix_of(request)}/jobs/{job.id}"},
    )


@writes.post(
    "/rollback",
    response_model=CollectionInfoOut,
    responses={409: NOT_NOW},
    summary="Bring back the index the last reindex replaced",
)
async def rollback(live: LiveDep, collections: CollectionsDep) -> CollectionInfoOut:
    """Atomically, with the writes made since the switch carried over; a second rollback rolls forward."""
    return collection_info(await run_in_threadpool(collections.rollback, live.name))


router = APIRouter()
router.include_router(reads)
router.include_router(writes)
