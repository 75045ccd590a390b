"""Sealed vector segments: memory-mapped vectors that answer exactly as in-memory ones, tombstones for
deletes after a seal, merges that drop them, damage reported by file, and repair from the record file."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import indexer.store.store as store_module
from indexer.build import prepare
from indexer.collection import API_SOURCE
from indexer.model.embedding import Embedder
from indexer.store.maintenance import repair, verify_index
from indexer.store.segments import MANIFEST_FILE, ROW_FILES, SEGMENTS_DIR, SegmentError, read_manifest
from indexer.store.store import SegmentPolicy, Store, StoreError
from indexer.store.view import Column, View
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import Document
from indexer.text.lexical import BM25Config
from service.engine import Engine
from service.search.filters import SearchFilter
from service.search.retrieval import Mode
from service.settings import Settings
from tests.copies import copy_index

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [
    "how many US troops were sent",
    "who is the russian foreign minister",
    "when did IS take control of raqqa",
    "Tabqa dam",
    "what did turkey say about the kurdish fighters",
]


def answers(engine: Engine, mode: Mode, search_filter: SearchFilter | None = None) -> list[list[tuple]]:
    return [
        [(h.doc_id, h.start, h.end, round(h.score, 6)) for h in engine.search(q, 5, mode, search_filter)]
        for q in QUESTIONS
    ]


def sealed_copy(seed_index: Path, tmp_path: Path, name: str = "index") -> Path:
    index = copy_index(seed_index, tmp_path / name)
    store = Store.open(index)
    try:
        assert store.seal(1) is not None
    finally:
        store.close()
    return index


def open_engine(index: Path, embedder: Embedder, **policy: int) -> Engine:
    engine = Engine.load(Settings(index=index, api_key="k"), embedder=embedder)
    engine.segments = SegmentPolicy(**policy) if policy else engine.segments
    return engine


def test_sealed_vectors_are_memory_mapped_and_answer_exactly_as_in_memory_ones(
    engine: Engine, seed_index: Path, tmp_path: Path, embedder: Embedder
):
    sealed = open_engine(sealed_copy(seed_index, tmp_path), embedder)
    view = sealed.view
    assert len(view.passage_vectors.sealed) == 1 and len(view.passage_vectors.live) == 0
    assert isinstance(view.passage_vectors.sealed[0], np.memmap)
    assert isinstance(view.sentence_vectors.sealed[0], np.memmap)
    assert np.array_equal(view.passage_vectors.matrix(), engine.view.passage_vectors.matrix())
    for mode in Mode:
        assert answers(sealed, mode) == answers(engine, mode), mode


def test_writes_after_a_seal_land_unsealed_and_deletes_tombstone_sealed_rows(
    seed_index: Path, tmp_path: Path, embedder: Embedder
):
    index = sealed_copy(seed_index, tmp_path)
    engine = open_engine(index, embedder)
    victim = engine.view.live_documents()[2].doc_id
    engine.add_documents([Document(doc_id="harbour", text="Zqharbour cranes stood idle all week.", source=API_SOURCE)])
    engine.delete_document(victim)
    assert len(engine.view.passage_vectors.live) > 0, "the new document's vectors are unsealed"
    assert engine.view.dead_passages > 0
    for view_engine in (engine, open_engine(index, embedder)):  # live, and reloaded from disk
        view = view_engine.view
        assert view.document(victim) is None and view.document("harbour") is not None
        for mode in Mode:
            for search_filter in (None, SearchFilter(doc_ids=(victim,))):
                hits = view_engine.search("raqqa offensive kurdish fighters", 50, mode, search_filter)
                assert victim not in {h.doc_id for h in hits}, (mode, search_filter)
                for hit in hits:
                    assert hit.doc_id and not hit.doc_id.startswith("\x00"), "a tombstone is never returned"
        assert view_engine.search("zqharbour cranes", 1, Mode.bm25)[0].doc_id == "harbour"
        assert view_engine.search("harbour cranes idle", 1, Mode.dense)[0].doc_id == "harbour"
        for row in np.flatnonzero(view.passage_alive):
            document = view.passage_document(int(row))
            span = view.passage_span(int(row))
            assert document.text[span.start : span.end] == view.passage_text(int(row))
    reloaded = open_engine(index, embedder).view
    assert reloaded.dead_passages > 0, "rows of a document deleted after its seal are tombstones until a merge"
    assert reloaded.generation == read_manifest(index).generation == 1


def test_a_merge_drops_deleted_rows_and_answers_stay_the_same(seed_index: Path, tmp_path: Path, embedder: Embedder):
    index = sealed_copy(seed_index, tmp_path)
    engine = open_engine(index, embedder, seal_passages=1, max_segments=8)
    before = read_manifest(index).segments[0]
    for doc in engine.view.live_documents()[:2]:
        engine.delete_document(doc.doc_id)
    expected = {mode: answers(engine, mode) for mode in Mode}
    assert engine.maintain(), "deleted rows past a quarter of the segment: it is rewritten and the view reloaded"
    after = read_manifest(index)
    assert len(after.segments) == 1 and after.segments[0].passages < before.passages
    assert engine.view.dead_passages == 0 and engine.view.generation == after.generation
    assert not (index / SEGMENTS_DIR / before.name).exists(), "the merged-away segment is removed"
    for mode in Mode:
        assert answers(engine, mode) == expected[mode], mode
    verify_index(index)


def test_the_server_seals_what_it_wrote_and_merges_past_the_segment_limit(
    seed_index: Path, tmp_path: Path, embedder: Embedder
):
    index = copy_index(seed_index, tmp_path / "index")
    engine = open_engine(index, embedder, seal_passages=1, max_segments=2)
    expected = [answers(engine, mode) for mode in Mode]
    assert engine.maintain() and len(read_manifest(index).segments) == 1
    assert [answers(engine, mode) for mode in Mode] == expected
    for i in range(3):
        engine.add_documents(
            [Document(doc_id=f"note-{i}", text=f"Zqnote {i} about the harbour cranes.", source=API_SOURCE)]
        )
        expected = [answers(engine, mode) for mode in Mode]
        assert engine.maintain()
        assert len(engine.view.passage_vectors.live) == 0, "sealed, and the view reloaded on the segments"
        assert [answers(engine, mode) for mode in Mode] == expected
    manifest = read_manifest(index)
    assert len(manifest.segments) <= 2, "past the limit, neighbours merge"
    assert sum(s.documents for s in manifest.segments) == len(engine.view.live_documents())
    assert engine.search("zqnote harbour", 3, Mode.bm25)[0].doc_id.startswith("note-")
    assert not engine.maintain(), "nothing left to do"
    report = verify_index(index)
    assert report.segments == len(manifest.segments)


def test_a_server_takes_in_segments_sealed_by_another_process(seed_index: Path, tmp_path: Path, embedder: Embedder):
    index = copy_index(seed_index, tmp_path / "index")
    engine = open_engine(index, embedder)
    expected = answers(engine, Mode.hybrid)
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from pathlib import Path; from indexer.store.store import Store; "
            f"Store.open(Path({str(index)!r})).seal(1)",
        ],
        cwd=ROOT,
        check=True,
    )
    assert engine.maintain()
    assert len(engine.view.passage_vectors.sealed) == 1
    assert answers(engine, Mode.hybrid) == expected


def test_damaged_segments_are_named_and_repair_rebuilds_them_without_re_embedding(
    engine: Engine, seed_index: Path, tmp_path: Path, embedder: Embedder
):
    index = sealed_copy(seed_index, tmp_path)
    segment = index / SEGMENTS_DIR / read_manifest(index).segments[0].name
    vectors = segment / "passages.npy"
    data = bytearray(vectors.read_bytes())
    data[-7] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(SegmentError, match=r"passages\.npy.*damaged.*citeline repair"):
        verify_index(index)
    vectors.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(StoreError, match=r"passages\.npy.*truncated.*citeline repair"):
        Engine.load(Settings(index=index), embedder=embedder)
    (index / SEGMENTS_DIR / MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(StoreError, match=r"MANIFEST\.json.*damaged.*citeline repair"):
        Engine.load(Settings(index=index), embedder=embedder)
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "repair", "--index", str(index)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout
    repaired = open_engine(index, embedder)
    assert len(repaired.view.passage_vectors.sealed) == 1
    assert answers(repaired, Mode.hybrid) == answers(engine, Mode.hybrid)


def test_a_manifest_naming_a_missing_segment_is_a_clear_error(seed_index: Path, tmp_path: Path):
    index = sealed_copy(seed_index, tmp_path)
    manifest = json.loads((index / SEGMENTS_DIR / MANIFEST_FILE).read_text())
    shutil.rmtree(index / SEGMENTS_DIR / manifest["segments"][0]["name"])
    store = Store.open(index)
    try:
        with pytest.raises(SegmentError, match=r"docs\.npy.*missing"):
            store.load()
    finally:
        store.close()
    repair(index)
    assert verify_index(index).segments == 1


def test_a_backup_holds_the_segments(seed_index: Path, tmp_path: Path, engine: Engine, embedder: Embedder):
    from indexer.store.maintenance import backup

    index = sealed_copy(seed_index, tmp_path)
    report = backup(index, tmp_path / "copy")
    assert report.segments == 1
    assert answers(open_engine(tmp_path / "copy", embedder), Mode.hybrid) == answers(engine, Mode.hybrid)


# Equal whole; the rows of a deleted document (a tombstone) differ by path, and are compared through
# the live rows that point at them (there are none).
VIEW_ARRAYS = ["doc_keys", "doc_alive", "doc_passages", "passage_docs", "passage_alive", "sentence_docs"]


def live_rows(view: View) -> list[tuple]:
    """Everything a search reads of each live passage: span, sentences (their spans, terms, first holder), terms."""
    described = []
    for row in np.flatnonzero(view.passage_alive).tolist():
        sentences, _ = view.sentences_of(np.asarray([row]))
        terms, _ = view.passage_terms(np.asarray([row]))
        described.append(
            (
                view.passage_span(row),
                terms.tolist(),
                [
                    (view.sentence_span(s), view.sentence_terms(np.asarray([s]))[0].tolist(), view.sentence_passages[s])
                    for s in sentences.tolist()
                ],
            )
        )
    return described


def loaded(index: Path, monkeypatch: pytest.MonkeyPatch, rows: bool) -> View:
    """The view of `index`, its segments loaded from their rows, or (`rows=False`) as a segment written
    before segments kept rows is: from the record file."""
    with monkeypatch.context() as patch:
        if not rows:
            opened = store_module.open_segment
            patch.setattr(store_module, "open_segment", lambda *a: dataclasses.replace(opened(*a), rows=None))
        store = Store.open(index)
        try:
            return store.load()
        finally:
            store.close()


def test_a_segment_loads_from_its_rows_into_the_view_the_record_file_gives(
    seed_index: Path, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
):
    index = sealed_copy(seed_index, tmp_path)
    engine = open_engine(index, embedder, seal_passages=1, max_segments=8)
    engine.add_documents([Document(doc_id="harbour", text="Zqharbour cranes stood idle. They rusted.", source="api")])
    engine.maintain()  # a second segment
    victim = engine.view.live_documents()[1].doc_id
    engine.delete_document(victim)  # a tombstone in the first
    assert len(read_manifest(index).segments) == 2
    fast, slow = loaded(index, monkeypatch, rows=True), loaded(index, monkeypatch, rows=False)
    assert fast.dead_passages == slow.dead_passages > 0
    for name in VIEW_ARRAYS:
        assert np.array_equal(getattr(fast, name), getattr(slow, name)), name
    assert live_rows(fast) == live_rows(slow)
    alive = [d for d in fast.documents if not d.doc_id.startswith("\x00")]
    assert alive == [d for d in slow.documents if not d.doc_id.startswith("\x00")]
    assert fast.doc_rows == slow.doc_rows and fast.live_terms == slow.live_terms
    assert victim not in fast.doc_rows and "harbour" in fast.doc_rows
    # The term ids, the largest columns, stay the segments' mapped files: pages, not the process's own memory.
    for column in (fast.passage_term_ids, fast.sentence_term_ids):
        assert [type(part) for part in column.sealed] == [np.memmap, np.memmap] and not len(column.live)
    assert not slow.passage_term_ids.sealed, "a segment without rows is copied in from the record file"
    # Rows written after the load land in memory after the mapped parts; every row reads its own terms.
    chunker = ChunkerConfig(token_limit=embedder.token_limit)
    record = prepare([Document(doc_id="quay", text="Zqquay lights. Ships waited.")], embedder, chunker, BM25Config())[0]
    grown = fast.changed([dataclasses.replace(record, key=10**9)], [], fast.seq + 1, fast.bm25)
    assert len(grown.passage_term_ids.live) == sum(len(p.terms) for p in record.passages) > 0
    assert live_rows(grown)[:-1] == live_rows(fast)
    assert live_rows(grown)[-1][1] == list(record.passages[-1].terms)


def test_a_column_in_parts_reads_as_their_concatenation():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 1 << 40, n) for n in (5, 0, 7)]
    live = rng.integers(0, 1 << 40, 4)
    whole = np.concatenate([*parts, live])
    column = Column(tuple(parts), live)
    assert len(column) == len(whole)
    indices = rng.integers(0, len(whole), 50)
    assert np.array_equal(column[indices], whole[indices])
    assert np.array_equal(column[3:14], whole[3:14]) and np.array_equal(column[np.zeros(0, int)], whole[:0])
    one = Column((parts[0],), live[:0])
    assert np.array_equal(one[np.asarray([4, 0])], parts[0][[4, 0]])
    with pytest.raises(ValueError, match="before unsealed rows"):
        column.with_sealed(parts[0])


def test_a_merge_of_a_segment_without_rows_writes_them_from_the_record_file(
    seed_index: Path, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
):
    index = sealed_copy(seed_index, tmp_path)
    engine = open_engine(index, embedder, seal_passages=1, max_segments=8)
    expected = {mode: answers(engine, mode) for mode in Mode}
    before = loaded(index, monkeypatch, rows=False)
    segment = index / SEGMENTS_DIR / read_manifest(index).segments[0].name
    manifest = json.loads((index / SEGMENTS_DIR / MANIFEST_FILE).read_text())
    for name in ROW_FILES:  # as a segment of the previous release
        (segment / name).unlink()
        del manifest["segments"][0]["sha256"][name]
    (index / SEGMENTS_DIR / MANIFEST_FILE).write_text(json.dumps(manifest))
    old = open_engine(index, embedder, seal_passages=1, max_segments=8)
    assert answers(old, Mode.hybrid) == expected[Mode.hybrid]
    for doc in old.view.live_documents()[:2]:
        old.delete_document(doc.doc_id)
    assert old.maintain(), "a quarter of it deleted: rewritten, now with rows"
    assert all(name in read_manifest(index).segments[0].sha256 for name in ROW_FILES)
    after = loaded(index, monkeypatch, rows=True)
    assert after.num_passages < before.num_passages and after.dead_passages == 0
    verify_index(index)


def test_a_truncated_row_file_is_named(seed_index: Path, tmp_path: Path, embedder: Embedder):
    index = sealed_copy(seed_index, tmp_path)
    terms = index / SEGMENTS_DIR / read_manifest(index).segments[0].name / "passage_terms.bin"
    terms.write_bytes(terms.read_bytes()[:-16])
    with pytest.raises(StoreError, match=r"passage_terms\.bin.*citeline repair"):
        Engine.load(Settings(index=index), embedder=embedder)
