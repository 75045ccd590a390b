"""Shadow reindex gated by evaluation: a worse index is refused with figures, a better one switches while
searches and writes go on (none fails, none is lost), and a rollback brings back the previous answers
exactly, with the writes made since the switch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.model.embedding import Embedder
from service.api.app import create_app
from service.engine import Engine
from service.settings import Settings
from tests.copies import copy_index
from tests.server import ROOT

ADMIN = "admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
QUESTIONS = (ROOT / "tests" / "data" / "seed_questions.jsonl").read_bytes()
PROBES = ["how many US troops were sent", "who reached the dam", "where did mattis meet defense officials"]


@pytest.fixture
def client(tmp_path: Path, seed_index: Path, embedder: Embedder) -> Iterator[TestClient]:
    index = copy_index(seed_index, tmp_path / "index")
    settings = Settings(index=index, admin_key=ADMIN, collections_dir=str(tmp_path / "collections"), reload_seconds=0)
    with TestClient(create_app(settings, engine=Engine.load(settings, embedder=embedder))) as test_client:
        yield test_client


def answers(client: TestClient, prefix: str = "") -> list[list[tuple[str, int, int, float]]]:
    out = []
    for q in PROBES:
        results = client.get(f"{prefix}/search", params={"q": q, "k": 5}, headers=AUTH).json()["results"]
        out.append(
            [(r["citation"]["doc_id"], r["citation"]["start"], r["citation"]["end"], r["score"]) for r in results]
        )
    return out


def finished(client: TestClient, prefix: str, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state: dict[str, Any] = client.get(f"{prefix}/jobs/{job['id']}", headers=AUTH).json()
        if state["state"] in ("done", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"reindex job {job['id']} did not end")


def reindex(client: TestClient, prefix: str, **body: Any) -> dict[str, Any]:
    started = client.post(f"{prefix}/reindex", json=body, headers=AUTH)
    assert started.status_code == 202, started.text
    assert started.headers["location"] == f"{prefix}/jobs/{started.json()['id']}"
    return finished(client, prefix, started.json())


def test_a_reindex_that_lowers_quality_is_refused_with_figures(client: TestClient, tmp_path: Path) -> None:
    refused = client.post("/reindex", json={"passage_tokens": 24}, headers=AUTH)
    assert refused.status_code == 409 and "/eval" in refused.json()["detail"], "no questions: nothing to judge by"
    assert client.put("/eval", content=b"not json\n", headers=AUTH).status_code == 422
    assert client.put("/eval", content=QUESTIONS, headers=AUTH).status_code == 204
    assert client.get("/eval").content == QUESTIONS
    before = answers(client)
    job = reindex(client, "", passage_tokens=24)
    report = job["reindex"]
    assert job["state"] == "done" and report["decision"] == "refused" and report["phase"] == "refused", job
    assert report["reasons"] and report["before"]["ndcg@10"] > report["after"]["ndcg@10"] + 0.005, report
    assert report["settings"] == {"passage_tokens": 24, "overlap_sentences": 1}
    assert answers(client) == before, "the live index is untouched"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".shadow-index-")], "kept for inspection"
    assert client.post("/rollback", headers=AUTH).status_code == 409, "nothing was switched"
    assert 'citeline_reindexes_total{collection="default",decision="refused"} 1.0' in client.get("/metrics").text


def test_a_better_index_switches_under_load_and_rolls_back_exactly(client: TestClient, seed_documents: list) -> None:
    prefix = "/collections/news"
    made = client.post("/collections", json={"name": "news", "passage_tokens": 24}, headers=AUTH)
    assert made.status_code == 201, made.text
    for document in seed_documents:
        body = {"title": document.title, "text": document.text}
        assert client.put(f"{prefix}/documents/{document.doc_id}", json=body, headers=AUTH).status_code == 201
    assert client.put(f"{prefix}/eval", content=QUESTIONS, headers=AUTH).status_code == 204
    small = answers(client, prefix)

    failures: list[str] = []
    written: list[str] = []
    stop = threading.Event()

    def load() -> None:  # searches and writes all through the reindex and its switch
        n = 0
        while not stop.is_set():
            found = client.get(f"{prefix}/search", params={"q": PROBES[n % 3]}, headers=AUTH)
            if found.status_code != 200 or not found.json()["results"]:
                failures.append(f"search {found.status_code}: {found.text[:200]}")
            doc_id = f"live-{n}"
            text = {"text": f"Bulletin {n}: the convoy reached checkpoint {n} on the road to the dam."}
            for _ in range(5):  # a write refused by a replaced engine (503) was not written: send it again
                put = client.put(f"{prefix}/documents/{doc_id}", json=text, headers=AUTH)
                if put.status_code != 503:
                    break
            if put.status_code in (200, 201):
                written.append(doc_id)
            else:
                failures.append(f"write {put.status_code}: {put.text[:200]}")
            n += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        job = reindex(client, prefix, passage_tokens=96)
    finally:
        stop.set()
        worker.join()
    report = job["reindex"]
    assert job["state"] == "done" and report["decision"] == "switched", job
    assert report["after"]["ndcg@10"] >= report["before"]["ndcg@10"] - 0.005
    assert not failures, failures[:5]
    assert written, "the load wrote while the reindex ran"
    stored = {d["doc_id"] for d in client.get(f"{prefix}/documents", headers=AUTH).json()["documents"]}
    assert set(written) <= stored, f"lost at the switch: {sorted(set(written) - stored)[:5]}"
    assert client.get(f"/collections/{'news'}", headers=AUTH).json()["passage_tokens"] == 96
    for doc_id in written:
        assert client.delete(f"{prefix}/documents/{doc_id}", headers=AUTH).status_code == 204
    switched = answers(client, prefix)
    assert switched != small, "the new passages answer"

    # A write after the switch is carried back; the rollback brings back the earlier answers (the same
    # passages in the same order; BM25's statistics still count the writes deleted meanwhile).
    assert client.put(f"{prefix}/documents/late", json={"text": "A late note."}, headers=AUTH).status_code == 201
    rolled = client.post(f"{prefix}/rollback", headers=AUTH)
    assert rolled.status_code == 200 and rolled.json()["passage_tokens"] == 24, rolled.text
    assert client.get(f"{prefix}/documents/late", headers=AUTH).json()["text"] == "A late note."
    assert client.delete(f"{prefix}/documents/late", headers=AUTH).status_code == 204
    back = answers(client, prefix)
    assert [[hit[:3] for hit in hits] for hits in back] == [[hit[:3] for hit in hits] for hits in small]
    assert client.get(f"{prefix}/eval", headers=AUTH).content == QUESTIONS, "the questions stay with the collection"
    forward = client.post(f"{prefix}/rollback", headers=AUTH)  # and again: forward to the reindexed one
    assert forward.status_code == 200 and forward.json()["passage_tokens"] == 96
    assert [[hit[:3] for hit in hits] for hits in answers(client, prefix)] == [
        [hit[:3] for hit in hits] for hits in switched
    ]
    # With no write in between, a rollback restores the answers exactly, scores and all.
    assert client.post(f"{prefix}/rollback", headers=AUTH).status_code == 200
    assert answers(client, prefix) == back


def test_a_write_to_a_replaced_engine_goes_to_its_successor(tmp_path: Path, seed_index: Path, embedder: Embedder):
    from indexer.collection import API_SOURCE
    from indexer.text.documents import Document
    from service.engine import RetiredEngineError

    old = Engine.load(Settings(index=copy_index(seed_index, tmp_path / "old")), embedder=embedder)
    new = Engine.load(Settings(index=copy_index(seed_index, tmp_path / "new")), embedder=embedder)
    document = Document(doc_id="late", text="Written while the collection was switched.", source=API_SOURCE)
    old.retired = "switched for the test"
    with pytest.raises(RetiredEngineError, match="nothing was written"):
        old.put_documents([document])  # no successor: refused, nothing written
    old.successor = new
    old.put_documents([document])
    old.delete_document("001_2c0b17beeba9964b")
    assert new.document("late") is not None and old.document("late") is None
    assert new.document("001_2c0b17beeba9964b") is None and old.document("001_2c0b17beeba9964b") is not None
    old.close()
    new.close()
