"""Split original text into sentence spans (offsets into the text, never copies) and normalise whitespace."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_BREAKS = "\r\n\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85"
_LINE = re.compile(f"[^{_LINE_BREAKS}]+")
# A boundary: terminal punctuation, optional closing quotes/brackets, then whitespace.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)")
_ABBREVIATIONS = frozenset(
    (
        "mr mrs ms dr prof st jr sr gen col lt sgt capt cmdr adm gov sen rep pres vs etc inc ltd co corp no dept "
        "fig approx est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n e.g i.e a.m p.m"
    ).split()
)


@dataclass(frozen=True)
class Span:
    """A half-open character range `[start, end)` of a document's original text."""

    start: int
    end: int


def normalize_whitespace(text: str) -> str:
    """Collapse every run of Unicode whitespace (NBSP, CRLF, tabs) to one space and trim the ends."""
    return " ".join(text.split())


def _strip_span(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end) if start < end else None


def _ends_with_abbreviation(text: str, line_start: int, dot_end: int) -> bool:
    """True when the punctuation at `dot_end` closes an abbreviation or an initial, not a sentence."""
    if text[dot_end - 1] != ".":
        return False
    word_start = dot_end - 1
    while word_start > line_start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start : dot_end - 1].lstrip("\"'“‘([").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def line_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Non-blank lines of `text[start:end]`, trimmed of surrounding whitespace."""
    end = len(text) if end is None else end
    spans = []
    for match in _LINE.finditer(text, start, end):
        span = _strip_span(text, match.start(), match.end())
        if span is not None:
            spans.append(span)
    return spans


def line_of(text: str, span: Span) -> Span:
    """The line of `text` that holds `span` (a sentence never crosses a line break), trimmed."""
    start = max(text.rfind(mark, 0, span.start) for mark in _LINE_BREAKS) + 1
    match = _LINE.match(text, span.end)
    end = match.end() if match else span.end
    return _strip_span(text, start, end) or span


def sentence_spans_of_line(text: str, line: Span) -> list[Span]:
    """Sentences of one line: cut after terminal punctuation followed by whitespace and a non-lowercase start."""
    spans = []
    cursor = line.start
    for match in _BOUNDARY.finditer(text, line.start, line.end):
        cut = match.end()
        following = text[cut : line.end].lstrip()
        if not following or following[0].islower() or _ends_with_abbreviation(text, line.start, match.start() + 1):
            continue
        span = _strip_span(text, cursor, cut)
        if span is not None:
            spans.append(span)
        cursor = cut
    span = _strip_span(text, cursor, line.end)
    if span is not None:
        spans.append(span)
    return spans


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of `text[start:end]` in order; line breaks always end a sentence."""
    return [s for line in line_spans(text, start, end) for s in sentence_spans_of_line(text, line)]
