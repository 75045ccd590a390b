"""The on-disk index: immutable snapshot directories described by `manifest.json`, swapped atomically.

Layout of an index directory:

    INDEX/CURRENT                    name of the live snapshot (replaced atomically)
    INDEX/snapshots/<name>/manifest.json
                          documents.jsonl   original text, title, source, metadata, content hash
                          chunks.npz        per chunk: document row, start, end (offsets into the text)
                          dense.faiss       FAISS inner-product index of the normalised chunk vectors
                          bm25/             bm25s index of the same chunks
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.chunking import Chunk, ChunkerConfig
from indexer.documents import Document
from indexer.embedding import ModelInfo
from indexer.lexical import BM25Config, LexicalIndex

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
SNAPSHOTS_DIR = "snapshots"
KEEP_SNAPSHOTS = 2


class SnapshotError(RuntimeError):
    """An index directory is missing, incomplete or of another format."""


@dataclass(frozen=True)
class Manifest:
    """Everything needed to trust and reuse a snapshot."""

    format_version: int
    created_at: str
    model: ModelInfo
    chunker: ChunkerConfig
    bm25: BM25Config
    counts: dict[str, int]
    documents: dict[str, str] = field(default_factory=dict)  # doc_id -> content hash

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw: dict[str, Any] = json.loads(text)
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise SnapshotError(f"index format version {version} is not supported (this build reads {FORMAT_VERSION})")
        return cls(
            format_version=version,
            created_at=raw["created_at"],
            model=ModelInfo(**raw["model"]),
            chunker=ChunkerConfig(**raw["chunker"]),
            bm25=BM25Config(**raw["bm25"]),
            counts=dict(raw["counts"]),
            documents=dict(raw["documents"]),
        )


@dataclass
class Snapshot:
    """A loaded snapshot: all state a search needs, read-only once loaded."""

    path: Path
    manifest: Manifest
    documents: list[Document]
    chunk_docs: np.ndarray  # int32 row in `documents` for each chunk
    chunk_starts: np.ndarray  # int64
    chunk_ends: np.ndarray  # int64
    dense: faiss.Index
    lexical: LexicalIndex
    doc_rows: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.doc_rows = {d.doc_id: row for row, d in enumerate(self.documents)}

    @property
    def num_chunks(self) -> int:
        return int(self.chunk_docs.shape[0])

    def chunk(self, row: int) -> Chunk:
        return Chunk(
            self.documents[self.chunk_docs[row]].doc_id, int(self.chunk_starts[row]), int(self.chunk_ends[row])
        )

    def chunk_text(self, row: int) -> str:
        document = self.documents[self.chunk_docs[row]]
        return document.text[self.chunk_starts[row] : self.chunk_ends[row]]

    def chunk_rows_by_doc(self) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = {}
        for row, doc_row in enumerate(self.chunk_docs.tolist()):
            rows.setdefault(self.documents[doc_row].doc_id, []).append(row)
        return rows

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored vectors of the given chunk rows (flat index: exact)."""
        if len(rows) == 0:
            return np.zeros((0, self.dense.d), dtype=np.float32)
        return np.vstack([self.dense.reconstruct(int(r)) for r in rows]).astype(np.float32)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_documents(path: Path, documents: list[Document]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for d in documents:
            record = {
                "doc_id": d.doc_id,
                "title": d.title,
                "source": d.source,
                "metadata": d.metadata,
                "content_hash": d.content_hash,
                "text": d.text,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _read_documents(path: Path) -> list[Document]:
    with path.open(encoding="utf-8") as lines:
        return [
            Document(doc_id=r["doc_id"], text=r["text"], title=r["title"], source=r["source"], metadata=r["metadata"])
            for r in map(json.loads, lines)
        ]


def write_snapshot(
    index_dir: Path,
    documents: list[Document],
    chunks: list[Chunk],
    vectors: np.ndarray,
    model: ModelInfo,
    chunker: ChunkerConfig,
    bm25: BM25Config,
    lexical: LexicalIndex,
) -> Path:
    """Write a complete snapshot to a temporary folder, rename it into place, then point CURRENT at it.

    A crash at any moment leaves CURRENT naming the previous complete snapshot (or no index at all).
    """
    if vectors.shape != (len(chunks), model.dimension):
        raise ValueError(f"vectors shape {vectors.shape} does not match {len(chunks)} chunks x {model.dimension}")
    snapshots = index_dir / SNAPSHOTS_DIR
    snapshots.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC)
    name = created.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]
    staging = snapshots / f".tmp-{name}"
    staging.mkdir()
    try:
        doc_rows = {d.doc_id: row for row, d in enumerate(documents)}
        _write_documents(staging / "documents.jsonl", documents)
        np.savez(
            staging / "chunks.npz",
            doc=np.array([doc_rows[c.doc_id] for c in chunks], dtype=np.int32),
            start=np.array([c.start for c in chunks], dtype=np.int64),
            end=np.array([c.end for c in chunks], dtype=np.int64),
        )
        dense = faiss.IndexFlatIP(model.dimension)
        dense.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(dense, str(staging / "dense.faiss"))
        lexical.save(staging / "bm25")
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            created_at=created.isoformat(),
            model=model,
            chunker=chunker,
            bm25=bm25,
            counts={"documents": len(documents), "chunks": len(chunks)},
            documents={d.doc_id: d.content_hash for d in documents},
        )
        # The manifest goes last: a folder with a manifest is complete.
        (staging / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
        for path in staging.rglob("*"):
            if path.is_file():
                _fsync_path(path)
        final = snapshots / name
        staging.rename(final)
        _fsync_path(snapshots)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer_tmp = index_dir / f".{CURRENT_FILE}.{name}.tmp"
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    _fsync_path(pointer_tmp)
    os.replace(pointer_tmp, index_dir / CURRENT_FILE)
    _fsync_path(index_dir)
    prune_snapshots(index_dir)
    return final


def current_snapshot_path(index_dir: Path) -> Path:
    """Folder of the live snapshot of `index_dir`, or a clear error when there is none."""
    pointer = index_dir / CURRENT_FILE
    if not pointer.is_file():
        raise SnapshotError(f"no index at {index_dir}: build one with `citeline index SOURCE --index {index_dir}`")
    path = index_dir / SNAPSHOTS_DIR / pointer.read_text(encoding="utf-8").strip()
    if not (path / "manifest.json").is_file():
        raise SnapshotError(f"index at {index_dir} points at {path.name}, which is missing or incomplete")
    return path


def read_manifest(index_dir: Path) -> Manifest:
    return Manifest.from_json((current_snapshot_path(index_dir) / "manifest.json").read_text(encoding="utf-8"))


def load_snapshot(index_dir: Path) -> Snapshot:
    """Load the live snapshot of `index_dir` fully into memory."""
    path = current_snapshot_path(index_dir)
    manifest = Manifest.from_json((path / "manifest.json").read_text(encoding="utf-8"))
    documents = _read_documents(path / "documents.jsonl")
    with np.load(path / "chunks.npz") as arrays:
        chunk_docs, starts, ends = arrays["doc"], arrays["start"], arrays["end"]
    dense = faiss.read_index(str(path / "dense.faiss"))
    lexical = LexicalIndex.load(path / "bm25", manifest.bm25)
    if not (dense.ntotal == lexical.num_chunks == len(chunk_docs) == manifest.counts["chunks"]):
        raise SnapshotError(
            f"snapshot {path} is inconsistent: {dense.ntotal} vectors, {lexical.num_chunks} BM25 rows, "
            f"{len(chunk_docs)} chunks, manifest says {manifest.counts['chunks']}"
        )
    return Snapshot(path, manifest, documents, chunk_docs, starts, ends, dense, lexical)


def prune_snapshots(index_dir: Path, keep: int = KEEP_SNAPSHOTS) -> None:
    """Remove old snapshots and abandoned temporary folders, keeping the live one and the newest others."""
    snapshots = index_dir / SNAPSHOTS_DIR
    live = current_snapshot_path(index_dir).name
    for leftover in snapshots.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    complete = sorted((p for p in snapshots.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    for old in [p for p in complete if p.name != live][: max(0, len(complete) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
