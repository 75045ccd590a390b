"""The indexing pipeline: documents → chunks → vectors + BM25 → a new snapshot, reusing unchanged work."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.chunking import Chunk, ChunkerConfig, chunk_document, clip_title, embedding_text
from indexer.documents import Document
from indexer.embedding import Embedder
from indexer.lexical import BM25Config, LexicalIndex
from indexer.sentences import normalize_whitespace
from indexer.snapshot import Snapshot, SnapshotError, load_snapshot, write_snapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildReport:
    """What one indexing run did."""

    snapshot: Path
    documents: int
    chunks: int
    embedded_chunks: int
    reused_documents: int
    removed_documents: int
    seconds: float


def _reusable(index_dir: Path, embedder: Embedder, chunker: ChunkerConfig) -> Snapshot | None:
    """The current snapshot if its chunks and vectors can be reused by this build, else None."""
    try:
        previous = load_snapshot(index_dir)
    except SnapshotError:
        return None
    manifest = previous.manifest
    if manifest.model.fingerprint != embedder.info.fingerprint or manifest.chunker != chunker:
        logger.info("index rebuilt from scratch: model or chunker settings changed")
        return None
    return previous


def chunk_texts(documents: Sequence[Document], chunks: Sequence[Chunk], embedder: Embedder) -> list[str]:
    """The text embedded for each chunk: title line + normalised passage."""
    by_id = {d.doc_id: d for d in documents}
    titles = {d.doc_id: clip_title(d.title, embedder.token_counter) for d in documents}
    return [embedding_text(titles[c.doc_id], by_id[c.doc_id].text[c.start : c.end]) for c in chunks]


def build_index(
    documents: Sequence[Document],
    index_dir: Path,
    embedder: Embedder,
    chunker: ChunkerConfig | None = None,
    bm25: BM25Config | None = None,
    show_progress: bool = True,
) -> BuildReport:
    """Index `documents` into a new snapshot of `index_dir`; unchanged documents keep their vectors."""
    started = time.perf_counter()
    chunker = chunker or ChunkerConfig(token_limit=embedder.token_limit)
    bm25 = bm25 or BM25Config()
    if chunker.token_limit > embedder.token_limit:
        raise ValueError(f"token_limit {chunker.token_limit} exceeds the model's limit {embedder.token_limit}")
    previous = _reusable(index_dir, embedder, chunker)
    old_hashes = previous.manifest.documents if previous else {}
    old_rows = previous.chunk_rows_by_doc() if previous else {}

    chunks: list[Chunk] = []
    pending: list[int] = []  # positions in `chunks` that need embedding
    reused_vectors: list[np.ndarray] = []
    reused_positions: list[int] = []
    reused_documents = 0
    for document in tqdm(documents, desc="chunking", unit="doc", disable=not show_progress):
        if previous is not None and old_hashes.get(document.doc_id) == document.content_hash:
            rows = np.asarray(old_rows.get(document.doc_id, []), dtype=np.int64)
            reused_positions.extend(range(len(chunks), len(chunks) + len(rows)))
            chunks.extend(previous.chunk(int(r)) for r in rows)
            reused_vectors.append(previous.vectors(rows))
            reused_documents += 1
            continue
        new_chunks = chunk_document(document, embedder.token_counter, chunker)
        pending.extend(range(len(chunks), len(chunks) + len(new_chunks)))
        chunks.extend(new_chunks)

    removed = len(set(old_hashes) - {d.doc_id for d in documents})
    if previous is not None and not pending and list(documents) == previous.documents:
        logger.info("index is up to date: nothing to embed or remove")
        return BuildReport(
            previous.path, len(documents), len(chunks), 0, reused_documents, 0, time.perf_counter() - started
        )

    texts = chunk_texts(documents, chunks, embedder)
    documents_by_id = {d.doc_id: d for d in documents}
    vectors = np.zeros((len(chunks), embedder.info.dimension), dtype=np.float32)
    if reused_positions:
        vectors[reused_positions] = np.vstack(reused_vectors)
    if pending:
        logger.info("embedding %d chunks", len(pending))
        vectors[pending] = embedder.encode([texts[i] for i in pending], show_progress=show_progress)
    # BM25 sees the passage alone: a title repeated in every chunk of a document would skew its term statistics.
    lexical = LexicalIndex.build(
        [normalize_whitespace(documents_by_id[c.doc_id].text[c.start : c.end]) for c in chunks], bm25
    )
    path = write_snapshot(index_dir, list(documents), chunks, vectors, embedder.info, chunker, bm25, lexical)
    report = BuildReport(
        snapshot=path,
        documents=len(documents),
        chunks=len(chunks),
        embedded_chunks=len(pending),
        reused_documents=reused_documents,
        removed_documents=removed,
        seconds=time.perf_counter() - started,
    )
    logger.info("index written: %s", report)
    return report
