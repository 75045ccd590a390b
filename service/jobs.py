"""Ingestion jobs: uploads and folder syncs that run in the background, one at a time, each reporting its
counts (indexed, unchanged, removed, failed), the reason for every failed file, progress and an ETA.

Jobs run on one worker thread at the lowest CPU priority, so searches keep the cores. A job writes in
batches of `BATCH_FILES` documents, each durable on its own: a job stopped midway (shutdown, a crash) has
stored what it wrote, and running it again finds those documents unchanged. Jobs are kept in memory, the
last `KEEP_JOBS` of them: a restart forgets their history, not their writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath

from indexer.collection import API_SOURCE, ConflictError
from indexer.errors import CitelineError
from indexer.formats.extracted import ExtractionError, Limits
from indexer.text.documents import (
    Document,
    SourceError,
    document_from_file,
    file_doc_id,
    load_file,
    source_files,
    validate_doc_id,
)
from service.engine import Engine
from service.reindex import Report

logger = logging.getLogger(__name__)
BATCH_FILES = 16
KEEP_JOBS = 100
UPLOAD, SYNC, REINDEX = "upload", "sync", "reindex"
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class FileFailure:
    """A file that yielded no document, and why."""

    file: str
    reason: str


@dataclass
class Job:
    """One upload or sync, as `GET /jobs/{id}` reports it."""

    id: str
    kind: str  # UPLOAD or SYNC
    target: str  # the folder synced, or how many files were uploaded
    state: str = QUEUED
    total: int = 0  # files to read (known once they are listed)
    done: int = 0  # files read so far, whatever became of them
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    failures: list[FileFailure] = field(default_factory=list)
    error: str | None = None  # why a job stopped short (state FAILED)
    reindex: Report | None = None  # a reindex's phase, figures and decision
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def progress(self) -> float:
        """Share of the files read, 0..1 (1 once done)."""
        if self.state in (DONE, FAILED):
            return 1.0
        return self.done / self.total if self.total else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far; None until a file is read."""
        if self.state != RUNNING or not self.done or self.started is None:
            return None
        return (time.time() - self.started) / self.done * (self.total - self.done)


Work = Callable[[Job], None]


class Jobs:
    """The job queue of one engine and its worker thread."""

    def __init__(self, engine: Engine, on_files: Callable[[str, str, int], None] | None = None) -> None:
        """`on_files(kind, outcome, count)` is told of files indexed, unchanged or failed (metrics)."""
        self.engine = engine
        self.on_files = on_files or (lambda kind, outcome, count: None)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Job, Work] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="citeline-jobs", daemon=True)
        self._worker.start()

    def submit(self, kind: str, target: str, work: Work, reindex: Report | None = None) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, target=target, reindex=reindex)
        with self._lock:
            self._jobs[job.id] = job
            for old in list(self._jobs)[: max(0, len(self._jobs) - KEEP_JOBS)]:
                if self._jobs[old].state in (DONE, FAILED):
                    del self._jobs[old]
        self._queue.put((job, work))
        return job

    def pending(self, kind: str, target: str) -> bool:
        """True if a job of this kind and target waits to start (a sync need not be queued twice)."""
        with self._lock:
            return any(j.kind == kind and j.target == target and j.state == QUEUED for j in self._jobs.values())

    def get(self, job_id: str) -> Job | None:
        """A copy of the job as it stands."""
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else replace(job, failures=list(job.failures))

    def all(self) -> list[Job]:
        with self._lock:
            return [replace(j, failures=list(j.failures)) for j in self._jobs.values()]

    def wait(self, job_id: str, timeout: float = 60.0) -> Job | None:
        """The job once it has ended (or as it stands after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.state in (DONE, FAILED):
                return job
            time.sleep(0.05)
        return self.get(job_id)

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the job in hand (its batches written so far stay written)."""
        self._queue.put(None)
        self._worker.join(timeout)

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # lowest priority: searches keep the cores
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while (item := self._queue.get()) is not None:
            job, work = item
            job.state, job.started = RUNNING, time.time()
            try:
                work(job)
                job.state = DONE
            except Exception as error:  # a job's failure is its report, never the worker's end
                job.state = FAILED
                job.error = str(error) if isinstance(error, CitelineError) else f"{type(error).__name__}: {error}"
                logger.exception("job %s (%s of %s) failed", job.id, job.kind, job.target)
            finally:
                job.finished = time.time()
            logger.info(
                "job %s: %s of %s %s: %d indexed, %d unchanged, %d removed, %d failed in %.1fs",
                job.id,
                job.kind,
                job.target,
                job.state,
                job.indexed,
                job.unchanged,
                job.removed,
                job.failed,
                job.finished - job.started,
            )

    # -- the work ------------------------------------------------------------------------------------------
    def _fail(self, job: Job, file: str, reason: str) -> None:
        job.failures.append(FileFailure(file, reason))
        job.done += 1
        self.on_files(job.kind, "failed", 1)

    def _write(self, job: Job, batch: list[Document], replace_existing: bool) -> None:
        if not batch:
            return
        if replace_existing:
            self.engine.put_documents(batch)
        else:
            try:
                self.engine.add_documents(batch)
            except ConflictError as error:  # written meanwhile by someone else: those fail, the rest go in
                clashes = set(error.doc_ids)
                for document in batch:
                    if document.doc_id in clashes:
                        self._fail(job, document.metadata.get("file", document.doc_id), str(error))
                rest = [d for d in batch if d.doc_id not in clashes]
                batch.clear()
                self._write(job, rest, replace_existing)
                return
        job.indexed += len(batch)
        job.done += len(batch)
        self.on_files(job.kind, "indexed", len(batch))
        batch.clear()

    def upload(self, files: Sequence[tuple[str, bytes]], limits: Limits, replace_existing: bool) -> Job:
        """Queue uploaded files (name, bytes) for indexing as documents written through the API."""

        def work(job: Job) -> None:
            job.total = len(files)
            batch: list[Document] = []
            seen: set[str] = set()
            for name, data in files:
                try:
                    document = read_upload(name, data, limits)
                except (ExtractionError, SourceError) as error:
                    self._fail(job, name, str(error))
                    continue
                if document.doc_id in seen:
                    self._fail(job, name, f"doc_id {document.doc_id!r} is taken by another file of this upload")
                    continue
                if not replace_existing and self.engine.document(document.doc_id) is not None:
                    self._fail(job, name, f"doc_id {document.doc_id!r} exists: upload with ?replace=true to replace it")
                    continue
                seen.add(document.doc_id)
                batch.append(document)
                if len(batch) >= BATCH_FILES:
                    self._write(job, batch, replace_existing)
            self._write(job, batch, replace_existing)

        return self.submit(UPLOAD, f"{len(files)} files", work)

    def sync(self, folder: Path, limits: Limits) -> Job:
        """Queue a sync of `folder` with the documents that came from it: new and changed files indexed,
        those of deleted files removed, those of files that fail now kept as they were."""
        return self.submit(SYNC, str(folder), lambda job: self._sync(job, folder, limits))

    def _sync(self, job: Job, folder: Path, limits: Limits) -> None:
        if not folder.is_dir():
            raise SourceError(f"{folder}: not a folder (was it removed?)")
        files = source_files(folder)
        job.total = len(files)
        prefix = f"{folder.name}/"  # a file's source is its path from the folder's parent, as at startup
        stored = {d.doc_id: d for d in self.engine.view.live_documents() if d.source.startswith(prefix)}
        by_source = {d.source: d for d in stored.values()}  # files unchanged since are not extracted again
        seen: set[str] = set()
        batch: list[Document] = []
        for path in files:
            name = str(path.relative_to(folder.parent))
            try:
                document = load_file(path, folder.parent, limits, by_source)
                validate_doc_id(document.doc_id)
            except SourceError as error:
                seen.add(file_doc_id(path))  # its stored version, if any, stays
                self._fail(job, name, str(error).removeprefix(f"{name}: "))
                continue
            if document.doc_id in seen:
                self._fail(job, name, f"duplicate doc_id {document.doc_id!r}: another file of the folder has it")
                continue
            seen.add(document.doc_id)
            old = stored.get(document.doc_id)
            if old is not None and old.content_hash == document.content_hash:
                job.unchanged += 1
                job.done += 1
                self.on_files(job.kind, "unchanged", 1)
                continue
            batch.append(document)
            if len(batch) >= BATCH_FILES:
                self._write(job, batch, replace_existing=True)
        self._write(job, batch, replace_existing=True)
        removed = [doc_id for doc_id in stored if doc_id not in seen]
        if removed:
            self.engine.delete_documents(removed)
            job.removed = len(removed)


def read_upload(name: str, data: bytes, limits: Limits) -> Document:
    """An uploaded file as a document written through the API: its id is the file name's stem, its name
    kept in the metadata. `ExtractionError` or `SourceError` says why it yields none."""
    doc_id = validate_doc_id(file_doc_id(PurePath(name)))
    document = document_from_file(data, doc_id, API_SOURCE, name, limits)
    return replace(document, metadata={"file": name})
