"""A store: one index directory, its record file, its BM25 index and the live view derived from them.

Layout (format 3):

    INDEX/records.sqlite    the system of record (`records.py`): settings, documents, passages, sentences,
                            vectors, the operation log
    INDEX/bm25/             tantivy's index of the passages (`bm25.py`), and APPLIED, the last log entry in it
    INDEX/.write.lock       one writer at a time, across processes
    INDEX/encoders/         ONNX exports of the model (a cache: indexer/model/encoders.py)

A write stores its documents in the record file (one transaction, durable when it returns), then brings
the BM25 index up to the log's end, then the caller's view (`follow`). A crash between the two leaves the
record file ahead: whoever opens the store for writing next replays the log into the BM25 index first
(`recover`). The view is never on disk: opening a store reads the live documents from the record file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from indexer.model.embedding import ModelInfo
from indexer.store.bm25 import BM25_DIR, BM25Error, BM25Index
from indexer.store.records import RECORDS_FILE, DocumentRecord, Records
from indexer.store.view import View
from indexer.text.chunking import ChunkerConfig
from indexer.text.lexical import BM25Config

FORMAT_VERSION = 3  # 3: SQLite records + tantivy BM25; 2 and 1: whole snapshots (migrated on open)
LOCK_FILE = ".write.lock"
LEGACY_POINTER = "CURRENT"

logger = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """An index directory is missing, damaged, of another format, or busy."""


class NoIndexError(StoreError):
    """There is no index in the directory."""


class WriterBusyError(StoreError):
    """Another process held the index's writer lock for longer than the caller would wait."""


@dataclass(frozen=True)
class StoreSettings:
    """What an index was built with; stored in the record file, fixed for its life."""

    model: ModelInfo
    chunker: ChunkerConfig
    bm25: BM25Config
    created_at: str


@contextmanager
def writer_lock(index_dir: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the index's writer lock: one writer at a time per index, across processes (a server and the CLI).

    Readers never take it. With `timeout`, give up after that many seconds (`WriterBusyError`).
    """
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        handle = (index_dir / LOCK_FILE).open("a")
    except OSError as error:
        reason = error.strerror or str(error)
        raise StoreError(f"{index_dir}: cannot be written ({reason}): index into a writable folder") from None
    with handle:
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


def writable(index_dir: Path) -> bool:
    """Whether this process may write the index's files (root may write anything: the access check says so)."""
    files = [index_dir, index_dir / RECORDS_FILE, index_dir / BM25_DIR]
    return all(os.access(path, os.W_OK) for path in files if path.exists())


def is_store(index_dir: Path) -> bool:
    return (index_dir / RECORDS_FILE).is_file()


def is_legacy(index_dir: Path) -> bool:
    """A format 1 or 2 index (whole snapshots named by CURRENT) that has not been migrated."""
    return (index_dir / LEGACY_POINTER).is_file() and not is_store(index_dir)


class Store:
    """The record file and BM25 index of one index directory."""

    def __init__(self, index_dir: Path, records: Records, settings: StoreSettings) -> None:
        self.index_dir = index_dir
        self.read_only = records.read_only
        self.records = records
        self.settings = settings
        self.bm25 = BM25Index(index_dir / BM25_DIR, read_only=self.read_only)
        self.bm25_error: str | None = None  # why the last write could not update the BM25 index, until one can

    @classmethod
    def create(cls, index_dir: Path, model: ModelInfo, chunker: ChunkerConfig, bm25: BM25Config) -> Store:
        """A new, empty store (call under the writer lock)."""
        if is_store(index_dir):
            raise StoreError(f"{index_dir} already holds an index")
        index_dir.mkdir(parents=True, exist_ok=True)
        records = Records(index_dir / RECORDS_FILE)
        settings = StoreSettings(model, chunker, bm25, datetime.now(UTC).isoformat())
        records.set_meta(
            {
                "format_version": str(FORMAT_VERSION),
                "model": json.dumps(asdict(model)),
                "chunker": json.dumps(asdict(chunker)),
                "bm25": json.dumps(asdict(bm25)),
                "created_at": settings.created_at,
            }
        )
        return cls(index_dir, records, settings)

    @classmethod
    def open(cls, index_dir: Path) -> Store:
        """The store of `index_dir`; `NoIndexError` when there is none, `StoreError` when it is not usable."""
        if not is_store(index_dir):
            if is_legacy(index_dir):
                raise StoreError(
                    f"{index_dir} holds an index of format 1 or 2: run `citeline migrate --index {index_dir}` "
                    "(no re-embedding), or open it with `citeline serve`, which migrates it"
                )
            raise NoIndexError(f"no index at {index_dir}: build one with `citeline index SOURCE --index {index_dir}`")
        records = Records(index_dir / RECORDS_FILE, read_only=not writable(index_dir))
        if records.read_only:
            logger.info("the index at %s is read-only here: it is served as it is, and writes are refused", index_dir)
        try:
            version = int(records.meta("format_version") or 0)
            if version > FORMAT_VERSION:
                raise StoreError(
                    f"{index_dir}: index format version {version} is newer than this build reads "
                    f"({FORMAT_VERSION}): upgrade citeline, or re-index with this one"
                )
            settings = StoreSettings(
                model=ModelInfo(**json.loads(records.meta("model") or "")),
                chunker=ChunkerConfig(**json.loads(records.meta("chunker") or "")),
                bm25=BM25Config(**json.loads(records.meta("bm25") or "")),
                created_at=records.meta("created_at") or "",
            )
        except StoreError:
            records.close()
            raise
        except (ValueError, TypeError, KeyError) as error:
            records.close()
            raise StoreError(f"{index_dir / RECORDS_FILE}: the index settings are damaged ({error})") from None
        return cls(index_dir, records, settings)

    def close(self) -> None:
        self.records.close()

    @property
    def dimension(self) -> int:
        return self.settings.model.dimension

    def check_writable(self) -> None:
        """`StoreError` when this process cannot write the index (a read-only folder, an image's index)."""
        if self.read_only:
            raise StoreError(
                f"the index at {self.index_dir} is read-only for this process: writes are refused (serve a "
                "writable copy, e.g. a volume, to write)"
            )

    def recover(self) -> int:
        """Replay what the BM25 index lacks of the log (after a crash); call under the writer lock.

        A BM25 index that cannot take the replay (damaged by the crash) is rebuilt from the record file.
        """
        try:
            replayed = self.bm25.catch_up(self.records)
        except BM25Error as error:
            logger.warning("%s; rebuilding it from the record file", error)
            shutil.rmtree(self.bm25.folder, ignore_errors=True)
            self.bm25 = BM25Index(self.bm25.folder)
            replayed = self.bm25.catch_up(self.records)
        if replayed:
            logger.info("replayed %d log entries into the BM25 index %s", replayed, self.bm25.folder)
        return replayed

    def load(self) -> View:
        """A view of every live document, as stored now."""
        seq = self.records.last_seq()
        searcher = self.bm25.searcher()
        view = View.empty(self.dimension, searcher, self.records.count("passages"), self.records.count("sentences"))
        batch: list[DocumentRecord] = []
        for record in self.records.records(None, self.dimension):
            batch.append(record)
            if len(batch) == 1000:
                view = view.changed(batch, [], seq, searcher)
                batch = []
        return view.changed(batch, [], seq, searcher)

    def write(self, adds: Sequence[DocumentRecord], deletes: Sequence[str] = ()) -> int:
        """Store `adds` (replacing any stored versions) and delete `deletes`, durably; then update the BM25
        index. Call under the writer lock. Returns the log's last sequence number."""
        seq = self.records.apply(adds, deletes)
        # The write is durable now: a BM25 failure must not report it as failed. It is kept (the service is
        # not ready meanwhile) and the next write, or the next start, replays what the BM25 index missed.
        try:
            self.bm25.catch_up(self.records)
        except BM25Error as error:
            self.bm25_error = str(error)
            logger.error("the BM25 index is behind the record file: %s", error)
        else:
            self.bm25_error = None
        return seq

    def follow(self, view: View) -> View:
        """`view` brought up to the log's end (this process's writes and other processes')."""
        ops = self.records.ops_since(view.seq)
        if not ops:
            return view
        deleted = [op.key for op in ops if op.action == "delete"]
        added_keys = [op.key for op in ops if op.action == "add"]
        added = list(self.records.records(added_keys, self.dimension)) if added_keys else []
        return view.changed(added, deleted, ops[-1].seq, self.bm25.searcher())
