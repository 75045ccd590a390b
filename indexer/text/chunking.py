"""Cut a document into passages: runs of whole sentences that fit the embedder's token limit, with exact offsets."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from indexer.text.documents import Document, is_boilerplate_line, is_dateline
from indexer.text.sentences import Span, line_spans, normalize_whitespace, sentence_spans_of_line

_WORD = re.compile(r"\S+")
TITLE_TOKEN_BUDGET = 32


class TokenCounter(Protocol):
    """What chunking needs from a tokenizer: counts without special tokens, and prefix cutting."""

    def count(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each text, special tokens excluded."""
        ...

    def prefix_length(self, text: str, max_tokens: int) -> int:
        """Length in characters of the longest prefix of `text` that holds at most `max_tokens` tokens."""
        ...


@dataclass(frozen=True)
class ChunkerConfig:
    """How documents are cut: `passage_tokens` is the target size, `token_limit` the hard cap of the model."""

    passage_tokens: int = 96
    overlap_sentences: int = 1
    token_limit: int = 254
    skip_boilerplate: bool = True
    embed_title: bool = True  # embed the title line with each passage (never part of what is cited)
    # End a passage where a paragraph (line) ends rather than mid-paragraph, when it can. Off: measured and
    # not better (bench/REPORT.md, index ablations).
    paragraphs: bool = False

    def __post_init__(self) -> None:
        if self.token_limit < 8:
            raise ValueError(f"token_limit must be at least 8, got {self.token_limit}")
        if not 8 <= self.passage_tokens <= self.token_limit:
            raise ValueError(
                f"passage_tokens must be in 8..{self.token_limit} (the token limit), got {self.passage_tokens}"
            )
        if self.overlap_sentences < 0:
            raise ValueError(f"overlap_sentences must be >= 0, got {self.overlap_sentences}")

    @classmethod
    def from_stored(cls, values: dict[str, object]) -> ChunkerConfig:
        """The settings as an index stores them: `chunk_tokens` is the stored name of `passage_tokens`."""
        values = dict(values)
        if "chunk_tokens" in values:
            values["passage_tokens"] = values.pop("chunk_tokens")
        return cls(**values)  # type: ignore[arg-type]

    def to_stored(self) -> dict[str, object]:
        """The settings as an index stores them, under the names earlier releases read (`chunk_tokens`)."""
        values: dict[str, object] = asdict(self)
        values["chunk_tokens"] = values.pop("passage_tokens")
        return values


def embedding_text(title: str | None, passage: str) -> str:
    """What is embedded for a passage: its title line, then the passage, whitespace normalised."""
    body = normalize_whitespace(passage)
    return f"{normalize_whitespace(title)}\n{body}" if title else body


def clip_title(title: str | None, counter: TokenCounter, token_limit: int) -> str | None:
    """The title cut to `TITLE_TOKEN_BUDGET` tokens (half the model's `token_limit` at most), so a long title
    cannot crowd out the passage it is embedded with."""
    if not title or not title.strip():
        return None
    title = normalize_whitespace(title)
    return title[: counter.prefix_length(title, min(TITLE_TOKEN_BUDGET, token_limit // 2))]


def content_blocks(
    text: str, skip_boilerplate: bool = True, title: str | None = None, breaks: frozenset[int] = frozenset()
) -> list[list[Span]]:
    """Sentences grouped into runs of content lines.

    Boilerplate lines, date lines and the headline line (it is embedded with every chunk anyway) are
    left out and end a run, so a chunk never spans them. A line that starts at one of `breaks` (where a
    section starts) begins a new run: a passage never spans two sections.
    """
    title_line = normalize_whitespace(title) if title else None
    blocks: list[list[Span]] = [[]]
    for line in line_spans(text):
        content = text[line.start : line.end]
        if line.start in breaks and blocks[-1]:
            blocks.append([])
        if skip_boilerplate and (
            is_boilerplate_line(content) or is_dateline(content) or normalize_whitespace(content) == title_line
        ):
            if blocks[-1]:
                blocks.append([])
            continue
        blocks[-1].extend(sentence_spans_of_line(text, line))
    return [block for block in blocks if block]


def _split_by_characters(text: str, span: Span, budget: int, counter: TokenCounter) -> list[Span]:
    pieces = []
    start = span.start
    while start < span.end:
        length = max(1, counter.prefix_length(text[start : span.end], budget))
        while length > 1 and counter.count([text[start : start + length]])[0] > budget:
            length -= 1
        pieces.append(Span(start, start + length))
        start += length
    return pieces


def _within_budget(
    text: str, spans: Sequence[Span], budget: int, counter: TokenCounter, split: Callable[..., list[Span]]
) -> list[Span]:
    """`spans` with each one over `budget` tokens replaced by the pieces `split` cuts it into."""
    counts = counter.count([normalize_whitespace(text[s.start : s.end]) for s in spans])
    pieces: list[Span] = []
    for span, count in zip(spans, counts, strict=True):
        pieces.extend(split(text, span, budget, counter) if count > budget else [span])
    return pieces


def _split_long_span(text: str, span: Span, budget: int, counter: TokenCounter) -> list[Span]:
    """Cut a sentence over the budget at word boundaries (characters for a single giant word)."""
    words = [Span(m.start(), m.end()) for m in _WORD.finditer(text, span.start, span.end)]
    pieces = _within_budget(text, words, budget, counter, _split_by_characters)
    return _pack(text, pieces, budget, budget, 0, counter)


def _fits(text: str, spans: Sequence[Span], budget: int, counter: TokenCounter) -> bool:
    passage = normalize_whitespace(text[spans[0].start : spans[-1].end])
    return counter.count([passage])[0] <= budget


PARAGRAPH_MIN_FILL = 0.5  # a passage cut back to its last paragraph end keeps at least this share of the target


def _pack(
    text: str,
    pieces: Sequence[Span],
    target: int,
    budget: int,
    overlap: int,
    counter: TokenCounter,
    paragraph_starts: frozenset[int] = frozenset(),
) -> list[Span]:
    """Greedily join consecutive pieces up to `target` tokens, then step back `overlap` pieces.

    With `paragraph_starts` (offsets where a paragraph begins), a passage that would end mid-paragraph
    ends instead where its last whole paragraph does, if that keeps `PARAGRAPH_MIN_FILL` of the target;
    the next passage then starts with the new paragraph, with no overlap (the paragraph is its context).
    """
    counts = counter.count([normalize_whitespace(text[p.start : p.end]) for p in pieces])
    starts_paragraph = [p.start in paragraph_starts for p in pieces]
    packed: list[Span] = []
    first = 0
    while first < len(pieces):
        last, total = first, counts[first]
        while last + 1 < len(pieces) and total + counts[last + 1] <= target:
            last += 1
            total += counts[last]
        # Token counts are not always additive (subword merges across spaces): check the real count.
        while last > first and not _fits(text, pieces[first : last + 1], budget, counter):
            last -= 1
        if paragraph_starts and last + 1 < len(pieces) and not starts_paragraph[last + 1]:
            boundary = next((b for b in range(last, first, -1) if starts_paragraph[b]), None)
            if boundary is not None and sum(counts[first:boundary]) >= PARAGRAPH_MIN_FILL * target:
                last = boundary - 1
        packed.append(Span(pieces[first].start, pieces[last].end))
        if last + 1 >= len(pieces):
            break
        at_paragraph = bool(paragraph_starts) and starts_paragraph[last + 1]
        first = last + 1 if at_paragraph else max(first + 1, last + 1 - overlap)
    return packed


def passage_spans(document: Document, counter: TokenCounter, config: ChunkerConfig) -> list[Span]:
    """The passages of one document in order, as spans of its text; each fits `config.token_limit` together
    with the title line, and none spans two sections of the document's layout."""
    text = document.text
    title = clip_title(document.title, counter, config.token_limit) if config.embed_title else None
    title_tokens = counter.count([title])[0] if title else 0
    budget = max(1, config.token_limit - title_tokens)
    target = max(1, min(config.passage_tokens - title_tokens, budget))
    paragraph_starts = frozenset(line.start for line in line_spans(text)) if config.paragraphs else frozenset()
    sections = frozenset(start for start, _ in document.layout.sections) if document.layout else frozenset()
    passages: list[Span] = []
    for block in content_blocks(text, config.skip_boilerplate, document.title, sections):
        pieces = _within_budget(text, block, budget, counter, _split_long_span)
        passages.extend(_pack(text, pieces, target, budget, config.overlap_sentences, counter, paragraph_starts))
    return passages
