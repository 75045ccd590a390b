"""A store: one index directory, its record file, its BM25 index and the live view derived from them.

Layout (format 3):

    INDEX/records.sqlite    the system of record (`records.py`): settings, documents, passages, sentences,
                            vectors, the operation log
    INDEX/bm25/             tantivy's index of the passages (`bm25.py`), and APPLIED, the last log entry in it
    INDEX/segments/         sealed vector segments, memory-mapped (`segments.py`), and their MANIFEST.json
    INDEX/originals/        original files (PDF, HTML, DOCX) by SHA-256 (`originals.py`)
    INDEX/.write.lock       one writer at a time, across processes
    INDEX/encoders/         ONNX exports of the model (a cache: indexer/model/encoders.py)

A write stores its documents in the record file (one transaction, durable when it returns), then brings
the BM25 index up to the log's end, then the caller's view (`follow`). A crash between the two leaves the
record file ahead: whoever opens the store for writing next replays the log into the BM25 index first
(`recover`). Opening a store reads the live documents from the record file and maps the sealed vectors
from their segments; the vectors of documents newer than the last segment are read into memory until
`seal` writes them into a segment of their own. `merge` rewrites segments without their deleted rows.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.model.embedding import ModelInfo
from indexer.store import vector_index
from indexer.store.bm25 import BM25_DIR, BM25Error, BM25Index
from indexer.store.errors import NoIndexError, SegmentError, StoreError, WriterBusyError
from indexer.store.originals import OriginalChangedError, Originals
from indexer.store.records import RECORDS_FILE, DiskFullError, DocumentRecord, Passage, Records, Sentence
from indexer.store.segments import (
    SEGMENTS_DIR,
    Manifest,
    Rows,
    Segment,
    SegmentInfo,
    SegmentWriter,
    open_segment,
    read_manifest,
    remove_unlisted,
    segment_name,
    segments_lock,
    write_manifest,
)
from indexer.store.view import View
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import Document
from indexer.text.lexical import BM25Config

TOMBSTONE_PREFIX = "\x00deleted:"  # the doc_id of a deleted document's rows that a segment still holds
FORMAT_VERSION = 3  # 3: SQLite records + tantivy BM25 (+ vector segments); 2 and 1: whole snapshots (migrated)
LOCK_FILE = ".write.lock"
LEGACY_POINTER = "CURRENT"
DEAD_FRACTION = 0.25  # a segment whose deleted rows reach this share of it is rewritten without them
LOAD_BATCH = 1000  # documents read from the record file at a time while loading

__all__ = ["NoIndexError", "SegmentError", "StoreError", "WriterBusyError"]  # re-exported: where callers look

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreSettings:
    """What an index was built with; stored in the record file, fixed for its life."""

    model: ModelInfo
    chunker: ChunkerConfig
    bm25: BM25Config
    created_at: str


@dataclass(frozen=True)
class SegmentPolicy:
    """When a store's vectors are sealed and merged (the service's settings of the same names)."""

    seal_passages: int = 20_000  # unsealed passages that make a segment
    max_segments: int = 8  # past this, the two smallest neighbouring segments merge
    index: str = vector_index.AUTO  # how a sealed segment's vectors are searched (vector_index.SETTINGS)


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
                "chunker": json.dumps(chunker.to_stored()),
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
                chunker=ChunkerConfig.from_stored(json.loads(records.meta("chunker") or "")),
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
        """A view of every live document, as stored now: sealed vectors mapped from their segments, the
        rest read from the record file."""
        manifest, segments = self._open_segments()
        seq = self.records.last_seq()
        searcher = self.bm25.searcher()
        keys = self.records.keys_at(seq)
        sealed = manifest.last_key
        alive = set(keys)
        view = View.empty(
            self.dimension,
            searcher,
            self.records.rows_after("passages", sealed),
            self.records.rows_after("sentences", sealed),
        )
        in_segments = 0
        for segment in segments:
            view = self._load_segment(view, segment, alive, seq)
            in_segments += int(np.isin(segment.keys, keys).sum())
        if in_segments != sum(1 for k in keys if k <= sealed):
            raise SegmentError(
                f"{self.index_dir}: the vector segments lack documents of the record file: run "
                f"`citeline repair --index {self.index_dir}` to rebuild them (no re-embedding)"
            )
        unsealed = [k for k in keys if k > sealed]
        for at in range(0, len(unsealed), LOAD_BATCH):
            batch = list(self.records.records(unsealed[at : at + LOAD_BATCH], self.dimension))
            view = view.changed(batch, [], seq, searcher)
        return replace(view, seq=seq, generation=manifest.generation)

    def _open_segments(self) -> tuple[Manifest, list[Segment]]:
        """The manifest and its segments, mapped; read again if a merge replaced them while they opened."""
        while True:
            manifest = read_manifest(self.index_dir)
            try:
                return manifest, [open_segment(self.index_dir, info, self.dimension) for info in manifest.segments]
            except SegmentError:
                if read_manifest(self.index_dir).generation == manifest.generation:
                    raise

    def _load_segment(self, view: View, segment: Segment, alive: set[int], seq: int) -> View:
        """`view` with a segment's documents appended: their texts and spans from the record file, their
        vectors the segment's rows; those deleted since it was sealed are tombstones."""
        if segment.rows is not None:
            return self._load_segment_rows(view, segment, alive, seq)
        keys = segment.keys.tolist()
        dead: list[int] = []
        for at in range(0, len(keys), LOAD_BATCH):
            batch = keys[at : at + LOAD_BATCH]
            stored = {r.key: r for r in self.records.records([k for k in batch if k in alive], vectors=False)}
            records = []
            for i, key in enumerate(batch, start=at):
                passages, sentences = int(segment.passage_counts[i]), int(segment.sentence_counts[i])
                record = stored.get(key)
                if record is None:  # deleted since the segment was sealed (or while this load read it)
                    dead.append(key)
                    record = _tombstone(key, passages, sentences)
                elif (len(record.passages), len(record.sentences)) != (passages, sentences):
                    raise SegmentError(
                        f"{self.index_dir}: segment {segment.info.name} holds {passages} passages of document "
                        f"{record.document.doc_id!r}, the record file {len(record.passages)}: run "
                        f"`citeline repair --index {self.index_dir}`"
                    )
                records.append(record)
            view = view.appended_rows(records)
        view = view.with_segment(segment.passages, segment.sentences, segment.graph)
        return view.changed([], dead, seq, view.bm25) if dead else view

    def _load_segment_rows(self, view: View, segment: Segment, alive: set[int], seq: int) -> View:
        """`_load_segment` for a segment that keeps its rows: only the documents' fields and texts are read
        from the record file."""
        keys = segment.keys.tolist()
        if not keys:
            return view.with_segment(segment.passages, segment.sentences, segment.graph)
        stored = self.records.documents(keys[0], keys[-1])
        documents, dead = [], np.zeros(len(keys), bool)
        for i, key in enumerate(keys):
            document = stored.get(key) if key in alive else None
            if document is None:  # deleted since the segment was sealed (or while this load read it)
                dead[i] = True
                document = Document(doc_id=f"{TOMBSTONE_PREFIX}{key}", text="")
            documents.append(document)
        assert segment.rows is not None
        view = view.appended_segment_rows(
            documents, segment.keys, segment.passage_counts, segment.sentence_counts, segment.rows, dead
        )
        view = view.with_segment(segment.passages, segment.sentences, segment.graph)
        gone = segment.keys[dead].tolist()
        return view.changed([], gone, seq, view.bm25) if gone else view

    # -- segments ------------------------------------------------------------------------------------------
    def unsealed_passages(self) -> int:
        return self.records.rows_after("passages", read_manifest(self.index_dir).last_key)

    def seal(self, min_passages: int = 1, index: str = vector_index.AUTO) -> SegmentInfo | None:
        """Write the documents newer than the last segment into a new one, when they hold at least
        `min_passages` passages, searched as `index` (a `vector_index.SETTINGS` value) asks. Writes of
        documents go on meanwhile: it reads a snapshot of the record file on a connection of its own, and a
        document deleted since is a tombstone of the segment."""
        self.check_writable()
        with segments_lock(self.index_dir):
            manifest = read_manifest(self.index_dir)
            remove_unlisted(self.index_dir, manifest)
            reader = Records(self.records.path)
            try:
                with reader.snapshot():
                    keys = reader.keys_at(reader.last_seq(), after=manifest.last_key)
                    sizes = reader.sizes(keys)
                    passages = sum(p for p, _ in sizes.values())
                    if not keys or passages < max(min_passages, 1):
                        return None
                    name = segment_name(manifest.generation + 1)
                    with self._writing_segment(name):
                        writer = SegmentWriter(
                            self.index_dir,
                            name,
                            self.dimension,
                            len(keys),
                            passages,
                            sum(s for _, s in sizes.values()),
                            vector_index.resolve(index, passages),
                        )
                        for record in reader.records(keys, self.dimension):
                            writer.add(
                                record.key,
                                record.passage_vectors,
                                record.sentence_vectors,
                                Rows.of(record.passages, record.sentences),
                            )
                        info = writer.finish(keys[-1])
            finally:
                reader.close()
            with self._writing_segment(name):
                write_manifest(self.index_dir, Manifest(manifest.generation + 1, (*manifest.segments, info)))
        logger.info("sealed %d documents (%d passages) into segment %s", info.documents, info.passages, info.name)
        return info

    def merge(self, max_segments: int = 8, index: str = vector_index.AUTO) -> SegmentInfo | None:
        """Rewrite segments without their deleted rows: a segment whose dead rows reach `DEAD_FRACTION` of
        it, or, past `max_segments`, the two smallest neighbours into one; the new segment is searched as
        `index` asks. None when nothing needs it."""
        self.check_writable()
        with segments_lock(self.index_dir):
            manifest = read_manifest(self.index_dir)
            if not manifest.segments:
                return None
            segments = [open_segment(self.index_dir, info, self.dimension) for info in manifest.segments]
            alive = np.asarray(self.records.keys_at(self.records.last_seq()), dtype=np.int64)
            kept = [np.isin(s.keys, alive) for s in segments]
            dead = [int(s.passage_counts[~k].sum()) for s, k in zip(segments, kept, strict=True)]
            run = next(
                (
                    (i, i)
                    for i, s in enumerate(manifest.segments)
                    if s.passages and dead[i] >= DEAD_FRACTION * s.passages
                ),
                None,
            )
            if run is None and len(segments) > max(max_segments, 1):
                sizes = [
                    manifest.segments[i].passages + manifest.segments[i + 1].passages for i in range(len(segments) - 1)
                ]
                first = int(np.argmin(sizes))
                run = (first, first + 1)
            if run is None:
                return None
            first, last = run
            name = segment_name(manifest.generation + 1)
            with self._writing_segment(name):
                info = self._merged(name, manifest, segments, kept, (first, last), index)
                merged = (*manifest.segments[:first], info, *manifest.segments[last + 1 :])
                write_manifest(self.index_dir, Manifest(manifest.generation + 1, merged))
            remove_unlisted(self.index_dir, Manifest(manifest.generation + 1, merged))
        logger.info(
            "merged segments %s into %s: %d passages, %d deleted ones dropped",
            ", ".join(manifest.segments[i].name for i in range(first, last + 1)),
            info.name,
            info.passages,
            sum(dead[first : last + 1]),
        )
        return info

    def _merged(
        self,
        name: str,
        manifest: Manifest,
        segments: list[Segment],
        kept: list[np.ndarray],
        run: tuple[int, int],
        index: str,
    ) -> SegmentInfo:
        """Segments `run` (first and last) written as one segment `name`, without the documents `kept` lacks."""
        first, last = run
        chosen = list(range(first, last + 1))
        passages = sum(int(segments[i].passage_counts[kept[i]].sum()) for i in chosen)
        writer = SegmentWriter(
            self.index_dir,
            name,
            self.dimension,
            sum(int(kept[i].sum()) for i in chosen),
            passages,
            sum(int(segments[i].sentence_counts[kept[i]].sum()) for i in chosen),
            vector_index.resolve(index, passages),
        )
        for i in chosen:
            segment = segments[i]
            p_starts = np.concatenate([[0], np.cumsum(segment.passage_counts)])
            s_starts = np.concatenate([[0], np.cumsum(segment.sentence_counts)])
            kept_rows = np.flatnonzero(kept[i]).tolist()
            if segment.rows is not None:
                rows = segment.rows.documents(segment.passage_counts, segment.sentence_counts)
            else:  # written before segments kept rows: the record file has them
                stored = self._stored_rows(segment.keys[kept[i]].tolist())
                rows = [stored.get(int(key)) for key in segment.keys.tolist()]  # type: ignore[misc]
            for row in kept_rows:
                document_rows = rows[row]
                if document_rows is None:
                    raise SegmentError(f"document {int(segment.keys[row])} is in no segment and not stored")
                writer.add(
                    int(segment.keys[row]),
                    segment.passages[p_starts[row] : p_starts[row + 1]],
                    segment.sentences[s_starts[row] : s_starts[row + 1]],
                    document_rows,
                )
        return writer.finish(manifest.segments[last].last_key)

    def _stored_rows(self, keys: list[int]) -> dict[int, Rows]:
        """The rows of the stored documents `keys`, read from the record file."""
        found: dict[int, Rows] = {}
        for at in range(0, len(keys), LOAD_BATCH):
            for record in self.records.records(keys[at : at + LOAD_BATCH], vectors=False):
                found[record.key] = Rows.of(record.passages, record.sentences)
        return found

    @contextmanager
    def _writing_segment(self, name: str) -> Iterator[None]:
        """A segment that cannot be written (a full disk) is removed again and reported as a `SegmentError`:
        the manifest still names the segments it named, and the vectors stay where they were."""
        try:
            yield
        except OSError as error:
            try:
                named = name in {s.name for s in read_manifest(self.index_dir).segments}
            except SegmentError:
                named = False
            if not named:  # the manifest was not replaced: the folder is nobody's
                shutil.rmtree(self.index_dir / SEGMENTS_DIR / name, ignore_errors=True)
            reason = error.strerror or str(error)
            raise SegmentError(
                f"{self.index_dir / SEGMENTS_DIR / name}: the segment could not be written ({reason}); nothing "
                "changed, and it is tried again later: free space"
            ) from None

    def write(self, adds: Sequence[DocumentRecord], deletes: Sequence[str] = ()) -> int:
        """Store `adds` (replacing any stored versions) and delete `deletes`, durably; then update the BM25
        index. Call under the writer lock. Returns the log's last sequence number."""
        originals = Originals(self.index_dir)
        self._keep_originals(adds, originals)
        replaced = self.records.originals([*deletes, *(r.document.doc_id for r in adds)])
        seq = self.records.apply(adds, deletes)
        for sha256 in self.records.unreferenced(replaced):  # after the commit: a crash leaves a file, not a gap
            originals.remove(sha256)
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

    def _keep_originals(self, adds: Sequence[DocumentRecord], originals: Originals) -> None:
        """Write the original files of `adds` before their records commit (a record never names a missing one)."""
        for record in adds:
            document = record.document
            if document.layout is None or not document.layout.original:
                continue
            if document.original is None:
                if not originals.has(document.layout.original):
                    raise StoreError(f"document {document.doc_id!r} names an original file that is not given")
                continue
            try:
                originals.put(document.layout.original, document.original)
            except OriginalChangedError as error:
                logger.warning("%s: its original is not kept; index it again to keep it", error)
                record.document = replace(document, layout=replace(document.layout, original=""), original=None)
            except OSError as error:
                message = (
                    f"{originals.root}: the original of {document.doc_id!r} could not be written "
                    f"({error.strerror or error}); nothing was written"
                )
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFullError(f"{message}: free space") from None
                raise StoreError(message) from None

    def follow(self, view: View) -> View:
        """`view` brought up to the log's end (this process's writes and other processes')."""
        ops = self.records.ops_since(view.seq)
        if not ops:
            return view
        deleted = [op.key for op in ops if op.action == "delete"]
        added_keys = [op.key for op in ops if op.action == "add"]
        added = list(self.records.records(added_keys, self.dimension)) if added_keys else []
        return view.changed(added, deleted, ops[-1].seq, self.bm25.searcher())


def _tombstone(key: int, passages: int, sentences: int) -> DocumentRecord:
    """A stand-in for a document deleted after its segment was sealed: rows that keep the segment's
    vectors in line with the view's rows, hidden from every search. The first passage holds every
    sentence, so a sentence never points at a passage outside the document."""
    holder = tuple(range(sentences))
    return DocumentRecord(
        document=Document(doc_id=f"{TOMBSTONE_PREFIX}{key}", text=""),
        passages=[Passage(0, 0, holder if i == 0 else ()) for i in range(passages)],
        sentences=[Sentence(0, 0, ()) for _ in range(sentences)],
        passage_vectors=np.zeros((0, 0), np.float32),
        sentence_vectors=np.zeros((0, 0), np.float32),
        key=key,
    )
