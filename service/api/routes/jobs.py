"""`/jobs`: what uploads and folder syncs are doing or did (counts, failed files and why, progress, ETA)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from service.api.dependencies import JobsDep
from service.api.schemas import (
    BAD_INPUT,
    LACKS_SCOPE,
    NEEDS_READ_KEY,
    OPTIONAL_KEY,
    ErrorMessage,
    FailedFile,
    JobList,
    JobStatus,
    ReindexStatus,
)
from service.api.security import require_read_key
from service.jobs import Job

router = APIRouter(
    tags=["jobs"],
    dependencies=[Depends(require_read_key)],
    responses={401: NEEDS_READ_KEY, 403: LACKS_SCOPE, 422: BAD_INPUT},
)
JobId = Annotated[str, Path(description="The job's id, as a write that started it answered.", max_length=64)]


def job_status(job: Job) -> JobStatus:
    return JobStatus(
        id=job.id,
        kind=job.kind,
        target=job.target,
        state=job.state,
        total=job.total,
        done=job.done,
        indexed=job.indexed,
        unchanged=job.unchanged,
        removed=job.removed,
        failed=job.failed,
        failures=[FailedFile(file=f.file, reason=f.reason) for f in job.failures],
        progress=round(job.progress, 4),
        eta_seconds=None if job.eta_seconds is None else round(job.eta_seconds, 1),
        error=job.error,
        created=job.created,
        started=job.started,
        finished=job.finished,
        reindex=None if job.reindex is None else ReindexStatus(**asdict(job.reindex)),
    )


def prefix_of(request: Request) -> str:
    """The path prefix of the request's collection: "" for the default one at the root."""
    name = request.path_params.get("name")
    return "" if name is None else f"/collections/{quote(name, safe='')}"


@router.get("/jobs", response_model=JobList, openapi_extra=OPTIONAL_KEY, summary="List recent jobs")
def list_jobs(jobs: JobsDep) -> JobList:
    """The collection's recent uploads and syncs, oldest first (the last 100 are kept, in memory)."""
    return JobList(jobs=[job_status(j) for j in jobs.all()])


@router.get(
    "/jobs/{job_id}",
    response_model=JobStatus,
    responses={404: {"model": ErrorMessage, "description": "No job has this id."}},
    openapi_extra=OPTIONAL_KEY,
    summary="Get one job",
)
def get_job(job_id: JobId, jobs: JobsDep) -> JobStatus:
    """Counts so far (indexed, unchanged, removed, failed with each file's reason), progress and an ETA."""
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id!r} is not known: GET /jobs lists the recent ones")
    return job_status(job)
