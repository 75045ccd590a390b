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
_WORD = re.compile(r"[A-Za-z][\w'’-]*")
_CAPITALISED = re.compile(r"[A-Z][a-z]+")  # "United", "State"; not "US-backed" nor "ISIL"
# A capitalised stopword starts a sentence, not a name: "In Syria" does not spell "IS".
_NOT_INITIALS = frozenset(STOPWORDS_EN)
# Small words a spelled-out name may hold without an initial: "Islamic State of Iraq and the Levant".
_JOINERS = frozenset({"of", "the", "and", "for", "on", "in", "de", "du", "la", "al"})


def spelled_out(text: str) -> dict[str, str]:
    """Each acronym of `text` mapped to the run of capitalised words in `text` whose initials spell it.

    The run must be whole words, each capitalised ("United States" for "US"), joined by spaces, with small
    joiners allowed inside ("Islamic State of Iraq" for "ISI"). When several runs spell one acronym, the
    commonest wins (then the first). A text without lower-case letters (a shouted headline) has none.
    """
    if not any(c.islower() for c in text):
        return {}
    acronyms = set(_ACRONYM.findall(text))
    if not acronyms:
        return {}
    words = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
    capitalised = [_CAPITALISED.fullmatch(w) is not None and w.lower() not in _NOT_INITIALS for w, _, _ in words]
    pairs: dict[str, str] = {}
    for acronym in sorted(acronyms):
        runs: Counter[str] = Counter()
        for first, (word, _, _) in enumerate(words):
            if capitalised[first] and word[0] == acronym[0]:
                run = _run_spelling(words, capitalised, first, acronym, text)
                if run is not None:
                    runs[run] += 1
        if runs:
            pairs[acronym] = runs.most_common(1)[0][0]
    return pairs


def _run_spelling(
    words: list[tuple[str, int, int]], capitalised: list[bool], first: int, acronym: str, text: str
) -> str | None:
    """The words from `first` on whose initials spell `acronym` exactly, as they stand in `text`, or None."""
    letter, last = 0, first
    for at in range(first, len(words)):
        if letter == len(acronym):
            break
        word = words[at][0]
        if capitalised[at] and word[0] == acronym[letter]:
            letter, last = letter + 1, at
        elif not (letter and word in _JOINERS):
            return None
    if letter < len(acronym):
        return None
    run = text[words[first][1] : words[last][2]]
    return " ".join(run.split()) if re.fullmatch(r"[A-Za-z]+(?:\s+[A-Za-z]+)*", run) else None


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
