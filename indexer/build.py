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
from indexer.lexical import BM25Config, LexicalIndex, bm25_texts, document_acronyms
from indexer.sentences import normalize_whitespace, sentence_spans
from indexer.snapshot import (
    IndexContent,
    Snapshot,
    SnapshotError,
    load_snapshot,
    prune_snapshots,
    write_snapshot,
)

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


def _reusable(
    index_dir: Path, embedder: Embedder, chunker: ChunkerConfig, previous: Snapshot | None
) -> Snapshot | None:
    """The current snapshot (`previous`, or loaded) if its chunks and vectors can be reused, else None."""
    if previous is None:
        try:
            previous = load_snapshot(index_dir)
        except SnapshotError:
            return None
    manifest = previous.manifest
    if manifest.model.fingerprint != embedder.info.fingerprint or manifest.chunker != chunker:
        logger.info("index rebuilt from scratch: model or chunker settings changed")
        return None
    return previous


@dataclass
class _DocumentParts:
    """One document's chunks and sentences; vectors are None until embedded (reused ones are set)."""

    document: Document
    chunks: list[Chunk]
    sentences: list[Chunk]
    chunk_sentences: list[list[int]]  # local sentence indices of each chunk
    chunk_vectors: np.ndarray | None = None
    sentence_vectors: np.ndarray | None = None


def _split(document: Document, embedder: Embedder, chunker: ChunkerConfig) -> _DocumentParts:
    chunks = chunk_document(document, embedder.token_counter, chunker)
    local: dict[tuple[int, int], int] = {}
    chunk_sentences = []
    for chunk in chunks:
        spans = sentence_spans(document.text, chunk.start, chunk.end)
        chunk_sentences.append([local.setdefault((s.start, s.end), len(local)) for s in spans])
    sentences = [Chunk(document.doc_id, start, end) for start, end in local]
    return _DocumentParts(document, chunks, sentences, chunk_sentences)


def _reuse(document: Document, previous: Snapshot, chunk_rows: list[int], sentence_rows: list[int]) -> _DocumentParts:
    local = {old: new for new, old in enumerate(sentence_rows)}
    return _DocumentParts(
        document,
        chunks=[previous.chunk(r) for r in chunk_rows],
        sentences=[
            Chunk(document.doc_id, int(previous.sentence_starts[r]), int(previous.sentence_ends[r]))
            for r in sentence_rows
        ],
        chunk_sentences=[[local[int(s)] for s in previous.sentence_rows_of(r)] for r in chunk_rows],
        chunk_vectors=previous.vectors(np.asarray(chunk_rows, dtype=np.int64)),
        sentence_vectors=previous.sentence_matrix[np.asarray(sentence_rows, dtype=np.int64)],
    )


def _embed_missing(parts: list[_DocumentParts], embedder: Embedder, embed_title: bool, show_progress: bool) -> int:
    """Embed the chunks (title line + passage) and sentences of parts that have no vectors yet."""
    todo = [p for p in parts if p.chunk_vectors is None]
    if not todo:
        return 0
    passages = [p.document.text[c.start : c.end] for p in todo for c in p.chunks]
    titles = [
        clip_title(p.document.title, embedder.token_counter) if embed_title else None for p in todo for _ in p.chunks
    ]
    sentences = [normalize_whitespace(p.document.text[s.start : s.end]) for p in todo for s in p.sentences]
    logger.info("embedding %d chunks and %d sentences", len(passages), len(sentences))
    chunk_vectors = embedder.encode(
        [embedding_text(t, x) for t, x in zip(titles, passages, strict=True)], show_progress=show_progress
    )
    sentence_vectors = embedder.encode(sentences, show_progress=show_progress)
    chunk_at, sentence_at = 0, 0
    for part in todo:
        part.chunk_vectors = chunk_vectors[chunk_at : chunk_at + len(part.chunks)]
        part.sentence_vectors = sentence_vectors[sentence_at : sentence_at + len(part.sentences)]
        chunk_at += len(part.chunks)
        sentence_at += len(part.sentences)
    return len(passages)


def _assemble(parts: list[_DocumentParts], dimension: int) -> IndexContent:
    chunks: list[Chunk] = []
    sentences: list[Chunk] = []
    chunk_sentences: list[list[int]] = []
    for part in parts:
        offset = len(sentences)
        chunks.extend(part.chunks)
        sentences.extend(part.sentences)
        chunk_sentences.extend([offset + i for i in rows] for rows in part.chunk_sentences)
    empty = np.zeros((0, dimension), dtype=np.float32)
    return IndexContent(
        documents=[p.document for p in parts],
        chunks=chunks,
        chunk_vectors=np.vstack([empty] + [p.chunk_vectors for p in parts if p.chunk_vectors is not None]),
        sentences=sentences,
        sentence_vectors=np.vstack([empty] + [p.sentence_vectors for p in parts if p.sentence_vectors is not None]),
        chunk_sentences=chunk_sentences,
    )


def build_index(
    documents: Sequence[Document],
    index_dir: Path,
    embedder: Embedder,
    chunker: ChunkerConfig | None = None,
    bm25: BM25Config | None = None,
    show_progress: bool = True,
    previous: Snapshot | None = None,
) -> BuildReport:
    """Index `documents` into a new snapshot of `index_dir`; unchanged documents keep their vectors.

    `previous` is the live snapshot when the caller has it loaded already (a running service), so it
    is not read from disk again.
    """
    started = time.perf_counter()
    chunker = chunker or ChunkerConfig(token_limit=embedder.token_limit)
    bm25 = bm25 or BM25Config()
    if chunker.token_limit > embedder.token_limit:
        raise ValueError(f"token_limit {chunker.token_limit} exceeds the model's limit {embedder.token_limit}")
    previous = _reusable(index_dir, embedder, chunker, previous)
    old_hashes = previous.manifest.documents if previous else {}
    old_chunks = previous.chunk_rows_by_doc() if previous else {}
    old_sentences = previous.sentences_by_doc() if previous else {}

    parts: list[_DocumentParts] = []
    for document in tqdm(documents, desc="chunking", unit="doc", disable=not show_progress):
        if previous is not None and old_hashes.get(document.doc_id) == document.content_hash:
            parts.append(
                _reuse(document, previous, old_chunks.get(document.doc_id, []), old_sentences.get(document.doc_id, []))
            )
        else:
            parts.append(_split(document, embedder, chunker))
    reused_documents = sum(1 for p in parts if p.chunk_vectors is not None)
    removed = len(set(old_hashes) - {d.doc_id for d in documents})
    unchanged = list(documents) == (previous.documents if previous else None)
    if previous is not None and reused_documents == len(parts) and unchanged and previous.manifest.bm25 == bm25:
        logger.info("index is up to date: nothing to embed or remove")
        prune_snapshots(index_dir)  # still clear what writers killed mid-write left behind
        return BuildReport(
            previous.path, len(documents), previous.num_chunks, 0, reused_documents, 0, time.perf_counter() - started
        )

    embedded = _embed_missing(parts, embedder, chunker.embed_title, show_progress)
    content = _assemble(parts, embedder.info.dimension)
    # BM25 sees the passage alone: a title repeated in every chunk of a document would skew its term statistics.
    rows = {d.doc_id: row for row, d in enumerate(content.documents)}
    spans = ((rows[c.doc_id], c.start, c.end) for c in content.chunks)
    texts = [d.text for d in content.documents]
    acronyms = document_acronyms(texts, bm25)  # once, for the passages here and the sentences in the snapshot
    lexical = LexicalIndex.build(bm25_texts(texts, spans, bm25, acronyms), bm25)
    path = write_snapshot(index_dir, content, embedder.info, chunker, bm25, lexical, acronyms)
    report = BuildReport(
        snapshot=path,
        documents=len(documents),
        chunks=len(content.chunks),
        embedded_chunks=embedded,
        reused_documents=reused_documents,
        removed_documents=removed,
        seconds=time.perf_counter() - started,
    )
    logger.info("index written: %s", report)
    return report
