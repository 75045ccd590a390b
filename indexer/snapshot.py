"""The on-disk index: immutable snapshot directories described by `manifest.json`, swapped atomically.

Layout of an index directory:

    INDEX/CURRENT                    name of the live snapshot (replaced atomically)
    INDEX/snapshots/<name>/manifest.json
                          documents.jsonl   original text, title, source, metadata, content hash
                          chunks.npz        per chunk: document row, start, end (offsets into the text),
                                            and its sentences (CSR: sentence_ptr, sentence_rows)
                          sentences.npz     per sentence: document row, start, end, and its BM25
                                            vocabulary ids (CSR: term_ptr, term_ids) for the highlight
                          dense.faiss       FAISS inner-product index of the normalised chunk vectors
                          sentences.faiss   the same for the sentences of the chunks
                          bm25/             bm25s index of the same chunks
    INDEX/encoders/<fingerprint[:16]>/      ONNX export of the model (a cache: indexer/encoders.py)

Since format 2 the manifest records the SHA-256 and size of every other file of its snapshot, and a load
checks each file as it reads it: a missing, truncated or altered file fails the load with one line naming
it. Format 1 snapshots (no checksums) still load, with a warning; any write or re-index adds them.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import faiss
import numpy as np

from indexer.chunking import Chunk, ChunkerConfig
from indexer.documents import Document
from indexer.embedding import ModelInfo
from indexer.lexical import BM25Config, LexicalIndex, bm25_texts

FORMAT_VERSION = 2  # 2: the manifest lists every file's SHA-256 and size
READABLE_VERSIONS = (1, 2)
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
LOCK_FILE = ".write.lock"
SNAPSHOTS_DIR = "snapshots"
KEEP_SNAPSHOTS = 2


logger = logging.getLogger(__name__)
T = TypeVar("T")


class SnapshotError(RuntimeError):
    """An index directory is missing, incomplete or of another format."""


class NoIndexError(SnapshotError):
    """There is no index (no CURRENT pointer) in the directory."""


class SnapshotIntegrityError(SnapshotError):
    """A file of a snapshot is missing, truncated, altered or unreadable, or its manifest is of a newer format."""


@dataclass(frozen=True)
class FileDigest:
    """What a snapshot file must be: its size in bytes and SHA-256."""

    size: int
    sha256: str


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
    files: dict[str, FileDigest] = field(default_factory=dict)  # path in the snapshot -> digest (format >= 2)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; `SnapshotIntegrityError` when it is damaged or newer than this build reads."""
        try:
            raw: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as error:
            raise SnapshotIntegrityError(f"is not valid JSON ({error.msg} at line {error.lineno}): damaged") from None
        if not isinstance(raw, dict):
            raise SnapshotIntegrityError("is not a JSON object: damaged")
        version = raw.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise SnapshotIntegrityError(
                f"index format version {version} is newer than this build reads ({FORMAT_VERSION}): "
                "upgrade citeline, or re-index with this one"
            )
        if version not in READABLE_VERSIONS:
            raise SnapshotIntegrityError(
                f"index format version {version} is not supported (this build reads {READABLE_VERSIONS})"
            )
        try:
            files = {name: FileDigest(int(d["size"]), str(d["sha256"])) for name, d in raw.get("files", {}).items()}
            manifest = cls(
                format_version=version,
                created_at=raw["created_at"],
                model=ModelInfo(**raw["model"]),
                chunker=ChunkerConfig(**raw["chunker"]),
                # older indexes neither kept nor expanded acronyms
                bm25=BM25Config(**{"keep_acronyms": False, "expand_acronyms": False, **raw["bm25"]}),
                counts=dict(raw["counts"]),
                documents=dict(raw["documents"]),
                files=files,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise SnapshotIntegrityError(f"is damaged: missing or malformed field {error}") from None
        if version >= 2 and not files:
            raise SnapshotIntegrityError(f"format {version} lists no file checksums: damaged")
        return manifest


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
    sentence_docs: np.ndarray  # int32
    sentence_starts: np.ndarray  # int64
    sentence_ends: np.ndarray  # int64
    sentence_dense: faiss.Index
    chunk_sentence_ptr: np.ndarray  # int64, len num_chunks + 1: sentences of chunk r are rows[ptr[r]:ptr[r+1]]
    chunk_sentence_rows: np.ndarray  # int64
    sentence_term_ptr: np.ndarray  # int64, len num_sentences + 1: terms of sentence s are ids[ptr[s]:ptr[s+1]]
    sentence_term_ids: np.ndarray  # int64 BM25 vocabulary ids
    doc_rows: dict[str, int] = field(init=False)
    chunk_matrix: np.ndarray = field(init=False)
    sentence_matrix: np.ndarray = field(init=False)
    sentence_chunks: np.ndarray = field(init=False)
    verified_bytes: int = field(init=False, default=0)  # bytes checked against the manifest's checksums

    def __post_init__(self) -> None:
        self.doc_rows = {d.doc_id: row for row, d in enumerate(self.documents)}
        self.chunk_matrix = flat_vectors(self.dense)
        self.sentence_matrix = flat_vectors(self.sentence_dense)
        # First chunk holding each sentence (to map a sentence hit back to a passage).
        owners = np.repeat(np.arange(self.num_chunks), np.diff(self.chunk_sentence_ptr))
        first = np.full(len(self.sentence_docs), -1, dtype=np.int64)
        first[self.chunk_sentence_rows[::-1]] = owners[::-1]
        self.sentence_chunks = first

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
        """Stored vectors of the given chunk rows."""
        return self.chunk_matrix[np.asarray(rows, dtype=np.int64)]

    def sentence_rows_of(self, row: int) -> np.ndarray:
        """Sentence rows of chunk `row`, in text order."""
        return self.chunk_sentence_rows[self.chunk_sentence_ptr[row] : self.chunk_sentence_ptr[row + 1]]

    def sentences_by_doc(self) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = {}
        for row, doc_row in enumerate(self.sentence_docs.tolist()):
            rows.setdefault(self.documents[doc_row].doc_id, []).append(row)
        return rows


def sentence_terms(
    documents: list[Document],
    sentence_docs: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    lexical: LexicalIndex,
    acronyms: Sequence[Mapping[str, str]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each sentence's BM25 vocabulary ids as CSR (ptr, ids): the highlight's term coverage without tokenising.

    `acronyms`: each document's pairs when the caller found them already (`document_acronyms`).
    """
    spans = zip(sentence_docs.tolist(), starts.tolist(), ends.tolist(), strict=True)
    ids = lexical.token_ids_batch(bm25_texts([d.text for d in documents], spans, lexical.config, acronyms))
    ptr = np.cumsum([0] + [len(i) for i in ids], dtype=np.int64)
    return ptr, np.array([t for i in ids for t in i], dtype=np.int64)


def flat_vectors(index: faiss.Index) -> np.ndarray:
    """The vectors of a flat FAISS index as an (n, d) array (a view, no copy)."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    if isinstance(index, faiss.IndexFlat):
        return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    return np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


@dataclass(frozen=True)
class IndexContent:
    """Everything a snapshot stores, in memory, before it is written."""

    documents: list[Document]
    chunks: list[Chunk]
    chunk_vectors: np.ndarray
    sentences: list[Chunk]  # sentence spans, same (doc_id, start, end) shape as chunks
    sentence_vectors: np.ndarray
    chunk_sentences: list[list[int]]  # sentence rows of each chunk


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


def _parse_documents(data: bytes) -> list[Document]:
    # Split on b"\n" only: JSON escapes it inside strings, while U+2028 and friends stay raw.
    records = [json.loads(line) for line in data.split(b"\n") if line.strip()]
    return [
        Document(doc_id=r["doc_id"], text=r["text"], title=r["title"], source=r["source"], metadata=r["metadata"])
        for r in records
    ]


def _parse_faiss(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def file_digest(path: Path, chunk_bytes: int = 1 << 20) -> FileDigest:
    """Size and SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
            size += len(block)
    return FileDigest(size, digest.hexdigest())


def _snapshot_files(folder: Path) -> list[Path]:
    """Every file of a snapshot folder but the manifest, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST_FILE)


class SnapshotReader:
    """Reads a snapshot's files, each checked against the manifest's size and SHA-256 as it is read.

    Each file is read from disk once; the bytes checked are the bytes parsed. Every failure is one
    `SnapshotIntegrityError` line naming the file and the problem.
    """

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest
        self.checked: dict[str, int] = {}  # file -> bytes verified

    @property
    def verifies(self) -> bool:
        return bool(self.manifest.files)

    def _fail(self, name: str, problem: str) -> SnapshotIntegrityError:
        return SnapshotIntegrityError(f"{self.folder / name}: {problem}")

    def _check(self, name: str, size: int, sha256: str) -> None:
        expected = self.manifest.files.get(name)
        if expected is None:
            if self.verifies:
                raise self._fail(name, "is not listed in the manifest: the snapshot was altered")
            return
        if size != expected.size:
            kind = "truncated" if size < expected.size else "longer than recorded"
            raise self._fail(name, f"is {kind}: {size} bytes, the manifest says {expected.size}")
        if sha256 != expected.sha256:
            raise self._fail(
                name, f"does not match its checksum (sha256 {sha256[:12]}…, the manifest says {expected.sha256[:12]}…)"
            )
        self.checked[name] = size

    def read(self, name: str) -> bytes:
        """The file's bytes, verified."""
        try:
            data = (self.folder / name).read_bytes()
        except FileNotFoundError:
            raise self._fail(name, "is missing") from None
        except OSError as error:
            raise self._fail(name, f"cannot be read: {error.strerror or error}") from None
        self._check(name, len(data), hashlib.sha256(data).hexdigest() if self.verifies else "")
        return data

    def verify(self, name: str) -> None:
        """Check a file that a library reads itself (by path), streaming it through the hash first."""
        path = self.folder / name
        if not path.is_file():
            raise self._fail(name, "is missing")
        digest = file_digest(path) if self.verifies else FileDigest(path.stat().st_size, "")
        self._check(name, digest.size, digest.sha256)

    def parse(self, name: str, parse: Callable[[bytes], T]) -> T:
        """`parse` of the verified bytes; a parse failure (possible in unverified snapshots) names the file."""
        data = self.read(name)
        try:
            return parse(data)
        except Exception as error:
            raise self._fail(name, f"cannot be parsed ({type(error).__name__}: {error})") from None

    def verify_rest(self) -> None:
        """Check every file the manifest lists that was not read yet (a missing one fails too)."""
        for name in self.manifest.files:
            if name not in self.checked:
                self.verify(name)


def _flat_index(vectors: np.ndarray, dimension: int) -> faiss.Index:
    index = faiss.IndexFlatIP(dimension)
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def write_snapshot(
    index_dir: Path,
    content: IndexContent,
    model: ModelInfo,
    chunker: ChunkerConfig,
    bm25: BM25Config,
    lexical: LexicalIndex,
    acronyms: Sequence[Mapping[str, str]] | None = None,
) -> Path:
    """Write a complete snapshot to a temporary folder, rename it into place, then point CURRENT at it.

    A crash at any moment leaves CURRENT naming the previous complete snapshot (or no index at all).
    `acronyms` are the documents' pairs as `lexical` was built with them (found again when not given).
    """
    documents, chunks, sentences = content.documents, content.chunks, content.sentences
    for what, vectors, items in (
        ("chunk", content.chunk_vectors, chunks),
        ("sentence", content.sentence_vectors, sentences),
    ):
        if vectors.shape != (len(items), model.dimension):
            raise ValueError(f"{what} vectors {vectors.shape} do not match {len(items)} x {model.dimension}")
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
            sentence_ptr=np.cumsum([0] + [len(rows) for rows in content.chunk_sentences], dtype=np.int64),
            sentence_rows=np.array([r for rows in content.chunk_sentences for r in rows], dtype=np.int64),
        )
        sentence_docs = np.array([doc_rows[s.doc_id] for s in sentences], dtype=np.int32)
        sentence_starts = np.array([s.start for s in sentences], dtype=np.int64)
        sentence_ends = np.array([s.end for s in sentences], dtype=np.int64)
        term_ptr, term_ids = sentence_terms(documents, sentence_docs, sentence_starts, sentence_ends, lexical, acronyms)
        np.savez(
            staging / "sentences.npz",
            doc=sentence_docs,
            start=sentence_starts,
            end=sentence_ends,
            term_ptr=term_ptr,
            term_ids=term_ids,
        )
        faiss.write_index(_flat_index(content.chunk_vectors, model.dimension), str(staging / "dense.faiss"))
        faiss.write_index(_flat_index(content.sentence_vectors, model.dimension), str(staging / "sentences.faiss"))
        lexical.save(staging / "bm25")
        # Checksums of everything written so far; the manifest that lists them goes last.
        files = {p.relative_to(staging).as_posix(): file_digest(p) for p in _snapshot_files(staging)}
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            created_at=created.isoformat(),
            model=model,
            chunker=chunker,
            bm25=bm25,
            counts={"documents": len(documents), "chunks": len(chunks), "sentences": len(sentences)},
            documents={d.doc_id: d.content_hash for d in documents},
            files=files,
        )
        # The manifest goes last: a folder with a manifest is complete.
        (staging / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
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


class WriterBusyError(SnapshotError):
    """Another process held the index's writer lock for longer than the caller would wait."""


@contextmanager
def writer_lock(index_dir: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the index's writer lock: one writer at a time per index, across processes (a service and the CLI).

    Readers never take it: they read complete snapshots only. With `timeout`, give up after that many
    seconds (`WriterBusyError`) instead of waiting for as long as the other writer takes.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / LOCK_FILE).open("a") as handle:
        if timeout is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise WriterBusyError(
                            f"another process (citeline index?) is writing {index_dir}: try again when it is done"
                        ) from None
                    time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current_snapshot_path(index_dir: Path) -> Path:
    """Folder of the live snapshot of `index_dir`, or a clear error when there is none."""
    pointer = index_dir / CURRENT_FILE
    if not pointer.is_file():
        raise NoIndexError(f"no index at {index_dir}: build one with `citeline index SOURCE --index {index_dir}`")
    path = index_dir / SNAPSHOTS_DIR / pointer.read_text(encoding="utf-8").strip()
    if not (path / MANIFEST_FILE).is_file():
        raise SnapshotIntegrityError(f"index at {index_dir} points at {path.name}, which is missing or incomplete")
    return path


def manifest_at(folder: Path) -> Manifest:
    """The manifest of a snapshot folder; errors name the file."""
    path = folder / MANIFEST_FILE
    try:
        return Manifest.from_json(path.read_text(encoding="utf-8"))
    except SnapshotIntegrityError as error:
        raise SnapshotIntegrityError(f"{path}: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SnapshotIntegrityError(f"{path}: cannot be read ({error})") from None


def read_manifest(index_dir: Path) -> Manifest:
    return manifest_at(current_snapshot_path(index_dir))


def _load_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as arrays:
        return {name: arrays[name] for name in arrays.files}


def load_snapshot(index_dir: Path) -> Snapshot:
    """Load the live snapshot of `index_dir` fully into memory, checking every file against the manifest."""
    path = current_snapshot_path(index_dir)
    manifest = manifest_at(path)
    reader = SnapshotReader(path, manifest)
    if not reader.verifies:
        logger.warning(
            "snapshot %s is format %d: its files carry no checksums and are not verified (any write or "
            "re-index adds them)",
            path,
            manifest.format_version,
        )
    documents = reader.parse("documents.jsonl", _parse_documents)
    bm25_files = [p.relative_to(path).as_posix() for p in sorted((path / "bm25").glob("*")) if p.is_file()]
    for name in [n for n in manifest.files if n.startswith("bm25/")] or bm25_files:
        reader.verify(name)  # bm25s reads its folder itself: hashed just before (then read from the page cache)
    try:
        lexical = LexicalIndex.load(path / "bm25", manifest.bm25)
    except Exception as error:
        raise SnapshotIntegrityError(f"{path / 'bm25'}: cannot be parsed ({type(error).__name__}: {error})") from None
    chunks = reader.parse("chunks.npz", _load_arrays)
    sentences = reader.parse("sentences.npz", _load_arrays)
    dense = reader.parse("dense.faiss", _parse_faiss)
    sentence_dense = reader.parse("sentences.faiss", _parse_faiss)
    reader.verify_rest()
    if "term_ptr" in sentences:
        term_ptr, term_ids = sentences["term_ptr"], sentences["term_ids"]
    else:  # written before the highlight stored them: derive them once here
        term_ptr, term_ids = sentence_terms(documents, sentences["doc"], sentences["start"], sentences["end"], lexical)
    try:
        snapshot = Snapshot(
            path=path,
            manifest=manifest,
            documents=documents,
            chunk_docs=chunks["doc"],
            chunk_starts=chunks["start"],
            chunk_ends=chunks["end"],
            dense=dense,
            lexical=lexical,
            sentence_docs=sentences["doc"],
            sentence_starts=sentences["start"],
            sentence_ends=sentences["end"],
            sentence_dense=sentence_dense,
            chunk_sentence_ptr=chunks["sentence_ptr"],
            chunk_sentence_rows=chunks["sentence_rows"],
            sentence_term_ptr=term_ptr,
            sentence_term_ids=term_ids,
        )
    except (KeyError, IndexError, ValueError) as error:
        raise SnapshotIntegrityError(f"snapshot {path} is inconsistent: {type(error).__name__}: {error}") from None
    counts = manifest.counts
    if not (
        snapshot.dense.ntotal == snapshot.lexical.num_chunks == snapshot.num_chunks == counts["chunks"]
        and snapshot.sentence_dense.ntotal == len(snapshot.sentence_docs) == counts["sentences"]
        and len(documents) == counts.get("documents", len(documents))
    ):
        raise SnapshotIntegrityError(
            f"snapshot {path} is inconsistent: {snapshot.dense.ntotal} vectors, {snapshot.lexical.num_chunks} "
            f"BM25 rows, {snapshot.num_chunks} chunks, {snapshot.sentence_dense.ntotal} sentence vectors, "
            f"{len(documents)} documents; manifest says {counts}"
        )
    snapshot.verified_bytes = sum(reader.checked.values())
    return snapshot


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_index` checked: the live snapshot, its counts and its files."""

    snapshot: Path
    format_version: int
    documents: int
    chunks: int
    sentences: int
    files: int  # files checked against the manifest's checksums (0 for format 1)
    bytes: int

    def summary(self) -> str:
        counts = f"{self.documents} documents, {self.chunks} chunks, {self.sentences} sentences"
        if not self.files:
            return (
                f"ok: {self.snapshot} (format {self.format_version}, no checksums recorded: loads, files not "
                f"verified; re-index to add them): {counts}"
            )
        return f"ok: {self.snapshot}: {counts}; {self.files} files, {self.bytes:,} bytes match their SHA-256"


def verify_index(index_dir: Path) -> VerifyReport:
    """Load the live snapshot as a server would (every file checked); a `SnapshotError` says what is wrong."""
    snapshot = load_snapshot(index_dir)
    manifest = snapshot.manifest
    return VerifyReport(
        snapshot=snapshot.path,
        format_version=manifest.format_version,
        documents=len(snapshot.documents),
        chunks=snapshot.num_chunks,
        sentences=len(snapshot.sentence_docs),
        files=len(manifest.files),
        bytes=snapshot.verified_bytes,
    )


def prune_snapshots(index_dir: Path, keep: int = KEEP_SNAPSHOTS) -> None:
    """Remove old snapshots and abandoned temporary folders, keeping the live one and the newest others."""
    snapshots = index_dir / SNAPSHOTS_DIR
    live = current_snapshot_path(index_dir).name
    for leftover in snapshots.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    complete = sorted((p for p in snapshots.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    for old in [p for p in complete if p.name != live][: max(0, len(complete) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
