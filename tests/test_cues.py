"""Question-type cues and the answering-sentence score, on small hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.lexical import BM25Config, LexicalIndex
from service.cues import AnswerKind, answer_kind, has_answer_kind
from service.retrieval import RetrievalConfig, answer_sentence_scores, term_coverage

HIGHLIGHT_TERM_WEIGHT = RetrievalConfig.highlight_term_weight
CUE_BONUS = RetrievalConfig.cue_bonus


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


@pytest.fixture(scope="module")
def lexical() -> LexicalIndex:
    return LexicalIndex.build(
        ["Carter spoke about the offensive.", "The dam held.", "NBC News interviewed Carter.", "Troops arrived."],
        BM25Config(),
    )


def test_term_coverage_is_the_share_of_question_idf(lexical: LexicalIndex):
    weights = {"carter": 2.0, "offens": 1.0, "missing": 1.0}
    assert term_coverage(["carter", "offens"], weights) == pytest.approx(0.75)
    assert term_coverage([], weights) == 0.0 and term_coverage(["x"], {}) == 0.0


def test_answer_sentence_scores_add_coverage_and_cue_to_the_cosine(lexical: LexicalIndex):
    question = "how many troops did Carter send"
    weights = lexical.idf(lexical.terms(question))
    sentences = ["Carter spoke about the offensive.", "Carter will send 200 troops."]
    similarities = np.array([0.5, 0.5])
    scores = answer_sentence_scores(sentences, similarities, weights, answer_kind(question), lexical)
    first = 0.5 + HIGHLIGHT_TERM_WEIGHT * term_coverage(lexical.terms(sentences[0]), weights)
    second = 0.5 + HIGHLIGHT_TERM_WEIGHT * term_coverage(lexical.terms(sentences[1]), weights) + CUE_BONUS
    assert scores.tolist() == pytest.approx([first, second])
    assert scores[1] > scores[0]
    no_vector = answer_sentence_scores(sentences, None, weights, None, lexical)
    assert no_vector[1] > no_vector[0] and no_vector[0] > 0
