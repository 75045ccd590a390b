"""Reading indexes of formats 1 and 2 (whole snapshots named by CURRENT), for migration only.

Layout of those formats:

    INDEX/CURRENT                     name of the live snapshot
    INDEX/snapshots/<name>/manifest.json   format version, model, chunker, BM25 settings, counts, and (format 2)
                                           the size and SHA-256 of every other file
                          documents.jsonl  original text, title, source, metadata, content hash
                          chunks.npz       per passage: document row, start, end, its sentences (CSR)
                          sentences.npz    per sentence: document row, start, end
                          dense.faiss, sentences.faiss   flat FAISS indexes of the passage and sentence vectors
                          bm25/            a bm25s index (not read: the new BM25 index is built from the text)

Every file read is checked against the manifest's checksums first (format 2).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.errors import CitelineError
from indexer.model.embedding import ModelInfo
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import Document

LEGACY_VERSIONS = (1, 2)
CURRENT_FILE = "CURRENT"
SNAPSHOTS_DIR = "snapshots"
MANIFEST_FILE = "manifest.json"


class LegacyIndexError(CitelineError, RuntimeError):
    """A format 1 or 2 index is damaged: a file is missing, truncated, altered or unreadable."""


@dataclass(frozen=True)
class LegacyIndex:
    """Everything of an old snapshot that a migration keeps."""

    path: Path
    format_version: int
    model: ModelInfo
    chunker: ChunkerConfig
    bm25: dict[str, Any]
    documents: list[Document]
    passage_docs: np.ndarray
    passage_starts: np.ndarray
    passage_ends: np.ndarray
    passage_sentence_ptr: np.ndarray
    passage_sentence_rows: np.ndarray
    sentence_docs: np.ndarray
    sentence_starts: np.ndarray
    sentence_ends: np.ndarray
    passage_vectors: np.ndarray
    sentence_vectors: np.ndarray


def _vectors(data: bytes) -> np.ndarray:
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as arrays:
        return {name: arrays[name] for name in arrays.files}


def _documents(data: bytes) -> list[Document]:
    # Split on b"\n" only: JSON escapes it inside strings, while U+2028 and friends stay raw.
    records = [json.loads(line) for line in data.split(b"\n") if line.strip()]
    return [
        Document(doc_id=r["doc_id"], text=r["text"], title=r["title"], source=r["source"], metadata=r["metadata"])
        for r in records
    ]


def read_legacy(index_dir: Path) -> LegacyIndex:
    """The live snapshot of a format 1 or 2 index, every file checked against its manifest."""
    try:
        name = (index_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise LegacyIndexError(f"{index_dir / CURRENT_FILE}: cannot be read ({error})") from None
    folder = index_dir / SNAPSHOTS_DIR / name
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LegacyIndexError(f"{folder / MANIFEST_FILE}: cannot be read ({error})") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version not in LEGACY_VERSIONS:
        raise LegacyIndexError(f"{folder / MANIFEST_FILE}: format version {version!r} is not 1 or 2")
    files = manifest.get("files", {})

    def read(file: str) -> bytes:
        try:
            data = (folder / file).read_bytes()
        except OSError:
            raise LegacyIndexError(f"{folder / file}: is missing or unreadable") from None
        expected = files.get(file)
        if expected is not None and (
            len(data) != int(expected["size"]) or hashlib.sha256(data).hexdigest() != expected["sha256"]
        ):
            raise LegacyIndexError(f"{folder / file}: does not match its checksum in the manifest (damaged)")
        return data

    try:
        chunks = _arrays(read("chunks.npz"))
        sentences = _arrays(read("sentences.npz"))
        return LegacyIndex(
            path=folder,
            format_version=int(version),
            model=ModelInfo(**manifest["model"]),
            chunker=ChunkerConfig.from_stored(manifest["chunker"]),
            bm25=dict(manifest["bm25"]),
            documents=_documents(read("documents.jsonl")),
            passage_docs=chunks["doc"],
            passage_starts=chunks["start"],
            passage_ends=chunks["end"],
            passage_sentence_ptr=chunks["sentence_ptr"],
            passage_sentence_rows=chunks["sentence_rows"],
            sentence_docs=sentences["doc"],
            sentence_starts=sentences["start"],
            sentence_ends=sentences["end"],
            passage_vectors=_vectors(read("dense.faiss")),
            sentence_vectors=_vectors(read("sentences.faiss")),
        )
    except LegacyIndexError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise LegacyIndexError(f"{folder}: cannot be parsed ({type(error).__name__}: {error})") from None
