"""BM25 text analysis: the one tokenizer of indexing and querying (stemming, stopwords, acronyms), term ids.

The BM25 index itself is tantivy's (`indexer/store/bm25.py`); it is fed the terms found here, so the
analysis stays Citeline's own and identical on both sides.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import Stemmer
from bm25s.stopwords import STOPWORDS_EN
from bm25s.tokenization import _infer_stopwords

from indexer.text.acronyms import spelled_out, with_other_forms
from indexer.text.sentences import normalize_whitespace

logging.getLogger("bm25s").setLevel(logging.WARNING)
# bm25s.tokenize's default split, so terms are what bm25s (and the indexes of format 2) made of a text.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
# "IS" (Islamic State), "IT", "AS": acronyms that lowercase into stopwords and would vanish from BM25.
_ACRONYM_STOPWORD = re.compile(r"\b(" + "|".join(sorted(w.upper() for w in STOPWORDS_EN if len(w) >= 2)) + r")\b")


# Interrogatives and do-support: they say what kind of answer a question wants ("when", a time), not
# which passage holds it, yet BM25 would match "when" in "kick off when it did". Left out of queries
# only; the index keeps them (README, "Question words", has the measured gain).
QUESTION_WORDS = frozenset("what which who whom whose when where why how did does do".split())


@dataclass(frozen=True)
class BM25Config:
    """BM25 parameters, recorded in the manifest so queries tokenise as the index did."""

    # Lucene's BM25 with these; tantivy only finds the candidates (its k1 is fixed at 1.2), Citeline scores them.
    k1: float = 0.9  # Anserini's BEIR baseline; bench/REPORT.md has 1.2 against it
    b: float = 0.75
    stemmer: str = "english"
    stopwords: str = "en"
    keep_acronyms: bool = True  # an all-caps stopword in mixed-case text ("IS fighters") is a term of its own
    expand_acronyms: bool = True  # "IS" also indexed as "Islamic State" (and back) where a document spells it out


def mark_acronyms(text: str) -> str:
    """`text` with all-caps stopwords ("IS", "IT") turned into distinct terms ("is_acr"), unless it is all caps."""
    if not any(c.islower() for c in text):
        return text
    return _ACRONYM_STOPWORD.sub(lambda m: m.group(0).lower() + "_acr", text)


def document_acronyms(document_texts: Sequence[str], config: BM25Config) -> list[Mapping[str, str]]:
    """The acronym pairs each document spells out (indexer/text/acronyms.py); none when `config` does not expand them.

    A build finds them once and hands them to `bm25_texts` for the passages and again for the sentences.
    """
    return [spelled_out(text) if config.expand_acronyms else {} for text in document_texts]


def bm25_texts(
    document_texts: Sequence[str],
    spans: Iterable[tuple[int, int, int]],
    config: BM25Config,
    acronyms: Sequence[Mapping[str, str]] | None = None,
) -> list[str]:
    """What BM25 indexes for each (document row, start, end) span of `document_texts`.

    The span's text with whitespace normalised and, with `config.expand_acronyms`, the other form of each
    acronym its document spells out (`acronyms[row]`, from `document_acronyms`; found here when not given).
    Passages and sentences go through here alike, so the highlight's term coverage sees what BM25 saw.
    """
    pairs: dict[int, Mapping[str, str]] = {}
    texts = []
    for row, start, end in spans:
        text = normalize_whitespace(document_texts[row][start:end])
        if config.expand_acronyms:
            if row not in pairs:
                pairs[row] = acronyms[row] if acronyms is not None else spelled_out(document_texts[row])
            text = with_other_forms(text, pairs[row])
        texts.append(text)
    return texts


def term_id(term: str) -> int:
    """A stable 63-bit id of an analysed term: sentences store their terms as these (no vocabulary to grow)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=8).digest(), "little") >> 1


class Analyzer:
    """Text to BM25 terms: stemmed, stopword-free, all-caps stopwords kept as acronyms ("IS" -> "is_acr")."""

    def __init__(self, config: BM25Config) -> None:
        self.config = config
        self._stemmer = Stemmer.Stemmer(config.stemmer) if config.stemmer else None
        self._stopwords = frozenset(_infer_stopwords(config.stopwords))

    def _prepare(self, text: str) -> str:
        return mark_acronyms(text) if self.config.keep_acronyms else text

    def terms(self, text: str, skip: frozenset[str] = frozenset()) -> list[str]:
        """The stemmed, stopword-free terms of `text`, as BM25 sees them, less the words in `skip`.

        The same terms as `bm25s.tokenize` gives with the same stemmer and stopwords (a test holds them equal).
        """
        words = [w for w in _TOKEN.findall(self._prepare(text).lower()) if w not in self._stopwords and w not in skip]
        return self._stemmer.stemWords(words) if self._stemmer is not None else words

    def query_terms(self, text: str, skip_question_words: bool = True) -> list[str]:
        """The question's terms in order, repeats kept; `skip_question_words` leaves out `QUESTION_WORDS`."""
        return self.terms(text, QUESTION_WORDS if skip_question_words else frozenset())

    def term_ids(self, text: str) -> list[int]:
        """`term_id` of each distinct term of `text`."""
        return sorted({term_id(t) for t in self.terms(text)})
