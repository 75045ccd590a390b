"""The on-disk index: atomic writes, incremental re-indexing, manifest checks."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from indexer import snapshot as snapshot_module
from indexer.build import build_index
from indexer.chunking import ChunkerConfig
from indexer.documents import Document
from indexer.lexical import BM25Config
from indexer.snapshot import CURRENT_FILE, SnapshotError, current_snapshot_path, load_snapshot, read_manifest
from service.engine import Engine, ModelMismatchError
from service.settings import Settings


@pytest.fixture()
def small_docs(seed_documents) -> list[Document]:
    return list(seed_documents[:3])


def test_manifest_records_model_chunker_hashes_and_counts(seed_index: Path, embedder, seed_documents):
    manifest = read_manifest(seed_index)
    assert manifest.format_version == snapshot_module.FORMAT_VERSION
    assert manifest.model.fingerprint == embedder.info.fingerprint and manifest.model.dimension == 384
    assert manifest.chunker.token_limit == embedder.token_limit
    assert manifest.documents == {d.doc_id: d.content_hash for d in seed_documents}
    assert manifest.counts["documents"] == 5 and manifest.counts["chunks"] == load_snapshot(seed_index).num_chunks
    path = current_snapshot_path(seed_index)
    assert {p.name for p in path.iterdir()} == {
        "manifest.json",
        "documents.jsonl",
        "chunks.npz",
        "dense.faiss",
        "bm25",
        "sentences.npz",
        "sentences.faiss",
    }


def test_every_chunk_knows_its_sentences_exactly(seed_index: Path):
    snap = load_snapshot(seed_index)
    assert snap.sentence_dense.ntotal == len(snap.sentence_docs) == snap.manifest.counts["sentences"]
    for row in range(snap.num_chunks):
        rows = snap.sentence_rows_of(row)
        assert len(rows) > 0
        spans = [(int(snap.sentence_starts[r]), int(snap.sentence_ends[r])) for r in rows]
        assert all(snap.sentence_docs[r] == snap.chunk_docs[row] for r in rows)
        assert spans[0][0] == snap.chunk_starts[row] and spans[-1][1] == snap.chunk_ends[row]
        assert spans == sorted(spans)
        assert all(snap.chunk_starts[row] <= start < end <= snap.chunk_ends[row] for start, end in spans)


def test_reindexing_embeds_only_what_changed(tmp_path: Path, embedder, small_docs):
    index = tmp_path / "index"
    first = build_index(small_docs, index, embedder, show_progress=False)
    assert first.embedded_chunks == first.chunks > 0

    abandoned = first.snapshot.parent / ".tmp-left-by-a-killed-writer"
    abandoned.mkdir()
    unchanged = build_index(small_docs, index, embedder, show_progress=False)
    assert unchanged.embedded_chunks == 0 and unchanged.snapshot == first.snapshot  # nothing rewritten
    assert not abandoned.exists(), "an up-to-date run still clears what killed writers left"

    edited = replace(small_docs[1], text=small_docs[1].text + "\n\nA new closing sentence about Raqqa.")
    changed = build_index([small_docs[0], edited], index, embedder, show_progress=False)
    snap = load_snapshot(index)
    assert changed.reused_documents == 1 and changed.removed_documents == 1
    assert changed.embedded_chunks == sum(1 for r in range(snap.num_chunks) if snap.chunk(r).doc_id == edited.doc_id)
    assert {d.doc_id for d in snap.documents} == {small_docs[0].doc_id, edited.doc_id}
    assert snap.documents[snap.doc_rows[edited.doc_id]].text == edited.text
    # Reused vectors are the same as freshly computed ones.
    fresh = tmp_path / "fresh"
    build_index([small_docs[0], edited], fresh, embedder, show_progress=False)
    other = load_snapshot(fresh)
    import numpy as np

    assert np.allclose(snap.vectors(np.arange(snap.num_chunks)), other.vectors(np.arange(other.num_chunks)), atol=1e-5)
    assert np.allclose(snap.sentence_matrix, other.sentence_matrix, atol=1e-5)
    assert np.array_equal(snap.chunk_sentence_ptr, other.chunk_sentence_ptr)
    assert np.array_equal(snap.chunk_sentence_rows, other.chunk_sentence_rows)


def test_changed_chunker_settings_rebuild_everything(tmp_path: Path, embedder, small_docs):
    index = tmp_path / "index"
    build_index(small_docs, index, embedder, show_progress=False)
    report = build_index(
        small_docs,
        index,
        embedder,
        ChunkerConfig(chunk_tokens=64, token_limit=embedder.token_limit),
        show_progress=False,
    )
    assert report.embedded_chunks == report.chunks


def test_an_index_from_before_acronym_pairs_reads_as_without_them_and_gains_them_on_reindex(
    tmp_path: Path, embedder, seed_documents
):
    islamic_state = [d for d in seed_documents if "Islamic State" in d.text and re.search(r"\bIS\b", d.text)][:1]
    assert islamic_state, "a seed article spells out 'IS'"
    index = tmp_path / "index"
    legacy = BM25Config(keep_acronyms=False, expand_acronyms=False)
    old = build_index(islamic_state, index, embedder, bm25=legacy, show_progress=False)
    manifest_path = current_snapshot_path(index) / "manifest.json"
    raw = json.loads(manifest_path.read_text())
    for key in ("keep_acronyms", "expand_acronyms"):
        del raw["bm25"][key]  # what an index written before these settings holds
    manifest_path.write_text(json.dumps(raw))
    assert read_manifest(index).bm25 == legacy

    report = build_index(islamic_state, index, embedder, show_progress=False)
    assert report.embedded_chunks == 0 and report.snapshot != old.snapshot, "BM25 rebuilt, nothing re-embedded"
    snap = load_snapshot(index)
    assert snap.manifest.bm25 == BM25Config()
    texts = [snap.chunk_text(r) for r in range(snap.num_chunks)]
    only_spelled_out = [r for r, t in enumerate(texts) if "Islamic State" in t and not re.search(r"\bIS\b", t)]
    assert only_spelled_out
    scores = snap.lexical.scores(snap.lexical.query_token_ids("where did IS fight"))
    assert all(scores[r] > 0 for r in only_spelled_out), "BM25 matches 'IS' to 'Islamic State' after the re-index"


def test_crash_during_write_keeps_the_previous_snapshot(tmp_path: Path, embedder, small_docs, monkeypatch):
    index = tmp_path / "index"
    build_index(small_docs[:1], index, embedder, show_progress=False)
    before = (index / CURRENT_FILE).read_text()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(snapshot_module.faiss, "write_index", explode)
    with pytest.raises(OSError, match="disk full"):
        build_index(small_docs, index, embedder, show_progress=False)
    assert (index / CURRENT_FILE).read_text() == before
    assert not list((index / "snapshots").glob(".tmp-*"))
    assert [d.doc_id for d in load_snapshot(index).documents] == [small_docs[0].doc_id]


def test_a_staging_folder_without_manifest_is_never_loaded(tmp_path: Path, embedder, small_docs):
    index = tmp_path / "index"
    build_index(small_docs[:1], index, embedder, show_progress=False)
    live = current_snapshot_path(index)
    (live / "manifest.json").unlink()
    with pytest.raises(SnapshotError, match="missing or incomplete"):
        load_snapshot(index)


def test_missing_index_and_foreign_format_are_clear_errors(tmp_path: Path, seed_index: Path):
    with pytest.raises(SnapshotError, match="no index at"):
        load_snapshot(tmp_path / "nothing")
    copy = tmp_path / "copy"
    shutil.copytree(seed_index, copy)
    manifest_path = current_snapshot_path(copy) / "manifest.json"
    raw = json.loads(manifest_path.read_text())
    raw["format_version"] = 99
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(SnapshotError, match="format version 99"):
        load_snapshot(copy)


def test_server_refuses_an_index_built_with_another_model(tmp_path: Path, seed_index: Path, embedder):
    copy = tmp_path / "copy"
    shutil.copytree(seed_index, copy)
    manifest_path = current_snapshot_path(copy) / "manifest.json"
    raw = json.loads(manifest_path.read_text())
    raw["model"].update(name="other-model", path="/models/other", fingerprint="0" * 64)
    manifest_path.write_text(json.dumps(raw))
    with pytest.raises(ModelMismatchError, match=r"built with model 'other-model'.*CITELINE_MODEL=/models/other"):
        Engine.load(Settings(index=copy), embedder=embedder)


def test_old_snapshots_are_pruned(tmp_path: Path, embedder, small_docs):
    index = tmp_path / "index"
    for n in range(1, 4):
        build_index(small_docs[:n], index, embedder, show_progress=False)
    names = sorted(p.name for p in (index / "snapshots").iterdir())
    assert len(names) == 2 and current_snapshot_path(index).name == names[-1]
