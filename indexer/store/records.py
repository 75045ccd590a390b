"""The system of record: one SQLite file holding documents, their passages and sentences with vectors, and a log.

Everything else in an index (the live view's arrays, the BM25 index) is derived from this file and can be
rebuilt from it without re-embedding. One write is one transaction sized by the documents it touches, and
it is durable when it returns (WAL, `synchronous=FULL`). Every change appends to `oplog` with a sequence
number; derivatives remember the last sequence they applied and replay the rest (`ops_since`).

A replaced document is a delete and an add: it gets a new `documents.id`, so the id of a stored document
names one version of it, and replaying "delete id, add id" is idempotent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import CitelineError
from indexer.text.documents import Document, Layout

RECORDS_FILE = "records.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL UNIQUE,
    title TEXT,
    source TEXT NOT NULL,
    metadata TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    layout TEXT
);
CREATE TABLE IF NOT EXISTS passages (
    doc INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    sentences BLOB NOT NULL,
    terms BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (doc, ord)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sentences (
    doc INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    terms BLOB NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (doc, ord)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS originals (doc INTEGER PRIMARY KEY, sha256 TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS originals_by_sha256 ON originals (sha256);
CREATE TABLE IF NOT EXISTS oplog (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL CHECK (action IN ('add', 'delete')),
    doc INTEGER NOT NULL,
    doc_id TEXT NOT NULL
);
"""


class RecordsError(CitelineError, RuntimeError):
    """The record file is damaged, unreadable, or the disk refused a write."""


class DiskFullError(RecordsError):
    """The disk (or the file system's quota) is full: the write was refused and nothing was applied."""


@dataclass(frozen=True)
class Passage:
    """A passage of a document as stored: its span, its sentences (ordinals in the document), and its BM25
    terms as hashed ids (`term_id`), repeats kept, so BM25 can be scored from them (term frequency, length)."""

    start: int
    end: int
    sentences: tuple[int, ...]
    terms: tuple[int, ...] = ()


@dataclass(frozen=True)
class Sentence:
    """A sentence of a document as stored: its span and its BM25 terms as hashed ids (`term_id`)."""

    start: int
    end: int
    terms: tuple[int, ...]


@dataclass
class DocumentRecord:
    """Everything stored for one document: what the view and the BM25 index are derived from."""

    document: Document
    passages: list[Passage]
    sentences: list[Sentence]
    passage_vectors: np.ndarray  # float32 (len(passages), dimension)
    sentence_vectors: np.ndarray  # float32 (len(sentences), dimension)
    key: int = 0  # documents.id once stored


@dataclass(frozen=True)
class Op:
    """One entry of the operation log."""

    seq: int
    action: str  # "add" | "delete"
    key: int  # documents.id
    doc_id: str


def _ints(blob: bytes, dtype: type = np.int64) -> tuple[int, ...]:
    return tuple(np.frombuffer(blob, dtype=dtype).tolist())


def _blob(values: Sequence[int], dtype: type = np.int64) -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


def _translate(error: sqlite3.Error, path: Path) -> RecordsError:
    message = str(error)
    if isinstance(error, sqlite3.OperationalError) and ("full" in message or "disk I/O" in message):
        return DiskFullError(f"{path}: the disk is full or failing ({message}): nothing was written; free space")
    if isinstance(error, sqlite3.DatabaseError) and ("malformed" in message or "not a database" in message):
        return RecordsError(
            f"{path}: the record file is damaged ({message}); restore it from a backup (`citeline backup`)"
        )
    return RecordsError(f"{path}: {message}")


class Records:
    """The SQLite record file of one index. One connection, serialised by a lock: writes are one at a time
    anyway, and reads of whole documents are rare (loading, catching up)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """`read_only`: a file nobody writes while it is open (an index baked into an image): no locks, no
        write-ahead log, nothing created beside it."""
        self.path = path
        self.read_only = read_only
        self._lock = threading.RLock()
        try:
            if read_only:
                uri = f"{path.resolve().as_uri()}?immutable=1"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            else:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(documents)")}
            if "layout" not in columns and not read_only:  # a file from before layouts: one more column
                self._db.execute("ALTER TABLE documents ADD COLUMN layout TEXT")
            # Reads of a read-only file from before layouts see none.
            self._layout = "layout" if "layout" in columns or not read_only else "NULL"
            version = self.meta("schema_version")
            if version is None and not read_only:
                self.set_meta({"schema_version": str(SCHEMA_VERSION)})
            elif version is not None and int(version) > SCHEMA_VERSION:
                raise RecordsError(
                    f"{path}: record schema {version} is newer than this build reads ({SCHEMA_VERSION}): "
                    "upgrade citeline"
                )
        except sqlite3.Error as error:
            raise _translate(error, path) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite has rolled back already after some errors (a full disk)
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise _translate(error, self.path) from None

    def _query(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise _translate(error, self.path) from None

    # -- settings ------------------------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    # -- writes --------------------------------------------------------------------------------------------
    def apply(self, adds: Sequence[DocumentRecord], deletes: Iterable[str]) -> int:
        """Delete the documents `deletes` names (ids not stored are ignored) and the stored versions of the
        documents in `adds`, then store `adds`: one transaction. Returns the last sequence number."""
        with self._transaction() as db:
            for doc_id in [*deletes, *(r.document.doc_id for r in adds)]:
                row = db.execute("SELECT id FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
                if row is None:
                    continue
                key = int(row[0])
                db.execute("DELETE FROM documents WHERE id = ?", (key,))
                db.execute("DELETE FROM passages WHERE doc = ?", (key,))
                db.execute("DELETE FROM sentences WHERE doc = ?", (key,))
                db.execute("DELETE FROM originals WHERE doc = ?", (key,))
                db.execute("INSERT INTO oplog (action, doc, doc_id) VALUES ('delete', ?, ?)", (key, doc_id))
            for record in adds:
                d = record.document
                cursor = db.execute(
                    "INSERT INTO documents (doc_id, title, source, metadata, content_hash, text, layout) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        d.doc_id,
                        d.title,
                        d.source,
                        json.dumps(d.metadata, ensure_ascii=False),
                        d.content_hash,
                        d.text,
                        d.layout.to_json() if d.layout is not None else None,
                    ),
                )
                key = int(cursor.lastrowid or 0)
                record.key = key
                if d.layout is not None and d.layout.original:
                    db.execute("INSERT INTO originals (doc, sha256) VALUES (?, ?)", (key, d.layout.original))
                pv = np.ascontiguousarray(record.passage_vectors, dtype=np.float32)
                sv = np.ascontiguousarray(record.sentence_vectors, dtype=np.float32)
                db.executemany(
                    "INSERT INTO passages (doc, ord, start, end, sentences, terms, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (key, i, p.start, p.end, _blob(p.sentences, np.int32), _blob(p.terms), pv[i].tobytes())
                        for i, p in enumerate(record.passages)
                    ],
                )
                db.executemany(
                    "INSERT INTO sentences (doc, ord, start, end, terms, vector) VALUES (?, ?, ?, ?, ?, ?)",
                    [(key, i, s.start, s.end, _blob(s.terms), sv[i].tobytes()) for i, s in enumerate(record.sentences)],
                )
                db.execute("INSERT INTO oplog (action, doc, doc_id) VALUES ('add', ?, ?)", (key, d.doc_id))
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM oplog").fetchone()[0]
        return int(seq)

    # -- reads ---------------------------------------------------------------------------------------------
    def last_seq(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM oplog")[0][0])

    def ops_since(self, seq: int) -> list[Op]:
        rows = self._query("SELECT seq, action, doc, doc_id FROM oplog WHERE seq > ? ORDER BY seq", (seq,))
        return [Op(int(s), str(a), int(k), str(i)) for s, a, k, i in rows]

    def content_hashes(self) -> dict[str, str]:
        """doc_id -> content hash of every stored document."""
        return {str(i): str(h) for i, h in self._query("SELECT doc_id, content_hash FROM documents")}

    def sources(self) -> dict[str, str]:
        """doc_id -> source of every stored document."""
        return {str(i): str(s) for i, s in self._query("SELECT doc_id, source FROM documents")}

    def count(self, table: str) -> int:
        assert table in ("documents", "passages", "sentences")
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    def keys(self) -> list[int]:
        return [int(k) for (k,) in self._query("SELECT id FROM documents ORDER BY id")]

    def keys_at(self, seq: int, after: int = 0) -> list[int]:
        """Keys of the documents stored as of log entry `seq` (added by then) that are stored still, above
        `after`, in order: what a view at `seq` holds, whatever was written since."""
        last = self._query("SELECT COALESCE(MAX(doc), 0) FROM oplog WHERE seq <= ? AND action = 'add'", (seq,))
        rows = self._query("SELECT id FROM documents WHERE id > ? AND id <= ? ORDER BY id", (after, int(last[0][0])))
        return [int(k) for (k,) in rows]

    def rows_after(self, table: str, key: int) -> int:
        """Stored passages or sentences of the documents whose key is above `key`."""
        assert table in ("passages", "sentences")
        return int(self._query(f"SELECT COUNT(*) FROM {table} WHERE doc > ?", (key,))[0][0])

    def sizes(self, keys: Sequence[int]) -> dict[int, tuple[int, int]]:
        """key -> (passages, sentences) of each stored document of `keys`."""
        found: dict[int, tuple[int, int]] = {}
        wanted = sorted(set(keys))
        for at in range(0, len(wanted), 500):
            batch = wanted[at : at + 500]
            marks = ",".join("?" * len(batch))
            for key, passages, sentences in self._query(
                f"SELECT id, (SELECT COUNT(*) FROM passages WHERE doc = id), "
                f"(SELECT COUNT(*) FROM sentences WHERE doc = id) FROM documents WHERE id IN ({marks})",
                batch,
            ):
                found[int(key)] = (int(passages), int(sentences))
        return found

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads made inside see the file as it is now, whatever commits meanwhile (a read transaction).
        Holds this connection: take it on a connection of its own (`Records(path)`) for long reads."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
            except sqlite3.Error as error:
                raise _translate(error, self.path) from None
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def records(
        self, keys: Sequence[int] | None = None, dimension: int = 0, vectors: bool = True
    ) -> Iterator[DocumentRecord]:
        """Stored documents (all of them, in id order, when `keys` is None), whole; without their vectors
        (empty arrays) when `vectors` is False."""
        wanted = self.keys() if keys is None else sorted(set(keys))
        vector = "vector" if vectors else "x''"
        for at in range(0, len(wanted), 500):
            batch = wanted[at : at + 500]
            marks = ",".join("?" * len(batch))
            documents = self._query(
                f"SELECT id, doc_id, title, source, metadata, text, {self._layout} FROM documents "
                f"WHERE id IN ({marks}) ORDER BY id",
                batch,
            )
            passages: dict[int, list[tuple]] = {}
            for row in self._query(
                f"SELECT doc, start, end, sentences, {vector}, terms FROM passages WHERE doc IN ({marks}) "
                "ORDER BY doc, ord",
                batch,
            ):
                passages.setdefault(int(row[0]), []).append(row)
            sentences: dict[int, list[tuple]] = {}
            for row in self._query(
                f"SELECT doc, start, end, terms, {vector} FROM sentences WHERE doc IN ({marks}) ORDER BY doc, ord",
                batch,
            ):
                sentences.setdefault(int(row[0]), []).append(row)
            for key, *fields in documents:
                p_rows, s_rows = passages.get(int(key), []), sentences.get(int(key), [])
                yield DocumentRecord(
                    document=_document(*fields),
                    passages=[Passage(int(s), int(e), _ints(b, np.int32), _ints(t)) for _, s, e, b, _, t in p_rows],
                    sentences=[Sentence(int(s), int(e), _ints(b)) for _, s, e, b, _ in s_rows],
                    passage_vectors=_matrix([r[4] for r in p_rows] if vectors else [], dimension),
                    sentence_vectors=_matrix([r[4] for r in s_rows] if vectors else [], dimension),
                    key=int(key),
                )

    def documents(self, first_key: int, last_key: int) -> dict[int, Document]:
        """The stored documents whose keys lie in `[first_key, last_key]`, without their passages or sentences."""
        return {
            int(key): _document(*row)
            for key, *row in self._query(
                f"SELECT id, doc_id, title, source, metadata, text, {self._layout} FROM documents "
                "WHERE id BETWEEN ? AND ? ORDER BY id",
                (first_key, last_key),
            )
        }

    def originals(self, doc_ids: Sequence[str] | None = None) -> set[str]:
        """SHA-256 of the original files the stored documents `doc_ids` (all, when None) keep."""
        if self._layout == "NULL":  # a read-only file from before originals
            return set()
        if doc_ids is None:
            return {str(h) for (h,) in self._query("SELECT DISTINCT sha256 FROM originals")}
        found: set[str] = set()
        for at in range(0, len(doc_ids), 500):
            batch = list(doc_ids[at : at + 500])
            marks = ",".join("?" * len(batch))
            rows = self._query(
                f"SELECT o.sha256 FROM originals o JOIN documents d ON d.id = o.doc WHERE d.doc_id IN ({marks})", batch
            )
            found.update(str(h) for (h,) in rows)
        return found

    def documents_with_originals(self) -> dict[str, Document]:
        """source -> stored document, for every document that keeps an original file (PDF, HTML, DOCX): what a
        folder sync compares a file's hash with before it extracts the file again."""
        if self._layout == "NULL":
            return {}
        rows = self._query(
            "SELECT d.doc_id, d.title, d.source, d.metadata, d.text, d.layout FROM documents d "
            "JOIN originals o ON o.doc = d.id"
        )
        return {str(row[2]): _document(*row) for row in rows}

    def unreferenced(self, hashes: Iterable[str]) -> set[str]:
        """Those of `hashes` that no stored document keeps as its original."""
        return {h for h in hashes if not self._query("SELECT 1 FROM originals WHERE sha256 = ? LIMIT 1", (h,))}

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the main file (before the file is moved or copied whole)."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:
                raise _translate(error, self.path) from None

    def passage_terms(self, keys: Sequence[int]) -> dict[int, list[tuple[int, ...]]]:
        """The BM25 terms of each passage of the stored documents `keys` (those still stored), in order."""
        found: dict[int, list[tuple[int, ...]]] = {}
        wanted = sorted(set(keys))
        for at in range(0, len(wanted), 500):
            batch = wanted[at : at + 500]
            marks = ",".join("?" * len(batch))
            for doc, terms in self._query(
                f"SELECT doc, terms FROM passages WHERE doc IN ({marks}) ORDER BY doc, ord", batch
            ):
                found.setdefault(int(doc), []).append(_ints(terms))
            for (doc,) in self._query(f"SELECT id FROM documents WHERE id IN ({marks})", batch):
                found.setdefault(int(doc), [])  # stored, without passages
        return found

    def integrity_check(self) -> str:
        """SQLite's own check of the file: "ok" or what is wrong."""
        rows = self._query("PRAGMA integrity_check")
        return "; ".join(str(r[0]) for r in rows[:5])

    def backup(self, destination: Path) -> None:
        """A consistent copy of the live file (SQLite's online backup), fsynced."""
        with self._lock:
            target = sqlite3.connect(destination)
            try:
                self._db.backup(target)
            finally:
                target.close()


def _document(doc_id: str, title: str | None, source: str, metadata: str, text: str, layout: str | None) -> Document:
    return Document(
        doc_id=doc_id,
        text=text,
        title=title,
        source=source,
        metadata=json.loads(metadata),
        layout=Layout.from_json(layout),
    )


def _matrix(blobs: Sequence[bytes], dimension: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1).copy()
