"""The plain methods Citeline's modes must not lose to on a document-level set (issue #21).

- BM25 over whole documents, title and text, with bm25s's defaults (Lucene's BM25, k1 1.5, b 0.75, English
  stopwords) and the English Snowball stemmer.
- The embedding model over whole documents: one vector of title + text (the model reads what fits its
  window), cosine to the question's vector.

Both rank documents, judged like `evaluate` judges Citeline's (`judge_beir`'s gains, `summarize`'s means).
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer

from indexer.model.embedding import Embedder
from indexer.text.documents import Document
from service.evaluation.evaluate import Dataset
from service.evaluation.measures import Judged, summarize

DEPTH = 100
_VECTORS: dict[tuple[int, int], np.ndarray] = {}


def document_text(document: Document) -> str:
    return f"{document.title}\n{document.text}" if document.title else document.text


def judged(ranked: Sequence[Sequence[str]], dataset: Dataset) -> dict[str, float]:
    """`summarize` of document rankings, one per query of `dataset`."""
    return summarize(
        [
            Judged([q.relevant.get(d, 0.0) for d in docs if d != q.query_id], list(q.relevant.values()))
            for q, docs in zip(dataset.queries, ranked, strict=True)
        ]
    )


def plain_bm25(documents: Sequence[Document], datasets: Sequence[Dataset]) -> list[dict[str, float]]:
    """Whole-document BM25 (bm25s defaults, stemmed) over `documents`, for each dataset."""
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([document_text(d) for d in documents], stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    ids = [d.doc_id for d in documents]
    results = []
    for dataset in datasets:
        tokens = bm25s.tokenize([q.text for q in dataset.queries], stemmer=stemmer, show_progress=False)
        rows, _ = retriever.retrieve(tokens, k=min(DEPTH, len(ids)), show_progress=False)
        results.append(judged([[ids[r] for r in row] for row in rows.tolist()], dataset))
    return results


def plain_dense(
    documents: Sequence[Document], datasets: Sequence[Dataset], embedder: Embedder
) -> list[dict[str, float]]:
    """One vector per document (title + text) by the collection's model; cosine to each question's vector."""
    key = (id(documents), len(documents))
    if key not in _VECTORS:  # halves that share a collection share its vectors
        _VECTORS[key] = embedder.encode([document_text(d) for d in documents])
    vectors = _VECTORS[key]
    ids = [d.doc_id for d in documents]
    results = []
    for dataset in datasets:
        queries = embedder.encode_queries([q.text for q in dataset.queries])
        scores = queries @ vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
        results.append(judged([[ids[r] for r in row] for row in order.tolist()], dataset))
    return results
