"""Acronyms a document spells out itself ("IS" and "Islamic State"), so that BM25 matches either form.

A question asks about "IS"; the sentence that answers says "Islamic State": BM25 sees no shared term.
When one document uses an all-caps word and also a run of capitalised words whose initials spell it,
the text BM25 indexes for each of its passages and sentences gets the form it lacks added. The cited
text is never changed, and the pairs come from the document alone, so indexing one document does not
depend on any other (live writes re-index documents one at a time).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from bm25s.stopwords import STOPWORDS_EN

_ACRONYM = re.compile(r"\b[A-Z]{2,6}\b")
_CAPITALISED = re.compile(r"[A-Z][a-z]+")  # "United", "State"; not "US-backed" nor "ISIL"
# A capitalised stopword starts a sentence, not a name: "In Syria" does not spell "IS".
_NOT_INITIALS = frozenset(STOPWORDS_EN)
# Small words a spelled-out name may hold without an initial: "Islamic State of Iraq and the Levant".
_JOINERS = frozenset({"of", "the", "and", "for", "on", "in", "de", "du", "la", "al"})
# Capitalised words, and joiners between them, separated by white space only ("Syria, Iraq" is two).
_WHOLE = r"(?<![\w'’-])(?:[A-Z][a-z]+|{joiner})(?![\w'’-])"
_CAPITALISED_STRETCH = re.compile(
    rf"{_WHOLE.format(joiner='(?!)')}(?:\s+{_WHOLE.format(joiner='|'.join(sorted(_JOINERS)))})*"
)


def spelled_out(text: str) -> dict[str, str]:
    """Each acronym of `text` mapped to the run of capitalised words in `text` whose initials spell it.

    The run must be whole words, each capitalised ("United States" for "US"), joined by spaces, with small
    joiners allowed inside ("Islamic State of Iraq" for "ISI"), at most 3 words a letter. When several
    runs spell one acronym, the commonest wins (then the first). A text without lower-case letters (a
    shouted headline) has none. Linear in the text: a regular expression finds the stretches of
    capitalised words, and only their words are walked.
    """
    if not any(c.islower() for c in text):
        return {}
    acronyms = set(_ACRONYM.findall(text))
    if not acronyms:
        return {}
    prefixes = {a[:n] for a in acronyms for n in range(1, len(a) + 1)}
    runs: dict[str, Counter[str]] = {}
    for stretch in _CAPITALISED_STRETCH.finditer(text):
        words = stretch.group(0).split()
        initial = [_CAPITALISED.fullmatch(w) is not None and w.lower() not in _NOT_INITIALS for w in words]
        for first in range(len(words)):
            if not initial[first]:
                continue
            initials = ""
            for at in range(first, len(words)):
                if initial[at]:
                    initials += words[at][0]
                    if initials not in prefixes:
                        break
                    if initials in acronyms and at - first < 3 * len(initials):
                        runs.setdefault(initials, Counter())[" ".join(words[first : at + 1])] += 1
                elif words[at] not in _JOINERS:
                    break
    return {acronym: counts.most_common(1)[0][0] for acronym, counts in sorted(runs.items())}


def with_other_forms(text: str, acronyms: Mapping[str, str]) -> str:
    """`text` with, for each pair of `acronyms` it uses in one form only, the other form appended."""
    extra = []
    for acronym, words in acronyms.items():
        has_acronym = re.search(rf"\b{acronym}\b", text) is not None
        has_words = words in text
        if has_acronym and not has_words:
            extra.append(words)
        elif has_words and not has_acronym:
            extra.append(acronym)
    return f"{text} {' '.join(extra)}" if extra else text
