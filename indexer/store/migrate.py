"""Migration of a format 1 or 2 index (whole snapshots) to a store, keeping its vectors: nothing is re-embedded.

The store is built beside the old files, in a hidden folder, and moved into place with the record file
last: until that rename the directory is still a (complete) old index, so a migration that is killed is
simply done again at the next start. The old snapshots stay where they were; delete `CURRENT` and
`snapshots/` once the migrated index serves as it should.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from indexer.build import with_terms
from indexer.store.bm25 import BM25_DIR
from indexer.store.legacy import read_legacy
from indexer.store.records import RECORDS_FILE, DocumentRecord, Passage, Sentence
from indexer.store.store import Store, is_legacy, writer_lock
from indexer.text.lexical import Analyzer, BM25Config

STAGING = ".migrating"
logger = logging.getLogger(__name__)


def migrate(index_dir: Path) -> int:
    """Migrate the format 1 or 2 index at `index_dir`; returns the number of documents moved over."""
    with writer_lock(index_dir):
        if not is_legacy(index_dir):
            return 0
        old = read_legacy(index_dir)
        kept = {f.name for f in fields(BM25Config)} - {"k1", "b"}
        bm25 = BM25Config(**{k: v for k, v in old.bm25.items() if k in kept})
        analyzer = Analyzer(bm25)
        staging = index_dir / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(index_dir / BM25_DIR, ignore_errors=True)
        store = Store.create(staging, old.model, old.chunker, bm25)
        try:
            records = []
            passage_rows = np.argsort(old.passage_docs, kind="stable")
            passage_bounds = np.searchsorted(old.passage_docs[passage_rows], np.arange(len(old.documents) + 1))
            sentence_rows = np.argsort(old.sentence_docs, kind="stable")
            sentence_bounds = np.searchsorted(old.sentence_docs[sentence_rows], np.arange(len(old.documents) + 1))
            for row, document in enumerate(old.documents):
                mine = passage_rows[passage_bounds[row] : passage_bounds[row + 1]]
                own_sentences = sentence_rows[sentence_bounds[row] : sentence_bounds[row + 1]]
                local = {int(s): i for i, s in enumerate(own_sentences.tolist())}
                spans = [Sentence(int(old.sentence_starts[s]), int(old.sentence_ends[s]), ()) for s in own_sentences]
                passages = [
                    Passage(
                        int(old.passage_starts[c]),
                        int(old.passage_ends[c]),
                        tuple(
                            local[int(s)]
                            for s in old.passage_sentence_rows[
                                old.passage_sentence_ptr[c] : old.passage_sentence_ptr[c + 1]
                            ]
                        ),
                    )
                    for c in mine.tolist()
                ]
                passages, sentences = with_terms(document, passages, spans, analyzer)
                records.append(
                    DocumentRecord(
                        document=document,
                        passages=passages,
                        sentences=sentences,
                        passage_vectors=old.passage_vectors[mine],
                        sentence_vectors=old.sentence_vectors[own_sentences],
                    )
                )
                if len(records) >= 256:
                    store.write(records)
                    records = []
            store.write(records)
        finally:
            store.records.checkpoint()
            store.close()
        os.replace(staging / BM25_DIR, index_dir / BM25_DIR)
        os.replace(staging / RECORDS_FILE, index_dir / RECORDS_FILE)
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "migrated the format %d index at %s to format 3 (%d documents, no re-embedding); the old snapshots stay "
        "in %s until you delete them",
        old.format_version,
        index_dir,
        len(old.documents),
        index_dir / "snapshots",
    )
    return len(old.documents)


def migrate_if_needed(index_dir: Path) -> bool:
    """Migrate `index_dir` when it holds an index of format 1 or 2; True if it did."""
    if not is_legacy(index_dir):
        return False
    migrate(index_dir)
    return True


def rebuild(source: Path, destination: Path, bm25: BM25Config) -> int:
    """A new store at `destination` holding `source`'s documents, passages and vectors, with its BM25 terms
    found again under other BM25 settings: nothing is re-embedded. Returns the number of documents."""
    analyzer = Analyzer(bm25)
    old = Store.open(source)
    try:
        with writer_lock(destination):
            new = Store.create(destination, old.settings.model, old.settings.chunker, bm25)
            try:
                batch: list[DocumentRecord] = []
                count = 0
                for record in old.records.records(None, old.dimension):
                    passages, sentences = with_terms(record.document, record.passages, record.sentences, analyzer)
                    batch.append(replace(record, passages=passages, sentences=sentences, key=0))
                    count += 1
                    if len(batch) >= 256:
                        new.write(batch)
                        batch = []
                new.write(batch)
            finally:
                new.close()
    finally:
        old.close()
    return count
