"""The scale benchmark's collections (bench/scale.py), small: real documents then copies with sampled
vectors, an ordinary index with the asked segment type that a plain engine serves with exact citations,
and a rerun that reuses what was built."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import scale
from indexer.model.embedding import Embedder
from indexer.store.segments import read_manifest
from service.engine import Engine
from service.search.retrieval import Mode
from service.settings import Settings


def test_copies_follow_the_real_documents_with_vectors_near_theirs(seed_index: Path):
    pool = scale.stored_records([seed_index])
    real = sum(len(r.passages) for r in pool)
    records = list(scale.collection_records(pool, 3 * real))
    assert sum(len(r.passages) for r in records) >= 3 * real
    assert [r.document.doc_id for r in records[: len(pool)]] == [r.document.doc_id for r in pool]
    assert np.array_equal(records[0].passage_vectors, pool[0].passage_vectors)
    copy = next(r for r in records if r.document.doc_id == f"{pool[0].document.doc_id}~1")
    assert copy.document.text == pool[0].document.text and copy.passages == pool[0].passages
    assert np.allclose(np.linalg.norm(copy.passage_vectors, axis=1), 1, atol=1e-5)
    to_original = np.sum(copy.passage_vectors * pool[0].passage_vectors, axis=1)
    to_others = copy.passage_vectors @ pool[-1].passage_vectors.T
    assert 0.5 < to_original.mean() < 0.999 and to_original.mean() > to_others.mean()


def test_a_built_collection_is_an_ordinary_index_and_a_rerun_reuses_it(
    seed_index: Path, tmp_path: Path, embedder: Embedder
):
    pool = scale.stored_records([seed_index])
    index = tmp_path / "300-hnsw"
    made = scale.built(pool, 300, index, "hnsw", embedder, [])
    assert made.passages >= 300
    assert [s.index for s in read_manifest(index).segments] == ["hnsw"]
    engine = Engine.load(Settings(index=index), embedder=embedder)
    hits = engine.search("how many US troops were sent", 10, Mode.hybrid)
    assert len(hits) == 10
    for hit in hits:
        document = engine.view.document(hit.doc_id)
        assert document is not None and document.text[hit.start : hit.end] == hit.text
    queries = embedder.encode_queries(["how many US troops were sent", "Tabqa dam", "Russia"])
    assert scale.dense_recall(index, queries) == 1.0  # a graph over a few hundred vectors misses nothing
    stamp = (index / "records.sqlite").stat().st_mtime_ns
    assert scale.built(pool, 300, index, "hnsw", embedder, []) == made
    assert (index / "records.sqlite").stat().st_mtime_ns == stamp
    flat = tmp_path / "300-flat"
    taken = scale.built(pool, 300, flat, "flat", embedder, [index])  # same size: taken over, segments rewritten
    assert taken.passages == made.passages and [s.index for s in read_manifest(flat).segments] == ["flat"]
    assert not index.exists()
