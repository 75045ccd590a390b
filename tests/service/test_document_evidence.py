"""Document-level evidence: a passage of a document that matches the question as a whole ranks higher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.text.documents import Document
from service.engine import Engine
from service.search.retrieval import Mode, RetrievalConfig
from service.settings import Settings

FILLER = [f"Sentence {n} of the record says nothing that matters to anyone reading it closely." for n in range(20)]


def spread_document(doc_id: str = "spread", title: str | None = "Basalt field notes") -> Document:
    """ "glacier" near the start, "basalt" near the end: no passage holds both, the document does."""
    sentences = ["The glacier moved slowly across the valley floor.", *FILLER[:8], "Basalt lay under the ice sheet."]
    return Document(doc_id=doc_id, text=" ".join(sentences), title=title)


def single_document() -> Document:
    """One short passage with "glacier" twice: the better passage alone, the worse document."""
    return Document(doc_id="single", text="A glacier photo. Another glacier photo from the same trip.", title="Photos")


@pytest.fixture(scope="module")
def evidence_engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    index: Path = tmp_path_factory.mktemp("evidence")
    documents = [spread_document(), single_document(), spread_document("untitled", None)]
    documents += [Document(doc_id=f"other-{n}", text=" ".join(FILLER[n : n + 5]), title=None) for n in range(8)]
    sync_index(documents, index, embedder, show_progress=False)
    return Engine.load(Settings(index=index), embedder=embedder)


def test_passages_of_documents_lists_each_documents_passages_in_order(evidence_engine: Engine):
    view = evidence_engine.view
    rows = np.asarray(sorted(view.doc_rows.values()))
    passages, counts = view.passages_of_documents(rows, 10**6)
    assert counts.sum() == view.num_passages
    assert view.passage_docs[passages].tolist() == np.repeat(rows, counts).tolist()
    assert np.all(np.diff(passages) == 1)
    spread = np.asarray([view.doc_rows["spread"]])
    capped, count = view.passages_of_documents(spread, 1)
    assert count.tolist() == [1] and capped.tolist() == [view.doc_passages[spread[0]]]


def test_document_bm25_counts_terms_across_passages_and_the_title(evidence_engine: Engine, embedder: Embedder):
    retriever = evidence_engine.retriever(RetrievalConfig(), embedder.encode_query)
    view = evidence_engine.view
    assert view.passage_count("spread") > 1
    rows = np.asarray([view.doc_rows["spread"], view.doc_rows["single"]])
    both = retriever.document_scores_bm25(rows, retriever._query("glacier basalt"))
    assert both[0] > both[1] > 0  # the spread document holds both terms
    # The title counts as part of the document: the same text without it scores lower.
    titled = retriever.document_scores_bm25(
        np.asarray([view.doc_rows[d] for d in ("spread", "untitled")]), retriever._query("basalt")
    )
    assert titled[0] > titled[1] > 0


def test_document_evidence_lifts_the_document_that_matches_as_a_whole(evidence_engine: Engine, embedder: Embedder):
    query = "glacier basalt"
    plain = evidence_engine.retriever(RetrievalConfig(), embedder.encode_query).search(query, 3, Mode.bm25)
    assert plain[0].doc_id == "single"  # two "glacier"s in a short passage beat one of each term apart
    lifted = evidence_engine.retriever(RetrievalConfig(document_bm25=0.7), embedder.encode_query)
    hits = lifted.search(query, 3, Mode.bm25)
    assert hits[0].doc_id == "spread"
    document = evidence_engine.view.document("spread")
    assert document is not None
    assert all(document.text[h.start : h.end] == h.text for h in hits if h.doc_id == "spread")
    # Without the lever nothing changes: the default weight leaves the passage scores as they were.
    assert [h.bm25 for h in plain] == [
        h.bm25 for h in evidence_engine.retriever(RetrievalConfig(), embedder.encode_query).search(query, 3, Mode.bm25)
    ]
