"""One collection split over shards: where a document lives, and an engine that fans out to the shards.

Each shard is a whole store of its own (`<index>/shards/<n>`) holding the documents whose id hashes to it,
with one writer: the shard. `ShardedEngine` is what the API serves in front of them (the router): it
encodes a question once, asks every shard for its best `k` with that vector, and merges by score; a write
goes to the shard that owns the document. The shards are reached through `Shard`: in this process
(`LocalShard`, tests) or as Ray Serve deployments (service/ray_serve.py), where this module needs no Ray.

Dense scores are the passage's own (a cosine, plus its document's dense evidence, which lives in the same
shard), so dense results equal a single store's in one round. BM25 needs the collection's statistics (idf,
mean lengths): the router sums the shards' for the question's terms first. Hybrid fusion normalises scores
over the collection's candidates: the router gathers the shards' candidate scores (numbers only), finds the
collection's candidate sets and scales (`Bounds`), and each shard fuses by them. What stays each shard's
own (the second stage over its best 30, folding copies across documents) is measured in bench/SHARDS.md.
"""

from __future__ import annotations

import hashlib
import logging
import operator
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import reduce
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from indexer.errors import CitelineError
from indexer.model.embedding import Embedder
from indexer.text.documents import Document
from service.engine import Engine, Sizes, WriteResult
from service.search.filters import SearchFilter
from service.search.retrieval import Bounds, Candidates, Hit, Mode, RetrievalConfig, Statistics

logger = logging.getLogger(__name__)
T = TypeVar("T")
SHARDS_DIR = "shards"
COUNT_FILE = "SHARDS"  # how many shards the index was split into: the placement depends on it


class ShardUnavailableError(CitelineError):
    """A shard did not answer (its process or node is gone, and not yet restarted): nothing was written."""

    def __init__(self, number: int, why: str) -> None:
        super().__init__(f"shard {number} is unavailable ({why}): retry shortly")
        self.number = number


class ShardLayoutError(CitelineError, ValueError):
    """The index was split into another number of shards than asked for."""


def shard_of(doc_id: str, shards: int) -> int:
    """The shard that owns `doc_id`: a stable hash, the same in every process and on every machine."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") % shards


def shard_dirs(index: Path, shards: int) -> list[Path]:
    """The shards' store directories under `index`, checked against (or recording) the shard count."""
    home = index / SHARDS_DIR
    marker = home / COUNT_FILE
    if marker.is_file():
        recorded = int(marker.read_text(encoding="utf-8").strip() or 0)
        if recorded != shards:
            raise ShardLayoutError(
                f"the index at {index} is split into {recorded} shards, not {shards}: serve it with --shards "
                f"{recorded} (documents are placed by their id's hash over the shard count; to change it, index "
                "the sources into a new directory)"
            )
    else:
        home.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{shards}\n", encoding="utf-8")
    return [home / str(number) for number in range(shards)]


def partition(documents: Sequence[Document], shards: int) -> list[list[Document]]:
    """`documents` by owning shard."""
    owned: list[list[Document]] = [[] for _ in range(shards)]
    for document in documents:
        owned[shard_of(document.doc_id, shards)].append(document)
    return owned


def merge_hits(answers: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The `k` best of the shards' hits by score (ties: document id, then offset), ranked anew."""
    hits = sorted(
        (hit for answer in answers for hit in answer), key=lambda h: (-h.score, h.reference.doc_id, h.reference.start)
    )
    return [replace(hit, rank=rank) for rank, hit in enumerate(hits[:k], start=1)]


class Shard(Protocol):
    """What the router asks of one shard (each call may cross a process or a machine)."""

    def search(
        self,
        query: str,
        vector: np.ndarray | None,
        k: int,
        mode: Mode,
        search_filter: SearchFilter | None,
        statistics: Statistics | None = None,
        bounds: Bounds | None = None,
    ) -> list[Hit]: ...

    def statistics(self, query: str) -> Statistics: ...

    def candidates(
        self, query: str, k: int, vector: np.ndarray, search_filter: SearchFilter | None, statistics: Statistics
    ) -> Candidates: ...

    def document(self, doc_id: str) -> Document | None: ...

    def catalog(self) -> list[tuple[Document, int]]: ...

    def passage_count(self, doc_id: str) -> int: ...

    def sizes(self) -> Sizes: ...

    def version(self) -> str: ...

    def not_ready_because(self) -> str | None: ...

    def put_documents(self, documents: Sequence[Document]) -> list[WriteResult]: ...

    def add_documents(self, documents: Sequence[Document]) -> list[WriteResult]: ...

    def delete_documents(self, doc_ids: Sequence[str]) -> None: ...

    def delete_document(self, doc_id: str) -> None: ...


class LocalShard:
    """A shard in this process: its own engine over its own store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def search(
        self,
        query: str,
        vector: np.ndarray | None,
        k: int,
        mode: Mode,
        search_filter: SearchFilter | None,
        statistics: Statistics | None = None,
        bounds: Bounds | None = None,
    ) -> list[Hit]:
        return self.engine.search(query, k, mode, search_filter, vector=vector, statistics=statistics, bounds=bounds)

    def statistics(self, query: str) -> Statistics:
        return self.engine.statistics(query)

    def candidates(
        self, query: str, k: int, vector: np.ndarray, search_filter: SearchFilter | None, statistics: Statistics
    ) -> Candidates:
        return self.engine.candidates(query, k, vector, search_filter, statistics)

    def document(self, doc_id: str) -> Document | None:
        return self.engine.document(doc_id)

    def catalog(self) -> list[tuple[Document, int]]:
        return self.engine.catalog()

    def passage_count(self, doc_id: str) -> int:
        return self.engine.passage_count(doc_id)

    def sizes(self) -> Sizes:
        return self.engine.sizes()

    def version(self) -> str:
        return self.engine.version

    def not_ready_because(self) -> str | None:
        return self.engine.not_ready_because()

    def put_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        return self.engine.put_documents(documents)

    def add_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        return self.engine.add_documents(documents)

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        self.engine.delete_documents(doc_ids)

    def delete_document(self, doc_id: str) -> None:
        self.engine.delete_document(doc_id)


class ShardedEngine(Engine):
    """The engine the API serves in front of shards: the same calls as `Engine`, answered by the shards.

    It holds no store of its own (so none of `Engine`'s store-level parts: its view, segments, reindex,
    export and uploads are not offered on a sharded collection, see service/api/app.py).
    """

    def __init__(self, embedder: Embedder, shards: Sequence[Shard], index_dir: Path) -> None:
        # Engine.__init__ opens a store; the shards hold the stores, so only what the API reads is set here.
        self.embedder = embedder
        self.shards = list(shards)
        self.index_dir = index_dir
        self.refresh_error = None
        self.retired = None
        self.successor = None
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.shards)), thread_name_prefix="shards")

    def _each(self, call: Callable[[Shard], T]) -> list[T]:
        """`call` on every shard at once, their answers in shard order."""
        return list(self._pool.map(call, self.shards))

    def _owner(self, doc_id: str, call: Callable[[Shard], T]) -> T:
        """`call` on the shard that owns `doc_id`, on the pool's thread: a shard's call may block on a remote
        answer, which must never happen on an event loop's thread (an `async` route's)."""
        return self._pool.submit(call, self.shards[shard_of(doc_id, len(self.shards))]).result()

    # -- reads -------------------------------------------------------------------------------------------
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
        """The merged best `k` of the shards (`statistics` and `bounds` are found here, never given)."""
        if vector is None and mode != Mode.bm25:
            vector = self.embedder.encode_query(query)
        if mode == Mode.dense:  # a passage's dense score is its own: nothing to agree on first
            return merge_hits(self._each(lambda shard: shard.search(query, vector, k, mode, search_filter)), k)
        # BM25 as one store would score it: the collection's statistics for the question's terms.
        statistics = reduce(operator.add, self._each(lambda shard: shard.statistics(query)))
        bounds = None
        if mode == Mode.hybrid and vector is not None:
            # The collection's candidate sets and score scales, so each shard fuses as one store would.
            found = self._each(lambda shard: shard.candidates(query, k, vector, search_filter, statistics))
            depth = min(statistics.live_passages, max(RetrievalConfig().min_candidates, 4 * k))
            bounds = Bounds.of(found, max(depth, 1))
        answers = self._each(lambda shard: shard.search(query, vector, k, mode, search_filter, statistics, bounds))
        return merge_hits(answers, k)

    def document(self, doc_id: str) -> Document | None:
        return self._owner(doc_id, lambda shard: shard.document(doc_id))

    def catalog(self) -> list[tuple[Document, int]]:
        parts = self._each(lambda s: s.catalog())
        return sorted((entry for part in parts for entry in part), key=lambda entry: entry[0].doc_id)

    def passage_count(self, doc_id: str) -> int:
        return self._owner(doc_id, lambda shard: shard.passage_count(doc_id))

    def sizes(self) -> Sizes:
        parts = self._each(lambda s: s.sizes())
        return Sizes(
            documents=sum(p.documents for p in parts),
            passages=sum(p.passages for p in parts),
            dead_passages=sum(p.dead_passages for p in parts),
            loaded_at=max((p.loaded_at for p in parts), default=0.0),
        )

    @property
    def version(self) -> str:
        """The shards' versions, in shard order (`12.7.30`): it changes when any shard's does."""
        return ".".join(self._each(lambda s: s.version()))

    def not_ready_because(self) -> str | None:
        def why(shard: Shard) -> str | None:
            try:
                return shard.not_ready_because()
            except ShardUnavailableError as error:
                return str(error)

        reasons = [f"shard {n}: {reason}" for n, reason in enumerate(self._each(why)) if reason]
        return "; ".join(reasons) or None

    def refresh(self) -> bool:
        return False  # each shard follows its own store

    def maintain(self) -> bool:
        return False  # each shard seals and merges its own segments

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    # -- writes: to the owning shard; a batch that spans shards is one write per shard ---------------------
    def put_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        return self._write(documents, lambda shard, owned: shard.put_documents(owned))

    def add_documents(self, documents: Sequence[Document]) -> list[WriteResult]:
        return self._write(documents, lambda shard, owned: shard.add_documents(owned))

    def put_document(self, document: Document) -> WriteResult:
        return self._owner(document.doc_id, lambda shard: shard.put_documents([document]))[0]

    def _write(
        self, documents: Sequence[Document], write: Callable[[Shard, list[Document]], list[WriteResult]]
    ) -> list[WriteResult]:
        owned = partition(documents, len(self.shards))
        parts = [self._pool.submit(write, self.shards[n], part) for n, part in enumerate(owned) if part]
        results = {r.doc_id: r for part in parts for r in part.result()}
        return [results[d.doc_id] for d in documents]

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        owned: dict[int, list[str]] = {}
        for doc_id in doc_ids:
            owned.setdefault(shard_of(doc_id, len(self.shards)), []).append(doc_id)
        for part in [self._pool.submit(self.shards[n].delete_documents, ids) for n, ids in owned.items()]:
            part.result()

    def delete_document(self, doc_id: str) -> None:
        self._owner(doc_id, lambda shard: shard.delete_document(doc_id))
