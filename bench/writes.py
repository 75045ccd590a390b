"""Write cost: one document added to, and deleted from, collections of about 10k and 100k passages.

The collections replicate a real index's documents, passages and sentences under new ids with random
unit vectors (embedding 100k passages here would take most of an hour; a write re-embeds only the
documents it brings, so the vectors of the others only need to exist). The encoder is the real one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from indexer.chunking import Chunk
from indexer.collection import API_SOURCE
from indexer.documents import Document
from indexer.embedding import Embedder
from indexer.lexical import LexicalIndex
from indexer.sentences import normalize_whitespace
from indexer.snapshot import IndexContent, Snapshot, load_snapshot, write_snapshot
from service.engine import Engine


def replicated_index(template: Snapshot, target_chunks: int, index: Path, seed: int = 0) -> float:
    """Write an index of about `target_chunks` passages made of copies of `template`; returns seconds taken."""
    started = time.perf_counter()
    copies = max(1, round(target_chunks / max(1, template.num_chunks)))
    rng = np.random.default_rng(seed)
    documents: list[Document] = []
    chunks: list[Chunk] = []
    sentences: list[Chunk] = []
    chunk_sentences: list[list[int]] = []
    by_doc_chunks = template.chunk_rows_by_doc()
    by_doc_sentences = template.sentences_by_doc()
    for copy in range(copies):
        for document in template.documents:
            doc_id = f"{document.doc_id}~{copy}"
            documents.append(replace(document, doc_id=doc_id))
            local = {}
            for row in by_doc_sentences.get(document.doc_id, []):
                local[row] = len(sentences)
                sentences.append(Chunk(doc_id, int(template.sentence_starts[row]), int(template.sentence_ends[row])))
            for row in by_doc_chunks.get(document.doc_id, []):
                chunks.append(Chunk(doc_id, int(template.chunk_starts[row]), int(template.chunk_ends[row])))
                chunk_sentences.append([local[int(s)] for s in template.sentence_rows_of(row)])

    def unit(n: int) -> np.ndarray:
        vectors = rng.standard_normal((n, template.manifest.model.dimension)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    content = IndexContent(documents, chunks, unit(len(chunks)), sentences, unit(len(sentences)), chunk_sentences)
    texts = {d.doc_id: d.text for d in documents}
    lexical = LexicalIndex.build(
        [normalize_whitespace(texts[c.doc_id][c.start : c.end]) for c in chunks], template.manifest.bm25
    )
    manifest = template.manifest
    write_snapshot(index, content, manifest.model, manifest.chunker, manifest.bm25, lexical)
    return time.perf_counter() - started


def write_cost(index: Path, embedder: Embedder, repeats: int = 3) -> dict[str, float]:
    """Median seconds of adding one news-sized document and of deleting it again, through the engine."""
    engine = Engine(embedder, load_snapshot(index), index)
    text = (
        "The Syrian Democratic Forces said on Tuesday they had taken the Tabqa dam, 40 km west of Raqqa. "
        "The operation took weeks and was supported by coalition air strikes. "
    ) * 6
    adds, deletes = [], []
    for i in range(repeats):
        document = Document(doc_id=f"bench-write-{i}", text=text, title="Dam taken", source=API_SOURCE)
        started = time.perf_counter()
        engine.add_documents([document])
        adds.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.delete_document(document.doc_id)
        deletes.append(time.perf_counter() - started)
    return {
        "chunks": float(engine.snapshot.num_chunks),
        "add_s": float(np.median(adds)),
        "delete_s": float(np.median(deletes)),
    }
