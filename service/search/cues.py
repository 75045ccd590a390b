"""Question-type cues: what kind of answer a question asks for, and whether a sentence holds one.

"How many" wants a number, "when" a date or time, "who" a name, "where" a place. A sentence that has
the kind of thing asked for is more likely the answer; the retriever gives it a small bonus.
"""

from __future__ import annotations

import re
from enum import StrEnum


class AnswerKind(StrEnum):
    number = "number"
    time = "time"
    person = "person"
    place = "place"
    name = "name"  # "which network", "what organisation": some proper name


_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_NUMBER_WORDS = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundreds?|"
    r"thousands?|millions?|billions?|dozens?|several|half)"
)

_QUESTION_KINDS: list[tuple[AnswerKind, re.Pattern[str]]] = [
    (
        AnswerKind.number,
        re.compile(
            r"\bhow (?:many|much|far|old|big|large|tall|high|long is|long was)\b"
            r"|\bwhat (?:percentage|percent|number|amount|size)\b"
        ),
    ),
    (
        AnswerKind.time,
        re.compile(
            r"^\W*when\b|\bwhat (?:year|date|day|month|time|decade|century)\b"
            r"|\bhow long\b|\bin which year\b|\bsince when\b"
        ),
    ),
    (
        AnswerKind.person,
        re.compile(
            r"^\W*(?:who|whom|whose)\b|\bname of the (?:\w+ ){0,2}"
            r"(?:person|man|woman|leader|spokesman|minister|president|journalist|commander)\b"
        ),
    ),
    (
        AnswerKind.place,
        re.compile(r"^\W*where\b|\b(?:which|what) (?:city|country|town|province|region|state|place|village|area)\b"),
    ),
    (AnswerKind.name, re.compile(r"^\W*(?:which|what) \w+|\bname of\b")),
]

# A count or amount: digits that are not a bare year ("how many" is not answered by "in 2013"), or a number word.
_HAS_NUMBER = re.compile(rf"\b(?!(?:1[5-9]\d{{2}}|20\d{{2}})\b)\d|\b{_NUMBER_WORDS}\b", re.IGNORECASE)
_HAS_TIME = re.compile(
    rf"\b(?:1\d{{3}}|20\d{{2}})\b|\b{_MONTHS}\b\.?|\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|"
    r"\b(?:days?|weeks?|months?|years?|decades?|centur(?:y|ies))\b|\b(?:ago|since|until|yesterday|today|tomorrow)\b",
    re.IGNORECASE,
)
# A capitalised word that does not start the sentence: a name of some kind.
_INNER_PROPER_NOUN = re.compile(r"(?<=[a-z,;:()\"'’“”-] )[A-Z][\w’'-]+")
_PERSON = re.compile(r"(?<=[a-z,;:()\"'’“”-] )[A-Z][a-z]+(?: [A-Z]\.)? [A-Z][a-z]+")
_PLACE = re.compile(r"\b(?:in|at|near|from|to|of|outside|across)\s+(?:the\s+)?[A-Z][\w’'-]+")


def answer_kind(question: str) -> AnswerKind | None:
    """The kind of answer `question` asks for, or None when it gives no clear cue."""
    lowered = " ".join(question.lower().split())
    for kind, pattern in _QUESTION_KINDS:
        if pattern.search(lowered):
            return kind
    return None


def has_answer_kind(sentence: str, kind: AnswerKind) -> bool:
    """True when `sentence` contains something of `kind` (a number, a date or time, a name, a place)."""
    if kind is AnswerKind.number:
        return _HAS_NUMBER.search(sentence) is not None
    if kind is AnswerKind.time:
        return _HAS_TIME.search(sentence) is not None
    if kind is AnswerKind.person:
        return _PERSON.search(sentence) is not None
    if kind is AnswerKind.place:
        return _PLACE.search(sentence) is not None
    return _INNER_PROPER_NOUN.search(sentence) is not None


class QueryStyle(StrEnum):
    """How a query is put, which decides what its answer looks like (`RetrievalConfig.for_query`)."""

    question = "question"  # asks for a fact, usually stated in one sentence
    statement = "statement"  # keywords, a title or a claim: answered by what is about it
    topic = "topic"  # a paragraph describing a topic: answered by a passage or document about the same


# A question word first, or after up to two words ("in which year", "since when", "on which magazine's").
_ASKS = re.compile(
    r"^\W*(?:[\w'’]+\s+){0,2}?(?:what|when|where|who|whom|whose|which|why|how)\b"
    r"|^\W*(?:is|are|was|were|do|does|did|can|could|should|would|will|has|have|had)\s"
)


def query_style(query: str, topic_words: int) -> QueryStyle:
    """`topic` for a query of at least `topic_words` words (0: never), else `question` when it ends in a
    question mark or starts like a question, else `statement`."""
    words = query.split()
    if topic_words and len(words) >= topic_words:
        return QueryStyle.topic
    lowered = " ".join(words).lower()
    if lowered.endswith("?") or _ASKS.search(lowered):
        return QueryStyle.question
    return QueryStyle.statement
