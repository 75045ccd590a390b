"""Checking a store (`citeline index --verify`) and copying a live one (`citeline backup`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from indexer.store.bm25 import BM25_DIR
from indexer.store.records import RECORDS_FILE, RecordsError
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

    def summary(self) -> str:
        return (
            f"ok: {self.index} (format 3, log at {self.seq}): {self.documents} documents, {self.passages} passages, "
            f"{self.sentences} sentences; record file intact, every citation inside its document, "
            f"{self.bm25_passages} passages in the BM25 index"
        )


def verify_index(index_dir: Path) -> VerifyReport:
    """Check a store as a server would use it; a `StoreError` (or `RecordsError`) says what is wrong.

    SQLite's integrity check of the record file; every passage and sentence span inside its document's
    text and every vector of the model's dimension; the BM25 index readable and holding one entry per
    stored passage once it has applied the whole log.
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
        return VerifyReport(index_dir, documents, passages, sentences, searcher.num_docs, seq)
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
        with writer_lock(index_dir):
            store = Store.open(index_dir)
            try:
                store.recover()
                store.records.backup(staging / RECORDS_FILE)
            finally:
                store.close()
            shutil.copytree(index_dir / BM25_DIR, staging / BM25_DIR, ignore=shutil.ignore_patterns("*.lock"))
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
        destination, report.documents, report.passages, report.sentences, report.bm25_passages, report.seq
    )
