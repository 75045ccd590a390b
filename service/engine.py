"""The loaded state of a running service: the encoder and the current snapshot, validated together."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss

from indexer.build import build_index
from indexer.chunking import ChunkerConfig
from indexer.documents import load_documents
from indexer.embedding import Embedder
from indexer.encoders import index_encoder_cache
from indexer.snapshot import Snapshot, SnapshotError, load_snapshot
from service.retrieval import Hit, Mode, Retriever
from service.settings import Settings

logger = logging.getLogger(__name__)


class ModelMismatchError(SnapshotError):
    """The index was embedded with another model than the one this process runs."""


def check_model(snapshot: Snapshot, embedder: Embedder, index_dir: Path) -> None:
    """Refuse to serve an index whose vectors come from another model (answers would be silently wrong)."""
    built_with = snapshot.manifest.model
    if built_with.fingerprint != embedder.info.fingerprint or built_with.dimension != embedder.info.dimension:
        raise ModelMismatchError(
            f"index at {index_dir} was built with model {built_with.name!r} ({built_with.path}, "
            f"fingerprint {built_with.fingerprint[:12]}); this server runs {embedder.info.name!r} "
            f"({embedder.info.path}, fingerprint {embedder.info.fingerprint[:12]}): re-index, "
            f"or set CITELINE_MODEL={built_with.path}"
        )


def use_one_search_thread() -> None:
    """One OpenMP thread for FAISS: a single question's search over a flat index is faster without a team.

    Waking a team of OpenMP threads costs more than the search itself, and far more when other work holds
    the cores (rough, 2 shared cores: 20k-vector flat search 1.2 ms on one thread, 26 ms on two).
    """
    faiss.omp_set_num_threads(1)


def load_embedder(settings: Settings) -> Embedder:
    """The model on the configured encoder; ONNX exports are cached in the index directory."""
    return Embedder(
        settings.model,
        batch_size=settings.batch_size,
        encoder=settings.encoder,
        cache_dir=index_encoder_cache(settings.index),
        threads=settings.threads,
    )


def chunker_config(settings: Settings, embedder: Embedder) -> ChunkerConfig:
    """Chunker settings for this model: the target size is capped by the model's token limit."""
    return ChunkerConfig(
        chunk_tokens=min(settings.chunk_tokens, embedder.token_limit),
        overlap_sentences=settings.overlap_sentences,
        token_limit=embedder.token_limit,
    )


def index_sources(settings: Settings, embedder: Embedder, show_progress: bool = True) -> None:
    """Bring the index up to date with `settings.sources` (only new or changed documents are embedded)."""
    documents = load_documents(settings.source_list())
    report = build_index(
        documents, settings.index, embedder, chunker_config(settings, embedder), show_progress=show_progress
    )
    logger.info(
        "indexed %d documents (%d chunks, %d embedded, %d reused, %d removed) in %.1fs",
        report.documents,
        report.chunks,
        report.embedded_chunks,
        report.reused_documents,
        report.removed_documents,
        report.seconds,
    )


class Engine:
    """One encoder plus one loaded snapshot; `search` is safe to call from many threads."""

    def __init__(self, embedder: Embedder, snapshot: Snapshot, index_dir: Path) -> None:
        check_model(snapshot, embedder, index_dir)
        self.embedder = embedder
        self.snapshot = snapshot
        self.index_dir = index_dir
        self.retriever = Retriever(snapshot, embedder.encode_query)
        self.chunk_counts = {doc_id: len(rows) for doc_id, rows in snapshot.chunk_rows_by_doc().items()}

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> Engine:
        """Load the model and the index named by `settings`, indexing `settings.sources` first if any."""
        use_one_search_thread()
        if settings.source_list():
            embedder = embedder or load_embedder(settings)
            index_sources(settings, embedder)
            return cls(embedder, load_snapshot(settings.index), settings.index)
        # The snapshot first: a missing index is reported before any model loading or export.
        snapshot = load_snapshot(settings.index)
        return cls(embedder or load_embedder(settings), snapshot, settings.index)

    def search(self, query: str, k: int, mode: Mode) -> list[Hit]:
        return self.retriever.search(query, k, mode)
