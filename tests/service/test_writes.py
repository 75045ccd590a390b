"""Live collections: add, replace and delete documents over HTTP, durably, while searches go on."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.collection import API_SOURCE
from indexer.model.embedding import Embedder
from indexer.store.maintenance import verify_index
from indexer.store.store import Store
from indexer.text.documents import Document
from service.api.app import create_app
from service.engine import Engine
from service.search.retrieval import Mode
from service.settings import Settings
from service.startup import prepare_index
from tests.copies import copy_index

KEY = "test-write-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROOT = Path(__file__).resolve().parents[2]

PENGUINS = {
    "doc_id": "penguin-census",
    "title": "Penguin census at Vostok station",
    "text": "Researchers at Vostok station counted 4,812 emperor penguins this winter.\n\n"
    "The census used drones and took eleven days. Funding came from a polar science grant.",
    "metadata": {"publisher": "Polar Times", "date": "2017-03-09"},
}


def stored_ids(index: Path) -> set[str]:
    """The ids of the documents the index's record file holds."""
    store = Store.open(index)
    try:
        return set(store.records.content_hashes())
    finally:
        store.close()


def check_citation(client: TestClient, result: dict) -> None:
    citation = result["citation"]
    text = client.get(f"/documents/{citation['doc_id']}", headers=AUTH).json()["text"]
    assert text[citation["start"] : citation["end"]] == result["text"]
    assert text[result["highlight"]["start"] : result["highlight"]["end"]] == result["highlight"]["text"]


@pytest.fixture
def index_copy(seed_index: Path, tmp_path: Path) -> Path:
    """A private copy of the seed index that a test may write to."""
    return copy_index(seed_index, tmp_path / "index")


@pytest.fixture
def writable(index_copy: Path, embedder: Embedder) -> Iterator[TestClient]:
    settings = Settings(index=index_copy, api_key=KEY)
    engine = Engine.load(settings, embedder=embedder)
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def search(client: TestClient, q: str, **params: object) -> list[dict]:
    response = client.get("/search", params={"q": q, **params}, headers=AUTH)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def test_added_document_is_found_first_with_exact_citation(writable: TestClient):
    response = writable.post("/documents", json=PENGUINS, headers=AUTH)
    assert response.status_code == 201, response.text
    written = response.json()["documents"]
    assert written == [{"doc_id": "penguin-census", "passages": 1, "chunks": 1, "created": True}]
    first = search(writable, "how many emperor penguins were counted")[0]
    assert first["citation"]["doc_id"] == "penguin-census"
    assert first["citation"]["source"] == API_SOURCE
    assert "4,812" in first["highlight"]["text"]
    check_citation(writable, first)
    detail = writable.get("/documents/penguin-census").json()
    assert detail["metadata"] == PENGUINS["metadata"] and detail["title"] == PENGUINS["title"]
    assert writable.get("/health").json()["documents"] == 6


def test_update_changes_the_answer_and_delete_removes_it(writable: TestClient):
    assert writable.post("/documents", json=PENGUINS, headers=AUTH).status_code == 201
    changed = {**PENGUINS, "text": PENGUINS["text"].replace("4,812", "5,190")}
    response = writable.put("/documents/penguin-census", json=changed, headers=AUTH)
    assert response.status_code == 200 and response.json()["documents"][0]["created"] is False
    first = search(writable, "how many emperor penguins were counted")[0]
    assert "5,190" in first["text"] and "4,812" not in first["text"]
    check_citation(writable, first)

    assert writable.delete("/documents/penguin-census", headers=AUTH).status_code == 204
    for mode in ("hybrid", "dense", "bm25"):
        results = search(writable, "emperor penguins census Vostok", k=100, mode=mode)
        assert all(r["citation"]["doc_id"] != "penguin-census" for r in results)
    assert writable.get("/documents/penguin-census").status_code == 404
    assert writable.delete("/documents/penguin-census", headers=AUTH).status_code == 404


def test_put_creates_and_seed_documents_can_be_replaced(writable: TestClient):
    response = writable.put("/documents/new-one", json={"text": "A brand new document about glaciers."}, headers=AUTH)
    assert response.status_code == 201 and response.json()["documents"][0]["doc_id"] == "new-one"
    before = writable.get("/documents").json()["documents"]
    seed_id = before[0]["doc_id"]
    replaced = writable.put(f"/documents/{seed_id}", json={"text": "Replaced text about volcanoes."}, headers=AUTH)
    assert replaced.status_code == 200
    after = writable.get("/documents").json()["documents"]
    assert [d["doc_id"] for d in after] == [d["doc_id"] for d in before], "listed by id, whatever was written"
    assert [d["doc_id"] for d in after] == sorted(d["doc_id"] for d in after)
    assert writable.get(f"/documents/{seed_id}").json()["text"] == "Replaced text about volcanoes."


def test_bulk_add_is_atomic_and_ids_are_derived(writable: TestClient):
    batch = {"documents": [{"text": "Glaciers in Patagonia retreat."}, {"doc_id": "dunes", "text": "Sand dunes move."}]}
    response = writable.post("/documents", json=batch, headers=AUTH)
    assert response.status_code == 201, response.text
    derived, named = response.json()["documents"]
    assert derived["doc_id"].startswith("doc-") and named["doc_id"] == "dunes"
    again = writable.post(
        "/documents", json={"documents": [{"text": "fresh"}, {"doc_id": "dunes", "text": "x"}]}, headers=AUTH
    )
    assert again.status_code == 409 and "dunes" in again.json()["detail"] and "PUT" in again.json()["detail"]
    ids = {d["doc_id"] for d in writable.get("/documents").json()["documents"]}
    assert derived["doc_id"] in ids and len(ids) == 7, "a rejected batch writes nothing"


def test_restart_keeps_api_documents_and_source_sync_keeps_them(index_copy: Path, embedder: Embedder):
    settings = Settings(index=index_copy, api_key=KEY)
    engine = Engine.load(settings, embedder=embedder)
    with TestClient(create_app(settings, engine=engine)) as client:
        assert client.post("/documents", json=PENGUINS, headers=AUTH).status_code == 201
    with_sources = Settings(index=index_copy, sources=str(ROOT / "seeds"))
    restarted = Engine.load(with_sources, embedder=prepare_index(with_sources, embedder))
    ids = {d.doc_id for d in restarted.view.live_documents()}
    assert "penguin-census" in ids and len(ids) == 6
    assert restarted.search("emperor penguins counted", 1, Mode.hybrid)[0].doc_id == "penguin-census"


def test_searches_during_a_bulk_write_all_succeed(writable: TestClient):
    batch = {
        "documents": [
            {"doc_id": f"bulk-{i}", "text": f"Report {i}: river levels rose by {i} metres."} for i in range(40)
        ]
    }
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def searcher() -> None:
        nonlocal answered
        while not stop.is_set():
            response = writable.get("/search", params={"q": "how many US troops were sent", "k": 3})
            if response.status_code != 200 or not response.json()["results"]:
                failures.append(response.text)
            answered += 1

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        response = writable.post("/documents", json=batch, headers=AUTH)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert response.status_code == 201
    assert not failures and answered > 0
    assert len(writable.get("/documents").json()["documents"]) == 45


def test_empty_collection_can_be_started_filled_and_emptied(tmp_path: Path, embedder: Embedder):
    settings = Settings(index=tmp_path / "fresh", api_key=KEY)
    engine = Engine.load(settings, embedder=prepare_index(settings, embedder))  # as `serve` starts
    with TestClient(create_app(settings, engine=engine)) as client:
        assert client.get("/health").json()["documents"] == 0
        assert search(client, "anything") == []
        assert client.post("/documents", json=PENGUINS, headers=AUTH).status_code == 201
        assert search(client, "penguins")[0]["citation"]["doc_id"] == "penguin-census"
        assert client.delete("/documents/penguin-census", headers=AUTH).status_code == 204
        assert search(client, "penguins", mode="bm25") == []


# --- security and limits -------------------------------------------------------------------------


def test_writes_are_off_without_a_key(client: TestClient):
    response = client.post("/documents", json=PENGUINS, headers=AUTH)
    assert response.status_code == 403 and "CITELINE_API_KEY" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}]
)
def test_writes_need_the_right_bearer_key(writable: TestClient, headers: dict[str, str]):
    for response in (
        writable.post("/documents", json=PENGUINS, headers=headers),
        writable.put("/documents/x", json=PENGUINS, headers=headers),
        writable.delete("/documents/001_2c0b17beeba9964b", headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
    assert len(writable.get("/documents").json()["documents"]) == 5


def test_read_key_protects_reads(index_copy: Path, embedder: Embedder):
    settings = Settings(index=index_copy, api_key=KEY, read_key="reader")
    with TestClient(create_app(settings, engine=Engine.load(settings, embedder=embedder))) as client:
        assert client.get("/search", params={"q": "raqqa"}).status_code == 401
        assert client.get("/documents").status_code == 401
        for key in ("reader", KEY):
            headers = {"Authorization": f"Bearer {key}"}
            assert client.get("/search", params={"q": "raqqa"}, headers=headers).status_code == 200
            assert client.get("/documents/001_2c0b17beeba9964b", headers=headers).status_code == 200
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": ""}, "at least 1 character"),
        ({"text": " \n\u00a0"}, "non-whitespace"),
        ({"doc_id": "../etc/passwd", "text": "x"}, "not allowed"),
        ({"doc_id": "a b", "text": "x"}, "not allowed"),
        ({"doc_id": ".hidden", "text": "x"}, "not allowed"),
        ({"text": "x", "metadata": {"date": "yesterday"}}, "ISO 8601"),
        ({"text": "x", "colour": "red"}, "Extra inputs"),
        ({"documents": []}, "at least 1 item"),
        ({"documents": [{"doc_id": "same", "text": "a"}, {"doc_id": "same", "text": "b"}]}, "repeated"),
    ],
)
def test_bad_documents_are_422_naming_the_rule(writable: TestClient, body: dict, message: str):
    response = writable.post("/documents", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert len(writable.get("/documents").json()["documents"]) == 5, "nothing already indexed is lost"


def test_put_checks_the_path_and_body_ids(writable: TestClient):
    assert writable.put("/documents/a", json={"doc_id": "b", "text": "x"}, headers=AUTH).status_code == 422
    for unsafe in (".hidden", "a%20b", "a..b"):
        response = writable.put(f"/documents/{unsafe}", json={"text": "x"}, headers=AUTH)
        assert response.status_code == 422 and "not allowed" in response.text, unsafe
    assert writable.post("/documents", json={**PENGUINS}, headers=AUTH).status_code == 201
    conflict = writable.post("/documents", json=PENGUINS, headers=AUTH)
    assert conflict.status_code == 409


def test_size_limits(index_copy: Path, embedder: Embedder):
    settings = Settings(index=index_copy, api_key=KEY, max_body_bytes=2000, max_document_chars=500)
    with TestClient(create_app(settings, engine=Engine.load(settings, embedder=embedder))) as client:
        too_big = client.post("/documents", json={"text": "x" * 5000}, headers=AUTH)
        assert too_big.status_code == 413 and "CITELINE_MAX_BODY_BYTES" in too_big.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies as the body streams in
            yield b'{"text": "'
            for _ in range(10):
                yield b"y" * 400
            yield b'"}'

        streamed = client.post("/documents", content=chunks(), headers={**AUTH, "content-type": "application/json"})
        assert streamed.status_code == 413
        too_long = client.post("/documents", json={"text": "z" * 800}, headers=AUTH)
        assert too_long.status_code == 422 and "CITELINE_MAX_DOCUMENT_CHARS" in too_long.json()["detail"]
        assert client.get("/health").json()["documents"] == 5


# --- filters -------------------------------------------------------------------------------------


@pytest.fixture
def filtered(writable: TestClient) -> TestClient:
    docs = [
        {
            "doc_id": "rt-1",
            "text": "Kurdish forces advanced on Raqqa.",
            "metadata": {"publisher": "RT", "date": "2017-03-01"},
        },
        {
            "doc_id": "rt-2",
            "text": "Raqqa offensive enters new phase.",
            "metadata": {"publisher": "RT", "date": "2017-06-06"},
        },
        {
            "doc_id": "bbc-1",
            "text": "Raqqa dam under threat.",
            "metadata": {"publisher": "BBC", "date": "2017-03-27T10:00:00Z"},
        },
        {"doc_id": "undated", "text": "Raqqa residents flee.", "metadata": {"publisher": "RT", "rank": 3}},
    ]
    assert writable.post("/documents", json={"documents": docs}, headers=AUTH).status_code == 201
    return writable


def doc_ids(results: list[dict]) -> list[str]:
    return [r["citation"]["doc_id"] for r in results]


def test_filters_restrict_before_the_top_k_cut(filtered: TestClient):
    for mode in ("hybrid", "dense", "bm25"):
        assert set(doc_ids(search(filtered, "Raqqa", mode=mode, filter="publisher:RT", k=10))) == {
            "rt-1",
            "rt-2",
            "undated",
        }
        assert doc_ids(search(filtered, "Raqqa", mode=mode, doc_id="bbc-1")) == ["bbc-1"]
    assert set(doc_ids(search(filtered, "Raqqa", doc_id=["rt-1", "bbc-1"], k=10))) == {"rt-1", "bbc-1"}
    seeds = search(filtered, "troops", source="seeds/", k=20)
    assert len(seeds) == 20 and all(r["citation"]["source"].startswith("seeds/") for r in seeds)
    assert doc_ids(search(filtered, "Raqqa", filter=["publisher:RT", "rank:3"])) == ["undated"]
    assert search(filtered, "Raqqa", filter="publisher:Nobody") == []


def test_date_range_filter(filtered: TestClient):
    march = search(filtered, "Raqqa", date_from="2017-03-01", date_to="2017-03-31", k=10)
    assert set(doc_ids(march)) == {"rt-1", "bbc-1"}
    posted = filtered.post(
        "/search", json={"q": "Raqqa", "k": 10, "filter": {"publisher": "RT"}, "date_from": "2017-06-01"}, headers=AUTH
    )
    assert doc_ids(posted.json()["results"]) == ["rt-2"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"filter": "publisher"}, "field:value"),
        ({"filter": ":RT"}, "field:value"),
        ({"date_from": "2017-13-01"}, "valid date"),
        ({"date_from": "0"}, "'0' is not a day"),  # pydantic alone reads it as 1970-01-01
        ({"date_to": "2017-03-09T10:00:00"}, "dates are ISO 8601 YYYY-MM-DD"),
        ({"date_from": "2017-06-01", "date_to": "2017-01-01"}, "date_from must not be after date_to"),
    ],
)
def test_bad_filters_are_422(client: TestClient, params: dict, message: str):
    response = client.get("/search", params={"q": "raqqa", **params})
    assert response.status_code == 422 and message in response.text, response.text
    if "filter" not in params:  # a body's filter is an object: its own tests are elsewhere
        posted = client.post("/search", json={"q": "raqqa", **params}, headers=AUTH)
        assert posted.status_code == 422 and message in posted.text, posted.text


# --- crash safety --------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from indexer.text.documents import Document
    from service.engine import Engine
    from service.settings import Settings

    engine = Engine.load(Settings(index=Path(sys.argv[1]), api_key="k"))
    print("ready", flush=True)
    for i in range(int(sys.argv[2]), 1000):
        engine.add_documents([Document(doc_id=f"w{i}", text=f"Write number {i} about harbour cranes.", source="api")])
        print(f"wrote {i}", flush=True)
    """
)


def test_sigkill_during_writes_leaves_the_old_or_the_new_state(index_copy: Path, embedder: Embedder):
    seeds = stored_ids(index_copy)
    rng = random.Random(7)
    written: list[int] = []
    for delay in (rng.uniform(0.0, 0.3), rng.uniform(0.3, 1.0), rng.uniform(1.0, 2.0)):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index_copy), str(len(written))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        threading.Timer(delay, process.send_signal, args=(signal.SIGKILL,)).start()
        acknowledged = len(process.stdout.read().splitlines())
        assert process.wait() == -signal.SIGKILL
        verify_index(index_copy)  # complete and self-consistent, or this raises
        before = len(written)
        written = sorted(int(doc_id[1:]) for doc_id in stored_ids(index_copy) - seeds)
        assert written == list(range(len(written))), "a prefix of the writes, never a mix"
        assert len(written) >= before + acknowledged, "every acknowledged write is on disk"
        engine = Engine.load(Settings(index=index_copy), embedder=embedder)  # replays what BM25 missed
        assert {d.doc_id for d in engine.view.live_documents()} == seeds | {f"w{i}" for i in written}
        assert engine.search("how many US troops were sent", 1, Mode.hybrid)[0].doc_id == "001_2c0b17beeba9964b"
    assert written, "the writer was killed before it wrote anything: the test proved nothing"


def test_server_follows_writes_of_another_process(index_copy: Path, embedder: Embedder):
    settings = Settings(index=index_copy, reload_seconds=0.05)
    with TestClient(create_app(settings, engine=Engine.load(settings, embedder=embedder))) as client:
        before = client.get("/health").json()["snapshot"]
        other_writer = Engine.load(Settings(index=index_copy), embedder=embedder)  # e.g. `citeline index`
        other_writer.add_documents([Document(doc_id="cranes", text="Harbour cranes were idle.", source=API_SOURCE)])
        deadline = time.monotonic() + 10
        while client.get("/health").json()["snapshot"] == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/health").json()["documents"] == 6
        assert search(client, "harbour cranes idle")[0]["citation"]["doc_id"] == "cranes"


def test_syndicated_copies_fold_into_one_result_and_stay_reachable(writable: TestClient):
    story = (
        "Engineers inspecting the Tabqa dam found cracks in its spillway after weeks of fighting nearby. "
        "The dam holds back Lake Assad, and a breach would flood villages downstream."
    )
    docs = [
        {"doc_id": "outlet-a", "title": "Dam cracks", "text": story},
        {"doc_id": "outlet-b", "title": "Tabqa dam damaged", "text": story + " Reporting by our correspondent."},
        {"doc_id": "other", "text": "Lake Assad supplies water to Aleppo; officials plan repairs to the pumps."},
    ]
    assert writable.post("/documents", json={"documents": docs}, headers=AUTH).status_code == 201
    results = search(writable, "cracks found in the Tabqa dam spillway", k=5)
    first = results[0]
    assert first["citation"]["doc_id"] in {"outlet-a", "outlet-b"}
    copy = {"outlet-a", "outlet-b"} - {first["citation"]["doc_id"]}
    assert [d["doc_id"] for d in first["duplicates"]] == list(copy)
    assert all(r["citation"]["doc_id"] not in copy for r in results), "the copy is folded, not listed again"
    assert len(results) == 5
    for duplicate in first["duplicates"]:
        text = writable.get(f"/documents/{duplicate['doc_id']}").json()["text"]
        assert "Tabqa dam found cracks" in text[duplicate["start"] : duplicate["end"]]
