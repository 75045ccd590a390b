"""BM25 over a handful of texts for unit tests: Citeline's analysis and scoring formula, no index needed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from indexer.text.lexical import QUESTION_WORDS, Analyzer, BM25Config
from service.search.retrieval import bm25


def bm25_scores(
    texts: Sequence[str], question: str, config: BM25Config, skip_question_words: bool = True
) -> np.ndarray:
    """Lucene BM25 of each text for the question, as the search scores passages."""
    analyzer = Analyzer(config)
    documents = [analyzer.terms(t) for t in texts]
    terms = analyzer.terms(question, QUESTION_WORDS if skip_question_words else frozenset())
    distinct = list(dict.fromkeys(terms))
    n = len(documents)
    df = [sum(term in d for d in documents) for term in distinct]
    idf = np.array([math.log1p((n - f + 0.5) / (f + 0.5)) if f else 0.0 for f in df])
    weights = idf * np.array([terms.count(t) for t in distinct], dtype=np.float64)
    tf = np.array([[d.count(t) for t in distinct] for d in documents], dtype=np.float64).reshape(n, len(distinct))
    lengths = np.array([len(d) for d in documents], dtype=np.float64)
    return bm25(tf, lengths, float(lengths.mean()) if n else 0.0, weights, config.k1, config.b)
