"""Acronyms a document spells out: found from the document alone, indexed in both forms, never cited."""

from __future__ import annotations

import re
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from indexer.text.acronyms import _JOINERS, _NOT_INITIALS, spelled_out, with_other_forms
from indexer.text.lexical import BM25Config, bm25_texts
from tests.bm25 import bm25_scores

RAQQA = (
    "Raqqa was captured by Islamic State in 2013. The US-backed Syrian Democratic Forces (SDF) began "
    "their push on Tuesday.\nIS fighters still hold the city, a spokesman for the United States said. "
    "In Syria, the SDF is the largest force."
)


def test_pairs_are_capitalised_runs_whose_initials_spell_an_acronym_of_the_same_text():
    assert spelled_out(RAQQA) == {"IS": "Islamic State", "SDF": "Syrian Democratic Forces", "US": "United States"}
    assert spelled_out("The Islamic State of Iraq and the Levant (ISIL) and ISIL again.") == {
        "ISIL": "Islamic State of Iraq and the Levant"
    }


def test_no_pair_from_sentence_starts_hyphenated_words_or_other_texts():
    assert spelled_out("In Syria, IS fighters held out.") == {}, "a capitalised stopword starts a sentence"
    assert spelled_out("US-backed Syrian fighters and US troops.") == {}, "'US-backed' is no initial"
    assert spelled_out("IS fighters held out.") == {}, "spelled out nowhere in this text"
    assert spelled_out("ISLAMIC STATE (IS) HOLDS RAQQA") == {}, "all caps: nothing tells names from shouting"


def test_the_commonest_spelling_wins():
    text = "European Union rules. The European Union and the EU. A European Court ruling on the EU."
    assert spelled_out(text) == {"EU": "European Union"}


def test_the_form_a_text_lacks_is_appended_and_nothing_else_changes():
    pairs = {"IS": "Islamic State", "US": "United States"}
    assert with_other_forms("IS fighters held Raqqa.", pairs) == "IS fighters held Raqqa. Islamic State"
    assert with_other_forms("Islamic State held Raqqa.", pairs) == "Islamic State held Raqqa. IS"
    assert with_other_forms("The IS, or Islamic State, held it.", pairs) == "The IS, or Islamic State, held it."
    assert with_other_forms("This city is large.", pairs) == "This city is large.", "'is' is no acronym"


def spelled_out_by_brute_force(text: str) -> dict[str, str]:
    """The plain reading of `spelled_out`'s rule: for each acronym, try every start word."""
    if not any(c.islower() for c in text):
        return {}
    words = [(m.group(0), m.start(), m.end()) for m in re.finditer(r"[A-Za-z][\w'’-]*", text)]
    initial = [re.fullmatch(r"[A-Z][a-z]+", w) is not None and w.lower() not in _NOT_INITIALS for w, _, _ in words]
    pairs = {}
    for acronym in sorted(set(re.findall(r"\b[A-Z]{2,6}\b", text))):
        found: Counter[str] = Counter()
        for first in range(len(words)):
            letter, at, last = 0, first, first
            while letter < len(acronym) and at < len(words) and at < first + 3 * len(acronym):
                if initial[at] and words[at][0][0] == acronym[letter]:
                    letter, last = letter + 1, at
                elif not (letter and words[at][0] in _JOINERS):
                    break
                at += 1
            run = text[words[first][1] : words[last][2]]
            if letter == len(acronym) and re.fullmatch(r"[A-Za-z]+(?:\s+[A-Za-z]+)*", run):
                found[" ".join(run.split())] += 1
        if found:
            pairs[acronym] = found.most_common(1)[0][0]
    return pairs


NAMEISH = st.lists(
    st.sampled_from(["IS", "US", "ISIL", "Islamic", "State", "United", "States", "Iraq", "Levant", "of", "the", "and"])
    | st.sampled_from(["In", "fighters", ",", ".", "\n", "held", "Syria", "Union", "Sea"]),
    max_size=40,
).map(" ".join)


@given(NAMEISH)
def test_spelled_out_agrees_with_the_brute_force_reading_of_its_rule(text: str):
    assert spelled_out(text) == spelled_out_by_brute_force(text)


@given(st.text(alphabet=st.sampled_from("ISUabc .\n(),-"), max_size=80))
def test_with_other_forms_keeps_the_text_as_its_prefix(text: str):
    pairs = spelled_out(text)
    assert with_other_forms(text, pairs).startswith(text)


def test_bm25_finds_the_spelled_out_form_for_an_acronym_question_and_back():
    texts = [RAQQA, "The dam on the Euphrates held. IS fighters took control of it in 2016."]
    spans = [(0, 0, 44), (0, 45, len(RAQQA)), (1, 0, len(texts[1]))]
    assert texts[0][:44] == "Raqqa was captured by Islamic State in 2013."  # never says "IS"
    plain_config = BM25Config(expand_acronyms=False)
    expanded_texts = bm25_texts(texts, spans, BM25Config())
    plain_texts = bm25_texts(texts, spans, plain_config)

    def expanded(question: str):
        return bm25_scores(expanded_texts, question, BM25Config())

    def plain(question: str):
        return bm25_scores(plain_texts, question, plain_config)

    question = "when did IS take control of Raqqa"
    asks_for_acronym = "what did IS do"  # mixed case: "IS" is the acronym, not the verb
    assert expanded(asks_for_acronym)[0] > 0, "'Islamic State' matches 'IS'"
    assert plain(asks_for_acronym)[0] == 0
    assert expanded(question)[0] > plain(question)[0]
    spelled = "Islamic"  # not "State": the second span says "United States"
    assert plain(spelled)[1] == 0, "the second span says 'IS' only"
    assert expanded(spelled)[1] > 0
    assert bm25_texts(texts, spans, BM25Config())[2] == texts[1], "another document's pairs do not apply"


def test_preparing_a_document_finds_its_pairs_once_per_kind_of_span(embedder, seed_documents, monkeypatch):
    import indexer.text.lexical
    from indexer.build import prepare
    from indexer.text.chunking import ChunkerConfig

    calls: Counter[str] = Counter()

    def counted(text: str) -> dict[str, str]:
        calls[text] += 1
        return spelled_out(text)

    monkeypatch.setattr(indexer.text.lexical, "spelled_out", counted)
    prepare(seed_documents, embedder, ChunkerConfig(token_limit=embedder.token_limit), BM25Config())
    assert sorted(calls.values()) == [1] * len(seed_documents), "passages and sentences share one finding"
