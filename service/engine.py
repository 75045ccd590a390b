"""The loaded state of a running service: the encoder and the current snapshot, validated together."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss

from indexer.build import build_index
from indexer.chunking import ChunkerConfig
from indexer.collection import add_documents, delete_document, replace_document, sync_sources
from indexer.documents import Document, load_documents
from indexer.embedding import Embedder
from indexer.encoders import index_encoder_cache
from indexer.snapshot import (
    CURRENT_FILE,
    NoIndexError,
    Snapshot,
    SnapshotError,
    current_snapshot_path,
    load_snapshot,
    writer_lock,
)
from service.batching import BatchingEncoder
from service.filters import SearchFilter
from service.retrieval import Hit, Mode, QueryEncoder, Retriever
from service.settings import Settings

logger = logging.getLogger(__name__)


class ModelMismatchError(SnapshotError):
    """The index was embedded with another model than the one this process runs."""


class WriteQueueFullError(RuntimeError):
    """More writes are waiting than `max_queued_writes` allows: this one was refused, nothing written."""


class WriteTimeoutError(RuntimeError):
    """A write could not start within the allowed wait (others were writing): nothing written."""


def check_model(snapshot: Snapshot, embedder: Embedder, index_dir: Path) -> None:
    """Refuse to serve an index whose vectors come from another model (answers would be silently wrong)."""
    built_with = snapshot.manifest.model
    if built_with.fingerprint != embedder.info.fingerprint or built_with.dimension != embedder.info.dimension:
        raise ModelMismatchError(
            f"index at {index_dir} was built with model {built_with.name!r} ({built_with.path}, "
            f"fingerprint {built_with.fingerprint[:12]}); this server runs {embedder.info.name!r} "
            f"({embedder.info.path}, fingerprint {embedder.info.fingerprint[:12]}): re-index, "
            f"or set CITELINE_MODEL={built_with.path}"
        )


def use_one_search_thread() -> None:
    """One OpenMP thread for FAISS: a single question's search over a flat index is faster without a team.

    Waking a team of OpenMP threads costs more than the search itself, and far more when other work holds
    the cores (rough, 2 shared cores: 20k-vector flat search 1.2 ms on one thread, 26 ms on two).
    """
    faiss.omp_set_num_threads(1)


def load_embedder(settings: Settings) -> Embedder:
    """The model on the configured encoder; ONNX exports are cached in `encoder_cache`, else the index directory."""
    return Embedder(
        settings.model,
        batch_size=settings.batch_size,
        encoder=settings.encoder,
        query_encoder=settings.query_encoder,
        cache_dir=index_encoder_cache(settings.index),
        threads=settings.threads,
        shared_cache=Path(settings.encoder_cache) if settings.encoder_cache else None,
    )


def chunker_config(settings: Settings, embedder: Embedder) -> ChunkerConfig:
    """Chunker settings for this model: the target size is capped by the model's token limit."""
    return ChunkerConfig(
        chunk_tokens=min(settings.chunk_tokens, embedder.token_limit),
        overlap_sentences=settings.overlap_sentences,
        token_limit=embedder.token_limit,
        embed_title=settings.embed_title,
    )


def index_sources(settings: Settings, embedder: Embedder, show_progress: bool = True) -> None:
    """Bring the index up to date with `settings.sources` (only new or changed documents are embedded).

    Documents written through the API are kept; documents of the sources replace the rest.
    """
    from_sources = load_documents(settings.source_list())
    with writer_lock(settings.index):
        try:
            previous: Snapshot | None = load_snapshot(settings.index)
        except NoIndexError:
            previous = None  # a damaged index is an error: rebuilding from the sources would drop API documents
        documents = sync_sources(previous.documents if previous else [], from_sources)
        report = build_index(
            documents,
            settings.index,
            embedder,
            chunker_config(settings, embedder),
            show_progress=show_progress,
            previous=previous,
        )
    logger.info(
        "indexed %d documents (%d chunks, %d embedded, %d reused, %d removed) in %.1fs",
        report.documents,
        report.chunks,
        report.embedded_chunks,
        report.reused_documents,
        report.removed_documents,
        report.seconds,
    )


@dataclass(frozen=True)
class IndexState:
    """One loaded snapshot and what searches over it need; replaced whole, never changed."""

    snapshot: Snapshot
    retriever: Retriever
    chunk_counts: dict[str, int]

    @classmethod
    def of(cls, snapshot: Snapshot, encode_query: QueryEncoder) -> IndexState:
        counts = {doc_id: len(rows) for doc_id, rows in snapshot.chunk_rows_by_doc().items()}
        return cls(snapshot, Retriever(snapshot, encode_query), counts)


@dataclass(frozen=True)
class WriteResult:
    """One document written: its id, its passage count, and whether it is new (else it replaced one)."""

    doc_id: str
    chunks: int
    created: bool


class Engine:
    """One encoder plus the current snapshot; searches run on any thread, writes one at a time.

    A search reads `state` once and finishes on that snapshot. A write builds and durably writes a new
    snapshot under the writer lock, then swaps `state` in one assignment: readers never wait for a
    write and never see half of one.
    """

    def __init__(
        self,
        embedder: Embedder,
        snapshot: Snapshot,
        index_dir: Path,
        max_queued_writes: int = 0,
        write_wait_seconds: float = 0.0,
        batch_queries: bool = False,
    ) -> None:
        """`max_queued_writes`: writes that may wait for the one in progress (0: any number);
        `write_wait_seconds`: how long a write waits to start before it gives up (0: as long as it takes);
        `batch_queries`: encode questions that arrive together in one batch."""
        check_model(snapshot, embedder, index_dir)
        self.embedder = embedder
        self.index_dir = index_dir
        self._encode_query: QueryEncoder = (
            BatchingEncoder(embedder.encode_queries).encode_query if batch_queries else embedder.encode_query
        )
        self._state = IndexState.of(snapshot, self._encode_query)
        self._write_lock = threading.Lock()
        self.max_queued_writes = max_queued_writes
        self.write_wait_seconds = write_wait_seconds
        self._queue_lock = threading.Lock()
        self.queued_writes = 0  # writes waiting to start
        self.refresh_error: str | None = None  # why the last attempt to follow CURRENT failed, until one succeeds

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> Engine:
        """Load the model and the index named by `settings`, indexing `settings.sources` first if any.

        With writes enabled (`CITELINE_API_KEY`) and no index yet, an empty one is created to write into.
        """
        use_one_search_thread()
        if settings.source_list():
            embedder = embedder or load_embedder(settings)
            index_sources(settings, embedder)
        elif settings.api_key and not (settings.index / CURRENT_FILE).exists():
            logger.info("no index at %s: starting an empty one to add documents to", settings.index)
            embedder = embedder or load_embedder(settings)
            with writer_lock(settings.index):
                build_index([], settings.index, embedder, chunker_config(settings, embedder), show_progress=False)
        # The snapshot first: a missing index is reported before any model loading or export.
        snapshot = load_snapshot(settings.index)
        return cls(
            embedder or load_embedder(settings),
            snapshot,
            settings.index,
            max_queued_writes=settings.max_queued_writes,
            write_wait_seconds=settings.request_timeout_seconds,
            batch_queries=settings.batch_queries,
        )

    @property
    def state(self) -> IndexState:
        """The current snapshot and its searcher (read it once per request)."""
        return self._state

    @property
    def snapshot(self) -> Snapshot:
        return self._state.snapshot

    def search(
        self,
        query: str,
        k: int,
        mode: Mode,
        search_filter: SearchFilter | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[Hit]:
        """`timings`, when given, receives the seconds spent in each stage of the search."""
        return self._state.retriever.search(query, k, mode, search_filter=search_filter, timings=timings)

    def refresh(self) -> bool:
        """Load the snapshot CURRENT names if another process wrote a newer one; True if it swapped.

        A failure is kept in `refresh_error` (the service is then not ready) until a later refresh succeeds.
        """
        with self._write_lock:
            try:
                swapped = self._refresh_locked()
            except Exception as error:
                self.refresh_error = str(error)
                raise
            self.refresh_error = None
            return swapped

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Admit a write to the queue (or refuse it when full), wait for its turn, hold the writer locks."""
        with self._queue_lock:
            if self.max_queued_writes and self.queued_writes >= self.max_queued_writes:
                raise WriteQueueFullError(
                    f"{self.queued_writes} writes are already waiting (CITELINE_MAX_QUEUED_WRITES="
                    f"{self.max_queued_writes}): nothing was written, try again shortly"
                )
            self.queued_writes += 1
        wait = self.write_wait_seconds or None
        deadline = time.monotonic() + (wait or 0.0)
        try:
            started = self._write_lock.acquire(timeout=wait if wait is not None else -1)
        finally:
            with self._queue_lock:
                self.queued_writes -= 1
        if not started:
            raise WriteTimeoutError(
                f"the write could not start within {wait:g} s (CITELINE_REQUEST_TIMEOUT_SECONDS) while others "
                "were written: nothing was written, try again shortly"
            )
        try:
            # Another process (citeline index) may hold the index's lock: wait only for what is left.
            with writer_lock(self.index_dir, timeout=None if wait is None else max(0.0, deadline - time.monotonic())):
                yield
        finally:
            self._write_lock.release()

    def _refresh_locked(self) -> bool:
        if current_snapshot_path(self.index_dir).name == self._state.snapshot.path.name:
            return False
        snapshot = load_snapshot(self.index_dir)
        check_model(snapshot, self.embedder, self.index_dir)
        self._state = IndexState.of(snapshot, self._encode_query)
        logger.info("swapped in snapshot %s", snapshot.path.name)
        return True

    def _commit(self, change: Callable[[list[Document]], list[Document]]) -> IndexState:
        """Apply `change` to the documents, write the new snapshot durably, then swap it in."""
        with self._writing():
            self._refresh_locked()
            current = self._state.snapshot
            documents = change(list(current.documents))
            manifest = current.manifest
            report = build_index(
                documents,
                self.index_dir,
                self.embedder,
                manifest.chunker,
                manifest.bm25,
                show_progress=False,
                previous=current,
            )
            self._refresh_locked()
            logger.info(
                "write committed: %d documents, %d chunks (%d embedded) in %.2fs",
                report.documents,
                report.chunks,
                report.embedded_chunks,
                report.seconds,
            )
            return self._state

    def add_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        """Add new documents in one write; `ConflictError` (nothing written) if any id exists."""
        state = self._commit(lambda current: add_documents(current, documents))
        return [WriteResult(d.doc_id, state.chunk_counts.get(d.doc_id, 0), True) for d in documents]

    def put_document(self, document: Document) -> WriteResult:
        """Create or replace the document with this id."""
        created = False

        def change(current: list[Document]) -> list[Document]:
            nonlocal created
            after, replaced = replace_document(current, document)
            created = not replaced
            return after

        state = self._commit(change)
        return WriteResult(document.doc_id, state.chunk_counts.get(document.doc_id, 0), created)

    def delete_document(self, doc_id: str) -> None:
        """Remove a document and its passages; `UnknownDocumentError` if there is none with this id."""
        self._commit(lambda current: delete_document(current, doc_id))

    def document(self, doc_id: str) -> Document | None:
        """The indexed document with this id, None when there is none."""
        snapshot = self._state.snapshot
        row = snapshot.doc_rows.get(doc_id)
        return None if row is None else snapshot.documents[row]
