"""Search over a loaded snapshot: dense, BM25, their fusion, de-duplication and the answering sentence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from indexer.lexical import LexicalIndex
from indexer.sentences import Span, sentence_spans
from indexer.snapshot import Snapshot

DENSE_WEIGHT = 0.5
MIN_CANDIDATES = 100
DUPLICATE_OVERLAP = 0.5

QueryEncoder = Callable[[str], np.ndarray]


class Mode(StrEnum):
    """How passages are ranked."""

    hybrid = "hybrid"
    dense = "dense"
    bm25 = "bm25"


@dataclass(frozen=True)
class Hit:
    """One ranked passage with its citation and the sentence that best answers."""

    rank: int
    score: float
    doc_id: str
    title: str | None
    source: str
    start: int
    end: int
    text: str
    highlight: Span
    highlight_text: str
    dense: float
    bm25: float
    fused: float


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` highest scores, best first (stable for ties)."""
    n = min(n, scores.shape[0])
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n]
    return part[np.lexsort((part, -scores[part]))]


def min_max(scores: dict[int, float]) -> dict[int, float]:
    """Scores rescaled to [0, 1] (all 0 when they are all equal)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    spread = high - low
    return {item: (value - low) / spread if spread > 0 else 0.0 for item, value in scores.items()}


def convex_fusion(
    dense: dict[int, float], bm25: dict[int, float], dense_weight: float = DENSE_WEIGHT
) -> dict[int, float]:
    """Weighted sum of min-max normalised dense and BM25 scores over the union of both candidate sets.

    Unlike reciprocal rank fusion it keeps how far apart scores are; an item missing from one
    candidate list gets that list's minimum. (Bruch et al. 2023 find it at least as robust as RRF.)
    """
    dense_n, bm25_n = min_max(dense), min_max(bm25)
    return {
        item: dense_weight * dense_n.get(item, 0.0) + (1 - dense_weight) * bm25_n.get(item, 0.0)
        for item in dense.keys() | bm25.keys()
    }


def overlap_fraction(a: Span, b: Span) -> float:
    """Share of the shorter span that the two spans have in common."""
    common = min(a.end, b.end) - max(a.start, b.start)
    shorter = min(a.end - a.start, b.end - b.start)
    return max(0, common) / shorter if shorter > 0 else 0.0


def best_sentence(text: str, passage: Span, weights: dict[str, float], lexical: LexicalIndex) -> Span:
    """The sentence of `passage` whose terms carry the most query idf; the first sentence on a tie."""
    sentences = sentence_spans(text, passage.start, passage.end) or [passage]
    best, best_score = sentences[0], 0.0
    for sentence in sentences:
        terms = set(lexical.terms(text[sentence.start : sentence.end]))
        score = sum(weight for term, weight in weights.items() if term in terms)
        if score > best_score:
            best, best_score = sentence, score
    return best


class Retriever:
    """Answers questions over one snapshot; immutable once built, safe to share between threads."""

    def __init__(self, snapshot: Snapshot, encode_query: QueryEncoder) -> None:
        self.snapshot = snapshot
        self._encode_query = encode_query

    def _dense_scores(self, vector: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.snapshot.dense.search(vector.reshape(1, -1).astype(np.float32), depth)
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]

    def search(
        self,
        query: str,
        k: int = 5,
        mode: Mode = Mode.hybrid,
        vector: np.ndarray | None = None,
        highlight: bool = True,
    ) -> list[Hit]:
        """The `k` best distinct passages for `query`, ranked by `mode`.

        `vector` is the query's embedding when the caller already has it (batched evaluation);
        `highlight=False` skips picking the answering sentence (the whole passage stands in).
        """
        snapshot = self.snapshot
        if snapshot.num_chunks == 0:
            return []
        depth = min(snapshot.num_chunks, max(MIN_CANDIDATES, 4 * k))
        lexical = snapshot.lexical
        bm25_all = lexical.scores(lexical.query_token_ids(query))
        if vector is None and mode != Mode.bm25:
            vector = self._encode_query(query)

        fused: dict[int, float] = {}
        if mode == Mode.bm25:
            ranking = [int(r) for r in top_indices(bm25_all, depth) if bm25_all[r] > 0]
            fused = {row: float(bm25_all[row]) for row in ranking}
        else:
            assert vector is not None
            dense_rows, dense_scores = self._dense_scores(vector, depth)
            if mode == Mode.dense:
                fused = {int(r): float(s) for r, s in zip(dense_rows, dense_scores, strict=True)}
            else:
                dense_candidates = {int(r): float(s) for r, s in zip(dense_rows, dense_scores, strict=True)}
                bm25_candidates = {int(r): float(bm25_all[r]) for r in top_indices(bm25_all, depth)}
                missing = np.asarray([r for r in bm25_candidates if r not in dense_candidates], dtype=np.int64)
                if len(missing):
                    dense_candidates.update(
                        zip(missing.tolist(), (snapshot.vectors(missing) @ vector).tolist(), strict=True)
                    )
                fused = convex_fusion(dense_candidates, bm25_candidates)
        ordered = sorted(fused, key=lambda row: (-fused[row], row))
        chosen = self._distinct(ordered, k)
        if not chosen:
            return []
        rows = np.asarray(chosen, dtype=np.int64)
        dense = snapshot.vectors(rows) @ vector if vector is not None else np.zeros(len(rows))
        weights = lexical.idf(lexical.terms(query)) if highlight else {}
        hits = []
        for rank, (row, dense_score) in enumerate(zip(chosen, dense.tolist(), strict=True), start=1):
            document = snapshot.documents[snapshot.chunk_docs[row]]
            passage = Span(int(snapshot.chunk_starts[row]), int(snapshot.chunk_ends[row]))
            best = best_sentence(document.text, passage, weights, lexical) if highlight else passage
            hits.append(
                Hit(
                    rank=rank,
                    score=fused[row],
                    doc_id=document.doc_id,
                    title=document.title,
                    source=document.source,
                    start=passage.start,
                    end=passage.end,
                    text=document.text[passage.start : passage.end],
                    highlight=best,
                    highlight_text=document.text[best.start : best.end],
                    dense=float(dense_score),
                    bm25=float(bm25_all[row]),
                    fused=fused[row],
                )
            )
        return hits

    def _distinct(self, ordered: Sequence[int], k: int) -> list[int]:
        """The first `k` rows, skipping passages that mostly repeat a better one of the same document."""
        snapshot = self.snapshot
        chosen: list[int] = []
        for row in ordered:
            span = Span(int(snapshot.chunk_starts[row]), int(snapshot.chunk_ends[row]))
            doc = snapshot.chunk_docs[row]
            if any(
                snapshot.chunk_docs[other] == doc
                and overlap_fraction(span, Span(int(snapshot.chunk_starts[other]), int(snapshot.chunk_ends[other])))
                > DUPLICATE_OVERLAP
                for other in chosen
            ):
                continue
            chosen.append(row)
            if len(chosen) == k:
                break
        return chosen
