"""Segments searched through an HNSW graph: the type chosen by size and recorded in the manifest, answers
equal to exact search on small collections, tombstones and filters honoured, damage reported and repaired."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.collection import API_SOURCE
from indexer.model.embedding import Embedder
from indexer.store import vector_index
from indexer.store.maintenance import repair, verify_index
from indexer.store.segments import SEGMENTS_DIR, SegmentError, read_manifest
from indexer.store.store import DEAD_FRACTION, SegmentPolicy, Store, StoreError
from indexer.store.view import UNSEARCHED, Vectors
from indexer.text.documents import Document
from service.engine import Engine
from service.search.filters import SearchFilter
from service.search.retrieval import Mode, nearest, top_indices
from service.settings import Settings
from tests.copies import copy_index
from tests.indexer.test_segments import answers, open_engine


def sealed_as(seed_index: Path, tmp_path: Path, index: str, name: str = "index") -> Path:
    copy = copy_index(seed_index, tmp_path / name)
    store = Store.open(copy)
    try:
        assert store.seal(1, index) is not None
    finally:
        store.close()
    return copy


def clustered(n: int, dimension: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors around the same few dozen centres (`seed` draws the points), shaped more like text
    embeddings than plain noise; queries drawn so lie among the vectors, as real questions do."""
    centres = np.random.default_rng(42).standard_normal((40, dimension))
    rng = np.random.default_rng(seed)
    vectors = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dimension))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def graph_over(vectors: np.ndarray, tmp_path: Path) -> Vectors:
    path = tmp_path / "graph.hnsw"
    vector_index.build_graph(vectors, path)
    return Vectors((vectors,), np.zeros((0, vectors.shape[1]), np.float32), (vector_index.open_graph(path),))


def exact_top(vectors: np.ndarray, query: np.ndarray, n: int, mask: np.ndarray | None = None) -> list[int]:
    scores = vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return top_indices(scores, n).tolist()


def test_auto_gives_a_graph_to_large_segments_only_and_rejects_unknown_types():
    assert vector_index.resolve("auto", vector_index.ANN_MIN_PASSAGES - 1) == "flat"
    assert vector_index.resolve("auto", vector_index.ANN_MIN_PASSAGES) == "hnsw"
    assert vector_index.resolve("flat", 10**7) == "flat"
    assert vector_index.resolve("hnsw", 10) == "hnsw"
    with pytest.raises(ValueError, match="ivf"):
        vector_index.resolve("ivf", 10)
    with pytest.raises(ValueError, match="CITELINE_VECTOR_INDEX"):
        Settings.from_env({"CITELINE_VECTOR_INDEX": "ivf"})


def test_graph_candidates_scored_exactly_equal_exact_search(tmp_path: Path):
    vectors = clustered(3000)
    searched = graph_over(vectors, tmp_path)
    queries = clustered(20, seed=1)
    for query in queries:
        assert nearest(searched, query, 100, None)[:10].tolist() == exact_top(vectors, query, 10)


def test_masked_rows_never_come_back_from_a_graph_and_a_narrow_mask_is_searched_exactly(tmp_path: Path):
    vectors = clustered(3000)
    searched = graph_over(vectors, tmp_path)
    rng = np.random.default_rng(2)
    wide = rng.random(len(vectors)) < 0.7  # tombstones: 30% of rows dead
    narrow = np.zeros(len(vectors), bool)
    narrow[rng.choice(len(vectors), 50, replace=False)] = True  # a filter: fewer rows than EXACT_ROWS
    for query in clustered(10, seed=3):
        for mask in (wide, narrow):
            found = nearest(searched, query, 100, mask)
            assert mask[found].all()
            assert found[:10].tolist() == exact_top(vectors, query, 10, mask)
        assert sorted(nearest(searched, query, 100, narrow).tolist()) == np.flatnonzero(narrow).tolist()


def test_a_graph_segment_is_recorded_and_answers_as_exact_search_on_a_small_collection(
    seed_index: Path, tmp_path: Path, embedder: Embedder, engine: Engine
):
    index = sealed_as(seed_index, tmp_path, "hnsw")
    (info,) = read_manifest(index).segments
    assert info.index == "hnsw"
    assert vector_index.GRAPH_FILE in info.sha256
    graphed = open_engine(index, embedder)
    view = graphed.view
    assert view.passage_vectors.graphs[0] is not None
    assert view.sentence_vectors.graphs[0] == UNSEARCHED  # sentences are scored inside found passages only
    assert view.passage_vectors.sealed[0].dtype == np.float16  # a graph segment's rows (vector_index.row_dtype)
    for mode in Mode:
        assert same_answers(answers(graphed, mode), answers(engine, mode)), mode
    doc_id = engine.view.live_documents()[1].doc_id
    only = SearchFilter(doc_ids=(doc_id,))
    assert same_answers(answers(graphed, Mode.dense, only), answers(engine, Mode.dense, only))


def same_answers(got: list[list[tuple]], expected: list[list[tuple]]) -> bool:
    """The same passages in the same order, their scores within float16's rounding of the vectors."""
    return all(
        [a[:3] for a in g] == [e[:3] for e in x] and np.allclose([a[3] for a in g], [e[3] for e in x], atol=1e-3)
        for g, x in zip(got, expected, strict=True)
    )


def test_small_collections_stay_exact_under_auto(seed_index: Path, tmp_path: Path):
    index = sealed_as(seed_index, tmp_path, "auto")
    (info,) = read_manifest(index).segments
    assert info.index == "flat"
    assert not (index / SEGMENTS_DIR / info.name / vector_index.GRAPH_FILE).exists()


def test_tombstones_hide_deleted_passages_of_a_graph_segment_until_a_merge_drops_them(
    seed_index: Path, tmp_path: Path, embedder: Embedder
):
    index = sealed_as(seed_index, tmp_path, "hnsw")
    graphed = open_engine(index, embedder)
    graphed.segments = SegmentPolicy(index="hnsw")
    victim = graphed.view.live_documents()[0]
    questions = (victim.title or victim.text[:80], "Raqqa", "how many US troops were sent")
    assert graphed.search(questions[0], 1, Mode.dense)[0].doc_id == victim.doc_id
    graphed.delete_document(victim.doc_id)
    for question in questions:
        for mode in Mode:
            assert victim.doc_id not in {h.doc_id for h in graphed.search(question, 20, mode)}, (question, mode)
    for other in graphed.view.live_documents()[1:]:  # enough dead rows to pass the merge threshold
        if graphed.view.dead_passages >= DEAD_FRACTION * graphed.view.num_passages:
            break
        graphed.delete_document(other.doc_id)
    graphed.maintain()  # the segment is rewritten without the dead rows
    (info,) = read_manifest(index).segments
    assert info.index == "hnsw" and info.documents == graphed.view.num_documents
    assert victim.doc_id not in {h.doc_id for h in graphed.search("Raqqa", 20, Mode.dense)}


def test_a_damaged_graph_is_reported_by_file_and_rebuilt_by_repair(seed_index: Path, tmp_path: Path):
    index = sealed_as(seed_index, tmp_path, "hnsw")
    (info,) = read_manifest(index).segments
    graph = index / SEGMENTS_DIR / info.name / vector_index.GRAPH_FILE
    graph.write_bytes(graph.read_bytes()[:100])
    with pytest.raises(SegmentError, match=r"passages\.hnsw"):
        Store.open(index).load()
    with pytest.raises(StoreError, match=r"passages\.hnsw"):
        verify_index(index)
    report = repair(index, "hnsw")
    assert report.segments == 1
    assert read_manifest(index).segments[0].index == "hnsw"
    store = Store.open(index)
    try:
        assert store.load().passage_vectors.graphs[0] is not None
    finally:
        store.close()


def test_writes_after_a_graph_seal_are_found_exactly(seed_index: Path, tmp_path: Path, embedder: Embedder):
    index = sealed_as(seed_index, tmp_path, "hnsw")
    graphed = open_engine(index, embedder)
    graphed.add_documents(
        [Document(doc_id="harbour", text="Zqharbour cranes stood idle all week at the port.", source=API_SOURCE)]
    )
    assert graphed.search("cranes idle at the port", 1, Mode.dense)[0].doc_id == "harbour"
