"""Search over a view of the store: dense, BM25, their fusion, de-duplication and the answering sentence."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Literal

import numpy as np

from indexer.store import vector_index
from indexer.store.bm25 import lucene_idf
from indexer.store.view import Vectors, View, gather_segments
from indexer.text.documents import reads_as_headline
from indexer.text.lexical import Analyzer, term_id
from indexer.text.sentences import Span, line_of
from service.search.cues import AnswerKind, QueryStyle, answer_kind, has_answer_kind, query_style
from service.search.filters import SearchFilter, allowed_documents, allowed_passages
from service.search.stages import StageClock

RRF_CONSTANT = 60
COPY_COSINE = 0.9

QueryEncoder = Callable[[str], np.ndarray]
# A yes/no fact about a sentence: it holds an answer of some kind, or it sits on a headline-like line.
SentenceFact = AnswerKind | Literal["heading"]
HEADING: SentenceFact = "heading"


@dataclass(frozen=True)
class StyleRanking:
    """The knobs a query style sets in place of the question defaults (None: the default stays).

    The defaults were built for questions, whose answer is one sentence stating a fact. A paragraph-long
    query describes a topic: its answer is a passage, or a document, about the same thing, so the best
    sentence's cosine and the answer-sentence rerank give way to the passage's own cosine and to the whole
    document's evidence. Keywords, titles and claims are matched by meaning more than by the asked terms:
    the dense score weighs more. Measured per style on the development sets (bench/QUALITY.md).
    """

    sentence_weight: float | None = None
    answer_rerank: float | None = None
    document_bm25: float | None = None
    document_dense: float | None = None
    dense_weight: float | None = None


TOPIC = StyleRanking(sentence_weight=0.0, answer_rerank=0.0, document_dense=0.5, dense_weight=0.6)
STATEMENT = StyleRanking(dense_weight=0.6)


@dataclass(frozen=True)
class RetrievalConfig:
    """The ranking's knobs; the defaults are the best measured settings (bench/REPORT.md, ablations)."""

    dense_weight: float = 0.5  # hybrid: weight of the normalised dense score against BM25's
    sentence_weight: float = 0.5  # dense score: weight of the best sentence's cosine against the passage's
    fusion: str = "convex"  # "convex" (normalised scores) or "rrf" (reciprocal ranks)
    min_candidates: int = 100  # candidates per retriever before fusion
    duplicate_overlap: float = 0.5  # a passage sharing more than this with a better one of its document is dropped
    copy_similarity: float = 0.8  # word-set Jaccard at which another document's passage is a copy (> 1: off)
    highlight_term_weight: float = 0.3  # answering sentence: weight of question-term coverage
    cue_bonus: float = 0.1  # answering sentence: bonus for holding the kind of answer asked for
    answer_rerank: float = 0.3  # hybrid second stage: weight of the best sentence's answer score
    rerank_cue: float = 0.25  # ... and of its answer-kind cue within that score
    rerank_cosine: float = 1.0  # ... and of its cosine to the question within that score
    rerank_depth: int = 30  # ... over this many of the best fused passages
    heading_penalty: float = 0.5  # answering sentence, both stages: taken off a sentence of a headline-like line
    skip_question_words: bool = True  # BM25 and term coverage leave out "what", "when", "did" ... (lexical.py)
    document_bm25: float = 0.5  # BM25 score: weight of the whole document's (title and text) against the passage's
    document_dense: float = 0.3  # dense score: weight of the document's against the passage's
    document_bm25_alone: float = 0.8  # `document_bm25` in the BM25 mode, where no dense score stands beside it
    document_vector: str = "mean"  # the document's dense score: cosine to its "mean" passage vector, or the "max"
    document_passages: int = 64  # document evidence reads a document's first this many passages
    document_span: int = 0  # ... and weighs less in for documents of more passages than this (0: never less)
    normalize: str = "minmax"  # convex fusion rescales each retriever's scores by "minmax" or "zscore"
    # Dense candidates: also the passages of the sentences nearest the question (never changed a top 10 on
    # the development sets, and searching every sentence costs more than searching every passage).
    sentence_candidates: bool = False
    topic_words: int = 40  # a query of at least this many words describes a topic (`QueryStyle.topic`)
    topic: StyleRanking | None = TOPIC  # knobs of paragraph-long queries (None: ranked as questions)
    statement: StyleRanking | None = STATEMENT  # knobs of keywords, titles and claims (None: as questions)

    def style(self, query: str) -> QueryStyle:
        return query_style(query, self.topic_words)

    def for_style(self, style: QueryStyle) -> RetrievalConfig:
        """The knobs that rank a query of `style`: these, with its `StyleRanking`'s set in their place."""
        knobs = {QueryStyle.topic: self.topic, QueryStyle.statement: self.statement}.get(style)
        if knobs is None:
            return self
        changed = {name: value for name, value in asdict(knobs).items() if value is not None}
        return replace(self, **changed, topic=None, statement=None)

    @property
    def highlight_weights(self) -> SentenceWeights:
        """How the answering sentence of a passage is picked."""
        return SentenceWeights(1.0, self.highlight_term_weight, self.cue_bonus, self.heading_penalty)

    @property
    def rerank_weights(self) -> SentenceWeights:
        """How the second stage scores a passage's best sentence (before `answer_rerank` weighs it in)."""
        return SentenceWeights(self.rerank_cosine, 1.0, self.rerank_cue, self.heading_penalty)


@dataclass(frozen=True)
class SentenceWeights:
    """The answer score of a sentence: weights of its cosine to the question, its coverage of the question's
    terms and its holding the kind of answer asked for, and what a headline-like line costs it."""

    cosine: float
    coverage: float
    cue: float
    heading: float


class Mode(StrEnum):
    """How passages are ranked."""

    hybrid = "hybrid"
    dense = "dense"
    bm25 = "bm25"


@dataclass(frozen=True)
class Reference:
    """Where a passage is: a document and a span of its original text."""

    doc_id: str
    title: str | None
    source: str
    start: int
    end: int
    page: int | None = None  # 1-based page of the original (PDF) on which the passage starts
    page_end: int | None = None  # ... and on which it ends
    section: str | None = None  # heading path in effect where the passage starts


@dataclass(frozen=True)
class Hit:
    """One ranked passage with its citation and the sentence that best answers."""

    rank: int
    score: float
    reference: Reference  # the citation: document and span, `document.text[start:end] == text`
    text: str
    highlight: Span
    highlight_text: str
    dense: float
    bm25: float
    fused: float
    duplicates: tuple[Reference, ...] = ()  # near-identical passages of other documents, folded into this one

    @property
    def doc_id(self) -> str:
        return self.reference.doc_id

    @property
    def start(self) -> int:
        return self.reference.start

    @property
    def end(self) -> int:
        return self.reference.end


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` highest scores, best first (stable for ties)."""
    n = min(n, scores.shape[0])
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n]
    return part[np.lexsort((part, -scores[part]))]


def rank_order(scores: dict[int, float]) -> list[int]:
    """The keys of `scores`, best score first, ties by ascending key (`sorted` by (-score, key), vectorised)."""
    if not scores:
        return []
    keys = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    ordered: list[int] = keys[np.lexsort((keys, -values))].tolist()
    return ordered


def top_allowed(scores: np.ndarray, n: int, allowed: np.ndarray | None) -> np.ndarray:
    """Like `top_indices`, among the rows where `allowed` is True (all rows when it is None)."""
    if allowed is None:
        return top_indices(scores, n)
    # Disallowed rows sink to -inf (cheaper than gathering the allowed ones); never more than are allowed.
    return top_indices(np.where(allowed, scores, -np.inf), min(n, int(np.count_nonzero(allowed))))


def nearest(vectors: Vectors, query: np.ndarray, depth: int, mask: np.ndarray | None) -> np.ndarray:
    """Rows of `vectors` with the highest inner product with `query`, best first, among those `mask` allows.

    Exact over parts without a graph; over a part with one, the graph's candidates scored exactly (so
    the order is exact, the set approximate); a part marked `UNSEARCHED` is left out."""
    if not any(g is not None for g in vectors.graphs):
        return top_allowed(vectors.scores(query), depth, mask)
    found_rows, found_scores = [], []
    for start, part, graph in vectors.parts():
        allowed = None if mask is None else mask[start : start + len(part)]
        if len(part) == 0 or isinstance(graph, str):  # `UNSEARCHED`
            continue
        if graph is None:
            scores = part @ query
            rows = top_allowed(scores, depth, allowed)
            scores = scores[rows]
        else:
            if allowed is not None and np.count_nonzero(allowed) <= vector_index.EXACT_ROWS:
                rows = np.flatnonzero(allowed)  # a narrow filter: scoring its rows beats walking the graph
            else:
                rows = np.sort(vector_index.graph_candidates(graph, query, depth, allowed))
            scores = part[rows] @ query
        found_rows.append(rows + start)
        found_scores.append(scores)
    if not found_rows:
        return np.zeros(0, np.int64)
    rows, scores = np.concatenate(found_rows), np.concatenate(found_scores)
    return rows[top_indices(scores, depth)]


def first_rows(allowed: np.ndarray | None, count: int, taken: dict[int, float], n: int) -> list[int]:
    """The first `n` rows (in row order) of `count` that `allowed` allows and `taken` lacks."""
    rows: list[int] = []
    candidates = np.flatnonzero(allowed) if allowed is not None else np.arange(count)
    for at in range(0, len(candidates), max(n + len(taken), 1)):
        block = candidates[at : at + n + len(taken)].tolist()
        rows.extend(r for r in block if r not in taken)
        if len(rows) >= n:
            break
    return rows[:n]


def min_max(scores: dict[int, float]) -> dict[int, float]:
    """Scores rescaled to [0, 1] (all 0 when they are all equal)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    spread = high - low
    return {item: (value - low) / spread if spread > 0 else 0.0 for item, value in scores.items()}


def z_scores(scores: dict[int, float]) -> dict[int, float]:
    """Scores as standard deviations from their mean (all 0 when they are all equal)."""
    if not scores:
        return {}
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    spread = float(values.std())
    mean = float(values.mean())
    return {item: (value - mean) / spread if spread > 0 else 0.0 for item, value in scores.items()}


def scale_like(
    values: np.ndarray, reference: dict[int, float], normalize: str, given: Scale | None = None
) -> np.ndarray:
    """`values` rescaled as `NORMALIZERS[normalize]` rescales `reference` (min-max by `given` when given)."""
    if given is not None:
        low, high = given
        return (values - low) / (high - low) if high > low else np.zeros(len(values))
    ref = np.fromiter(reference.values(), np.float64, len(reference))
    if not len(ref):
        return np.zeros(len(values))
    if normalize == "zscore":
        low, spread = float(ref.mean()), float(ref.std())
    else:
        low, spread = float(ref.min()), float(ref.max() - ref.min())
    return (values - low) / spread if spread > 0 else np.zeros(len(values))


NORMALIZERS: dict[str, Callable[[dict[int, float]], dict[int, float]]] = {"minmax": min_max, "zscore": z_scores}


def min_max_by(scores: dict[int, float], scale: Scale) -> dict[int, float]:
    """Scores rescaled by a given (low, high), as `min_max` would over a larger set holding these."""
    low, high = scale
    spread = high - low
    return {item: (value - low) / spread if spread > 0 else 0.0 for item, value in scores.items()}


def convex_fusion(
    dense: dict[int, float],
    bm25: dict[int, float],
    dense_weight: float = 0.5,
    normalize: str = "minmax",
    scales: tuple[Scale, Scale] | None = None,
) -> dict[int, float]:
    """Weighted sum of normalised dense and BM25 scores over the union of both candidate sets.

    Unlike reciprocal rank fusion it keeps how far apart scores are; an item missing from one
    candidate list gets that list's lowest. (Bruch et al. 2023 find it at least as robust as RRF.)
    `scales`: the (low, high) of the dense and BM25 scores over a larger candidate set these belong to
    (every shard's), min-max normalised by them.
    """
    if scales is not None:
        dense_n, bm25_n = min_max_by(dense, scales[0]), min_max_by(bm25, scales[1])
        dense_low = bm25_low = 0.0  # the larger set's lowest
    else:
        dense_n, bm25_n = NORMALIZERS[normalize](dense), NORMALIZERS[normalize](bm25)
        dense_low, bm25_low = min(dense_n.values(), default=0.0), min(bm25_n.values(), default=0.0)
    return {
        item: dense_weight * dense_n.get(item, dense_low) + (1 - dense_weight) * bm25_n.get(item, bm25_low)
        for item in dense.keys() | bm25.keys()
    }


Scale = tuple[float, float]  # (low, high) of a retriever's scores over a candidate set


@dataclass(frozen=True)
class Statistics:
    """BM25's collection statistics for a question's terms: one store's, or the sum over every shard of a
    sharded collection, so that each shard scores BM25 as one store of all the documents would."""

    terms: tuple[str, ...]
    passage_freqs: tuple[int, ...]  # passages holding each term
    document_freqs: tuple[int, ...]  # documents holding each term (0s where the index has no document entries)
    passages: int  # passage entries of the BM25 index (idf's N)
    documents: int  # document entries (idf's N over documents; 0: none)
    live_terms: int
    live_passages: int
    live_documents: int

    def __add__(self, other: Statistics) -> Statistics:
        if other.terms != self.terms:
            raise ValueError("statistics of different terms cannot be added")
        return Statistics(
            self.terms,
            tuple(a + b for a, b in zip(self.passage_freqs, other.passage_freqs, strict=True)),
            tuple(a + b for a, b in zip(self.document_freqs, other.document_freqs, strict=True)),
            self.passages + other.passages,
            self.documents + other.documents,
            self.live_terms + other.live_terms,
            self.live_passages + other.live_passages,
            self.live_documents + other.live_documents,
        )


@dataclass(frozen=True)
class Candidates:
    """One shard's candidates for a question, as numbers only: what the router needs to find the candidate
    sets and score scales of the whole collection (`Bounds.of`)."""

    lexical: tuple[tuple[float, float], ...]  # (BM25, dense) of its BM25 candidates, best BM25 first
    nearest: tuple[tuple[float, float], ...]  # (passage cosine, dense) of its nearest passages, nearest first


@dataclass(frozen=True)
class Bounds:
    """The collection's candidate sets and score scales for one question, over every shard: a shard keeps
    the candidates of its own that are in them (`*_cut`) and normalises by the collection's scales."""

    bm25_cut: float  # a BM25 candidate of the collection scores at least this
    cosine_cut: float  # a nearest passage of the collection is at least this near
    dense: Scale
    bm25: Scale

    @classmethod
    def of(cls, parts: Sequence[Candidates], depth: int) -> Bounds:
        lexical = sorted((pair for part in parts for pair in part.lexical), reverse=True)[:depth]
        nearest = sorted((pair for part in parts for pair in part.nearest), reverse=True)[:depth]
        # Fewer matches than `depth`: one store fills its BM25 candidates up with passages scoring 0.
        bm25_cut = lexical[-1][0] if len(lexical) >= depth else 0.0
        dense = [d for _, d in lexical] + [d for _, d in nearest]
        return cls(
            bm25_cut=bm25_cut,
            cosine_cut=nearest[-1][0] if nearest else 0.0,
            dense=(min(dense, default=0.0), max(dense, default=0.0)),
            bm25=(
                min((b for b, _ in lexical), default=0.0) if bm25_cut > 0 else 0.0,
                lexical[0][0] if lexical else 0.0,
            ),
        )


def rrf_fusion(dense: dict[int, float], bm25: dict[int, float], constant: int = RRF_CONSTANT) -> dict[int, float]:
    """Reciprocal rank fusion: sum over the lists of 1 / (constant + rank). Kept for comparison (bench)."""
    fused: dict[int, float] = {}
    for scores in (dense, bm25):
        for rank, item in enumerate(sorted(scores, key=lambda i: (-scores[i], i)), start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (constant + rank)
    return fused


def overlap_fraction(a: Span, b: Span) -> float:
    """Share of the shorter span that the two spans have in common."""
    common = min(a.end, b.end) - max(a.start, b.start)
    shorter = min(a.end - a.start, b.end - b.start)
    return max(0, common) / shorter if shorter > 0 else 0.0


def term_coverage(sentence_ids: np.ndarray, query_ids: np.ndarray, query_weights: np.ndarray) -> float:
    """Share of the question's idf mass (`query_weights` of the distinct `query_ids`) present in the sentence."""
    total = float(query_weights.sum())
    if total <= 0:
        return 0.0
    return float(query_weights[np.isin(query_ids, sentence_ids)].sum()) / total


def sentence_coverage(
    view: View, sentence_rows: np.ndarray, query_ids: np.ndarray, query_weights: np.ndarray
) -> np.ndarray:
    """`term_coverage` of many sentences at once, from the view's stored term ids (vectorised).

    `query_ids` are sorted and distinct, `query_weights` their idf.
    """
    coverage = np.zeros(len(sentence_rows))
    total = float(query_weights.sum())
    if total <= 0 or len(sentence_rows) == 0:
        return coverage
    terms, lengths = view.sentence_terms(sentence_rows)
    owner = np.repeat(np.arange(len(sentence_rows)), lengths)
    slot = np.minimum(np.searchsorted(query_ids, terms), len(query_ids) - 1)
    hit = query_ids[slot] == terms
    stride = len(query_ids)
    pairs = np.unique(owner[hit] * stride + slot[hit])  # each term counts once per sentence
    coverage += np.bincount(pairs // stride, weights=query_weights[pairs % stride], minlength=len(sentence_rows))
    return coverage / total


def bm25(
    tf: np.ndarray, lengths: np.ndarray, average_length: float, weights: np.ndarray, k1: float, b: float
) -> np.ndarray:
    """Lucene's BM25 of each passage: `tf` (passages x query terms) counts, `lengths` the passages' term counts,
    `weights` each query term's idf times how often the query says it. As Lucene (since 8) and bm25s score it,
    without the constant factor k1 + 1, which changes no ranking."""
    if tf.size == 0:
        return np.zeros(tf.shape[0])
    norm = k1 * (1 - b + b * lengths / max(average_length, 1e-9))
    saturated = tf / (tf + norm[:, None])
    return np.asarray(saturated @ weights)


def term_frequencies(view: View, rows: np.ndarray, query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How often each of the sorted, distinct `query_ids` occurs in each passage row, and the rows' term counts."""
    terms, lengths = view.passage_terms(rows)
    return term_counts(terms, np.repeat(np.arange(len(rows)), lengths), len(rows), query_ids), lengths.astype(
        np.float64
    )


def term_counts(terms: np.ndarray, owner: np.ndarray, rows: int, query_ids: np.ndarray) -> np.ndarray:
    """(rows x query terms) counts of the sorted, distinct `query_ids` among `terms`, each owned by a row."""
    tf = np.zeros((rows, len(query_ids)))
    if len(query_ids) and len(terms):
        slot = np.minimum(np.searchsorted(query_ids, terms), len(query_ids) - 1)
        hit = query_ids[slot] == terms
        np.add.at(tf, (owner[hit], slot[hit]), 1.0)
    return tf


def shared_sentence_terms(view: View, rows: np.ndarray, query_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of each passage row, the terms of the sentences an earlier passage of its document holds too (the
    overlap of consecutive passages): how often each of `query_ids` occurs there, and how many terms.
    A sentence stores its distinct terms, so a term repeated within a shared sentence counts once."""
    sentence_rows, counts = view.sentences_of(rows)
    holder = np.repeat(np.arange(len(rows)), counts)
    shared = view.sentence_passages[sentence_rows] != rows[holder]
    terms, lengths = view.sentence_terms(sentence_rows[shared])
    owner = np.repeat(holder[shared], lengths)
    return term_counts(terms, owner, len(rows), query_ids), np.bincount(owner, minlength=len(rows)).astype(np.float64)


def document_bm25(
    tf: np.ndarray,
    lengths: np.ndarray,
    owners: np.ndarray,
    documents: int,
    average_length: float,
    weights: np.ndarray,
    k1: float,
    b: float,
) -> np.ndarray:
    """BM25 of whole documents from the term counts of their parts: `tf` (parts x query terms) and `lengths`
    per part, `owners` the document (0 .. documents - 1) of each part. A document's counts are its parts'
    sums, so it is scored as one text."""
    if tf.size == 0:
        return np.zeros(documents)
    doc_tf = np.zeros((documents, tf.shape[1]))
    np.add.at(doc_tf, owners, tf)
    doc_lengths = np.bincount(owners, weights=lengths, minlength=documents)
    return bm25(doc_tf, doc_lengths, average_length, weights, k1, b)


def with_document(passage: np.ndarray, document: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    """A passage's score with its document's added at weight / (1 - weight): passages rank as by
    (1 - weight) * passage + weight * document, yet keep their scale, so what a later stage adds (the
    answer rerank) counts as much against the passage score as without document evidence."""
    share = np.minimum(weight, 0.95)
    return passage + share / (1 - share) * document


def document_weights(weight: float, passages: np.ndarray, span: int) -> np.ndarray:
    """The weight of the document's score for passages of documents of `passages` passages each: `weight`
    up to `span` passages, fading as (span / passages) squared beyond, since a long document's score says
    less about any one part of it (0: never fades)."""
    if span <= 0:
        return np.full(len(passages), weight)
    return weight * np.minimum(1.0, span / np.maximum(passages, 1)) ** 2


def sentence_scores(
    cosine: np.ndarray | None,
    coverage: np.ndarray,
    holds_kind: np.ndarray | None,
    in_heading: np.ndarray | None,
    weights: SentenceWeights,
) -> np.ndarray:
    """How likely each sentence answers the question, one formula for both uses (`RetrievalConfig`'s two
    weight sets): cosine + term coverage + the answer-kind cue - the headline penalty.

    The cosine alone picks the sentence that restates the question; the answer is often the next one
    ("Speaking to NBC News, Carter said ..."), which shares the rarer question terms or holds the kind
    of thing asked for (`holds_kind`: per sentence, None when the question asks for no kind). Scraped
    news carries headlines of other stories amid the text ("Perfect Timing: Why Syrian Army Joined 'Race'
    to Liberate Raqqa"): close to the question in meaning, stating no answer; a sentence `in_heading`
    loses `weights.heading`. A missing feature (None) adds nothing.
    """
    scores = np.zeros(len(coverage)) if cosine is None else weights.cosine * cosine.astype(np.float64)
    scores = scores + weights.coverage * coverage
    if holds_kind is not None and weights.cue:
        scores += weights.cue * holds_kind.astype(np.float64)
    if in_heading is not None and weights.heading:
        scores -= weights.heading * in_heading.astype(np.float64)
    return scores


class SentenceFacts:
    """Yes/no facts about a snapshot's sentences (holds a date, sits on a headline-like line), found on first need.

    A fact costs a regular expression, ~2 us a sentence; the second stage asks about some hundred
    sentences per question, often the same ones, so each answer is kept. One byte per sentence and
    fact (0 unknown, 1 no, 2 yes), one array per fact: threads that race fill in the same values.
    """

    def __init__(self, count: int, find: Callable[[SentenceFact, np.ndarray], list[bool]]) -> None:
        self._count = count
        self._find = find
        self._flags: dict[SentenceFact, np.ndarray] = {}
        self._lock = threading.Lock()

    def holds(self, sentence_rows: np.ndarray, fact: SentenceFact) -> np.ndarray:
        """For each of `sentence_rows`, whether `fact` holds of it."""
        flags = self._flags.get(fact)
        if flags is None:
            with self._lock:
                flags = self._flags.setdefault(fact, np.zeros(self._count, dtype=np.uint8))
        values = flags[sentence_rows]
        unknown = np.flatnonzero(values == 0)
        if len(unknown):
            rows = sentence_rows[unknown]
            values[unknown] = np.where(self._find(fact, rows), 2, 1)
            flags[rows] = values[unknown]
        return np.asarray(values == 2)


def segment_max(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Max of each of the consecutive segments of `values` with the given lengths (each >= 1)."""
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return np.maximum.reduceat(values, starts)


def best_per_passage(scores: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per passage, the best of its sentences' scores; the sentences come one passage after another,
    `lengths` of them each (a passage without sentences scores 0)."""
    best = np.zeros(len(lengths))
    present = lengths > 0
    if present.any():
        best[present] = segment_max(scores, lengths[present])
    return best


@dataclass(frozen=True)
class SentenceFeatures:
    """What the answer score of a sentence is made of, for the sentences of some passages (one passage
    after another, `lengths` each), computed once per search and scored by both stages."""

    passages: tuple[int, ...]
    sentences: np.ndarray  # sentence rows
    lengths: np.ndarray
    cosine: np.ndarray | None
    coverage: np.ndarray
    holds_kind: np.ndarray | None
    in_heading: np.ndarray | None

    def scores(self, weights: SentenceWeights) -> np.ndarray:
        return sentence_scores(self.cosine, self.coverage, self.holds_kind, self.in_heading, weights)

    def of(self, passages: Sequence[int]) -> SentenceFeatures | None:
        """The features of `passages`, when this holds them all (else None)."""
        position = {row: i for i, row in enumerate(self.passages)}
        if any(row not in position for row in passages):
            return None
        ptr = np.concatenate(([0], np.cumsum(self.lengths))).astype(np.int64)
        chosen = np.asarray([position[row] for row in passages], dtype=np.int64)
        at, lengths = gather_segments(ptr, np.arange(int(ptr[-1])), chosen)

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[at]

        return SentenceFeatures(
            tuple(passages),
            self.sentences[at],
            lengths,
            pick(self.cosine),
            self.coverage[at],
            pick(self.holds_kind),
            pick(self.in_heading),
        )


@dataclass(frozen=True)
class Question:
    """A question prepared once for every stage: its BM25 terms, its vector (None in BM25 mode unless
    given) and the kind of answer it asks for."""

    text: str
    terms: QueryTerms
    vector: np.ndarray | None
    kind: AnswerKind | None


@dataclass(frozen=True)
class QueryTerms:
    """A question's BM25 terms that the collection holds: text, `term_id` (sorted), count in the question, idf."""

    terms: list[str]
    ids: np.ndarray
    counts: np.ndarray
    idf: np.ndarray
    # The collection's, when it is more than this view (a shard): passages' and documents' mean lengths,
    # and the idf over documents.
    average_length: float | None = None
    document_average: float | None = None
    document_idf: np.ndarray | None = None

    @classmethod
    def none(cls) -> QueryTerms:
        return cls([], np.zeros(0, np.int64), np.zeros(0), np.zeros(0))


class Retriever:
    """Answers questions over one view; immutable once built, safe to share between threads.

    Dense score of a passage: the mean of its own cosine to the question and its best sentence's
    cosine. Passages are long and answers are usually one sentence: the sentence term sharpens the
    match, and names the highlight.
    """

    def __init__(
        self, view: View, encode_query: QueryEncoder, analyzer: Analyzer, config: RetrievalConfig | None = None
    ) -> None:
        self.view = view
        self._encode_query = encode_query
        self.analyzer = analyzer
        self.config = config or RetrievalConfig()
        self._facts = SentenceFacts(len(view.sentence_starts), self._find_facts)
        self._titles: dict[int, np.ndarray] = {}
        self._styled: dict[QueryStyle, Retriever] = {}

    def _ranking(self, query: str) -> Retriever:
        """This retriever, or its twin over the same view and caches with the knobs of `query`'s style."""
        style = self.config.style(query)
        config = self.config.for_style(style)
        if config is self.config:
            return self
        twin = self._styled.get(style)
        if twin is None:  # two threads may both make one: alike, either serves
            twin = copy.copy(self)
            twin.config = config
            twin._styled = {}
            self._styled[style] = twin
        return twin

    def _dense_candidates(self, vector: np.ndarray, depth: int, allowed: np.ndarray | None) -> np.ndarray:
        """Passages near the question by their own vector (and by one of their sentences, with
        `sentence_candidates`), among `allowed`."""
        view = self.view
        query = vector.astype(np.float32)
        if allowed is None and depth >= view.num_passages:
            return np.arange(view.num_passages)  # every passage is a candidate: no search needed
        if allowed is not None and int(allowed.sum()) <= depth:
            return np.flatnonzero(allowed)  # few enough to score them all
        passage_rows = nearest(view.passage_vectors, query, depth, allowed)
        if not self.config.sentence_candidates:
            return np.sort(passage_rows)
        sentence_allowed = None if allowed is None else allowed[view.sentence_passages]
        sentence_rows = nearest(view.sentence_vectors, query, depth, sentence_allowed)
        return np.union1d(passage_rows, view.sentence_passages[sentence_rows])

    def dense_scores(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Blended dense score of each passage row: its own cosine and its best sentence's."""
        view = self.view
        passage = view.passage_vectors.take(rows) @ vector
        sentence_rows, lengths = view.sentences_of(rows)
        best = segment_max(view.sentence_vectors.take(sentence_rows) @ vector, lengths)
        weight = self.config.sentence_weight
        return np.asarray((1 - weight) * passage + weight * best)

    def _bm25(self, query: QueryTerms, depth: int, allowed_docs: np.ndarray | None) -> dict[int, float]:
        """The `depth` best passages by BM25 (of documents `allowed_docs` allows), best first.

        tantivy finds the candidates (twice as many, by its own BM25 with k1 1.2); they are scored with
        this index's k1 and b from the stored terms, so the ranking is Lucene's BM25 with those settings.
        """
        view = self.view
        if view.bm25 is None or not query.terms:
            return {}
        limit = 2 * depth
        if allowed_docs is None:
            hits = view.bm25.top(query.terms, limit)
        else:
            hits = view.bm25.top_within(query.terms, view.doc_keys[allowed_docs].tolist(), limit)
        rows, _ = view.rows_of(hits)
        scores = self.bm25_scores(rows, query)
        best = top_indices(scores, depth)
        return dict(zip(rows[best].tolist(), scores[best].tolist(), strict=True))

    def bm25_scores(self, rows: np.ndarray, query: QueryTerms) -> np.ndarray:
        """BM25 score of each passage row for the question."""
        view, bm25_config = self.view, self.analyzer.config
        tf, lengths = term_frequencies(view, rows, query.ids)
        average = query.average_length or view.live_terms / max(view.live_passages, 1)
        return bm25(tf, lengths, average, query.idf * query.counts, bm25_config.k1, bm25_config.b)

    def _counts(self, query: str) -> dict[str, int]:
        """The question's BM25 terms, each with how often it says it."""
        counts: dict[str, int] = {}
        for term in self.analyzer.query_terms(query, self.config.skip_question_words):
            counts[term] = counts.get(term, 0) + 1
        return counts

    def statistics(self, query: str) -> Statistics:
        """This view's BM25 statistics for the question's terms (a shard's part of the collection's)."""
        view = self.view
        terms = tuple(self._counts(query))
        passage_freqs = document_freqs = (0,) * len(terms)
        passages = documents = 0
        if view.bm25 is not None:
            passages, documents = view.bm25.num_docs, view.bm25.num_documents
            passage_freqs, document_freqs = view.bm25.frequencies(terms)
        return Statistics(
            terms,
            passage_freqs,
            document_freqs,
            passages,
            documents,
            view.live_terms,
            view.live_passages,
            view.num_documents,
        )

    def _query(self, query: str, statistics: Statistics | None = None) -> QueryTerms:
        """The question's terms that the collection holds, with their `term_id`s (sorted), counts and idf;
        with `statistics`, the idf and mean lengths are theirs (the collection's, of which this view is a part)."""
        view = self.view
        counts = self._counts(query)
        if view.bm25 is None or not counts:
            return QueryTerms.none()
        distinct = list(counts)
        document_idf = None
        if statistics is None:
            idf = view.bm25.idf(distinct)
        else:
            passage_freqs = dict(zip(statistics.terms, statistics.passage_freqs, strict=True))
            document_freqs = dict(zip(statistics.terms, statistics.document_freqs, strict=True))
            idf = lucene_idf([passage_freqs.get(t, 0) for t in distinct], statistics.passages)
            if statistics.documents:
                document_idf = lucene_idf([document_freqs.get(t, 0) for t in distinct], statistics.documents)
        known = sorted(
            (term_id(t), t, w, i) for i, (t, w) in enumerate(zip(distinct, idf.tolist(), strict=True)) if w > 0
        )
        terms = QueryTerms(
            terms=[t for _, t, _, _ in known],
            ids=np.asarray([i for i, _, _, _ in known], dtype=np.int64),
            counts=np.asarray([counts[t] for _, t, _, _ in known], dtype=np.float64),
            idf=np.asarray([w for _, _, w, _ in known], dtype=np.float64),
        )
        if statistics is None:
            return terms
        return replace(
            terms,
            average_length=statistics.live_terms / max(statistics.live_passages, 1),
            document_average=statistics.live_terms / max(statistics.live_documents, 1),
            document_idf=None if document_idf is None else document_idf[[i for _, _, _, i in known]],
        )

    def search(
        self,
        query: str,
        k: int = 5,
        mode: Mode = Mode.hybrid,
        vector: np.ndarray | None = None,
        highlight: bool = True,
        search_filter: SearchFilter | None = None,
        timings: dict[str, float] | None = None,
        highlight_top: int | None = None,
        statistics: Statistics | None = None,
        bounds: Bounds | None = None,
    ) -> list[Hit]:
        """The `k` best distinct passages for `query`, ranked by `mode`, among those `search_filter` allows.

        `vector` is the query's embedding when the caller already has it (batched evaluation);
        `highlight=False` skips picking the answering sentence (the whole passage stands in);
        `highlight_top=n` picks it for the first n hits only (evaluation judges the first).
        The filter applies before the top-k cut: `k` results come back when that many passages match.
        `timings`, when given, receives seconds per stage (filter, bm25, encode, dense, fuse, highlight).
        A shard of a larger collection is given the collection's BM25 `statistics` and hybrid `bounds`
        (service/shards.py), so that its scores are those one store of the whole collection would give.
        """
        ranking = self._ranking(query)
        if ranking is not self:
            return ranking.search(
                query, k, mode, vector, highlight, search_filter, timings, highlight_top, statistics, bounds
            )
        view, config = self.view, self.config
        clock = StageClock(timings)
        allowed_docs = allowed_documents(view, search_filter)
        allowed = allowed_passages(view, allowed_docs)
        clock.lap("filter")
        if view.live_passages == 0 or (allowed is not None and not allowed.any()):
            return []
        depth = self.depth(k)
        question = self._prepare(query, statistics)
        lexical = self._lexical_candidates(question.terms, depth, allowed_docs, allowed)
        if bounds is not None and mode == Mode.hybrid:  # this shard's part of the collection's candidates
            lexical = {row: score for row, score in lexical.items() if score >= bounds.bm25_cut}
        clock.lap("bm25")
        if vector is None and mode != Mode.bm25:
            vector = self._encode_query(query)
            clock.lap("encode")
        question = replace(question, vector=vector)
        hybrid_lexical = lexical if mode == Mode.hybrid else None
        near_cut = bounds.cosine_cut if bounds is not None and mode == Mode.hybrid else None
        dense = self._dense_candidates_scored(question, depth, allowed, hybrid_lexical, near_cut)
        if vector is not None:
            clock.lap("dense")
        scales = (bounds.dense, bounds.bm25) if bounds is not None and mode == Mode.hybrid else None
        fused = self._fuse(mode, dense, lexical, scales)
        if config.document_bm25 or config.document_dense or config.document_bm25_alone:
            fused = self._with_documents(question, mode, fused, dense, lexical, scales)
        features = None
        if mode == Mode.hybrid and config.answer_rerank > 0:
            features = self._features(question, rank_order(fused)[: config.rerank_depth])
            fused = self._rerank(fused, features)
        chosen, folded = self._distinct(rank_order(fused), k)
        clock.lap("fuse")
        dense, lexical = self._scores_of_chosen(question, chosen, mode, dense, lexical)
        answers = {}
        if highlight:
            answers = self._answer_sentences(
                question, chosen if highlight_top is None else chosen[:highlight_top], features
            )
        hits = [self._hit(rank, row, fused, dense, lexical, answers, folded) for rank, row in enumerate(chosen, 1)]
        clock.lap("highlight")
        return hits

    def depth(self, k: int) -> int:
        """Candidates per retriever for `k` results."""
        return min(self.view.num_passages, max(self.config.min_candidates, 4 * k))

    def candidates(
        self,
        query: str,
        k: int,
        vector: np.ndarray,
        search_filter: SearchFilter | None = None,
        statistics: Statistics | None = None,
    ) -> Candidates:
        """A hybrid search's candidates, as numbers (a shard's, for the router's `Bounds.of`)."""
        ranking = self._ranking(query)
        if ranking is not self:
            return ranking.candidates(query, k, vector, search_filter, statistics)
        view = self.view
        allowed_docs = allowed_documents(view, search_filter)
        allowed = allowed_passages(view, allowed_docs)
        if view.live_passages == 0 or (allowed is not None and not allowed.any()):
            return Candidates((), ())
        depth = self.depth(k)
        terms = self._query(query, statistics)
        lexical = self._lexical_candidates(terms, depth, allowed_docs, allowed)
        rows = np.fromiter(lexical.keys(), dtype=np.int64, count=len(lexical))
        near = self._dense_candidates(vector, depth, allowed)
        cosines = view.passage_vectors.take(near) @ vector
        order = np.argsort(-cosines, kind="stable")
        return Candidates(
            lexical=tuple(
                sorted(zip(lexical.values(), self.dense_scores(rows, vector).tolist(), strict=True), reverse=True)
            ),
            nearest=tuple(zip(cosines[order].tolist(), self.dense_scores(near[order], vector).tolist(), strict=True)),
        )

    # -- the stages ----------------------------------------------------------------------------------------
    def _prepare(self, query: str, statistics: Statistics | None = None) -> Question:
        """The question's terms and the kind of answer it asks for (its vector comes after the BM25 stage)."""
        config = self.config
        kind = answer_kind(query) if config.rerank_cue or config.cue_bonus else None
        return Question(query, self._query(query, statistics), None, kind)

    def _lexical_candidates(
        self, terms: QueryTerms, depth: int, allowed_docs: np.ndarray | None, allowed: np.ndarray | None
    ) -> dict[int, float]:
        """The `depth` best passages by BM25; when fewer match, the first others as candidates scoring 0."""
        lexical = self._bm25(terms, depth, allowed_docs)
        if len(lexical) < depth:
            lexical.update(
                (row, 0.0) for row in first_rows(allowed, self.view.num_passages, lexical, depth - len(lexical))
            )
        return lexical

    def _dense_candidates_scored(
        self,
        question: Question,
        depth: int,
        allowed: np.ndarray | None,
        lexical: dict[int, float] | None,
        near_cut: float | None = None,
    ) -> dict[int, float]:
        """Dense score of the passages near the question, and of `lexical`'s candidates too (hybrid);
        with `near_cut`, only the near passages at least that near (a shard's part of the collection's)."""
        if question.vector is None:
            return {}
        candidates = self._dense_candidates(question.vector, depth, allowed)
        if near_cut is not None:
            cosines = self.view.passage_vectors.take(candidates) @ question.vector
            candidates = candidates[cosines >= near_cut]
        if lexical is not None:
            candidates = np.union1d(candidates, np.fromiter(lexical.keys(), dtype=np.int64, count=len(lexical)))
        return dict(zip(candidates.tolist(), self.dense_scores(candidates, question.vector).tolist(), strict=True))

    def _fuse(
        self,
        mode: Mode,
        dense: dict[int, float],
        lexical: dict[int, float],
        scales: tuple[Scale, Scale] | None = None,
    ) -> dict[int, float]:
        if mode == Mode.bm25:
            return {row: score for row, score in lexical.items() if score > 0}
        if mode == Mode.dense:
            return dense
        if self.config.fusion == "rrf":
            return rrf_fusion(dense, lexical)
        return convex_fusion(dense, lexical, self.config.dense_weight, self.config.normalize, scales)

    def _with_documents(
        self,
        question: Question,
        mode: Mode,
        fused: dict[int, float],
        dense: dict[int, float],
        lexical: dict[int, float],
        scales: tuple[Scale, Scale] | None = None,
    ) -> dict[int, float]:
        """The fused scores with each candidate's whole document's weighed in (`document_bm25`, `document_dense`).

        A passage is the unit returned, but the evidence that a document answers is often spread over it:
        a claim's terms over an abstract, a topic over an article. The document's score moves all its
        passages alike, so it reorders documents, never the passages within one. In hybrid mode each of the
        document's two scores is put on the scale its passages' scores were normalised to (`scale_like`),
        so documents that differ little (five articles on one topic) move the ranking little, and the two
        are weighted by `dense_weight` as the passages' are.
        """
        config = self.config
        rows = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
        if not len(rows):
            return fused
        doc_rows, owner = np.unique(self.view.passage_docs[rows], return_inverse=True)
        bm25_weight = 0.0
        if len(question.terms.ids) and mode != Mode.dense:
            bm25_weight = config.document_bm25 if mode == Mode.hybrid else config.document_bm25_alone
        dense_weight = config.document_dense if mode != Mode.bm25 and question.vector is not None else 0.0
        if mode == Mode.hybrid:
            bm25_weight *= 1 - config.dense_weight
            dense_weight *= config.dense_weight
        weight = bm25_weight + dense_weight
        if weight <= 0:
            return fused
        vector = question.vector
        parts = []
        if bm25_weight:
            given = scales[1] if scales is not None else None
            parts.append((bm25_weight, self.document_scores_bm25(doc_rows, question.terms), lexical, given))
        if dense_weight and vector is not None:
            given = scales[0] if scales is not None else None
            parts.append((dense_weight, self.document_scores_dense(doc_rows, vector), dense, given))
        if mode == Mode.hybrid:
            scaled = [w * scale_like(scores, passages, config.normalize, g) for w, scores, passages, g in parts]
            document = np.sum(scaled, axis=0) / weight
        else:
            document = parts[0][1]  # one retriever: its raw scores, on the passages' own scale
        weights = document_weights(weight, self.view.document_sizes(doc_rows), config.document_span)
        scores = with_document(np.fromiter(fused.values(), np.float64, len(fused)), document[owner], weights[owner])
        return dict(zip(rows.tolist(), scores.tolist(), strict=True))

    def document_scores_bm25(self, doc_rows: np.ndarray, query: QueryTerms) -> np.ndarray:
        """BM25 of each document row as one text: its title and its (first `document_passages`) passages.

        The sentence consecutive passages share counts once, and the idf is over documents where the index
        has it (`BM25Searcher.document_idf`), so the score is the whole text's, not its passages' sum.
        """
        view, analyzer = self.view, self.analyzer
        if not len(query.ids):
            return np.zeros(len(doc_rows))
        passage_rows, counts = view.passages_of_documents(doc_rows, self.config.document_passages)
        tf, raw_lengths = term_frequencies(view, passage_rows, query.ids)
        shared_tf, shared_lengths = shared_sentence_terms(view, passage_rows, query.ids)
        tf = np.maximum(tf - shared_tf, 0.0)
        lengths = np.maximum(raw_lengths - shared_lengths, 0.0)
        owners = np.repeat(np.arange(len(doc_rows)), counts)
        titles = [self._title_terms(int(d)) for d in doc_rows.tolist()]
        title_tf = np.asarray([[float(np.count_nonzero(t == i)) for i in query.ids.tolist()] for t in titles])
        tf = np.vstack([tf, title_tf.reshape(len(doc_rows), len(query.ids))])
        lengths = np.concatenate([lengths, [float(len(t)) for t in titles]])
        owners = np.concatenate([owners, np.arange(len(doc_rows))])
        # The mean document length, less the shared sentences in the proportion the candidates have them.
        mean = query.document_average or view.live_terms / max(view.num_documents, 1)
        average = mean * lengths.sum() / max(raw_lengths.sum(), 1.0)
        idf = query.document_idf
        if idf is None and view.bm25 is not None:
            idf = view.bm25.document_idf(query.terms)
        weights = (query.idf if idf is None else idf) * query.counts
        config = analyzer.config
        return document_bm25(tf, lengths, owners, len(doc_rows), average, weights, config.k1, config.b)

    def document_scores_dense(self, doc_rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Cosine of each document row to the question: of the mean of its passages' vectors, or their best."""
        view = self.view
        passage_rows, counts = view.passages_of_documents(doc_rows, self.config.document_passages)
        vectors = view.passage_vectors.take(passage_rows)
        if self.config.document_vector == "max":
            return segment_max(vectors @ vector, counts)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        means = np.add.reduceat(vectors, starts, axis=0)
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return np.asarray(means @ vector)

    def _title_terms(self, doc_row: int) -> np.ndarray:
        """The BM25 term ids of a document's title (kept: titles are read again by every question)."""
        found = self._titles.get(doc_row)
        if found is None:
            title = self.view.documents[doc_row].title or ""
            found = np.asarray([term_id(t) for t in self.analyzer.terms(title)], dtype=np.int64)
            self._titles[doc_row] = found
        return found

    def _features(self, question: Question, rows: Sequence[int]) -> SentenceFeatures:
        """The answer-score features of the sentences of `rows` (their cosine, term coverage, cues)."""
        view = self.view
        row_array = np.asarray(rows, dtype=np.int64)
        sentence_rows, lengths = view.sentences_of(row_array)
        vector = question.vector
        return SentenceFeatures(
            tuple(rows),
            sentence_rows,
            lengths,
            view.sentence_vectors.take(sentence_rows) @ vector if vector is not None else None,
            sentence_coverage(view, sentence_rows, question.terms.ids, question.terms.idf),
            self._facts.holds(sentence_rows, question.kind) if question.kind is not None else None,
            self._facts.holds(sentence_rows, HEADING) if self.config.heading_penalty else None,
        )

    def _rerank(self, fused: dict[int, float], features: SentenceFeatures) -> dict[int, float]:
        """Second stage over the best fused rows: add how well each passage's best sentence could answer.

        Passage-level scores miss a question whose terms gather in one sentence; this rewards the
        passage holding a sentence that covers the question's rarer terms, holds the kind of answer asked
        for, and is close to the question in meaning, which no shared term shows ("captured" for "take
        control of").
        """
        best = best_per_passage(features.scores(self.config.rerank_weights), features.lengths)
        reranked = dict(fused)
        for row, bonus in zip(features.passages, best.tolist(), strict=True):
            reranked[row] = fused[row] + self.config.answer_rerank * bonus
        return reranked

    def _scores_of_chosen(
        self, question: Question, chosen: list[int], mode: Mode, dense: dict[int, float], lexical: dict[int, float]
    ) -> tuple[dict[int, float], dict[int, float]]:
        """Both scores of every chosen passage, for the results (a BM25 search has no dense scores yet, a
        dense one lacks BM25 scores outside BM25's candidates)."""
        vector = question.vector
        if vector is not None and mode == Mode.bm25 and chosen:
            dense = dict(zip(chosen, self.dense_scores(np.asarray(chosen), vector).tolist(), strict=True))
        missing = [row for row in chosen if row not in lexical]
        if missing and len(question.terms.ids):
            lexical = dict(lexical)
            lexical.update(zip(missing, self.bm25_scores(np.asarray(missing), question.terms).tolist(), strict=True))
        return dense, lexical

    def _answer_sentences(
        self, question: Question, rows: Sequence[int], known: SentenceFeatures | None
    ) -> dict[int, Span]:
        """The answering sentence of each passage row, all rows scored in one pass (with the features the
        second stage computed, when it did)."""
        if not rows:
            return {}
        features = (known.of(rows) if known is not None else None) or self._features(question, rows)
        scores = features.scores(self.config.highlight_weights)
        answers, at = {}, 0
        for row, length in zip(rows, features.lengths.tolist(), strict=True):
            if length:
                best = int(features.sentences[at + int(np.argmax(scores[at : at + length]))])
                answers[row] = self.view.sentence_span(best)
            at += length
        return answers

    def _hit(
        self,
        rank: int,
        row: int,
        fused: dict[int, float],
        dense: dict[int, float],
        lexical: dict[int, float],
        answers: dict[int, Span],
        folded: dict[int, list[int]],
    ) -> Hit:
        view = self.view
        document = view.passage_document(row)
        passage = view.passage_span(row)
        best = answers.get(row, passage)
        return Hit(
            rank=rank,
            score=fused[row],
            reference=self._reference(row),
            text=document.text[passage.start : passage.end],
            highlight=best,
            highlight_text=document.text[best.start : best.end],
            dense=dense.get(row, 0.0),
            bm25=lexical.get(row, 0.0),
            fused=fused[row],
            duplicates=tuple(self._reference(r) for r in folded.get(row, [])),
        )

    def _reference(self, row: int) -> Reference:
        document = self.view.passage_document(row)
        span = self.view.passage_span(row)
        layout = document.layout
        if layout is None:
            return Reference(document.doc_id, document.title, document.source, span.start, span.end)
        pages = layout.page_range(span.start, span.end)
        return Reference(
            document.doc_id,
            document.title,
            document.source,
            span.start,
            span.end,
            page=pages[0] if pages else None,
            page_end=pages[1] if pages else None,
            section=layout.section_at(span.start),
        )

    def _find_facts(self, fact: SentenceFact, sentence_rows: np.ndarray) -> list[bool]:
        view = self.view
        found = []
        for row in sentence_rows.tolist():
            text = view.documents[view.sentence_docs[row]].text
            span = view.sentence_span(row)
            if fact == HEADING:
                line = line_of(text, span)
                found.append(reads_as_headline(text[line.start : line.end]))
            else:
                found.append(has_answer_kind(text[span.start : span.end], AnswerKind(fact)))
        return found

    def _distinct(self, ordered: Sequence[int], k: int) -> tuple[list[int], dict[int, list[int]]]:
        """The first `k` rows that are distinct evidence, and for each the duplicates folded into it.

        A passage that mostly repeats a better one of the same document (overlapping passages) is skipped;
        a near-identical passage of another document (a syndicated story) is folded into the better one,
        so the top k shows distinct evidence and the copies stay reachable.
        """
        view, config = self.view, self.config
        chosen: list[int] = []
        folded: dict[int, list[int]] = {}
        words: dict[int, set[str]] = {}
        copies = _Copies(view, ordered) if config.copy_similarity <= 1 else None
        for row in ordered:
            span = view.passage_span(row)
            doc = view.passage_docs[row]
            if any(
                view.passage_docs[other] == doc
                and overlap_fraction(span, view.passage_span(other)) > config.duplicate_overlap
                for other in chosen
            ):
                continue
            original = self._copy_of(row, chosen, words, copies) if copies is not None else None
            if original is not None:
                folded.setdefault(original, []).append(row)
                continue
            chosen.append(row)
            if copies is not None:
                copies.choose(row)
            if len(chosen) == k:
                break
        return chosen, folded

    def _copy_of(self, row: int, chosen: Sequence[int], words: dict[int, set[str]], copies: _Copies) -> int | None:
        """The chosen row of another document that `row` nearly repeats word for word, if any."""
        view, config = self.view, self.config
        for other in copies.alike(row):  # cheap filter first: copies embed alike
            if view.passage_docs[other] == view.passage_docs[row]:
                continue
            for r in (row, other):
                if r not in words:
                    words[r] = set(view.passage_text(r).lower().split())
            union = len(words[row] | words[other])
            if union and len(words[row] & words[other]) / union >= config.copy_similarity:
                return other
        return None


class _Copies:
    """The vectors of a search's ranked rows, read once, to find which chosen rows a row embeds alike."""

    def __init__(self, view: View, ordered: Sequence[int]) -> None:
        self._position = {row: i for i, row in enumerate(ordered)}
        self._vectors = view.passage_vectors.take(np.asarray(ordered, dtype=np.int64))
        self._chosen: list[int] = []

    def choose(self, row: int) -> None:
        self._chosen.append(row)

    def alike(self, row: int) -> list[int]:
        """The chosen rows whose vectors are within `COPY_COSINE` of `row`'s, in the order they were chosen."""
        if not self._chosen:
            return []
        at = [self._position[r] for r in self._chosen]
        cosines = self._vectors[at] @ self._vectors[self._position[row]]
        return [r for r, c in zip(self._chosen, cosines.tolist(), strict=True) if c >= COPY_COSINE]
