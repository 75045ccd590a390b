"""The indexing pipeline: documents → passages and sentences → vectors and terms → the store.

`prepare` is the expensive, pure part (chunking and embedding); `sync_index` and the service's writes hand
its records to the store. Unchanged documents (same content hash) are never embedded again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.collection import API_SOURCE
from indexer.model.embedding import Embedder
from indexer.progress import Progress
from indexer.store.records import DocumentRecord, Passage, Sentence
from indexer.store.store import NoIndexError, SegmentPolicy, Store, StoreError, writer_lock
from indexer.text.chunking import ChunkerConfig, clip_title, embedding_text, passage_spans
from indexer.text.documents import Document
from indexer.text.lexical import Analyzer, BM25Config, bm25_texts, document_acronyms, term_id
from indexer.text.sentences import normalize_whitespace, sentence_spans

logger = logging.getLogger(__name__)
# Documents embedded and stored per transaction by a bulk index: a killed run keeps what it stored.
BATCH_DOCUMENTS = 256


# Cuts and embeds batches of documents, yielding each batch's records when done (in any order): `prepare`
# batch after batch here, or a pool of encoders elsewhere (indexer/cluster.py: Ray). The last argument
# says whether the run is a bulk run, embedded on `Embedder.bulk()`.
PrepareBatches = Callable[
    [Iterable[Sequence[Document]], ChunkerConfig, BM25Config, bool], Iterator[list[DocumentRecord]]
]


@dataclass(frozen=True)
class BuildReport:
    """What one indexing run did."""

    index: Path
    documents: int
    passages: int
    embedded_passages: int
    reused_documents: int
    removed_documents: int
    seconds: float


def _split(document: Document, embedder: Embedder, chunker: ChunkerConfig) -> tuple[list[Passage], list[Sentence]]:
    """A document's passages and the distinct sentences they hold (terms filled in later)."""
    spans_of_passages = passage_spans(document, embedder.token_counter, chunker)
    local: dict[tuple[int, int], int] = {}
    passages = []
    for passage in spans_of_passages:
        spans = sentence_spans(document.text, passage.start, passage.end)
        passages.append(
            Passage(passage.start, passage.end, tuple(local.setdefault((s.start, s.end), len(local)) for s in spans))
        )
    return passages, [Sentence(start, end, ()) for start, end in local]


def with_terms(
    document: Document, passages: Sequence[Passage], sentences: Sequence[Sentence], analyzer: Analyzer
) -> tuple[list[Passage], list[Sentence]]:
    """The spans with their BM25 terms as `term_id`s: a passage's in order with repeats (what BM25 scores), a
    sentence's distinct and sorted (what the highlight's term coverage compares). Acronym pairs are found once."""
    config = analyzer.config
    acronyms = document_acronyms([document.text], config)
    spans = [(0, p.start, p.end) for p in passages] + [(0, s.start, s.end) for s in sentences]
    texts = bm25_texts([document.text], spans, config, acronyms)
    terms = [[term_id(t) for t in analyzer.terms(text)] for text in texts]
    return (
        [Passage(p.start, p.end, p.sentences, tuple(t)) for p, t in zip(passages, terms, strict=False)],
        [
            Sentence(s.start, s.end, tuple(sorted(set(t))))
            for s, t in zip(sentences, terms[len(passages) :], strict=True)
        ],
    )


def prepare(
    documents: Sequence[Document],
    embedder: Embedder,
    chunker: ChunkerConfig,
    bm25: BM25Config,
    show_progress: bool = False,
) -> list[DocumentRecord]:
    """Cut and embed `documents` (title line + passage for passages; sentences alone) into records."""
    analyzer = Analyzer(bm25)
    split = []
    for document in documents:
        passages, sentences = _split(document, embedder, chunker)
        split.append((document, *with_terms(document, passages, sentences, analyzer)))
    titles = [
        clip_title(d.title, embedder.token_counter, chunker.token_limit) if chunker.embed_title else None
        for d, ps, _ in split
        for _ in ps
    ]
    passage_texts = [d.text[p.start : p.end] for d, ps, _ in split for p in ps]
    sentence_texts = [normalize_whitespace(d.text[s.start : s.end]) for d, _, ss in split for s in ss]
    dimension = embedder.info.dimension
    empty = np.zeros((0, dimension), dtype=np.float32)
    passage_vectors = (
        embedder.encode([embedding_text(t, x) for t, x in zip(titles, passage_texts, strict=True)], show_progress)
        if passage_texts
        else empty
    )
    sentence_vectors = embedder.encode(sentence_texts, show_progress) if sentence_texts else empty
    records, p_at, s_at = [], 0, 0
    for document, passages, sentences in split:
        records.append(
            DocumentRecord(
                document=document,
                passages=passages,
                sentences=sentences,
                passage_vectors=np.asarray(passage_vectors[p_at : p_at + len(passages)], dtype=np.float32),
                sentence_vectors=np.asarray(sentence_vectors[s_at : s_at + len(sentences)], dtype=np.float32),
            )
        )
        p_at += len(passages)
        s_at += len(sentences)
    return records


def prepare_here(embedder: Embedder) -> PrepareBatches:
    """`prepare` in this process, one batch after another."""

    def run(
        batches: Iterable[Sequence[Document]], chunker: ChunkerConfig, bm25: BM25Config, bulk: bool
    ) -> Iterator[list[DocumentRecord]]:
        encoding = embedder.bulk() if bulk else embedder
        for batch in batches:
            yield prepare(batch, encoding, chunker, bm25)

    return run


def open_or_create(index_dir: Path, embedder: Embedder, chunker: ChunkerConfig, bm25: BM25Config) -> Store:
    """The store of `index_dir`, created empty when there is none (call under the writer lock)."""
    try:
        store = Store.open(index_dir)
    except NoIndexError:
        return Store.create(index_dir, embedder.info, chunker, bm25)
    store.recover()
    return store


def sync_index(
    documents: Sequence[Document],
    index_dir: Path,
    embedder: Embedder,
    chunker: ChunkerConfig | None = None,
    bm25: BM25Config | None = None,
    show_progress: bool = True,
    keep_api_documents: bool = False,
    segments: SegmentPolicy | None = None,
    keep: Collection[str] = (),
    prepare_batches: PrepareBatches | None = None,
) -> BuildReport:
    """Make the index hold exactly `documents`: embed new or changed ones, delete the rest.

    With `keep_api_documents`, documents written through the API (source `api`) stay too, unless one of
    `documents` has the same id (the sources are the user's declared truth; that is logged). Which they are
    is decided under the writer lock, so an API write landing meanwhile is never dropped. Stored documents
    named in `keep` stay too (files that could not be read this time: their last good version serves).

    Work is stored in batches of `BATCH_DOCUMENTS`, each durable on its own: a run that is interrupted
    and started again embeds only what it had not stored. A large run embeds on the bulk encoder
    (`Embedder.for_run`). A store built with another model or chunker
    is refused (`StoreError`): its vectors and passages would not match new ones. At the end, the new
    vectors are sealed into a memory-mapped segment when `segments` says there are enough. `prepare_batches`
    does the cutting and embedding (default: here, with `embedder`); the store is written here either way.
    """
    started = time.perf_counter()
    chunker = chunker or ChunkerConfig(token_limit=embedder.token_limit)
    bm25 = bm25 or BM25Config()
    if chunker.token_limit > embedder.token_limit:
        raise ValueError(f"token_limit {chunker.token_limit} exceeds the model's limit {embedder.token_limit}")
    with writer_lock(index_dir):
        store = open_or_create(index_dir, embedder, chunker, bm25)
        try:
            built = store.settings
            if built.model.fingerprint != embedder.info.fingerprint or built.chunker != chunker:
                raise StoreError(
                    f"the index at {index_dir} was built with other settings (model {built.model.name!r}, "
                    f"{built.chunker}); index into a new directory, or delete this one to rebuild it"
                )
            stored = store.records.content_hashes()
            wanted = {d.doc_id for d in documents} | set(keep)
            if keep_api_documents:
                for doc_id, source in store.records.sources().items():
                    if source != API_SOURCE:
                        continue
                    if doc_id in wanted:
                        logger.warning(
                            "document %r written through the API is replaced by the one from the sources", doc_id
                        )
                    else:
                        wanted.add(doc_id)
            todo = [d for d in documents if stored.get(d.doc_id) != d.content_hash]
            removed = [doc_id for doc_id in stored if doc_id not in wanted]
            if removed:
                store.write([], removed)
            if stored and todo:
                logger.info(
                    "%d of %d documents are stored already (an earlier run, perhaps interrupted): embedding "
                    "the other %d",
                    len(documents) - len(todo),
                    len(documents),
                    len(todo),
                )
            embedded = 0
            progress = Progress(len(todo), enabled=show_progress)
            batches = (todo[at : at + BATCH_DOCUMENTS] for at in range(0, len(todo), BATCH_DOCUMENTS))
            run = prepare_batches or prepare_here(embedder)
            bulk = embedder.for_run(sum(len(d.text) for d in documents)) is not embedder
            try:
                for records in run(batches, store.settings.chunker, store.settings.bm25, bulk):
                    store.write(records)
                    passages = sum(len(r.passages) for r in records)
                    embedded += passages
                    progress.update(len(records), passages)
            finally:
                progress.close()
            policy = segments or SegmentPolicy()
            if store.seal(policy.seal_passages, policy.index) is not None:
                while store.merge(policy.max_segments, policy.index) is not None:
                    pass
            total = store.records.count("passages")
        finally:
            store.close()
    report = BuildReport(
        index=index_dir,
        documents=len(documents),
        passages=total,
        embedded_passages=embedded,
        reused_documents=len(documents) - len(todo),
        removed_documents=len(removed),
        seconds=time.perf_counter() - started,
    )
    if todo or removed:
        logger.info("index written: %s", report)
    else:
        logger.info("index is up to date: nothing to embed or remove")
    return report
