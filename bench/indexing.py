"""Indexing speed: `citeline index` (build_index) beside a bare `model.encode` of the same passages."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from indexer.build import build_index
from indexer.chunking import clip_title, embedding_text
from indexer.documents import load_documents
from indexer.embedding import Embedder, resolve_model
from indexer.snapshot import load_snapshot
from service.engine import chunker_config
from service.settings import Settings


def index_corpus(corpus: Path, index: Path, embedder: Embedder, rebuild: bool) -> dict[str, float]:
    """Build `index` from `corpus` from scratch (when `rebuild` or missing); its size and speed."""
    if rebuild and index.exists():
        shutil.rmtree(index)
    documents = load_documents([corpus])
    started = time.perf_counter()
    report = build_index(documents, index, embedder, chunker_config(Settings(), embedder), show_progress=False)
    seconds = time.perf_counter() - started
    snapshot = load_snapshot(index)
    return {
        "documents": float(report.documents),
        "chunks": float(snapshot.num_chunks),
        "sentences": float(len(snapshot.sentence_docs)),
        "embedded_chunks": float(report.embedded_chunks),
        "seconds": seconds,
        "passages_per_s": snapshot.num_chunks / seconds if report.embedded_chunks else float("nan"),
    }


def bare_encode(index: Path, embedder: Embedder, batch_size: int = 64) -> dict[str, float]:
    """Seconds and passages/s of a bare `SentenceTransformer.encode` of the index's passage texts."""
    from sentence_transformers import SentenceTransformer

    snapshot = load_snapshot(index)
    texts = []
    for row in range(snapshot.num_chunks):
        document = snapshot.documents[snapshot.chunk_docs[row]]
        texts.append(embedding_text(clip_title(document.title, embedder.token_counter), snapshot.chunk_text(row)))
    model = SentenceTransformer(resolve_model(embedder.name), device="cpu")
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    seconds = time.perf_counter() - started
    return {"passages": float(len(texts)), "seconds": seconds, "passages_per_s": len(texts) / seconds}
