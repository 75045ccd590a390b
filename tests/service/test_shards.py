"""One collection split over shards, in one process (service/shards.py; Ray Serve deploys the same classes,
tests/ray): documents go to the shard their id hashes to, dense searches equal a single store's, writes go
to the owning shard, and the API in front of the shards answers as the single store's does."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from indexer.collection import ConflictError
from indexer.model.embedding import Embedder
from indexer.text.documents import Document
from service.api.app import create_app
from service.engine import Engine
from service.evaluation.evaluate import load_qa
from service.search.retrieval import Mode
from service.settings import Settings
from service.shards import LocalShard, ShardedEngine, ShardLayoutError, merge_hits, shard_dirs, shard_of
from service.startup import index_shards
from tests.conftest import ROOT, SEEDS

QUESTIONS = ROOT / "tests" / "data" / "seed_questions.jsonl"
SHARDS = 3
CARGO = ["salt", "copper", "wool", "timber", "coal", "tea", "glass", "rice"]


@pytest.fixture(scope="module")
def sharded(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShardedEngine]:
    index = tmp_path_factory.mktemp("sharded")
    settings = Settings(index=index, sources=str(SEEDS), encoder_cache=os.environ["CITELINE_ENCODER_CACHE"])
    folders = index_shards(settings, embedder, SHARDS, show_progress=False)
    engines = [Engine.load(Settings(index=folder), embedder) for folder in folders]
    engine = ShardedEngine(embedder, [LocalShard(e) for e in engines], index)
    yield engine
    engine.close()
    for shard_engine in engines:
        shard_engine.close()


def questions() -> list[str]:
    return [q.text for q in load_qa(QUESTIONS).queries] + ["Raqqa", "who", "troops and the dam near the river"]


@given(st.text(min_size=1, max_size=40), st.integers(1, 7))
def test_placement_is_stable_and_in_range(doc_id: str, shards: int) -> None:
    assert 0 <= shard_of(doc_id, shards) < shards
    assert shard_of(doc_id, shards) == shard_of(str(doc_id), shards)


def test_each_document_lives_in_its_owning_shard_only(sharded: ShardedEngine, seed_documents: list[Document]) -> None:
    for document in seed_documents:
        holders = [n for n, shard in enumerate(sharded.shards) if shard.document(document.doc_id) is not None]
        assert holders == [shard_of(document.doc_id, SHARDS)]
    assert len({shard_of(d.doc_id, SHARDS) for d in seed_documents}) > 1, "the seeds span several shards"
    assert sharded.sizes().documents == len(seed_documents)


def test_dense_results_equal_a_single_store(sharded: ShardedEngine, engine: Engine) -> None:
    for question in questions():
        for k in (1, 5, 20):
            single = engine.search(question, k, Mode.dense)
            split = sharded.search(question, k, Mode.dense)
            assert [(h.reference.doc_id, h.reference.start, h.reference.end) for h in split] == [
                (h.reference.doc_id, h.reference.start, h.reference.end) for h in single
            ], question
            assert [h.rank for h in split] == list(range(1, len(split) + 1))
            assert [h.score for h in split] == pytest.approx([h.score for h in single], abs=1e-6)
            for hit in split:
                document = sharded.document(hit.reference.doc_id)
                assert document is not None and document.text[hit.reference.start : hit.reference.end] == hit.text


def test_every_mode_merges_the_best_k_of_the_shards(sharded: ShardedEngine) -> None:
    for mode in Mode:
        hits = sharded.search("how many US troops were sent", 5, mode)
        assert len(hits) == 5 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert merge_hits([hits[3:], hits[:3]], 2) == hits[:2]


def test_bm25_and_hybrid_score_as_one_store(sharded: ShardedEngine, engine: Engine) -> None:
    """With the collection's BM25 statistics and hybrid scales, the shards' merged answers are one store's.
    What stays each shard's own (the second stage over its best, the folding of copies, the share of shared
    sentences in a document's BM25 length) moves scores a little, not the order here; bench/SHARDS.md measures SQuAD."""
    for mode in (Mode.bm25, Mode.hybrid):
        for question in questions():
            single = engine.search(question, 5, mode)
            split = sharded.search(question, 5, mode)
            assert [(h.reference.doc_id, h.reference.start) for h in split] == [
                (h.reference.doc_id, h.reference.start) for h in single
            ], (mode, question)


def test_writes_go_to_the_owning_shard_and_the_api_answers_as_one_store(
    sharded: ShardedEngine, seed_documents: list[Document]
) -> None:
    app = create_app(Settings(index=sharded.index_dir, api_key="key"), engine=sharded)
    auth = {"Authorization": "Bearer key"}
    with TestClient(app) as client:
        listed = client.get("/documents").json()["documents"]
        assert [d["doc_id"] for d in listed] == sorted(d.doc_id for d in seed_documents)
        found = client.get("/search", params={"q": "how many US troops were sent"}).json()["results"][0]
        assert found["citation"]["doc_id"] == "001_2c0b17beeba9964b"
        for n in range(8):
            doc_id = f"note-{n}"
            put = client.put(
                f"/documents/{doc_id}", json={"text": f"The barge carried crates of {CARGO[n]}."}, headers=auth
            )
            assert put.status_code == 201, put.text
            owner = shard_of(doc_id, SHARDS)
            assert [s.document(doc_id) is not None for s in sharded.shards] == [i == owner for i in range(SHARDS)]
        best = client.get("/search", params={"q": "which barge carried crates of tea"}).json()["results"][0]
        assert best["citation"]["doc_id"] == "note-5"
        text = client.get("/documents/note-5").json()["text"]
        assert text[best["citation"]["start"] : best["citation"]["end"]] == best["text"]
        added = client.post(
            "/documents",
            json={"documents": [{"text": "A.", "doc_id": "x-1"}, {"text": "B.", "doc_id": "x-2"}]},
            headers=auth,
        )
        assert added.status_code == 201 and [d["doc_id"] for d in added.json()["documents"]] == ["x-1", "x-2"]
        again = client.post("/documents", json={"text": "C.", "doc_id": "x-1"}, headers=auth)
        assert again.status_code == 409
        for doc_id in ("x-1", "x-2", *(f"note-{n}" for n in range(8))):
            assert client.delete(f"/documents/{doc_id}", headers=auth).status_code == 204
        assert client.get("/documents/note-5").status_code == 404
        health = client.get("/health").json()
        assert health["documents"] == len(seed_documents) and health["snapshot"].count(".") == SHARDS - 1
        assert client.get("/ready").status_code == 200
        assert client.get("/export").status_code == 404, "whole-store operations are not offered on shards"
        assert client.post("/mcp", json={}, headers={"Host": "127.0.0.1:8000"}).status_code < 500
    with pytest.raises(ConflictError):
        sharded.add_documents([seed_documents[0]])


def test_an_index_keeps_its_shard_count(tmp_path: Path) -> None:
    assert len(shard_dirs(tmp_path, 4)) == 4
    with pytest.raises(ShardLayoutError, match="split into 4 shards, not 2"):
        shard_dirs(tmp_path, 2)


def test_a_shards_refusal_crosses_processes_whole() -> None:
    refused = pickle.loads(pickle.dumps(ConflictError(["a", "b"])))
    assert str(refused) == str(ConflictError(["a", "b"])) and refused.doc_ids == ["a", "b"]
