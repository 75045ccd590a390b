"""Document-level evidence: a passage of a document that matches the question as a whole ranks higher."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.text.documents import Document
from indexer.text.lexical import term_id
from service.engine import Engine
from service.search.cues import QueryStyle, query_style
from service.search.retrieval import (
    Mode,
    RetrievalConfig,
    Retriever,
    document_weights,
    scale_like,
    shared_sentence_terms,
    term_frequencies,
)
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
    off = RetrievalConfig(document_bm25=0.0, document_dense=0.0, document_bm25_alone=0.0)
    plain = evidence_engine.retriever(off, embedder.encode_query).search(query, 3, Mode.bm25)
    assert plain[0].doc_id == "single"  # two "glacier"s in a short passage beat one of each term apart
    hits = evidence_engine.retriever(RetrievalConfig(), embedder.encode_query).search(query, 3, Mode.bm25)
    assert hits[0].doc_id == "spread"  # the default weighs the document in
    document = evidence_engine.view.document("spread")
    assert document is not None
    assert all(document.text[h.start : h.end] == h.text for h in hits if h.doc_id == "spread")
    # The BM25 mode reads its own weight: the hybrid one alone changes nothing there.
    alone = evidence_engine.retriever(replace(off, document_bm25_alone=0.7), embedder.encode_query)
    assert alone.search(query, 1, Mode.bm25)[0].doc_id == "spread"
    hybrid_only = evidence_engine.retriever(replace(off, document_bm25=0.7), embedder.encode_query)
    assert [h.start for h in hybrid_only.search(query, 3, Mode.bm25)] == [h.start for h in plain]
    # A hit still reports its passage's own BM25, not the mix.
    own = {(h.doc_id, h.start): h.bm25 for h in plain}
    assert all(own[(h.doc_id, h.start)] == h.bm25 for h in hits if (h.doc_id, h.start) in own)


@pytest.mark.parametrize("mode", list(Mode))
def test_document_evidence_never_reorders_the_passages_of_one_document(
    evidence_engine: Engine, embedder: Embedder, mode: Mode
):
    # Copies ("spread" and "untitled" share their text) are kept apart, or which one stands would vary.
    off = RetrievalConfig(document_bm25=0.0, document_dense=0.0, document_bm25_alone=0.0, copy_similarity=2.0)
    strong = replace(off, document_bm25=0.9, document_dense=0.9, document_bm25_alone=0.9)

    def order(config: RetrievalConfig) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for hit in evidence_engine.retriever(config, embedder.encode_query).search("glacier ice record", 50, mode):
            found.setdefault(hit.doc_id, []).append(hit.start)
        return found

    before, after = order(off), order(strong)
    assert before.keys() == after.keys() and len(before["spread"]) > 1
    assert before == after


def test_document_bm25_counts_the_sentences_consecutive_passages_share_once(
    evidence_engine: Engine, embedder: Embedder
):
    view = evidence_engine.view
    retriever = evidence_engine.retriever(RetrievalConfig(), embedder.encode_query)
    passages, _ = view.passages_of_documents(np.asarray([view.doc_rows["spread"]]), 10**6)
    query = retriever._query("glacier basalt sentence record")
    tf, lengths = term_frequencies(view, passages, query.ids)
    shared_tf, shared_lengths = shared_sentence_terms(view, passages, query.ids)
    assert shared_lengths.sum() > 0 and shared_tf.sum() > 0  # consecutive passages overlap
    assert shared_lengths[0] == 0  # the first passage shares nothing with an earlier one
    document = view.document("spread")
    assert document is not None
    # No term repeats within a sentence here, so the counts less the overlap are exactly the text's.
    terms = [term_id(t) for t in retriever.analyzer.terms(document.text)]
    assert (tf - shared_tf).sum(axis=0).tolist() == [terms.count(i) for i in query.ids.tolist()]
    assert (lengths - shared_lengths).sum() == len(terms)


def test_document_weights_fade_beyond_the_span():
    sizes = np.asarray([1, 4, 8, 16])
    assert document_weights(0.6, sizes, 0).tolist() == [0.6] * 4
    assert document_weights(0.6, sizes, 4).tolist() == pytest.approx([0.6, 0.6, 0.15, 0.0375])


def test_scale_like_puts_document_scores_on_the_passages_scale():
    passages = {1: 0.2, 2: 0.6, 3: 0.4}
    documents = np.asarray([0.4, 0.5, 0.8])
    # min-max of the passages maps .2 -> 0 and .6 -> 1; documents that differ by .1 stay .25 apart.
    assert scale_like(documents, passages, "minmax").tolist() == pytest.approx([0.5, 0.75, 1.5])
    spread = float(np.std([0.2, 0.6, 0.4]))
    assert scale_like(documents, passages, "zscore").tolist() == pytest.approx(((documents - 0.4) / spread).tolist())
    assert scale_like(documents, {1: 0.3, 2: 0.3}, "minmax").tolist() == [0.0, 0.0, 0.0]
    assert scale_like(documents, {}, "minmax").tolist() == [0.0, 0.0, 0.0]


PARAGRAPH = " ".join(FILLER[:4])  # a query of a paragraph's length: a topic described, not a question asked


@pytest.mark.parametrize(
    ("query", "style"),
    [
        ("how many US troops were sent", QueryStyle.question),
        ("since when has the coalition been bombing daesh", QueryStyle.question),
        ("On which magazine's cover did Tesla appear in 1931", QueryStyle.question),
        ("Did the offensive start in June?", QueryStyle.question),
        ("statins and breast cancer", QueryStyle.statement),
        ("Vitamin D supplements reduce the risk of fractures.", QueryStyle.statement),
        ("Breast Cancer & Alcohol: How Much is Safe?", QueryStyle.question),
        ("what " * 39 + "what", QueryStyle.topic),
        (PARAGRAPH, QueryStyle.topic),
    ],
)
def test_query_style_tells_questions_statements_and_topics_apart(query: str, style: QueryStyle):
    assert query_style(query, 40) == style
    assert query_style(query, 0) != QueryStyle.topic  # 0: no query is a topic


def test_each_query_style_is_ranked_by_its_own_knobs():
    config = RetrievalConfig()
    assert config.for_style(QueryStyle.question) is config
    topic = config.for_style(QueryStyle.topic)
    assert config.topic is not None and topic.topic is None and topic.statement is None
    assert (topic.sentence_weight, topic.answer_rerank, topic.dense_weight) == (0.0, 0.0, 0.6)
    assert topic.document_bm25 == config.document_bm25  # a knob the style leaves unset keeps its value
    assert topic.for_style(QueryStyle.topic) is topic  # the style's knobs apply once
    statement = config.for_style(QueryStyle.statement)
    assert statement.dense_weight == 0.6 and statement.sentence_weight == config.sentence_weight
    plain = RetrievalConfig(topic=None, statement=None)
    assert all(plain.for_style(style) is plain for style in QueryStyle)


@pytest.mark.parametrize("mode", list(Mode))
def test_a_paragraph_long_query_searches_by_the_topic_knobs(evidence_engine: Engine, embedder: Embedder, mode: Mode):
    assert RetrievalConfig().style(PARAGRAPH) == QueryStyle.topic
    default = evidence_engine.retriever(RetrievalConfig(), embedder.encode_query)
    topical = evidence_engine.retriever(RetrievalConfig().for_style(QueryStyle.topic), embedder.encode_query)
    as_question = evidence_engine.retriever(RetrievalConfig(topic=None, statement=None), embedder.encode_query)

    def ranked(retriever: Retriever, query: str) -> list[tuple[str, int, float, float]]:
        return [(h.doc_id, h.start, round(h.dense, 6), round(h.fused, 6)) for h in retriever.search(query, 8, mode)]

    assert ranked(default, PARAGRAPH) == ranked(topical, PARAGRAPH)
    if mode != Mode.bm25:  # dense scores are the passages' own cosines, no best sentence blended in
        assert ranked(default, PARAGRAPH) != ranked(as_question, PARAGRAPH)
        view, vector = evidence_engine.view, embedder.encode_query(PARAGRAPH)
        for hit in default.search(PARAGRAPH, 8, mode):
            first = int(view.doc_passages[view.doc_rows[hit.doc_id]])
            rows = range(first, first + view.passage_count(hit.doc_id))
            row = next(r for r in rows if view.passage_starts[r] == hit.start)
            assert hit.dense == pytest.approx(float(view.passage_vectors.take(np.asarray([row]))[0] @ vector), abs=1e-5)
    question = "where did the glacier move across the valley"
    assert ranked(default, question) == ranked(as_question, question)  # a question never sees them
    statement = "glacier and basalt under the ice sheet"
    weighted = evidence_engine.retriever(
        RetrievalConfig(topic=None, statement=None, dense_weight=0.6), embedder.encode_query
    )
    assert ranked(default, statement) == ranked(weighted, statement)
