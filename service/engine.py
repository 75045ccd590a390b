"""The live collection a service serves: the encoder and the view of the store, searched on any thread,
followed as other processes write, kept in shape (segments), and written one write at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from indexer.build import prepare
from indexer.collection import ConflictError, UnknownDocumentError
from indexer.model.embedding import Embedder
from indexer.store.errors import StoreError
from indexer.store.segments import read_manifest
from indexer.store.store import SegmentPolicy, Store, WriterBusyError, writer_lock
from indexer.store.view import View
from indexer.text.documents import Document
from indexer.text.lexical import Analyzer
from service.admission import WriteAdmission
from service.background import at_low_priority
from service.search.batching import BatchingEncoder
from service.search.filters import SearchFilter
from service.search.retrieval import (
    Bounds,
    Candidates,
    Hit,
    Mode,
    QueryEncoder,
    RetrievalConfig,
    Retriever,
    Statistics,
)
from service.settings import Settings
from service.startup import check_model, load_embedder, segment_policy

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RetiredEngineError(StoreError):
    """A write reached an engine that a reindex or rollback replaced: nothing was written; retry it."""

    def __init__(self, why: str) -> None:
        super().__init__(f"{why}: nothing was written; send the write again")


@dataclass(frozen=True)
class IndexState:
    """One view of the store and its searcher; replaced whole, never changed."""

    view: View
    retriever: Retriever
    loaded_at: float  # when this process made the view (a write, or catching up with another writer)

    @classmethod
    def of(cls, view: View, encode_query: QueryEncoder, analyzer: Analyzer) -> IndexState:
        return cls(view, Retriever(view, encode_query, analyzer), time.time())


@dataclass(frozen=True)
class Sizes:
    """What a collection holds, as of one view."""

    documents: int
    passages: int  # live ones
    dead_passages: int  # deleted or replaced, still in a segment until a merge
    loaded_at: float  # when the view was made (a write, or catching up with another writer)


@dataclass(frozen=True)
class WriteResult:
    """One document written: its id, its passage count, and whether it is new (else it replaced one)."""

    doc_id: str
    passages: int
    created: bool


class Engine:
    """One encoder plus the live view of the store; searches run on any thread, writes one at a time.

    A search reads `state` once and finishes on that view. A write embeds its documents, stores them
    durably (`Store.write`), then swaps in the next view in one assignment: readers never wait for a write
    and never see half of one, and a write costs what its documents cost, whatever the collection's size.
    """

    def __init__(
        self,
        embedder: Embedder,
        store: Store,
        max_queued_writes: int = 0,
        write_wait_seconds: float = 0.0,
        batch_queries: bool = False,
        segments: SegmentPolicy | None = None,
    ) -> None:
        """`max_queued_writes`: writes that may wait for the one in progress (0: any number);
        `write_wait_seconds`: how long a write waits to start before it gives up (0: as long as it takes);
        `batch_queries`: encode questions that arrive together in one batch; `segments`: when `maintain`
        seals and merges vector segments."""
        check_model(store.settings.model, embedder, store.index_dir)
        self.embedder = embedder
        self.store = store
        self.index_dir = store.index_dir
        self.analyzer = Analyzer(store.settings.bm25)
        self._encode_query: QueryEncoder = (
            BatchingEncoder(embedder.encode_queries).encode_query if batch_queries else embedder.encode_query
        )
        self._state = IndexState.of(store.load(), self._encode_query, self.analyzer)
        self.admission = WriteAdmission(store.index_dir, max_queued_writes, write_wait_seconds)
        self.refresh_error: str | None = None  # why the last attempt to follow the store failed, until one succeeds
        self.segments = segments or SegmentPolicy()
        self._dead_merged = 0  # dead passages when `maintain` last looked for segments to merge
        self.retired: str | None = None  # why this engine no longer serves its collection (a reindex switched)
        self.successor: Engine | None = None  # the engine that serves it instead

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> Engine:
        """Open the index named by `settings` and serve it with the model (loaded unless given): replay
        what its BM25 index missed, check the model, load the view. It indexes nothing: `prepare_index`
        (service/startup.py) does that first where sources are configured."""
        # The store first: a missing index is reported before any model loading or export.
        store = Store.open(settings.index)
        try:
            if not store.read_only:
                with writer_lock(settings.index):
                    store.recover()
            engine = cls(
                embedder or load_embedder(settings),
                store,
                max_queued_writes=settings.max_queued_writes,
                write_wait_seconds=settings.request_timeout_seconds,
                batch_queries=settings.batch_queries,
                segments=segment_policy(settings),
            )
        except BaseException:
            store.close()
            raise
        return engine

    def close(self) -> None:
        self.store.close()

    @property
    def state(self) -> IndexState:
        """The current view and its searcher (read it once per request)."""
        return self._state

    @property
    def view(self) -> View:
        return self._state.view

    @property
    def version(self) -> str:
        """The served view's version: the sequence number of the last write it holds."""
        return str(self._state.view.seq)

    def retriever(self, config: RetrievalConfig | None = None, encode_query: QueryEncoder | None = None) -> Retriever:
        """A searcher over the current view with other ranking settings (evaluation, ablations)."""
        return Retriever(self.view, encode_query or self._encode_query, self.analyzer, config)

    def search(
        self,
        query: str,
        k: int,
        mode: Mode,
        search_filter: SearchFilter | None = None,
        timings: dict[str, float] | None = None,
        vector: np.ndarray | None = None,
        statistics: Statistics | None = None,
        bounds: Bounds | None = None,
    ) -> list[Hit]:
        """`timings`, when given, receives the seconds spent in each stage of the search; `vector` is the
        question's embedding when the caller has it, `statistics` and `bounds` the collection's when this
        engine serves a shard of it (service/shards.py: the router has them)."""
        return self._state.retriever.search(
            query,
            k,
            mode,
            vector=vector,
            search_filter=search_filter,
            timings=timings,
            statistics=statistics,
            bounds=bounds,
        )

    def statistics(self, query: str) -> Statistics:
        """This store's BM25 statistics for the question's terms."""
        return self._state.retriever.statistics(query)

    def candidates(
        self, query: str, k: int, vector: np.ndarray, search_filter: SearchFilter | None, statistics: Statistics
    ) -> Candidates:
        """A hybrid search's candidates, as numbers."""
        return self._state.retriever.candidates(query, k, vector, search_filter, statistics)

    def refresh(self) -> bool:
        """Take in what another process wrote to the store; True if the view changed.

        A failure is kept in `refresh_error` (the service is then not ready) until a later refresh succeeds.
        """
        with self.admission.lock:
            try:
                self._repair_bm25()
                changed = self._follow()
            except Exception as error:
                self.refresh_error = str(error)
                raise
            self.refresh_error = None
            return changed

    def _repair_bm25(self) -> None:
        """Replay what the BM25 index missed (a writer that died between its record and its BM25 commit, a
        BM25 failure of an earlier write), when no other writer is at work."""
        store = self.store
        if store.read_only or store.bm25.applied >= store.records.last_seq():
            return
        try:
            with writer_lock(self.index_dir, timeout=0):
                store.recover()
                store.bm25_error = None
        except WriterBusyError:
            pass  # the writer at work brings it up to date itself

    def maintain(self) -> bool:
        """Seal the unsealed vectors into a segment when their rows reach `seal_passages`, merge segments that
        need it, and load the view anew when the segments changed (here or in another process); True if it
        did. Loading anew also drops the rows of unsealed documents deleted since the last load.

        The work runs on a thread of its own at the lowest CPU priority, so searches keep their latency;
        writes and searches go on meanwhile (the old view stays valid), and the new view takes in the
        writes made meanwhile before it is swapped in."""
        view, policy = self._state.view, self.segments
        seal = not self.store.read_only and len(view.passage_vectors.live) >= policy.seal_passages
        merge = not self.store.read_only and view.dead_passages > self._dead_merged
        if not (seal or merge) and read_manifest(self.index_dir).generation == view.generation:
            return False
        return at_low_priority(lambda: self._maintain(seal, merge, view.dead_passages))

    def _maintain(self, seal: bool, merge: bool, dead: int) -> bool:
        store, policy = self.store, self.segments
        if seal:
            store.seal(1, policy.index)  # whatever of the unsealed rows is still alive (maybe nothing)
        if seal or merge:
            while store.merge(policy.max_segments, policy.index) is not None:
                pass
            self._dead_merged = dead
        if not seal and read_manifest(self.index_dir).generation == self._state.view.generation:
            return False
        loaded = store.load()
        with self.admission.lock:
            view = store.follow(loaded)
            self._state = IndexState.of(view, self._encode_query, self.analyzer)
            self._dead_merged = view.dead_passages  # the tombstones left are below the merge threshold
        logger.info(
            "loaded the index anew on %d sealed segments: %d passages (%d unsealed)",
            len(view.passage_vectors.sealed),
            view.live_passages,
            len(view.passage_vectors.live),
        )
        return True

    def not_ready_because(self) -> str | None:
        """Why answers may be stale (another process's writes not taken in, the BM25 index behind), or None."""
        if self.refresh_error is not None:
            return f"the index's newer writes fail to load: {self.refresh_error}"
        if self.store.bm25_error is not None:
            return f"the BM25 index is behind the record file: {self.store.bm25_error}"
        return None

    def _follow(self) -> bool:
        view = self.store.follow(self._state.view)
        if view is self._state.view:
            return False
        self._state = IndexState.of(view, self._encode_query, self.analyzer)
        return True

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Admit a write (or refuse it, nothing written) and hold the writer locks while it runs."""
        self.store.check_writable()
        with self.admission.admit():
            if self.retired is not None:  # replaced while this write waited for its turn: the new one takes it
                raise RetiredEngineError(self.retired)
            yield

    def _commit(self, adds: Sequence[Document], deletes: Sequence[str] = ()) -> View:
        """Embed `adds`, store them and `deletes` durably, then swap in the view that holds them."""
        started = time.perf_counter()
        settings = self.store.settings
        records = prepare(adds, self.embedder, settings.chunker, settings.bm25)
        self.store.write(records, deletes)
        self._follow()
        logger.info(
            "write committed: %d added, %d deleted, %d passages embedded in %.2fs",
            len(adds),
            len(deletes),
            sum(len(r.passages) for r in records),
            time.perf_counter() - started,
        )
        return self._state.view

    def _add_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        """Add new documents in one write; `ConflictError` (nothing written) if any id exists."""
        with self._writing():
            self._follow()
            clashes = [d.doc_id for d in documents if d.doc_id in self._state.view.doc_rows]
            if clashes:
                raise ConflictError(clashes)
            view = self._commit(documents)
        return [WriteResult(d.doc_id, view.passage_count(d.doc_id), True) for d in documents]

    def put_document(self, document: Document) -> WriteResult:
        """Create or replace the document with this id."""
        return self.put_documents([document])[0]

    # A write that reaches an engine replaced while it waited (a reindex switched, a rollback) is refused
    # before anything is written, then sent on to the engine that replaced it: the caller never sees the swap.
    def add_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        """Add new documents in one write; `ConflictError` (nothing written) if any id exists."""
        return self._forward(lambda engine: engine._add_documents(documents))

    def put_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        """Create or replace the documents with these ids, in one write."""
        return self._forward(lambda engine: engine._put_documents(documents))

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove the documents with these ids (those not stored are passed over), in one write."""
        self._forward(lambda engine: engine._delete_documents(doc_ids))

    def delete_document(self, doc_id: str) -> None:
        """Remove a document and its passages; `UnknownDocumentError` if there is none with this id."""
        self._forward(lambda engine: engine._delete_document(doc_id))

    def _forward(self, write: Callable[[Engine], T]) -> T:
        engine: Engine = self
        while True:
            try:
                return write(engine)
            except RetiredEngineError:
                if engine.successor is None:
                    raise
                engine = engine.successor

    def _put_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        """Create or replace the documents with these ids, in one write."""
        with self._writing():
            self._follow()
            created = [d.doc_id not in self._state.view.doc_rows for d in documents]
            view = self._commit(documents)
        return [WriteResult(d.doc_id, view.passage_count(d.doc_id), c) for d, c in zip(documents, created, strict=True)]

    def _delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove the documents with these ids (those not stored are passed over), in one write."""
        with self._writing():
            self._follow()
            stored = [doc_id for doc_id in doc_ids if doc_id in self._state.view.doc_rows]
            if stored:
                self._commit([], stored)

    def _delete_document(self, doc_id: str) -> None:
        """Remove a document and its passages; `UnknownDocumentError` if there is none with this id."""
        with self._writing():
            self._follow()
            if doc_id not in self._state.view.doc_rows:
                raise UnknownDocumentError(doc_id)
            self._commit([], [doc_id])

    def document(self, doc_id: str) -> Document | None:
        """The indexed document with this id, None when there is none."""
        return self._state.view.document(doc_id)

    def sizes(self) -> Sizes:
        state = self._state
        view = state.view
        return Sizes(view.num_documents, view.live_passages, view.dead_passages, state.loaded_at)

    def catalog(self) -> list[tuple[Document, int]]:
        """Every live document with its number of passages, by id."""
        view = self._state.view
        return [(d, view.passage_count(d.doc_id)) for d in sorted(view.live_documents(), key=lambda d: d.doc_id)]

    def passage_count(self, doc_id: str) -> int:
        return self._state.view.passage_count(doc_id)
