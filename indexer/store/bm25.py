"""BM25 over the passages on tantivy: incremental adds and deletes, durable commits, index-wide statistics.

Each passage is one tantivy document: its BM25 terms as stored in the record file (the `term_id`s that
Citeline's own analysis gave, `indexer/text/lexical.py`, written in hex and split again by tantivy's whitespace
tokenizer), the id of its stored document version (`doc`, for deletes) and its ordinal in it (`ord`). The
index analyses no text: a replay reads the stored terms, and a question's terms go through the same ids.
Each stored document also gets one entry of its distinct terms in `doc_terms`, so the index counts in how many
documents, not only passages, a term occurs: whole-document BM25 needs that idf (issue #21).

The index follows the record file's operation log: `APPLIED` holds the last sequence number committed
here, and `catch_up` replays the rest, deleting a document version before adding it, so a replay after a
crash is idempotent. tantivy's own lock lets one process write at a time; the writer is opened per catch-up,
under the index's writer lock, and closed again so another process can write next.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tantivy

from indexer.errors import CitelineError
from indexer.store.records import Records
from indexer.text.lexical import term_id

logger = logging.getLogger(__name__)

BM25_DIR = "bm25"
APPLIED_FILE = "APPLIED"
_WRITER_HEAP = 50_000_000
# Every document entry holds this token too: its document frequency is the number of documents.
_EVERY_DOCUMENT = "all"
_DOCUMENT_ORD = 2**32  # the `ord` of a document entry (no passage has it)


def _readable_as_umask_allows(folder: Path) -> None:
    """tantivy writes some files (.managed.json, meta.json) readable by their owner only; give them the read
    bits the process's umask allows, like every other file, so another user can serve the index (an image's
    index, built as root, served as an unprivileged user)."""
    umask = os.umask(0)
    os.umask(umask)
    wanted = 0o444 & ~umask
    for path in folder.iterdir():
        mode = path.stat().st_mode
        if path.is_file() and mode & wanted != wanted:
            path.chmod((mode | wanted) & 0o7777)


class BM25Error(CitelineError, RuntimeError):
    """The BM25 index is missing, damaged or could not be written."""


def _schema(documents: bool = True) -> tantivy.Schema:
    """The index's fields; `documents=False`: as indexes written before the document entries were."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("terms", tokenizer_name="whitespace", index_option="freq")
    if documents:
        builder.add_text_field("doc_terms", tokenizer_name="whitespace", index_option="basic")
    builder.add_unsigned_field("doc", indexed=True, fast=True)
    builder.add_unsigned_field("ord", fast=True)
    return builder.build()


def token(term: str) -> str:
    """What the BM25 index holds for an analysed term: its `term_id` in hex."""
    return format(term_id(term), "x")


@dataclass(frozen=True)
class BM25Hits:
    """Passages a BM25 query matched: stored document id, ordinal in it, score; best first."""

    keys: np.ndarray  # int64 documents.id
    ords: np.ndarray  # int64
    scores: np.ndarray  # float32


class BM25Searcher:
    """One point-in-time view of the BM25 index: what a search reads, never changed."""

    def __init__(self, searcher: tantivy.Searcher, schema: tantivy.Schema, documents: bool = True) -> None:
        self._searcher = searcher
        self._schema = schema
        self.has_documents = documents  # False: an index of the older schema, read-only here (no document idf)
        self.num_documents = 0
        if documents:  # live entries only (a term's doc_freq still counts deleted ones until they merge away)
            every = tantivy.Query.term_query(schema, "doc_terms", _EVERY_DOCUMENT)
            found = searcher.search(every, 1, count=True)
            self.num_documents = int(found.count or 0)  # type: ignore[attr-defined]  # (missing from the stub)
        self.num_docs = int(searcher.num_docs) - self.num_documents  # passages

    def _query(self, terms: Sequence[str]) -> tantivy.Query:
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "terms", token(t), "freq")) for t in terms]
        )

    def _run(self, query: tantivy.Query, limit: int) -> BM25Hits:
        if limit <= 0:
            return BM25Hits(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        hits = self._searcher.search(query, limit, count=False).hits
        addresses = [address for _, address in hits]
        return BM25Hits(
            np.asarray(self._searcher.fast_field_values("doc", addresses), dtype=np.int64),
            np.asarray(self._searcher.fast_field_values("ord", addresses), dtype=np.int64),
            np.asarray([score for score, _ in hits], dtype=np.float32),
        )

    def top(self, terms: Sequence[str], limit: int) -> BM25Hits:
        """The `limit` best passages for the query's terms (any of them may match)."""
        if not terms:
            return self._run(tantivy.Query.empty_query(), 0)
        return self._run(self._query(terms), limit)

    def top_within(self, terms: Sequence[str], keys: Sequence[int], limit: int) -> BM25Hits:
        """Like `top`, among the passages of the stored documents `keys` (a filter)."""
        if not terms or not keys:
            return self._run(tantivy.Query.empty_query(), 0)
        within = tantivy.Query.const_score_query(
            tantivy.Query.term_set_query(self._schema, "doc", [int(k) for k in keys]), 0.0
        )
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, within), (tantivy.Occur.Must, self._query(terms))])
        return self._run(query, limit)

    def idf(self, terms: Sequence[str]) -> np.ndarray:
        """Inverse document frequency of each term over the passages (Lucene's, as tantivy scores with)."""
        return self._idf("terms", terms, self.num_docs)

    def document_idf(self, terms: Sequence[str]) -> np.ndarray | None:
        """Lucene's idf of each term over whole documents; None for an index without document entries."""
        return self._idf("doc_terms", terms, self.num_documents) if self.has_documents else None

    def _idf(self, field: str, terms: Sequence[str], n: int) -> np.ndarray:
        return lucene_idf(self._freqs(field, terms, n), n)

    def _freqs(self, field: str, terms: Sequence[str], n: int) -> list[int]:
        # Counts entries deleted but not yet merged away, as Lucene's does: they fade as segments merge.
        return [min(self._searcher.doc_freq(field, token(term)), n) for term in terms]

    def frequencies(self, terms: Sequence[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """How many passages, and how many documents, hold each term (documents: 0s without their entries)."""
        passages = tuple(self._freqs("terms", terms, self.num_docs))
        documents = tuple(
            self._freqs("doc_terms", terms, self.num_documents) if self.has_documents else [0] * len(terms)
        )
        return passages, documents


def lucene_idf(freqs: Sequence[int], n: int) -> np.ndarray:
    """Lucene's idf of terms held by `freqs` of `n` entries (0 for a term held by none)."""
    return np.asarray(
        [math.log1p((n - df + 0.5) / (df + 0.5)) if df else 0.0 for df in (min(f, n) for f in freqs)],
        dtype=np.float64,
    )


class BM25Index:
    """The tantivy index of one store, kept up to date with the record file's log."""

    def __init__(self, folder: Path, read_only: bool = False) -> None:
        """`read_only`: the folder cannot be written (an image's index); tantivy still takes a lock file to
        read, so it reads a private copy of the folder (removed at exit)."""
        self.folder = folder
        self._schema = _schema()
        self._documents = True
        self.outdated = False  # of the schema before document entries: the next catch-up rebuilds it
        opened = folder
        try:
            if read_only:
                opened = Path(tempfile.mkdtemp(prefix="citeline-bm25-")) / BM25_DIR
                atexit.register(shutil.rmtree, opened.parent, True)
                shutil.copytree(folder, opened, ignore=shutil.ignore_patterns("*.lock"), copy_function=shutil.copyfile)
                opened.chmod(0o700)  # copytree copies the folder's (read-only) mode
            else:
                folder.mkdir(parents=True, exist_ok=True)
            self._index = self._open(opened, read_only)
        except (ValueError, OSError) as error:
            if read_only:
                shutil.rmtree(opened.parent, ignore_errors=True)
            raise BM25Error(
                f"{folder}: the BM25 index cannot be opened ({error}); delete the folder and open the index for "
                "writing to rebuild it from the record file"
            ) from None

    def _open(self, path: Path, read_only: bool) -> tantivy.Index:
        """The index at `path`. One written before the document entries is read as it is (no document idf)
        until the next catch-up, under the writer lock, rebuilds it (`outdated`); read-only, it stays so."""
        try:
            return tantivy.Index(self._schema, path=str(path), reuse=True)
        except ValueError as error:
            if "schema does not match" not in str(error):
                raise
        self._schema, self._documents, self.outdated = _schema(documents=False), False, not read_only
        return tantivy.Index(self._schema, path=str(path), reuse=True)

    def _rebuild(self) -> None:
        """Start the index over with the current schema; the catch-up that calls this replays the whole log."""
        logger.warning("%s: the BM25 index predates document entries; rebuilding it from the record file", self.folder)
        shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        self._schema, self._documents, self.outdated = _schema(), True, False
        self._index = tantivy.Index(self._schema, path=str(self.folder), reuse=True)

    @property
    def applied(self) -> int:
        """The last log sequence committed to this index (0: none)."""
        try:
            return int((self.folder / APPLIED_FILE).read_text(encoding="utf-8").strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            return 0  # a torn write of the marker: replaying everything is safe

    def _mark(self, seq: int) -> None:
        tmp = self.folder / f".{APPLIED_FILE}.tmp"
        tmp.write_text(f"{seq}\n", encoding="utf-8")
        os.replace(tmp, self.folder / APPLIED_FILE)

    def catch_up(self, records: Records) -> int:
        """Apply the log entries past `applied`; returns how many. Call under the index's writer lock."""
        if self.outdated:
            try:
                self._rebuild()
            except (ValueError, OSError) as error:
                raise BM25Error(f"{self.folder}: the BM25 index could not be rebuilt ({error})") from None
        ops = records.ops_since(self.applied)
        if not ops:
            return 0
        adds = [op.key for op in ops if op.action == "add"]
        stored = records.passage_terms(adds) if adds else {}
        try:
            writer = self._index.writer(heap_size=_WRITER_HEAP, num_threads=1)
            # A writer killed mid-commit leaves files the next commit may name again: remove the unreferenced.
            writer.garbage_collect_files()
            for op in ops:
                # By query: the term form types an int as i64, which never matches the u64 field.
                writer.delete_documents_by_query(tantivy.Query.term_query(self._schema, "doc", op.key))
                passages = stored.get(op.key) if op.action == "add" else None
                if passages is None:
                    continue  # deleted again later in the log: its delete comes next
                for ordinal, terms in enumerate(passages):
                    document = tantivy.Document()
                    document.add_text("terms", " ".join(format(t, "x") for t in terms))
                    document.add_unsigned("doc", op.key)
                    document.add_unsigned("ord", ordinal)
                    writer.add_document(document)
                if self._documents:
                    whole = tantivy.Document()
                    distinct = sorted({t for terms in passages for t in terms})
                    whole.add_text("doc_terms", " ".join([_EVERY_DOCUMENT, *(format(t, "x") for t in distinct)]))
                    whole.add_unsigned("doc", op.key)
                    whole.add_unsigned("ord", _DOCUMENT_ORD)
                    writer.add_document(whole)
            writer.commit()
            writer.wait_merging_threads()
        except (ValueError, OSError) as error:
            raise BM25Error(f"{self.folder}: the BM25 index could not be written ({error})") from None
        self._mark(ops[-1].seq)
        _readable_as_umask_allows(self.folder)
        return len(ops)

    def searcher(self) -> BM25Searcher:
        """A view of the index as last committed (by this process or another)."""
        try:
            self._index.reload()
            return BM25Searcher(self._index.searcher(), self._schema, self._documents)
        except (ValueError, OSError) as error:
            raise BM25Error(
                f"{self.folder}: the BM25 index cannot be read ({error}); restore it from a backup, or delete the "
                "folder and open the index for writing to rebuild it from the record file"
            ) from None
