"""Checking a store (`citeline index --verify`), copying a live one (`citeline backup`), and rebuilding
what derives from its record file (`citeline repair`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from indexer.store import vector_index
from indexer.store.bm25 import BM25_DIR
from indexer.store.originals import ORIGINALS_DIR
from indexer.store.records import RECORDS_FILE, RecordsError
from indexer.store.segments import (
    MANIFEST_FILE,
    SEGMENTS_DIR,
    Manifest,
    read_manifest,
    remove_unlisted,
    segments_lock,
    verify_segment,
)
from indexer.store.store import Store, StoreError, writer_lock


@dataclass(frozen=True)
class VerifyReport:
    """What `verify_index` checked."""

    index: Path
    documents: int
    passages: int
    sentences: int
    bm25_passages: int
    seq: int
    segments: int = 0

    def summary(self) -> str:
        return (
            f"ok: {self.index} (format 3, log at {self.seq}): {self.documents} documents, {self.passages} passages, "
            f"{self.sentences} sentences; record file intact, every citation inside its document, "
            f"{self.bm25_passages} passages in the BM25 index, {self.segments} vector segments intact "
            "(SHA-256) and in line with the record file"
        )


def verify_index(index_dir: Path) -> VerifyReport:
    """Check a store as a server would use it; a `StoreError` (or `RecordsError`) says what is wrong.

    SQLite's integrity check of the record file; every passage and sentence span inside its document's
    text and every vector of the model's dimension; the BM25 index readable and holding one entry per
    stored passage once it has applied the whole log; every sealed segment's files against the SHA-256
    its manifest holds, and its documents against the record file (the whole view is loaded).
    """
    store = Store.open(index_dir)
    try:
        check = store.records.integrity_check()
        if check != "ok":
            raise StoreError(f"{index_dir / RECORDS_FILE}: damaged ({check}); restore it from a backup")
        documents = passages = sentences = 0
        dimension = store.dimension
        for record in store.records.records(None, dimension):
            documents += 1
            length = len(record.document.text)
            for kind, spans in (("passage", record.passages), ("sentence", record.sentences)):
                for span in spans:
                    if not 0 <= span.start < span.end <= length:
                        raise StoreError(
                            f"{index_dir / RECORDS_FILE}: {kind} {span.start}:{span.end} of {record.document.doc_id!r} "
                            f"lies outside its text ({length} characters): damaged"
                        )
            if record.passage_vectors.shape != (len(record.passages), dimension) or record.sentence_vectors.shape != (
                len(record.sentences),
                dimension,
            ):
                raise StoreError(f"{index_dir / RECORDS_FILE}: vectors of {record.document.doc_id!r} are damaged")
            passages += len(record.passages)
            sentences += len(record.sentences)
        seq = store.records.last_seq()
        searcher = store.bm25.searcher()
        if store.bm25.applied >= seq and searcher.num_docs != passages:
            raise StoreError(
                f"{index_dir / BM25_DIR}: holds {searcher.num_docs} passages, the record file {passages}: delete the "
                "folder and open the index for writing to rebuild it"
            )
        manifest = read_manifest(index_dir)
        for info in manifest.segments:
            verify_segment(index_dir, info)
        store.load()  # maps every segment and checks its documents against the record file
        return VerifyReport(index_dir, documents, passages, sentences, searcher.num_docs, seq, len(manifest.segments))
    finally:
        store.close()


def backup(index_dir: Path, destination: Path) -> VerifyReport:
    """A consistent copy of a store, taken while it serves: the record file through SQLite's backup API and
    the BM25 index as of the same log entry (under the writer lock, so no write lands between the two).
    The copy is verified before it is moved into place; `destination` must not exist."""
    if destination.exists():
        raise StoreError(f"{destination} exists: a backup goes to a new directory")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        with writer_lock(index_dir), segments_lock(index_dir):
            store = Store.open(index_dir)
            try:
                store.recover()
                store.records.backup(staging / RECORDS_FILE)
            finally:
                store.close()
            shutil.copytree(index_dir / BM25_DIR, staging / BM25_DIR, ignore=shutil.ignore_patterns("*.lock"))
            if (index_dir / ORIGINALS_DIR).is_dir():
                shutil.copytree(index_dir / ORIGINALS_DIR, staging / ORIGINALS_DIR, ignore=shutil.ignore_patterns(".*"))
            manifest = read_manifest(index_dir)
            if manifest.segments:
                (staging / SEGMENTS_DIR).mkdir()
                shutil.copy2(index_dir / SEGMENTS_DIR / MANIFEST_FILE, staging / SEGMENTS_DIR / MANIFEST_FILE)
                for info in manifest.segments:
                    shutil.copytree(index_dir / SEGMENTS_DIR / info.name, staging / SEGMENTS_DIR / info.name)
        for path in staging.rglob("*"):
            if path.is_file():
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())
        report = verify_index(staging)
        os.replace(staging, destination)
    except (StoreError, RecordsError, OSError):
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return VerifyReport(
        destination,
        report.documents,
        report.passages,
        report.sentences,
        report.bm25_passages,
        report.seq,
        report.segments,
    )


def repair(index_dir: Path, index: str = vector_index.AUTO) -> VerifyReport:
    """Rebuild the BM25 index and the vector segments from the record file (no re-embedding), then verify;
    the segment is searched as `index` (a `vector_index.SETTINGS` value) asks. For a damaged, missing or
    truncated segment or BM25 file; a damaged record file needs a backup."""
    with writer_lock(index_dir):
        shutil.rmtree(index_dir / BM25_DIR, ignore_errors=True)
        _reseal(index_dir, index)
    return verify_index(index_dir)


def reseal(index_dir: Path, index: str) -> None:
    """Rewrite every vector segment as one, searched as `index` asks (a `vector_index.SETTINGS` value): how an
    index takes a new `CITELINE_VECTOR_INDEX` at once rather than segment by segment as merges come."""
    with writer_lock(index_dir):
        _reseal(index_dir, index)


def _reseal(index_dir: Path, index: str) -> None:
    with segments_lock(index_dir):
        (index_dir / SEGMENTS_DIR / MANIFEST_FILE).unlink(missing_ok=True)
        remove_unlisted(index_dir, Manifest())
    store = Store.open(index_dir)
    try:
        store.recover()
        store.seal(1, index)
    finally:
        store.close()
