"""The live view of a store: what a search reads, as flat arrays over passage and sentence rows.

A `View` is immutable. A write makes the next view by appending the new documents' rows and marking the
rows of deleted documents dead (tombstones), at a cost set by the documents written, not by the
collection: the arrays grow in place past the end that older views see (capacity grows by half), so no
row an older view reads ever changes, and a search that started on it finishes on it.

Vectors come in parts (`Vectors`): the sealed segments' memory-mapped arrays first, then the unsealed
rows in memory. The rows of a sealed segment's documents that were deleted since it was sealed are
tombstones too, until a merge drops them; unsealed dead rows are dropped when the store is next loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import faiss
import numpy as np

from indexer.store.bm25 import BM25Hits, BM25Searcher
from indexer.store.records import DocumentRecord
from indexer.store.segments import Rows
from indexer.text.documents import Document
from indexer.text.sentences import Span

_MIN_CAPACITY = 1024
# In place of a graph: the part's rows are not searched across the collection, only scored where a search
# has found their passages (the sentences of a segment whose passages have a graph).
UNSEARCHED = "unsearched"


def _starts(buffer: np.ndarray, prefix: np.ndarray) -> bool:
    """Whether `prefix` is the start of `buffer` itself (the same memory), not a copy."""
    if len(prefix) == 0:
        return True
    address: int = buffer.__array_interface__["data"][0]
    return bool(address == prefix.__array_interface__["data"][0])


class Buffers:
    """The growable storage behind a lineage of views: each column's buffer, of which a view sees a prefix."""

    def __init__(self, reserve: dict[str, int] | None = None) -> None:
        """`reserve`: rows to allocate at once for some columns (a load that knows its size need not grow)."""
        self._buffers: dict[str, np.ndarray] = {}
        self._reserve = dict(reserve or {})

    def extend(self, name: str, current: np.ndarray, values: np.ndarray) -> np.ndarray:
        """`current` (a prefix of the buffer) followed by `values`, written past the end older views see."""
        n, k = len(current), len(values)
        buffer = self._buffers.get(name)
        if buffer is None or n + k > len(buffer) or not _starts(buffer, current):
            # No buffer yet, no room, or `current` is a changed copy (tombstones): a new buffer from `current`.
            # Grow by half: a copy of everything is rare, and costs less memory than doubling at a million rows.
            rows = max(_MIN_CAPACITY, (n + k) * 3 // 2) if buffer is not None else max(_MIN_CAPACITY, n + k)
            reserved = self._reserve.pop(name, 0)
            rows = max(rows, reserved + max(_MIN_CAPACITY, reserved // 8))  # room for the writes after a load
            grown = np.empty((rows, *current.shape[1:]), dtype=current.dtype)
            grown[:n] = current
            self._buffers[name] = buffer = grown
        buffer[n : n + k] = values
        return buffer[: n + k]


def gather_segments(ptr: np.ndarray, values: np.ndarray | Column, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segments `values[ptr[r]:ptr[r + 1]]` of `rows`, concatenated, and their lengths (CSR rows, vectorised)."""
    starts = ptr[rows]
    lengths = ptr[rows + 1] - starts
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return values[np.repeat(starts, lengths) + offsets], lengths


@dataclass(frozen=True)
class Column:
    """A flat column in parts, as `Vectors` are: sealed segments' arrays (memory-mapped, so their pages are the
    kernel's to keep or drop, not the process's own memory), then the unsealed rows in memory. Read by
    index arrays (`column[indices]`), as a search reads its candidates' terms."""

    sealed: tuple[np.ndarray, ...]
    live: np.ndarray  # a prefix of a growable buffer (`Buffers`)

    @classmethod
    def empty(cls, dtype: type = np.int64) -> Column:
        return cls((), np.zeros(0, dtype))

    def __len__(self) -> int:
        return sum(len(p) for p in self.sealed) + len(self.live)

    def __getitem__(self, indices: np.ndarray | slice) -> np.ndarray:
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(len(self)))
        indices = np.asarray(indices, dtype=np.int64)
        if not self.sealed:
            return self.live[indices]
        if len(self.sealed) == 1 and not len(self.live):
            return np.asarray(self.sealed[0][indices])
        starts = np.cumsum([0, *(len(p) for p in self.sealed)], dtype=np.int64)
        parts = np.searchsorted(starts, indices, side="right") - 1
        out = np.empty(len(indices), dtype=self.live.dtype)
        for part in np.unique(parts).tolist():
            chosen = parts == part
            array = self.sealed[part] if part < len(self.sealed) else self.live
            out[chosen] = array[indices[chosen] - starts[part]]
        return out

    def with_sealed(self, values: np.ndarray) -> Column:
        """This column with a sealed segment's `values` appended as a part of their own (not copied)."""
        if len(self.live):
            raise ValueError("segments are loaded before unsealed rows")
        return replace(self, sealed=(*self.sealed, values))


@dataclass(frozen=True)
class Vectors:
    """A column of vectors in parts: sealed segments' arrays (memory-mapped), then the unsealed rows."""

    sealed: tuple[np.ndarray, ...]
    live: np.ndarray  # a prefix of a growable buffer (`Buffers`)
    graphs: tuple[faiss.Index | str | None, ...] = ()  # per sealed part: its HNSW graph, None (exact) or `UNSEARCHED`

    @classmethod
    def empty(cls, dimension: int) -> Vectors:
        return cls((), np.zeros((0, dimension), np.float32))

    def parts(self) -> list[tuple[int, np.ndarray, faiss.Index | str | None]]:
        """Each part's first row, its rows and its graph (None: searched exactly), the live part last."""
        graphs = self.graphs or (None,) * len(self.sealed)
        starts = self.starts.tolist()
        return [*zip(starts[:-1], self.sealed, graphs, strict=True), (starts[-1], self.live, None)]

    @property
    def starts(self) -> np.ndarray:
        """The first row of each part (sealed parts, then the live one)."""
        return np.cumsum([0, *(len(p) for p in self.sealed)], dtype=np.int64)

    def __len__(self) -> int:
        return sum(len(p) for p in self.sealed) + len(self.live)

    def matrix(self) -> np.ndarray:
        """Every row as one array (a copy, when some are sealed)."""
        return self.live if not self.sealed else np.vstack([*self.sealed, self.live])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of `rows` (any order), as one array."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.sealed:
            return self.live[rows]
        starts = self.starts
        parts = np.searchsorted(starts, rows, side="right") - 1
        out = np.empty((len(rows), self.live.shape[1]), dtype=np.float32)
        for part in np.unique(parts).tolist():
            chosen = parts == part
            array = self.sealed[part] if part < len(self.sealed) else self.live
            out[chosen] = array[rows[chosen] - starts[part]]
        return out

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Inner product of every row with `query` (exact search, the segments' `flat` index type)."""
        if not self.sealed:
            return self.live @ query
        return np.concatenate([part @ query for part in (*self.sealed, self.live)])


@dataclass(frozen=True)
class View:
    """One version of the collection, read-only; `seq` is the last log entry it holds."""

    seq: int
    dimension: int
    buffers: Buffers
    bm25: BM25Searcher | None
    documents: tuple[Document, ...]
    doc_keys: np.ndarray  # int64, stored id of each document row (increasing)
    doc_alive: np.ndarray  # bool
    doc_passages: np.ndarray  # int64, first passage row of each document row
    passage_docs: np.ndarray  # int32, document row of each passage row
    passage_starts: np.ndarray  # int64
    passage_ends: np.ndarray  # int64
    passage_alive: np.ndarray  # bool
    passage_vectors: Vectors  # float32 (passages, dimension)
    passage_sentence_ptr: np.ndarray  # int64, passages + 1: sentences of passage r are rows[ptr[r]:ptr[r+1]]
    passage_sentence_rows: np.ndarray  # int64
    sentence_docs: np.ndarray  # int32
    sentence_starts: np.ndarray  # int64
    sentence_ends: np.ndarray  # int64
    sentence_passages: np.ndarray  # int64, first passage row holding each sentence
    sentence_vectors: Vectors  # float32 (sentences, dimension)
    sentence_term_ptr: np.ndarray  # int64, sentences + 1: terms of sentence s are ids[ptr[s]:ptr[s+1]]
    sentence_term_ids: Column  # int64 `term_id`s; sealed segments' mapped, not copied (the largest columns)
    passage_term_ptr: np.ndarray  # int64, passages + 1: BM25 terms of passage r are ids[ptr[r]:ptr[r+1]]
    passage_term_ids: Column  # int64 `term_id`s, repeats kept
    doc_rows: dict[str, int] = field(default_factory=dict)  # doc_id -> row, live documents only
    dead_passages: int = 0
    live_terms: int = 0  # BM25 terms in the live passages (their mean is BM25's average length)
    generation: int = 0  # of the segment manifest the view was loaded with

    @classmethod
    def empty(cls, dimension: int, bm25: BM25Searcher | None = None, passages: int = 0, sentences: int = 0) -> View:
        """An empty view; `passages` and `sentences`: how many are about to be loaded (their vectors are
        allocated once, not grown by doubling)."""
        i64, i32 = np.zeros(0, np.int64), np.zeros(0, np.int32)
        vectors = Vectors.empty(dimension)
        return cls(
            seq=0,
            dimension=dimension,
            buffers=Buffers({"passage_vectors": passages, "sentence_vectors": sentences}),
            bm25=bm25,
            documents=(),
            doc_keys=i64,
            doc_alive=np.zeros(0, bool),
            doc_passages=i64,
            passage_docs=i32,
            passage_starts=i64,
            passage_ends=i64,
            passage_alive=np.zeros(0, bool),
            passage_vectors=vectors,
            passage_sentence_ptr=np.zeros(1, np.int64),
            passage_sentence_rows=i64,
            sentence_docs=i32,
            sentence_starts=i64,
            sentence_ends=i64,
            sentence_passages=i64,
            sentence_vectors=vectors,
            sentence_term_ptr=np.zeros(1, np.int64),
            sentence_term_ids=Column.empty(),
            passage_term_ptr=np.zeros(1, np.int64),
            passage_term_ids=Column.empty(),
        )

    # -- reading -------------------------------------------------------------------------------------------
    @property
    def num_passages(self) -> int:
        return int(self.passage_docs.shape[0])

    @property
    def num_documents(self) -> int:
        """Live documents."""
        return len(self.doc_rows)

    @property
    def live_passages(self) -> int:
        return self.num_passages - self.dead_passages

    def live_documents(self) -> list[Document]:
        """The live documents, in the order they were written."""
        return [self.documents[row] for row in sorted(self.doc_rows.values())]

    def document(self, doc_id: str) -> Document | None:
        row = self.doc_rows.get(doc_id)
        return None if row is None else self.documents[row]

    def passage_count(self, doc_id: str) -> int:
        row = self.doc_rows.get(doc_id)
        if row is None:
            return 0
        end = self.doc_passages[row + 1] if row + 1 < len(self.doc_passages) else self.num_passages
        return int(end - self.doc_passages[row])

    def passage_span(self, row: int) -> Span:
        return Span(int(self.passage_starts[row]), int(self.passage_ends[row]))

    def passage_document(self, row: int) -> Document:
        return self.documents[int(self.passage_docs[row])]

    def passage_text(self, row: int) -> str:
        span = self.passage_span(row)
        return self.passage_document(row).text[span.start : span.end]

    def sentence_span(self, row: int) -> Span:
        return Span(int(self.sentence_starts[row]), int(self.sentence_ends[row]))

    def sentences_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sentence rows of passage `rows`, one passage after another, and how many each has."""
        return gather_segments(self.passage_sentence_ptr, self.passage_sentence_rows, rows)

    def sentence_terms(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The term ids of sentence `rows`, one sentence after another, and how many each has."""
        return gather_segments(self.sentence_term_ptr, self.sentence_term_ids, rows)

    def passage_terms(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The BM25 term ids of passage `rows` (repeats kept), one passage after another, and their counts."""
        return gather_segments(self.passage_term_ptr, self.passage_term_ids, rows)

    def passages_of_documents(self, doc_rows: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """The passage rows of document `doc_rows`, one document after another (its first `limit` passages at
        most), and how many each has."""
        starts = self.doc_passages[doc_rows]
        counts = np.minimum(self.document_sizes(doc_rows), limit)
        if not len(counts):
            return np.zeros(0, np.int64), counts
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.repeat(starts, counts) + offsets, counts

    def document_sizes(self, doc_rows: np.ndarray) -> np.ndarray:
        """How many passages each of document `doc_rows` has."""
        following = doc_rows + 1
        ends = self.doc_passages[np.minimum(following, len(self.doc_passages) - 1)]
        return np.where(following < len(self.doc_passages), ends, self.num_passages) - self.doc_passages[doc_rows]

    def sentence_rows_of(self, row: int) -> np.ndarray:
        return self.passage_sentence_rows[self.passage_sentence_ptr[row] : self.passage_sentence_ptr[row + 1]]

    def live_mask(self) -> np.ndarray | None:
        """Passage rows a search may return; None when all are live (the common case, no mask needed)."""
        return self.passage_alive if self.dead_passages else None

    def rows_of(self, hits: BM25Hits) -> tuple[np.ndarray, np.ndarray]:
        """The passage rows of BM25 hits and their scores (hits of documents this view lacks are dropped)."""
        if len(hits.keys) == 0 or len(self.doc_keys) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        doc_rows = np.minimum(np.searchsorted(self.doc_keys, hits.keys), len(self.doc_keys) - 1)
        known = (self.doc_keys[doc_rows] == hits.keys) & self.doc_alive[doc_rows]
        rows = self.doc_passages[doc_rows[known]] + hits.ords[known]
        return rows.astype(np.int64), hits.scores[known]

    # -- writing -------------------------------------------------------------------------------------------
    def changed(
        self, added: Sequence[DocumentRecord], deleted: Sequence[int], seq: int, bm25: BM25Searcher | None
    ) -> View:
        """The next view: the documents stored under the keys `deleted` gone, then `added` appended."""
        doc_alive, passage_alive = self.doc_alive, self.passage_alive
        doc_rows = dict(self.doc_rows)
        dead, live_terms = self.dead_passages, self.live_terms
        gone = [int(r) for r in np.searchsorted(self.doc_keys, np.asarray(deleted, dtype=np.int64))]
        gone = [r for r, key in zip(gone, deleted, strict=True) if r < len(self.doc_keys) and self.doc_keys[r] == key]
        if gone:
            doc_alive, passage_alive = doc_alive.copy(), passage_alive.copy()
            for row in gone:
                if not doc_alive[row]:
                    continue
                doc_alive[row] = False
                first = int(self.doc_passages[row])
                last = int(self.doc_passages[row + 1]) if row + 1 < len(self.doc_passages) else self.num_passages
                passage_alive[first:last] = False
                dead += last - first
                live_terms -= int(self.passage_term_ptr[last] - self.passage_term_ptr[first])
                doc_id = self.documents[row].doc_id
                if doc_rows.get(doc_id) == row:
                    del doc_rows[doc_id]
        view = replace(
            self,
            seq=seq,
            bm25=bm25,
            doc_alive=doc_alive,
            passage_alive=passage_alive,
            doc_rows=doc_rows,
            dead_passages=dead,
            live_terms=live_terms,
        )
        return view._appended(added) if added else view

    def appended_rows(self, records: Sequence[DocumentRecord]) -> View:
        """The next view: `records` appended without their vectors (`with_segment` adds those next)."""
        return self._appended(records, with_vectors=False)

    def appended_segment_rows(
        self,
        documents: Sequence[Document],
        keys: np.ndarray,
        passage_counts: np.ndarray,
        sentence_counts: np.ndarray,
        rows: Rows,
        dead: np.ndarray,
    ) -> View:
        """The next view: a sealed segment's documents appended from its rows (arrays, no per-row Python),
        without their vectors (`with_segment` adds those next). `dead` marks documents deleted since it was
        sealed: their spans are zeroed and `changed` makes them tombstones."""
        grow, i64 = self.buffers.extend, np.int64
        n_docs, n_passages, n_sentences = len(self.documents), self.num_passages, len(self.sentence_docs)
        passage_counts = np.asarray(passage_counts, i64)
        sentence_counts = np.asarray(sentence_counts, i64)
        doc_index = np.arange(n_docs, n_docs + len(keys), dtype=i64)
        first_passage = n_passages + np.concatenate([[0], np.cumsum(passage_counts)[:-1]]).astype(i64)
        first_sentence = n_sentences + np.concatenate([[0], np.cumsum(sentence_counts)[:-1]]).astype(i64)
        passages, sentences = np.asarray(rows.passages), np.asarray(rows.sentences)
        holds = passages[:, 2]
        sentence_rows = np.repeat(np.repeat(first_sentence, passage_counts), holds) + rows.passage_sentences
        # The first passage holding each sentence (-1: none), as `_appended` finds it.
        sentence_passages = np.full(len(sentences), -1, i64)
        local, first = np.unique(sentence_rows - n_sentences, return_index=True)
        holders = np.repeat(np.arange(n_passages, n_passages + len(passages), dtype=i64), holds)
        sentence_passages[local] = holders[first]
        starts, ends = passages[:, 0].copy(), passages[:, 1].copy()
        sentence_starts, sentence_ends = sentences[:, 0].copy(), sentences[:, 1].copy()
        if dead.any():  # rows kept in line with the vectors, pointing at no text
            gone, gone_sentences = np.repeat(dead, passage_counts), np.repeat(dead, sentence_counts)
            starts[gone] = ends[gone] = 0
            sentence_starts[gone_sentences] = sentence_ends[gone_sentences] = 0
        doc_rows = self.doc_rows
        for row, document in zip(doc_index.tolist(), documents, strict=True):
            doc_rows[document.doc_id] = row
        return replace(
            self,
            documents=self.documents + tuple(documents),
            doc_keys=grow("doc_keys", self.doc_keys, np.asarray(keys, i64)),
            doc_alive=grow("doc_alive", self.doc_alive, np.ones(len(keys), bool)),
            doc_passages=grow("doc_passages", self.doc_passages, first_passage),
            passage_docs=grow("passage_docs", self.passage_docs, np.repeat(doc_index, passage_counts).astype(np.int32)),
            passage_starts=grow("passage_starts", self.passage_starts, starts),
            passage_ends=grow("passage_ends", self.passage_ends, ends),
            passage_alive=grow("passage_alive", self.passage_alive, np.ones(len(passages), bool)),
            passage_sentence_ptr=grow(
                "passage_sentence_ptr", self.passage_sentence_ptr, int(self.passage_sentence_ptr[-1]) + np.cumsum(holds)
            ),
            passage_sentence_rows=grow("passage_sentence_rows", self.passage_sentence_rows, sentence_rows),
            sentence_docs=grow(
                "sentence_docs", self.sentence_docs, np.repeat(doc_index, sentence_counts).astype(np.int32)
            ),
            sentence_starts=grow("sentence_starts", self.sentence_starts, sentence_starts),
            sentence_ends=grow("sentence_ends", self.sentence_ends, sentence_ends),
            sentence_passages=grow("sentence_passages", self.sentence_passages, sentence_passages),
            sentence_term_ptr=grow(
                "sentence_term_ptr",
                self.sentence_term_ptr,
                int(self.sentence_term_ptr[-1]) + np.cumsum(sentences[:, 2]),
            ),
            sentence_term_ids=self._terms("sentence_term_ids", self.sentence_term_ids, rows.sentence_terms),
            passage_term_ptr=grow(
                "passage_term_ptr", self.passage_term_ptr, int(self.passage_term_ptr[-1]) + np.cumsum(passages[:, 3])
            ),
            passage_term_ids=self._terms("passage_term_ids", self.passage_term_ids, rows.passage_terms),
            live_terms=self.live_terms + int(passages[:, 3].sum()),
            doc_rows=doc_rows,
        )

    def _terms(self, name: str, column: Column, values: np.ndarray) -> Column:
        """`column` with a segment's term ids: the mapped array itself as a part when no unsealed rows come
        before it (a load), else copied in after them."""
        if isinstance(values, np.memmap) and not len(column.live):
            return column.with_sealed(values)
        return replace(column, live=self.buffers.extend(name, column.live, np.asarray(values, np.int64)))

    def with_segment(self, passages: np.ndarray, sentences: np.ndarray, graph: faiss.Index | None = None) -> View:
        """The next view: a sealed segment's arrays (and its passages' graph, if any) as the vectors of the
        rows appended since the last one. Segments are loaded before any unsealed rows."""
        pv, sv = self.passage_vectors, self.sentence_vectors
        if len(pv.live) or len(sv.live):
            raise ValueError("segments are loaded before unsealed rows")
        if len(pv) + len(passages) != self.num_passages or len(sv) + len(sentences) != len(self.sentence_docs):
            raise ValueError("a segment's rows must match the rows appended for it")
        return replace(
            self,
            passage_vectors=Vectors((*pv.sealed, passages), pv.live, (*(pv.graphs or (None,) * len(pv.sealed)), graph)),
            sentence_vectors=Vectors(
                (*sv.sealed, sentences),
                sv.live,
                (*(sv.graphs or (None,) * len(sv.sealed)), None if graph is None else UNSEARCHED),
            ),
        )

    def _appended(self, records: Sequence[DocumentRecord], with_vectors: bool = True) -> View:
        grow = self.buffers.extend
        n_docs, n_passages, n_sentences = len(self.documents), self.num_passages, len(self.sentence_docs)
        doc_passages: list[int] = []
        passage_docs: list[int] = []
        passage_sentence_ptr: list[int] = []
        passage_sentence_rows: list[int] = []
        sentence_docs: list[int] = []
        sentence_passages: list[int] = []
        term_ptr: list[int] = []
        term_ids: list[int] = []
        p_at, s_at, t_at = n_passages, n_sentences, int(self.sentence_term_ptr[-1])
        doc_rows = self.doc_rows
        for i, record in enumerate(records):
            row = n_docs + i
            doc_rows[record.document.doc_id] = row
            doc_passages.append(p_at)
            first_holder = np.full(len(record.sentences), -1, dtype=np.int64)
            for ordinal, passage in enumerate(record.passages):
                passage_docs.append(row)
                rows = [s_at + s for s in passage.sentences]
                passage_sentence_rows.extend(rows)
                passage_sentence_ptr.append(int(self.passage_sentence_ptr[-1]) + len(passage_sentence_rows))
                for s in passage.sentences:
                    if first_holder[s] < 0:
                        first_holder[s] = p_at + ordinal
            for sentence in record.sentences:
                sentence_docs.append(row)
                t_at += len(sentence.terms)
                term_ptr.append(t_at)
                term_ids.extend(sentence.terms)
            sentence_passages.extend(first_holder.tolist())
            p_at += len(record.passages)
            s_at += len(record.sentences)
        i64 = np.int64
        passages = [p for r in records for p in r.passages]
        passage_terms = [len(p.terms) for p in passages]
        sentences = [s for r in records for s in r.sentences]
        empty = np.zeros((0, self.dimension), np.float32)
        pv, sv = self.passage_vectors, self.sentence_vectors
        if with_vectors:
            new_passages = np.vstack([empty, *(r.passage_vectors for r in records)])
            new_sentences = np.vstack([empty, *(r.sentence_vectors for r in records)])
            pv = replace(pv, live=grow("passage_vectors", pv.live, new_passages))
            sv = replace(sv, live=grow("sentence_vectors", sv.live, new_sentences))
        return replace(
            self,
            documents=self.documents + tuple(r.document for r in records),
            doc_keys=grow("doc_keys", self.doc_keys, np.asarray([r.key for r in records], i64)),
            doc_alive=grow("doc_alive", self.doc_alive, np.ones(len(records), bool)),
            doc_passages=grow("doc_passages", self.doc_passages, np.asarray(doc_passages, i64)),
            passage_docs=grow("passage_docs", self.passage_docs, np.asarray(passage_docs, np.int32)),
            passage_starts=grow("passage_starts", self.passage_starts, np.asarray([p.start for p in passages], i64)),
            passage_ends=grow("passage_ends", self.passage_ends, np.asarray([p.end for p in passages], i64)),
            passage_alive=grow("passage_alive", self.passage_alive, np.ones(len(passages), bool)),
            passage_vectors=pv,
            passage_sentence_ptr=grow(
                "passage_sentence_ptr", self.passage_sentence_ptr, np.asarray(passage_sentence_ptr, i64)
            ),
            passage_sentence_rows=grow(
                "passage_sentence_rows", self.passage_sentence_rows, np.asarray(passage_sentence_rows, i64)
            ),
            sentence_docs=grow("sentence_docs", self.sentence_docs, np.asarray(sentence_docs, np.int32)),
            sentence_starts=grow(
                "sentence_starts", self.sentence_starts, np.asarray([s.start for s in sentences], i64)
            ),
            sentence_ends=grow("sentence_ends", self.sentence_ends, np.asarray([s.end for s in sentences], i64)),
            sentence_passages=grow("sentence_passages", self.sentence_passages, np.asarray(sentence_passages, i64)),
            sentence_vectors=sv,
            sentence_term_ptr=grow("sentence_term_ptr", self.sentence_term_ptr, np.asarray(term_ptr, i64)),
            sentence_term_ids=replace(
                self.sentence_term_ids,
                live=grow("sentence_term_ids", self.sentence_term_ids.live, np.asarray(term_ids, i64)),
            ),
            passage_term_ptr=grow(
                "passage_term_ptr",
                self.passage_term_ptr,
                int(self.passage_term_ptr[-1]) + np.cumsum(np.asarray(passage_terms, i64)),
            ),
            passage_term_ids=replace(
                self.passage_term_ids,
                live=grow(
                    "passage_term_ids",
                    self.passage_term_ids.live,
                    np.asarray([t for p in passages for t in p.terms], i64),
                ),
            ),
            live_terms=self.live_terms + sum(passage_terms),
            doc_rows=doc_rows,
        )
