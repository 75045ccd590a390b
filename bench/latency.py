"""Latency: HTTP `/search` under 1, 8 and 32 clients beside the floor (bare encode + FAISS, in process)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import faiss
import numpy as np

from bench.common import LatencySummary, load, percentile
from indexer.model.embedding import resolve_model
from indexer.store.view import View


def bare_floor(view: View, model: str, questions: Sequence[str], repeats: int) -> dict[str, float]:
    """Median milliseconds of a bare `SentenceTransformer.encode` of one question, and of encode + FAISS search
    (a flat index of the view's passage vectors)."""
    from sentence_transformers import SentenceTransformer

    index = faiss.IndexFlatIP(view.dimension)
    index.add(np.ascontiguousarray(view.passage_vectors.matrix()))
    encoder = SentenceTransformer(resolve_model(model), device="cpu")
    encoder.encode(questions[0])
    encode_times, total_times = [], []
    for i in range(repeats):
        question = questions[i % len(questions)]
        started = time.perf_counter()
        vector = encoder.encode(question, normalize_embeddings=True)
        encoded = time.perf_counter()
        index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), 5)
        done = time.perf_counter()
        encode_times.append(encoded - started)
        total_times.append(done - started)
    return {"encode_ms": percentile(encode_times, 50) * 1000, "encode_search_ms": percentile(total_times, 50) * 1000}


def http_load(
    base_url: str, path: str, params: Sequence[dict[str, str | int]], levels: Sequence[int], requests_per_client: int
) -> dict[int, LatencySummary]:
    """Latency summary at each concurrency level (requests scale with the clients, 500 to 2000)."""
    return {
        clients: load(f"{base_url}{path}", params, clients, max(500, min(2000, requests_per_client * clients)))
        for clients in levels
    }
