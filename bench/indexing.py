"""Indexing speed: `citeline index` (sync_index) beside a bare `model.encode` of the same passages."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from indexer.build import sync_index
from indexer.model.embedding import Embedder, resolve_model
from indexer.store.store import Store
from indexer.text.chunking import clip_title, embedding_text
from indexer.text.documents import load_documents
from service.settings import Settings
from service.startup import chunker_config


def index_corpus(corpus: Path, index: Path, embedder: Embedder, rebuild: bool) -> dict[str, float]:
    """Build `index` from `corpus` from scratch (when `rebuild` or missing); its size and speed."""
    if rebuild and index.exists():
        shutil.rmtree(index)
    documents = load_documents([corpus])
    started = time.perf_counter()
    report = sync_index(documents, index, embedder, chunker_config(Settings(), embedder), show_progress=False)
    seconds = time.perf_counter() - started
    store = Store.open(index)
    try:
        passages, sentences = store.records.count("passages"), store.records.count("sentences")
    finally:
        store.close()
    return {
        "documents": float(report.documents),
        "chunks": float(passages),
        "sentences": float(sentences),
        "embedded_passages": float(report.embedded_passages),
        "seconds": seconds,
        "passages_per_s": passages / seconds if report.embedded_passages else float("nan"),
    }


def bare_encode(index: Path, embedder: Embedder, batch_size: int = 64, sample: int | None = None) -> dict[str, float]:
    """Seconds and passages/s of a bare `SentenceTransformer.encode` of the index's passage texts (of a fixed
    random `sample` of them when given)."""
    from sentence_transformers import SentenceTransformer

    store = Store.open(index)
    try:
        view = store.load()
    finally:
        store.close()
    rows: Sequence[int] = range(view.num_passages)
    if sample is not None and sample < view.num_passages:
        rows = sorted(np.random.default_rng(0).choice(view.num_passages, sample, replace=False).tolist())
    texts = []
    for row in rows:
        title = clip_title(view.passage_document(row).title, embedder.token_counter, embedder.token_limit)
        texts.append(embedding_text(title, view.passage_text(row)))
    model = SentenceTransformer(resolve_model(embedder.name), device="cpu")
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    seconds = time.perf_counter() - started
    return {"passages": float(len(texts)), "seconds": seconds, "passages_per_s": len(texts) / seconds}
