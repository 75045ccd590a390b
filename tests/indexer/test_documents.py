"""Sources → documents: folders, JSONL, titles, boilerplate, ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.text.documents import (
    SourceError,
    detect_title,
    is_boilerplate_line,
    load_documents,
    read_sources,
    reads_as_headline,
    validate_doc_id,
)
from tests.conftest import SEEDS


def test_seed_documents_keep_original_text_and_detect_titles(seed_documents):
    by_id = {d.doc_id: d for d in seed_documents}
    assert sorted(by_id) == sorted(p.stem for p in SEEDS.glob("*.txt"))
    for document in seed_documents:
        assert document.text == (SEEDS / f"{document.doc_id}.txt").read_text(encoding="utf-8")
        assert document.source == f"seeds/{document.doc_id}.txt"
    assert by_id["000_ba5231b22ad09e1f"].title == "US Says Will ‘Work Out’ With Turkey On Raqqa Offensive"
    # Leading "This site is for sale." and a date line are passed over.
    assert by_id["001_2c0b17beeba9964b"].title == "US sends more troops to crush IS"
    assert by_id["002_2569548eb8bb6952"].title is None  # starts with a sentence
    assert by_id["003_097724a25e48f4d7"].title is None
    assert by_id["004_6853935bbb664345"].title.startswith("Race to Raqqa: Coordination")


@pytest.mark.parametrize(
    "line",
    [
        "This site is for sale.",
        "Subscribe",
        "Newsfeed",
        "0",
        "To participate in the discussion",
        "log in or register",
        "loader",
        "Chats",
        "Заголовок открываемого материала",
        "  ---  ",
    ],
)
def test_boilerplate_lines_are_recognised(line):
    assert is_boilerplate_line(line)


@pytest.mark.parametrize(
    "line",
    ["The US will send another 200 troops to Syria.", "Subscribers pay for the service.", "Raqqa"],
)
def test_content_lines_are_not_boilerplate(line):
    assert not is_boilerplate_line(line)


@pytest.mark.parametrize(
    ("line", "headline"),
    [
        ("Perfect Timing: Why Syrian Army Joined 'Race' to Liberate Raqqa", True),  # a related story's link
        ("Russia Will 'Poke US in the Eye' if Assad Retakes Raqqa Before Rebels", True),
        ("Soldiers of the Syrian Arab Army (SAA). File photo - Sputnik International", True),  # photo credit
        ("Syrian government army and militia - Sputnik International", False),  # mostly lower case: a caption
        ("There is no coordination between the two armies, Georges Malbrunot of Le Figaro notes.", False),
        ("Georges Malbrunot Of Le Figaro Notes.", False),  # ends like a sentence
        ("As he remembers:", False),
        (" ".join(["Word"] * 21), False),  # too long for a headline
        ("", False),
    ],
)
def test_headline_like_lines(line, headline):
    assert reads_as_headline(line) is headline


def test_title_rules():
    assert detect_title("Short Headline Here\n\nBody text.") == "Short Headline Here"
    assert detect_title("This is a sentence that ends with a period.\nMore.") is None
    assert detect_title("") is None
    assert detect_title("word " * 40) is None


def test_jsonl_loads_beir_corpus_as_is(tmp_path: Path):
    corpus = tmp_path / "corpus.jsonl"
    lines = [
        {"_id": "Doc_A::0", "title": "Alpha", "text": "First text.", "lang": "en"},
        {"id": 7, "text": "Second text."},
    ]
    corpus.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    a, b = load_documents([corpus])
    assert (a.doc_id, a.title, a.text, a.metadata) == ("Doc_A::0", "Alpha", "First text.", {"lang": "en"})
    assert (b.doc_id, b.title) == ("7", None)


def test_folder_is_recursive_and_a_bad_file_is_skipped_with_its_reason(tmp_path: Path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("A text.", encoding="utf-8")
    (tmp_path / "docs" / "sub" / "b.md").write_text("B text.", encoding="utf-8")
    (tmp_path / "docs" / "c.pdf").write_bytes(b"%PDF")
    (tmp_path / "docs" / "d.csv").write_text("not a source", encoding="utf-8")
    loaded = read_sources([tmp_path / "docs"])
    assert [(d.doc_id, d.source) for d in loaded.documents] == [("a", "docs/a.txt"), ("b", "docs/sub/b.md")]
    assert [(f.doc_id, f.reason) for f in loaded.failures] == [
        ("c", "docs/c.pdf: named .pdf, but its content is not a PDF file (damaged?)")
    ]
    with pytest.raises(SourceError, match=r"named \.pdf"):
        load_documents([tmp_path / "docs"])  # the strict loader, for corpora that must load whole


def test_bad_sources_raise_clear_errors(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "x", "text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad.jsonl:2: invalid JSON"):
        load_documents([bad])
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"text": "no id"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="needs an '_id' or 'id'"):
        load_documents([missing])
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"_id": "x", "text": "a"}\n{"_id": "x", "text": "b"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="duplicate doc_id 'x'"):
        load_documents([dup])
    with pytest.raises(SourceError, match="not a folder"):
        load_documents([tmp_path / "nowhere"])
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    assert load_documents([latin])[0].text == "café"  # not UTF-8: the encoding is detected


@pytest.mark.parametrize("doc_id", ["../etc/passwd", "/abs", "a/b", "", "x" * 201, "a..b", " space"])
def test_unsafe_doc_ids_are_rejected(doc_id):
    with pytest.raises(SourceError, match="not allowed"):
        validate_doc_id(doc_id)


@pytest.mark.parametrize("doc_id", ["Sky_(United_Kingdom)::0", "Beyoncé::3", "001_2c0b17beeba9964b", "7"])
def test_real_world_ids_are_accepted(doc_id):
    assert validate_doc_id(doc_id) == doc_id


def test_content_hash_changes_with_text_and_title(seed_documents):
    from dataclasses import replace

    doc = seed_documents[0]
    assert doc.content_hash == replace(doc).content_hash
    assert doc.content_hash != replace(doc, text=doc.text + " ").content_hash
    assert doc.content_hash != replace(doc, title="Other").content_hash
