"""Sealed vector segments: the passage and sentence vectors of a range of stored documents, on disk,
memory-mapped, never changed once written.

A segment holds the documents whose keys (`documents.id`) lie in `(previous segment's last_key, last_key]`
and were stored when it was sealed, in key order; a document deleted since is a tombstone (the view
hides its rows) until a merge writes a segment without it. Keys only grow and are never reused, so a
document newer than the last segment is unsealed: the view reads its vectors from the record file.

    INDEX/segments/MANIFEST.json     the segments in key order, each with its files' SHA-256
    INDEX/segments/seg-000007/       docs.npy (key, passages, sentences per document),
                                     passages.npy and sentences.npy (float32 rows, float16 with a graph; mapped),
                                     passages.hnsw when the segment's index type is `hnsw` (vector_index.py)
                                     *.bin: the documents' rows (`Rows`: spans, sentence lists, BM25 terms)

With its rows a segment is loaded from arrays, not document by document from the record file (which then
gives only the documents' texts and fields); a segment written before rows were kept is loaded the old way.
Segments are derived from the record file like the BM25 index: a damaged one is rebuilt by
`citeline repair`, without re-embedding. Files are written and fsynced before the manifest names them,
and the manifest is replaced atomically, so a crash leaves either the old set of segments or the new one
(plus, at worst, an unnamed folder that the next seal removes).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.store import vector_index
from indexer.store.errors import SegmentError

SEGMENTS_DIR = "segments"
MANIFEST_FILE = "MANIFEST.json"
LOCK_FILE = ".segments.lock"
_FILES = ("docs.npy", "passages.npy", "sentences.npy")
# Raw little-endian int64, appended document after document: (name, columns per row, or 0 for a flat array).
ROW_FILES = {
    "passage_rows.bin": 4,  # start, end, number of sentences, number of terms
    "passage_sentences.bin": 0,  # each passage's sentences in turn, as ordinals within its document
    "passage_terms.bin": 0,  # each passage's BM25 term ids in turn, repeats kept
    "sentence_rows.bin": 3,  # start, end, number of terms
    "sentence_terms.bin": 0,  # each sentence's term ids in turn (distinct, sorted)
}


@dataclass(frozen=True)
class Rows:
    """The spans, sentence lists and BM25 terms of some documents' passages and sentences, as flat arrays:
    one document's (to write) or a whole segment's (memory-mapped)."""

    passages: np.ndarray  # int64 (passages, 4): start, end, number of sentences, number of terms
    passage_sentences: np.ndarray  # int64
    passage_terms: np.ndarray  # int64
    sentences: np.ndarray  # int64 (sentences, 3): start, end, number of terms
    sentence_terms: np.ndarray  # int64

    @classmethod
    def of(cls, passages: Sequence[Any], sentences: Sequence[Any]) -> Rows:
        """The rows of one document's stored `Passage`s and `Sentence`s."""
        i64 = np.int64
        return cls(
            np.asarray([(p.start, p.end, len(p.sentences), len(p.terms)) for p in passages], i64).reshape(-1, 4),
            np.asarray([i for p in passages for i in p.sentences], i64),
            np.asarray([t for p in passages for t in p.terms], i64),
            np.asarray([(x.start, x.end, len(x.terms)) for x in sentences], i64).reshape(-1, 3),
            np.asarray([t for x in sentences for t in x.terms], i64),
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        """In the order of `ROW_FILES`."""
        return self.passages, self.passage_sentences, self.passage_terms, self.sentences, self.sentence_terms

    def documents(self, passage_counts: np.ndarray, sentence_counts: np.ndarray) -> list[Rows]:
        """These rows cut into their documents' (`passage_counts` and `sentence_counts` per document)."""
        p_at = np.concatenate([[0], np.cumsum(passage_counts)])
        s_at = np.concatenate([[0], np.cumsum(sentence_counts)])
        ps_at = np.concatenate([[0], np.cumsum(self.passages[:, 2])])
        pt_at = np.concatenate([[0], np.cumsum(self.passages[:, 3])])
        st_at = np.concatenate([[0], np.cumsum(self.sentences[:, 2])])
        out = []
        for d in range(len(passage_counts)):
            p0, p1, s0, s1 = int(p_at[d]), int(p_at[d + 1]), int(s_at[d]), int(s_at[d + 1])
            out.append(
                Rows(
                    self.passages[p0:p1],
                    self.passage_sentences[ps_at[p0] : ps_at[p1]],
                    self.passage_terms[pt_at[p0] : pt_at[p1]],
                    self.sentences[s0:s1],
                    self.sentence_terms[st_at[s0] : st_at[s1]],
                )
            )
        return out


@dataclass(frozen=True)
class SegmentInfo:
    """One sealed segment as the manifest names it."""

    name: str
    last_key: int  # documents.id of the last document it may hold; the first is the previous segment's + 1
    documents: int
    passages: int
    sentences: int
    index: str = vector_index.FLAT  # how its passage vectors are searched (vector_index.INDEX_TYPES)
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> digest, checked by `verify`


@dataclass(frozen=True)
class Manifest:
    generation: int = 0  # changes whenever the set of segments does
    segments: tuple[SegmentInfo, ...] = ()

    @property
    def last_key(self) -> int:
        return self.segments[-1].last_key if self.segments else 0

    def first_key(self, position: int) -> int:
        return self.segments[position - 1].last_key + 1 if position else 1

    @property
    def passages(self) -> int:
        return sum(s.passages for s in self.segments)


@dataclass(frozen=True)
class Segment:
    """An opened segment: its documents and its vectors (memory-mapped, read-only)."""

    info: SegmentInfo
    keys: np.ndarray  # int64, increasing
    passage_counts: np.ndarray  # int64 per document
    sentence_counts: np.ndarray  # int64 per document
    passages: np.ndarray  # float32 (passages, dimension); float16 in a `hnsw` segment
    sentences: np.ndarray  # float32 (sentences, dimension); float16 in a `hnsw` segment
    graph: faiss.Index | None = None  # the passages' HNSW graph (a faiss index) when the index type is `hnsw`
    rows: Rows | None = None  # None: a segment written before rows were kept (loaded from the record file)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def segments_lock(index_dir: Path) -> Iterator[None]:
    """One process at a time seals or merges an index's segments (writes of documents go on meanwhile)."""
    folder = index_dir / SEGMENTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(index_dir: Path) -> Manifest:
    """The index's segments; none when it has no manifest (an index that was never sealed)."""
    path = index_dir / SEGMENTS_DIR / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(int(raw["generation"]), tuple(SegmentInfo(**s) for s in raw["segments"]))
    except FileNotFoundError:
        return Manifest()
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise SegmentError(
            f"{path}: the segment manifest is damaged ({error}): run `citeline repair --index {index_dir}` "
            "to rebuild the segments from the record file (no re-embedding)"
        ) from None


def write_manifest(index_dir: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically and durably."""
    folder = index_dir / SEGMENTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{MANIFEST_FILE}.tmp"
    payload = {"generation": manifest.generation, "segments": [asdict(s) for s in manifest.segments]}
    with staging.open("w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, folder / MANIFEST_FILE)
    _fsync_dir(folder)


def segment_name(generation: int) -> str:
    return f"seg-{generation:06d}"


class SegmentWriter:
    """Writes one segment row by row (so sealing a large collection never holds it all in memory)."""

    def __init__(
        self,
        index_dir: Path,
        name: str,
        dimension: int,
        documents: int,
        passages: int,
        sentences: int,
        index: str = vector_index.FLAT,
    ):
        if index not in vector_index.INDEX_TYPES:
            raise SegmentError(f"{index_dir / SEGMENTS_DIR / name}: unknown index type {index!r}")
        self.index = index
        rows = vector_index.row_dtype(index)
        self.folder = index_dir / SEGMENTS_DIR / name
        shutil.rmtree(self.folder, ignore_errors=True)  # a leftover of a crash under the same name
        self.folder.mkdir(parents=True)
        self.name, self.dimension = name, dimension
        open_memmap = np.lib.format.open_memmap
        self._docs = open_memmap(self.folder / "docs.npy", mode="w+", dtype=np.int64, shape=(documents, 3))
        self._passages = open_memmap(self.folder / "passages.npy", mode="w+", dtype=rows, shape=(passages, dimension))
        self._sentences = open_memmap(
            self.folder / "sentences.npy", mode="w+", dtype=rows, shape=(sentences, dimension)
        )
        self._at = [0, 0, 0]
        self._rows = [(self.folder / name).open("wb") for name in ROW_FILES]

    def add(self, key: int, passage_vectors: np.ndarray, sentence_vectors: np.ndarray, rows: Rows) -> None:
        d, p, s = self._at
        np_, ns = len(passage_vectors), len(sentence_vectors)
        if (len(rows.passages), len(rows.sentences)) != (np_, ns):
            raise SegmentError(f"{self.folder}: document {key} has {np_} passage vectors, {len(rows.passages)} rows")
        self._docs[d] = (key, np_, ns)
        self._passages[p : p + np_] = passage_vectors
        self._sentences[s : s + ns] = sentence_vectors
        for row_file, array in zip(self._rows, rows.arrays(), strict=True):
            row_file.write(np.ascontiguousarray(array, dtype="<i8").tobytes())
        self._at = [d + 1, p + np_, s + ns]

    def finish(self, last_key: int) -> SegmentInfo:
        """Flush and fsync the files (and build the graph of a `hnsw` segment); the segment exists once a
        manifest names the returned info."""
        index = self.index
        expected = (len(self._docs), len(self._passages), len(self._sentences))
        if tuple(self._at) != expected:
            raise SegmentError(f"{self.folder}: {tuple(self._at)} rows written, {expected} announced")
        for array in (self._docs, self._passages, self._sentences):
            array.flush()
        for row_file in self._rows:
            row_file.close()
        files = [*_FILES, *ROW_FILES]
        if index == vector_index.HNSW:
            vector_index.build_graph(self._passages, self.folder / vector_index.GRAPH_FILE)
            files.append(vector_index.GRAPH_FILE)
        del self._docs, self._passages, self._sentences
        digests = {}
        for name in files:
            path = self.folder / name
            with path.open("rb+") as handle:
                os.fsync(handle.fileno())
            digests[name] = _sha256(path)
        _fsync_dir(self.folder)
        _fsync_dir(self.folder.parent)
        documents, passages, sentences = expected
        return SegmentInfo(self.name, last_key, documents, passages, sentences, index, digests)


def open_segment(index_dir: Path, info: SegmentInfo, dimension: int) -> Segment:
    """Map a segment's files; `SegmentError` naming the file when one is missing or of the wrong size.

    Files are not hashed here (a large index would read gigabytes before serving): `verify_segment` does
    that, run by `citeline index --verify` and `citeline backup`.
    """
    folder = index_dir / SEGMENTS_DIR / info.name
    if info.index not in vector_index.INDEX_TYPES:
        raise SegmentError(
            f"{folder}: index type {info.index!r} is not one this build reads "
            f"({', '.join(vector_index.INDEX_TYPES)}): "
            "upgrade citeline, or run `citeline repair` to rebuild the segments with this one"
        )
    shapes = {"docs.npy": (info.documents, 3), "passages.npy": (info.passages, dimension)}
    shapes["sentences.npy"] = (info.sentences, dimension)
    arrays = {}
    for name, shape in shapes.items():
        path = folder / name
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise SegmentError(
                f"{path}: the segment file is missing or truncated ({error}): run `citeline repair --index "
                f"{index_dir}` to rebuild the segments from the record file (no re-embedding)"
            ) from None
        if array.shape != shape:
            raise SegmentError(
                f"{path}: holds {array.shape} rows, the manifest says {shape}: run `citeline repair --index "
                f"{index_dir}` to rebuild the segments from the record file (no re-embedding)"
            )
        if name != "docs.npy" and array.dtype not in (np.float16, np.float32):
            raise SegmentError(f"{path}: holds {array.dtype} rows: run `citeline repair --index {index_dir}`")
        arrays[name] = array
    graph = None
    if info.index == vector_index.HNSW:
        path = folder / vector_index.GRAPH_FILE
        try:
            graph = vector_index.open_graph(path)
        except RuntimeError as error:  # faiss reports a missing or damaged file so
            raise SegmentError(
                f"{path}: the segment's HNSW graph is missing or damaged ({str(error).splitlines()[0]}): run "
                f"`citeline repair --index {index_dir}` to rebuild the segments from the record file (no re-embedding)"
            ) from None
        if graph.ntotal != info.passages:
            raise SegmentError(
                f"{path}: holds {graph.ntotal} vectors, the manifest says {info.passages}: run `citeline repair "
                f"--index {index_dir}` to rebuild the segments from the record file (no re-embedding)"
            )
    docs = np.asarray(arrays["docs.npy"])
    return Segment(
        info,
        np.ascontiguousarray(docs[:, 0]),
        np.ascontiguousarray(docs[:, 1]),
        np.ascontiguousarray(docs[:, 2]),
        arrays["passages.npy"],
        arrays["sentences.npy"],
        graph,
        _open_rows(index_dir, info) if all(name in info.sha256 for name in ROW_FILES) else None,
    )


def _open_rows(index_dir: Path, info: SegmentInfo) -> Rows:
    """A segment's rows, memory-mapped, their sizes checked against the manifest and each other."""
    folder = index_dir / SEGMENTS_DIR / info.name
    arrays = []
    for name, columns in ROW_FILES.items():
        path = folder / name
        try:
            size = path.stat().st_size
            array = np.memmap(path, dtype="<i8", mode="r") if size else np.zeros(0, "<i8")
        except (OSError, ValueError) as error:
            raise SegmentError(
                f"{path}: the segment file is missing ({error}): run `citeline repair --index {index_dir}` to "
                "rebuild the segments from the record file (no re-embedding)"
            ) from None
        arrays.append(array.reshape(-1, columns) if columns else array)
    rows = Rows(*arrays)
    expected = (
        (info.passages, 4),
        (int(rows.passages[:, 2].sum()),),
        (int(rows.passages[:, 3].sum()),),
        (info.sentences, 3),
        (int(rows.sentences[:, 2].sum()),),
    )
    for name, array, shape in zip(ROW_FILES, rows.arrays(), expected, strict=True):
        if array.shape != shape:
            raise SegmentError(
                f"{folder / name}: holds {array.shape} values, {shape} expected: run `citeline repair --index "
                f"{index_dir}` to rebuild the segments from the record file (no re-embedding)"
            )
    return rows


def verify_segment(index_dir: Path, info: SegmentInfo) -> None:
    """`SegmentError` when a file's SHA-256 differs from the manifest's."""
    for name, digest in info.sha256.items():
        path = index_dir / SEGMENTS_DIR / info.name / name
        if not path.is_file() or _sha256(path) != digest:
            raise SegmentError(
                f"{path}: the segment file is damaged (SHA-256 differs from the manifest): run "
                f"`citeline repair --index {index_dir}` to rebuild the segments from the record file"
            )


def remove_unlisted(index_dir: Path, manifest: Manifest) -> list[str]:
    """Delete segment folders the manifest does not name (left by a crash, or merged away); call under the
    segments lock. A process that still maps one keeps reading it: the file lives until it is unmapped."""
    folder = index_dir / SEGMENTS_DIR
    listed = {s.name for s in manifest.segments}
    removed = []
    for path in folder.glob("seg-*") if folder.is_dir() else ():
        if path.is_dir() and path.name not in listed:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def segment_keys(segments: Iterable[Segment]) -> np.ndarray:
    parts = [s.keys for s in segments]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
