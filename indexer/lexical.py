"""BM25 over the chunks (bm25s): one tokenizer for indexing and querying, save/load, scores and idf."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN
from bm25s.tokenization import _infer_stopwords

from indexer.acronyms import spelled_out, with_other_forms
from indexer.sentences import normalize_whitespace

logging.getLogger("bm25s").setLevel(logging.WARNING)
# bm25s.tokenize's default split; `LexicalIndex.terms` repeats it for one text without its per-call setup.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_EMPTY_MARKER = "EMPTY"
# "IS" (Islamic State), "IT", "AS": acronyms that lowercase into stopwords and would vanish from BM25.
_ACRONYM_STOPWORD = re.compile(
    r"\b(" + "|".join(sorted(w.upper() for w in STOPWORDS_EN if len(w) >= 2)) + r")\b"
)  # bm25s cannot index zero documents: an empty collection is saved as this file


# Interrogatives and do-support: they say what kind of answer a question wants ("when", a time), not
# which passage holds it, yet BM25 would match "when" in "kick off when it did". Left out of queries
# only; the index keeps them. (SQuAD dev half, hybrid: nDCG@10 0.9247 -> 0.9292, R@1 0.857 -> 0.865.)
QUESTION_WORDS = frozenset("what which who whom whose when where why how did does do".split())


@dataclass(frozen=True)
class BM25Config:
    """BM25 parameters, recorded in the manifest so queries tokenise as the index did."""

    k1: float = 0.9  # Anserini's BEIR baseline; SQuAD dev half: nDCG@10 0.9292 at 1.2, 0.9316 at 0.9
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
    """The acronym pairs each document spells out (indexer/acronyms.py); none when `config` does not expand them.

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


class LexicalIndex:
    """A bm25s index plus the tokenizer settings it was built with (no bm25s index for an empty collection)."""

    def __init__(self, retriever: bm25s.BM25 | None, config: BM25Config) -> None:
        self._retriever = retriever
        self.config = config
        self._stemmer = Stemmer.Stemmer(config.stemmer) if config.stemmer else None
        self._stopwords = frozenset(_infer_stopwords(config.stopwords))
        if retriever is None:
            self.num_chunks = 0
            self._idf = np.zeros(0)
            return
        indptr = np.asarray(retriever.scores["indptr"])
        self.num_chunks = int(retriever.scores["num_docs"])
        document_frequency = np.diff(indptr).astype(np.float64)
        self._idf = np.log1p((self.num_chunks - document_frequency + 0.5) / (document_frequency + 0.5))

    @classmethod
    def build(cls, texts: Sequence[str], config: BM25Config) -> LexicalIndex:
        if not texts:
            return cls(None, config)
        stemmer = Stemmer.Stemmer(config.stemmer) if config.stemmer else None
        prepared = [mark_acronyms(t) for t in texts] if config.keep_acronyms else list(texts)
        tokens = bm25s.tokenize(prepared, stopwords=config.stopwords, stemmer=stemmer, show_progress=False)
        retriever = bm25s.BM25(k1=config.k1, b=config.b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, config)

    def save(self, directory: Path) -> None:
        if self._retriever is None:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / _EMPTY_MARKER).write_text("no chunks\n", encoding="utf-8")
            return
        self._retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, config: BM25Config) -> LexicalIndex:
        if (directory / _EMPTY_MARKER).is_file():
            return cls(None, config)
        return cls(bm25s.BM25.load(str(directory), mmap=False), config)

    def _prepare(self, text: str) -> str:
        return mark_acronyms(text) if self.config.keep_acronyms else text

    def terms(self, text: str, skip: frozenset[str] = frozenset()) -> list[str]:
        """The stemmed, stopword-free terms of `text`, as BM25 sees them, less the words in `skip`.

        The same terms as `bm25s.tokenize` gives (a test holds them equal), about 0.1 ms sooner per query:
        it builds progress bars and vocabularies that one question does not need.
        """
        words = [w for w in _TOKEN.findall(self._prepare(text).lower()) if w not in self._stopwords and w not in skip]
        return self._stemmer.stemWords(words) if self._stemmer is not None else words

    def query_token_ids(self, text: str, skip_question_words: bool = True) -> list[int]:
        """Vocabulary ids of the query's terms; terms the collection never uses are left out.

        `skip_question_words` leaves out `QUESTION_WORDS` ("when did ..."), which are not evidence.
        """
        if self._retriever is None:
            return []
        return self._retriever.get_tokens_ids(self.terms(text, QUESTION_WORDS if skip_question_words else frozenset()))

    def scores(self, token_ids: Sequence[int]) -> np.ndarray:
        """BM25 score of every chunk for the query, shape (num_chunks,)."""
        if not token_ids or self._retriever is None:
            return np.zeros(self.num_chunks, dtype=np.float32)
        return np.asarray(self._retriever.get_scores_from_ids(list(token_ids)), dtype=np.float32)

    def token_ids_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Vocabulary ids of each text's terms (unknown terms left out), tokenised as the index was."""
        if self._retriever is None or not texts:
            return [[] for _ in texts]
        tokenized = bm25s.tokenize(
            [self._prepare(t) for t in texts],
            stopwords=self.config.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        vocab = self._retriever.vocab_dict
        return [[vocab[t] for t in terms if t in vocab] for terms in tokenized]

    def idf_of_ids(self, token_ids: Sequence[int]) -> np.ndarray:
        """Inverse document frequency of each vocabulary id."""
        return self._idf[np.asarray(token_ids, dtype=np.int64)] if len(token_ids) else np.zeros(0)

    def idf(self, terms: Sequence[str]) -> dict[str, float]:
        """Inverse document frequency of each term over the chunks (0 for unknown terms)."""
        vocab = self._retriever.vocab_dict if self._retriever is not None else {}
        return {t: float(self._idf[vocab[t]]) if t in vocab else 0.0 for t in terms}
