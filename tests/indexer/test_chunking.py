"""Chunking and sentence splitting: exact offsets, full coverage, token limit, on messy text."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.text.chunking import ChunkerConfig, clip_title, content_blocks, embedding_text, passage_spans
from indexer.text.documents import Document
from indexer.text.sentences import line_of, line_spans, normalize_whitespace, sentence_spans

# Pieces that real scraped text is made of: words, NBSP, CRLF, emoji, quotes, abbreviations, long runs.
MESSY_PIECES = st.sampled_from(
    [
        "word",
        "Raqqa",
        "U.S.",
        "Mr.",
        "200",
        " ",
        "  ",
        "\u00a0",
        "\r\n",
        "\n",
        "\n\n",
        "\t",
        ".",
        "!",
        "?",
        "…",
        "“",
        "”",
        "’",
        "🙂",
        "👍🏽",
        "é",
        "—",
        "Subscribe",
        "(",
        ")",
        "x" * 300,
        "antidisestablishment",
        "日本語の文章",
        "\u2028",
        "a.b.c",
    ]
)
MESSY_TEXT = st.one_of(
    st.lists(MESSY_PIECES, max_size=400).map("".join),
    st.text(max_size=600),
    st.text(alphabet=st.characters(categories=["L", "Zs"]), max_size=3000),  # no punctuation at all
)
SMALL = ChunkerConfig(passage_tokens=24, overlap_sentences=1, token_limit=32, skip_boilerplate=False)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def covered(text: str, spans) -> set[int]:
    return {i for s in spans for i in range(s.start, s.end)}


@PROPERTY
@given(text=MESSY_TEXT, title=st.one_of(st.none(), st.text(max_size=80)), paragraphs=st.booleans())
def test_chunks_are_exact_ordered_cover_content_and_fit(embedder, text, title, paragraphs):
    counter = embedder.token_counter
    document = Document(doc_id="d", text=text, title=title)
    config = replace(SMALL, paragraphs=paragraphs)
    chunks = passage_spans(document, counter, config)
    for chunk in chunks:
        assert 0 <= chunk.start < chunk.end <= len(text)
        passage = text[chunk.start : chunk.end]
        assert passage.strip(), "a chunk is never only whitespace"
        embedded = embedding_text(clip_title(title, counter, config.token_limit), passage)
        assert counter.count([embedded])[0] <= config.token_limit, (repr(text), repr(title), repr(passage))
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert all(a.end <= b.end for a, b in itertools.pairwise(chunks))
    content = {i for i, ch in enumerate(text) if not ch.isspace()}
    assert content <= covered(text, chunks)


@PROPERTY
@given(text=MESSY_TEXT)
def test_sentences_are_exact_trimmed_and_in_order(text):
    spans = sentence_spans(text)
    for span in spans:
        piece = text[span.start : span.end]
        assert (piece and piece == piece.strip()) or piece.strip(), piece
        assert not piece[0].isspace() and not piece[-1].isspace()
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered(text, spans)


@PROPERTY
@given(text=MESSY_TEXT)
def test_each_sentence_lies_on_its_line(text):
    lines = line_spans(text)
    for span in sentence_spans(text):
        line = line_of(text, span)
        assert line in lines, (text, span, line)
        assert line.start <= span.start and span.end <= line.end


def test_boilerplate_lines_never_enter_chunks(embedder, seed_documents):
    config = ChunkerConfig(token_limit=embedder.token_limit)
    doc = next(d for d in seed_documents if d.doc_id.startswith("004_"))
    chunks = passage_spans(doc, embedder.token_counter, config)
    passages = [doc.text[c.start : c.end] for c in chunks]
    for line in ["Subscribe", "Newsfeed", "log in or register", "Заголовок открываемого материала"]:
        assert all(line not in p.splitlines() for p in passages), line
    # ...but the stored document keeps them: offsets refer to the original.
    assert "Заголовок открываемого материала" in doc.text


def test_seed_chunks_respect_size_and_overlap(embedder, seed_documents):
    config = ChunkerConfig(passage_tokens=96, overlap_sentences=1, token_limit=embedder.token_limit)
    for doc in seed_documents:
        chunks = passage_spans(doc, embedder.token_counter, config)
        assert chunks
        for chunk in chunks:
            embedded = embedding_text(
                clip_title(doc.title, embedder.token_counter, config.token_limit), doc.text[chunk.start : chunk.end]
            )
            assert embedder.token_counter.count([embedded])[0] <= config.token_limit
        if doc.doc_id[:3] in {"002", "003"}:  # no boilerplate line to break the run
            # one sentence of overlap: each chunk starts at the previous one's last sentence
            # (or right after it, when the previous chunk is a single sentence)
            for a, b in itertools.pairwise(chunks):
                sentences = sentence_spans(doc.text, a.start, a.end)
                expected = sentences[-1].start if len(sentences) > 1 else None
                assert b.start == expected if expected is not None else b.start >= a.end


def test_paragraph_mode_ends_passages_at_paragraph_ends_when_that_keeps_half_the_target(embedder):
    sentence = "The keeper counted gulls at dawn on the skerry."
    size = embedder.token_counter.count([sentence])[0]
    first = " ".join([sentence] * 2)  # a short paragraph: 2 sentences, kept whole
    second = " ".join([sentence] * 4)  # longer than the target (3.5 sentences): cut within itself
    text = f"{first}\n{second}\n{sentence}"
    config = ChunkerConfig(passage_tokens=size * 7 // 2, overlap_sentences=1, token_limit=128, skip_boilerplate=False)
    document = Document(doc_id="d", text=text)
    greedy = [text[c.start : c.end] for c in passage_spans(document, embedder.token_counter, config)]
    by_paragraph = passage_spans(document, embedder.token_counter, replace(config, paragraphs=True))
    passages = [text[c.start : c.end] for c in by_paragraph]
    assert greedy[0] == f"{first}\n{sentence}"  # greedy fills the target across the paragraph end
    assert passages[0] == first  # 2 of 3.5 sentences: at least half, so the passage ends with its paragraph
    assert passages[1].startswith(sentence) and by_paragraph[1].start == len(first) + 1  # no overlap back
    assert passages[-1].endswith(sentence) and by_paragraph[-1].end == len(text)


def test_nbsp_and_crlf_are_normalised_only_for_embedding():
    text = "The\u00a0US\u00a0will send\r\n200 troops.\r\nNext line."
    blocks = content_blocks(text)
    assert [text[s.start : s.end] for s in blocks[0]] == ["The\u00a0US\u00a0will send", "200 troops.", "Next line."]
    assert normalize_whitespace(text) == "The US will send 200 troops. Next line."


def test_sentence_splitter_keeps_abbreviations_together():
    text = "Mr. Mattis met U.S. officials on Tuesday. They agreed. “Good,” he said! Then left."
    assert [text[s.start : s.end] for s in sentence_spans(text)] == [
        "Mr. Mattis met U.S. officials on Tuesday.",
        "They agreed.",
        "“Good,” he said!",
        "Then left.",
    ]


def test_chunker_config_rejects_nonsense():
    import pytest

    with pytest.raises(ValueError, match="passage_tokens"):
        ChunkerConfig(passage_tokens=500, token_limit=254)
    with pytest.raises(ValueError, match="overlap_sentences"):
        ChunkerConfig(overlap_sentences=-1)


def test_without_the_title_line_passages_get_its_token_budget(embedder, seed_documents):
    doc = next(d for d in seed_documents if d.title)
    counter = embedder.token_counter
    titled = ChunkerConfig(passage_tokens=64, overlap_sentences=0, token_limit=embedder.token_limit)
    untitled = ChunkerConfig(
        passage_tokens=64, overlap_sentences=0, token_limit=embedder.token_limit, embed_title=False
    )
    with_title, without_title = passage_spans(doc, counter, titled), passage_spans(doc, counter, untitled)
    title_tokens = counter.count([clip_title(doc.title, counter, titled.token_limit) or ""])[0]
    assert title_tokens > 0
    assert len(without_title) < len(with_title), "the title's tokens go to the passages: fewer, longer chunks"
    for chunk in without_title:
        assert counter.count([embedding_text(None, doc.text[chunk.start : chunk.end])])[0] <= untitled.token_limit
