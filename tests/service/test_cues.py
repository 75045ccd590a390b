"""Question-type cues and the answering-sentence score, on small hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.text.documents import reads_as_headline
from indexer.text.lexical import QUESTION_WORDS, Analyzer, BM25Config, bm25_texts, mark_acronyms, term_id
from service.search.cues import AnswerKind, answer_kind, has_answer_kind
from service.search.retrieval import (
    HEADING,
    RetrievalConfig,
    SentenceWeights,
    best_per_passage,
    sentence_scores,
    term_coverage,
)
from tests.bm25 import bm25_scores

HIGHLIGHT_TERM_WEIGHT = RetrievalConfig.highlight_term_weight
CUE_BONUS = RetrievalConfig.cue_bonus
HIGHLIGHT = RetrievalConfig().highlight_weights


def best_sentences(coverage, holds, cosine, lengths, cue=0.0, cosine_weight=0.0, in_heading=None, heading=0.0):  # type: ignore[no-untyped-def]
    """The second stage's score of each passage, as the retriever computes it."""
    weights = SentenceWeights(cosine_weight, 1.0, cue, heading)
    return best_per_passage(sentence_scores(cosine, coverage, holds, in_heading, weights), lengths)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many US troops were sent?", AnswerKind.number),
        ("how much did the dam cost", AnswerKind.number),
        ("When did IS take control of Raqqa", AnswerKind.time),
        ("what year was the city captured", AnswerKind.time),
        ("how long has the army been absent", AnswerKind.time),
        ("Who is the Russian foreign minister", AnswerKind.person),
        ("name of the US military spokesman in Baghdad", AnswerKind.person),
        ("Where is the Tabqa dam", AnswerKind.place),
        ("which city did the SDF surround", AnswerKind.place),
        ("which tv network did Carter talk to", AnswerKind.name),
        ("why did the offensive stall", None),
        ("describe the offensive", None),
    ],
)
def test_answer_kind_of_questions(question: str, kind: AnswerKind | None):
    assert answer_kind(question) == kind


@pytest.mark.parametrize(
    ("sentence", "kind", "expected"),
    [
        ("The US will send 200 more troops.", AnswerKind.number, True),
        ("Several hundred fighters remain.", AnswerKind.number, True),
        ("The fighters remain in the city.", AnswerKind.number, False),
        ("Raqqa was captured by Islamic State in 2013.", AnswerKind.number, False),  # a year is no count
        ("In 2016 about 3,000 to 5,000 fighters held it.", AnswerKind.number, True),
        ("Raqqa was captured in 2013.", AnswerKind.time, True),
        ("It starts in the next few weeks.", AnswerKind.time, True),
        ("It was captured by force.", AnswerKind.time, False),
        ("The statement was read by Sergey Lavrov on television.", AnswerKind.person, True),
        ("Sergey spoke.", AnswerKind.person, False),
        ("Fighting continued near Tabqa overnight.", AnswerKind.place, True),
        ("fighting continued overnight.", AnswerKind.place, False),
        ("Carter spoke to NBC News on Wednesday.", AnswerKind.name, True),
        ("Carter spoke to reporters.", AnswerKind.name, False),
    ],
)
def test_sentence_has_answer_kind(sentence: str, kind: AnswerKind, expected: bool):
    assert has_answer_kind(sentence, kind) is expected


def test_term_coverage_is_the_share_of_question_idf():
    query_ids, weights = np.array([1, 2, 3]), np.array([2.0, 1.0, 1.0])
    assert term_coverage(np.array([1, 2, 7]), query_ids, weights) == pytest.approx(0.75)
    assert term_coverage(np.array([], dtype=np.int64), query_ids, weights) == 0.0
    assert term_coverage(np.array([1]), np.array([], dtype=np.int64), np.array([])) == 0.0


def test_answer_sentence_scores_add_coverage_and_cue_to_the_cosine():
    question = "how many troops did Carter send"
    sentences = ["Carter spoke about the offensive.", "Carter will send 200 troops."]
    coverage = np.array([0.4, 0.9])
    kind = answer_kind(question)
    assert kind is not None
    holds = np.array([has_answer_kind(sentence, kind) for sentence in sentences])
    assert holds.tolist() == [False, True]
    scores = sentence_scores(np.array([0.5, 0.5]), coverage, holds, None, HIGHLIGHT)
    assert scores.tolist() == pytest.approx(
        [0.5 + HIGHLIGHT_TERM_WEIGHT * 0.4, 0.5 + HIGHLIGHT_TERM_WEIGHT * 0.9 + CUE_BONUS]
    )
    without_cue = sentence_scores(np.array([0.5, 0.5]), coverage, None, None, HIGHLIGHT)
    assert without_cue[1] - without_cue[0] == pytest.approx(HIGHLIGHT_TERM_WEIGHT * 0.5)
    no_vector = sentence_scores(None, coverage, None, None, HIGHLIGHT)
    assert no_vector[1] > no_vector[0] > 0


def test_second_stage_scores_each_passage_by_its_best_sentence():
    # "when did IS take control of raqqa": passage 0 holds the answer in other words, passage 1 shares "control".
    sentences = [
        "IS fighters wanted children.",
        "Raqqa was captured by Islamic State in 2013.",
        "US intent on controlling Raqqa.",
    ]
    coverage = np.array([0.18, 0.32, 0.51])
    holds_time = np.array([has_answer_kind(s, AnswerKind.time) for s in sentences])
    assert holds_time.tolist() == [False, True, False]
    cosine = np.array([0.15, 0.75, 0.57])
    lengths = np.array([2, 1, 0])  # the third passage has no sentences: no bonus

    terms_only = best_sentences(coverage, None, None, lengths)
    assert terms_only.tolist() == pytest.approx([0.32, 0.51, 0.0])
    with_cue = best_sentences(coverage, holds_time, None, lengths, cue=0.25)
    assert with_cue.tolist() == pytest.approx([0.32 + 0.25, 0.51, 0.0])
    with_cosine = best_sentences(coverage, holds_time, cosine, lengths, cue=0.25, cosine_weight=0.5)
    assert with_cosine.tolist() == pytest.approx([0.32 + 0.25 + 0.375, 0.51 + 0.285, 0.0])
    assert with_cosine[0] - with_cosine[1] > with_cue[0] - with_cue[1], "meaning widens the answer's lead"


def test_a_headline_of_another_story_loses_to_the_answering_sentence():
    # "which le figaro journalist reported on the race to raqqa": a related story's link inside the article
    # is close in meaning; the answer shares two rare terms but little meaning.
    sentences = ["Perfect Timing: Why Syrian Army Joined 'Race' to Liberate Raqqa", "Malbrunot of Le Figaro notes."]
    coverage, cosine = np.array([0.35, 0.45]), np.array([0.52, 0.25])
    in_heading = np.array([reads_as_headline(sentence) for sentence in sentences])
    assert in_heading.tolist() == [True, False]
    lengths = np.array([2])
    without = best_sentences(coverage, None, cosine, lengths, cosine_weight=1.0)
    assert without.tolist() == pytest.approx([0.35 + 0.52])
    penalised = best_sentences(coverage, None, cosine, lengths, 0.25, 1.0, in_heading, heading=0.5)
    assert penalised.tolist() == pytest.approx([0.45 + 0.25]), "the best sentence is now the article's own"
    highlight = sentence_scores(cosine, coverage, None, in_heading, HIGHLIGHT)
    assert int(np.argmax(highlight)) == 1
    assert np.argmax(sentence_scores(cosine, coverage, None, None, HIGHLIGHT)) == 0
    only_headings = best_sentences(coverage[:1], None, cosine[:1], np.array([1]), 0.25, 1.0, in_heading[:1], 0.5)
    assert only_headings[0] < without[0], "a passage of headlines alone keeps a lowered score, not none"


def test_seed_headlines_inside_an_article_are_found(engine):
    retriever = engine.state.retriever
    view = retriever.view
    document = next(i for i, d in enumerate(view.documents) if d.doc_id.startswith("004_"))
    rows = np.flatnonzero(view.sentence_docs == document)
    text = view.documents[document].text
    flagged = {
        text[view.sentence_starts[r] : view.sentence_ends[r]] for r in rows[retriever._facts.holds(rows, HEADING)]
    }
    assert "Perfect Timing: Why Syrian Army Joined 'Race' to Liberate Raqqa" in flagged
    assert not any("Malbrunot" in sentence for sentence in flagged)


def test_stored_sentence_terms_match_the_bm25_tokeniser(engine):
    view = engine.view
    analyzer = engine.analyzer
    texts = [d.text for d in view.documents]
    expanded = 0
    for row in range(0, len(view.sentence_docs), 7):
        document = view.sentence_docs[row]
        start, end = int(view.sentence_starts[row]), int(view.sentence_ends[row])
        stored = view.sentence_term_ids[view.sentence_term_ptr[row] : view.sentence_term_ptr[row + 1]]
        (indexed,) = bm25_texts(texts, [(document, start, end)], analyzer.config)
        assert stored.tolist() == sorted({term_id(t) for t in analyzer.terms(indexed)})
        expanded += indexed != " ".join(texts[document][start:end].split())
    assert expanded, "some seed sentences use an acronym their article spells out ('IS', 'SDF')"


def test_sentence_facts_are_found_once_each_and_kept():
    from service.search.retrieval import SentenceFact, SentenceFacts

    texts = ["Raqqa fell in 2013.", "The city is large.", "About 200 troops came.", "Carter spoke."]
    asked: list[tuple[SentenceFact, list[int]]] = []

    def find(fact: SentenceFact, rows: np.ndarray) -> list[bool]:
        asked.append((fact, rows.tolist()))
        return [has_answer_kind(texts[r], AnswerKind(fact)) for r in rows.tolist()]

    facts = SentenceFacts(len(texts), find)
    for rows in ([0, 1], [1, 2, 3, 0], [3, 2]):
        for kind in (AnswerKind.time, AnswerKind.number):
            expected = [has_answer_kind(texts[r], kind) for r in rows]
            assert facts.holds(np.array(rows), kind).tolist() == expected
    for kind in (AnswerKind.time, AnswerKind.number):
        assert sorted(r for fact, call in asked if fact == kind for r in call) == [0, 1, 2, 3], "each sentence once"


def test_acronyms_that_lowercase_into_stopwords_stay_terms():
    assert mark_acronyms("IS fighters took the city; It was 2013.") == "is_acr fighters took the city; It was 2013."
    assert mark_acronyms("WHEN DID IS TAKE RAQQA") == "WHEN DID IS TAKE RAQQA", "all caps: no acronym to tell"
    scores = bm25_scores(
        ["IS fighters held Raqqa.", "The dam is held by fighters."], "when did IS take Raqqa", BM25Config()
    )
    assert scores[0] > scores[1]
    assert "is_acr" not in Analyzer(BM25Config(keep_acronyms=False)).terms("IS fighters")


def test_question_words_are_left_out_of_queries_but_kept_in_the_index():
    passages = ["The operation would kick off when it did.", "Islamic State captured Raqqa in 2013.", "Troops left."]
    analyzer = Analyzer(BM25Config())
    question = "When did Islamic State capture the city"
    every_word = set(analyzer.query_terms(question, skip_question_words=False))
    kept = analyzer.query_terms(question)
    assert set(kept) < every_word, "'when' and 'did' are indexed words, dropped from the query"
    assert analyzer.query_terms("when did it") == [], "nothing but question words: no terms"
    with_question_words = bm25_scores(passages, question, BM25Config(), skip_question_words=False)
    assert with_question_words[0] > 0, "the passage matched only on 'when did'"
    scores = bm25_scores(passages, question, BM25Config())
    assert scores[0] == 0 and scores[1] > 0
    assert analyzer.terms("Who did what, and how?", QUESTION_WORDS) == []


def test_vectorised_coverage_equals_the_per_sentence_definition(engine):
    from service.search.retrieval import sentence_coverage

    view = engine.view
    retriever = engine.state.retriever
    rows = np.arange(len(view.sentence_docs))
    ptr, ids = view.sentence_term_ptr, view.sentence_term_ids
    for question in ("how many US troops were sent", "when did IS take control of Raqqa", "the of and", "Lavrov"):
        query = retriever._query(question)
        expected = [term_coverage(ids[ptr[r] : ptr[r + 1]], query.ids, query.idf) for r in rows]
        assert sentence_coverage(view, rows, query.ids, query.idf).tolist() == pytest.approx(expected)


def test_highlight_top_limits_the_work_to_the_first_hits(engine):
    from service.search.retrieval import Mode

    retriever = engine.state.retriever
    question = "how many US troops were sent"
    full = retriever.search(question, 5, Mode.hybrid)
    first_only = retriever.search(question, 5, Mode.hybrid, highlight_top=1)
    assert [(h.doc_id, h.start) for h in first_only] == [(h.doc_id, h.start) for h in full]
    assert first_only[0].highlight == full[0].highlight
    assert all((h.highlight.start, h.highlight.end) == (h.start, h.end) for h in first_only[1:])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.lists(
        st.one_of(
            st.sampled_from([" ", "IS", "It", "it", "was", "Raqqa", "fighters", "2013", "U.S.", "\u00a0", "\r\n"]),
            st.text(max_size=4),
        ),
        max_size=20,
    ).map("".join),
    keep_acronyms=st.booleans(),
    stemmer=st.sampled_from(["english", ""]),
)
def test_query_terms_equal_bm25s_tokenize(text: str, keep_acronyms: bool, stemmer: str):
    """The one-question tokeniser of the search path gives exactly the terms bm25s gives the index."""
    import bm25s
    import Stemmer

    index = Analyzer(BM25Config(keep_acronyms=keep_acronyms, stemmer=stemmer))
    prepared = mark_acronyms(text) if keep_acronyms else text
    tokenized = bm25s.tokenize(
        [prepared],
        stopwords="en",
        stemmer=Stemmer.Stemmer(stemmer) if stemmer else None,
        return_ids=False,
        show_progress=False,
    )
    assert index.terms(text) == (list(tokenized[0]) if tokenized else [])
