"""Operating the service: metrics, request ids and logs, readiness, limits with Retry-After, graceful shutdown."""

from __future__ import annotations

import io
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from indexer.collection import API_SOURCE
from indexer.model.embedding import Embedder
from indexer.store.maintenance import verify_index
from indexer.store.store import Store, WriterBusyError, writer_lock
from indexer.text.documents import Document
from service.admission import WriteTimeoutError
from service.api.app import create_app
from service.engine import Engine
from service.logs import JsonFormatter, RequestIdFilter
from service.search.filters import SearchFilter
from service.search.retrieval import Hit, Mode
from service.settings import Settings
from tests.copies import copy_index
from tests.server import server_process

KEY = "ops-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


class SlowWriter(Engine):
    """Writes take `delay` seconds longer, after they have started."""

    delay = 1.0

    def _commit(self, adds, deletes=()):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        return super()._commit(adds, deletes)


@pytest.fixture
def index_copy(seed_index: Path, tmp_path: Path) -> Path:
    return copy_index(seed_index, tmp_path / "index")


def app_client(index: Path, embedder: Embedder, engine: Engine | None = None, **settings: object) -> TestClient:
    config = Settings(index=index, api_key=KEY, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(config, engine=engine or Engine.load(config, embedder=embedder)))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_by_route_template_status_stage_and_write_outcome(index_copy: Path, embedder: Embedder):
    with app_client(index_copy, embedder) as client:
        before = samples(client.get("/metrics").text)
        assert client.get("/search", params={"q": "how many US troops were sent"}).status_code == 200
        assert client.get("/documents/no-such-doc").status_code == 404
        assert client.get("/documents/also-missing").status_code == 404
        assert client.get("/search", params={"q": "x", "k": 0}).status_code == 422
        assert client.get("/wp-admin.php").status_code == 404
        doc = {"doc_id": "met-1", "text": "Metrics are counted per route."}
        assert client.post("/documents", json=doc, headers=AUTH).status_code == 201
        assert client.post("/documents", json=doc, headers=AUTH).status_code == 409
        assert client.delete("/documents/met-2", headers=AUTH).status_code == 404
        page = client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    after = samples(page.text)

    def requests(method: str, route: str, status: str, collection: str = "default") -> float:
        labels = (("collection", collection), ("method", method), ("route", route), ("status", status))
        return after.get(("citeline_http_requests_total", labels), 0.0)

    assert requests("GET", "/search", "200") == 1 and requests("GET", "/search", "422") == 1
    assert requests("GET", "/documents/{doc_id}", "404") == 2, "labelled by template, not by path"
    assert requests("GET", "unmatched", "404", collection="") == 1, "no collection: none was resolved"
    labels = (("collection", "default"), ("method", "GET"), ("route", "/search"))
    assert after[("citeline_http_request_duration_seconds_count", labels)] == 2
    for stage in ("encode", "dense", "bm25", "fuse", "highlight"):
        assert after[("citeline_search_stage_seconds_count", (("stage", stage),))] == 1, stage
    writes = {labels: v for (name, labels), v in after.items() if name == "citeline_writes_total"}
    default = ("collection", "default")
    assert writes == {
        (default, ("operation", "add"), ("outcome", "ok")): 1,
        (default, ("operation", "add"), ("outcome", "conflict")): 1,
        (default, ("operation", "delete"), ("outcome", "not_found")): 1,
    }
    documents = ("citeline_index_documents", (default,))
    assert after[documents] == 6 == before[documents] + 1
    last_write = ("citeline_index_last_write_timestamp_seconds", (default,))
    assert after[last_write] > before[last_write]


def test_request_id_is_kept_when_sane_and_made_otherwise(client: TestClient):
    kept = client.get("/health", headers={"X-Request-ID": "trace-42.a:b"})
    assert kept.headers["x-request-id"] == "trace-42.a:b"
    for bad in ("has space", "x" * 200, "<script>", ""):
        made = client.get("/health", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert made != bad and len(made) == 32 and int(made, 16) >= 0
    ids = {client.get("/search", params={"q": "x", "k": 500}).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3, "a fresh id per request, on error responses too"


class FailingEngine(Engine):
    """Searches raise: an unexpected bug, as far as the app can tell."""

    def search(  # type: ignore[override]
        self, query: str, k: int, mode: Mode, search_filter: SearchFilter | None = None, **_: object
    ) -> list[Hit]:
        raise RuntimeError("simulated bug")


class SlowEngine(Engine):
    """Searches take `delay` seconds longer."""

    delay = 1.5

    def search(  # type: ignore[override]
        self, query: str, k: int, mode: Mode, search_filter: SearchFilter | None = None, **kwargs: object
    ) -> list[Hit]:
        time.sleep(self.delay)
        return super().search(query, k, mode, search_filter)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the service logs, as JSON lines with request ids (the CITELINE_LOG_FORMAT=json formatter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_json_access_and_error_lines_carry_the_request_id(index_copy: Path, embedder: Embedder, json_log: io.StringIO):
    with app_client(index_copy, embedder, engine=FailingEngine(embedder, Store.open(index_copy))) as client:
        ok = client.get("/documents", headers={"X-Request-ID": "req-ok"})
        failed = client.get("/search", params={"q": "anything"}, headers={"X-Request-ID": "req-bug"})
    assert ok.status_code == 200
    assert failed.status_code == 500 and failed.headers["x-request-id"] == "req-bug"
    assert "req-bug" in failed.json()["detail"]
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = {e["request_id"]: e for e in lines if e["logger"] == "citeline.access"}
    assert access["req-ok"]["status"] == 200 and access["req-ok"]["route"] == "/documents"
    assert access["req-ok"]["msg"] == "GET /documents 200" and access["req-ok"]["duration_ms"] >= 0
    assert access["req-bug"]["status"] == 500
    errors = [e for e in lines if e["level"] == "ERROR" and e.get("request_id") == "req-bug"]
    assert errors and "simulated bug" in errors[0]["exc"]


def test_ready_is_503_while_writes_of_another_process_fail_to_load(index_copy: Path, embedder: Embedder):
    settings = Settings(index=index_copy, reload_seconds=0)
    engine = Engine.load(settings, embedder=embedder)
    with TestClient(create_app(settings, engine=engine)) as client:
        assert client.get("/ready").json()["status"] == "ready"
        other = Engine.load(settings, embedder=embedder)  # another process, e.g. `citeline index`
        other.add_documents([Document(doc_id="late", text="Written by another process.", source=API_SOURCE)])
        damaged = index_copy / "bm25" / "meta.json"
        good = damaged.read_bytes()
        damaged.write_bytes(good[:-8])
        with pytest.raises(Exception, match="bm25"):
            engine.refresh()  # what the watcher does every CITELINE_RELOAD_SECONDS
        response = client.get("/ready")
        assert response.status_code == 503 and "bm25: the BM25 index cannot be read" in response.json()["detail"]
        assert client.get("/health").status_code == 200, "alive, still serving what it loaded"
        assert (
            client.get("/search", params={"q": "written by another process"}).json()["results"][0]["citation"]["doc_id"]
            != "late"
        )
        assert client.get("/search", params={"q": "troops"}).status_code == 200
        damaged.write_bytes(good)
        assert engine.refresh()
        assert client.get("/ready").json() == {
            "status": "ready",
            "snapshot": engine.version,
            "documents": 6,
            "passages": engine.view.live_passages,
            "chunks": engine.view.live_passages,  # the deprecated name, same value
        }
        assert engine.version == other.version


def test_a_request_past_the_timeout_is_503_and_the_server_goes_on(index_copy: Path, embedder: Embedder):
    slow = SlowEngine(embedder, Store.open(index_copy))
    with app_client(index_copy, embedder, engine=slow, request_timeout_seconds=0.3) as client:
        response = client.get("/search", params={"q": "troops"})
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert "CITELINE_REQUEST_TIMEOUT_SECONDS" in response.json()["detail"]
        assert client.get("/health").status_code == 200
        assert client.get("/documents").status_code == 200, "other requests are answered meanwhile"
        slow.delay = 0.0
        assert client.get("/search", params={"q": "troops"}).status_code == 200


def test_a_write_that_started_is_answered_whole_even_past_the_timeout(index_copy: Path, embedder: Embedder):
    """Never a 503 for a write that then lands: a started write completes within its response."""
    slow = SlowWriter(embedder, Store.open(index_copy))
    with app_client(index_copy, embedder, engine=slow, request_timeout_seconds=0.3) as client:
        response = client.post("/documents", json={"doc_id": "late-but-whole", "text": "Slow."}, headers=AUTH)
        assert response.status_code == 201, response.text
        assert client.get("/documents/late-but-whole").status_code == 200


def test_writes_beyond_the_queue_are_503_and_nothing_is_written(index_copy: Path, embedder: Embedder):
    with app_client(index_copy, embedder, max_queued_writes=1) as client:
        engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
        results: list[int] = []
        engine.admission.lock.acquire()  # a long write in progress
        try:
            first = {"doc_id": "q-1", "text": "First in line."}
            waiting = threading.Thread(
                target=lambda: results.append(client.post("/documents", json=first, headers=AUTH).status_code)
            )
            waiting.start()
            deadline = time.monotonic() + 30
            while engine.admission.queued < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            refused = client.post("/documents", json={"doc_id": "q-2", "text": "One too many."}, headers=AUTH)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert "CITELINE_MAX_QUEUED_WRITES=1" in refused.json()["detail"]
        finally:
            engine.admission.lock.release()
        waiting.join()
        assert results == [201]
        ids = {d["doc_id"] for d in client.get("/documents").json()["documents"]}
        assert "q-1" in ids and "q-2" not in ids


def test_a_write_waits_for_another_writer_at_most_the_timeout(index_copy: Path, embedder: Embedder):
    engine = Engine(embedder, Store.open(index_copy), write_wait_seconds=0.2)
    document = Document(doc_id="w", text="Waiting writer.", source=API_SOURCE)
    engine.admission.lock.acquire()
    try:
        with pytest.raises(WriteTimeoutError, match="CITELINE_REQUEST_TIMEOUT_SECONDS"):
            engine.add_documents([document])
    finally:
        engine.admission.lock.release()
    with writer_lock(index_copy):  # another process (citeline index) holds the index
        with pytest.raises(WriterBusyError, match="another process"):
            engine.add_documents([document])
        with app_client(index_copy, embedder, engine=engine) as client:
            busy = client.post("/documents", json={"doc_id": "w", "text": "x"}, headers=AUTH)
            assert busy.status_code == 503 and "retry-after" in busy.headers
    assert "w" not in engine.view.doc_rows
    engine.add_documents([document])
    assert "w" in engine.view.doc_rows


@pytest.mark.parametrize(
    ("params", "field"),
    [({"q": "x", "k": 0}, "k"), ({"q": "x", "k": 101}, "k"), ({"q": "x" * 1001}, "q"), ({"q": "  "}, "q")],
)
def test_k_and_query_length_limits_are_422_naming_the_field(client: TestClient, params: dict, field: str):
    response = client.get("/search", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", field]


# --- graceful shutdown of a real server ------------------------------------------------------------------


def big_batch(count: int = 40) -> dict:
    paragraph = (
        "The harbour authority reported {i} ships waiting outside the breakwater on Monday. Storms had closed "
        "the port for three days, and the pilots worked double shifts to bring the waiting vessels in. "
    )
    return {
        "documents": [
            {"doc_id": f"ship-{i}", "text": "\n\n".join(paragraph.format(i=i + j) * 2 for j in range(4))}
            for i in range(count)
        ]
    }


def wait_for_write_in_flight(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = samples(httpx.get(f"{base}/metrics", timeout=10).text)
        if page.get(("citeline_http_requests_in_progress", (("method", "POST"),)), 0) >= 1:
            return
        time.sleep(0.02)
    raise AssertionError("the write never showed as in flight")


def test_sigterm_stops_accepting_finishes_the_write_in_flight_and_exits_0(index_copy: Path):
    env = {"CITELINE_API_KEY": KEY, "CITELINE_LOG_FORMAT": "json", "CITELINE_LOG_LEVEL": "INFO"}
    with server_process("--index", str(index_copy), env=env) as (base, server):
        outcome: list[httpx.Response] = []
        writer = threading.Thread(
            target=lambda: outcome.append(
                httpx.post(
                    f"{base}/documents",
                    json=big_batch(),
                    headers={**AUTH, "X-Request-ID": "the-last-write"},
                    timeout=120,
                )
            )
        )
        writer.start()
        wait_for_write_in_flight(base)
        server.send_signal(signal.SIGTERM)
        refused = False
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/health", timeout=2)
                time.sleep(0.05)
            except httpx.TransportError:
                refused = True
                still_writing = writer.is_alive()
        assert refused and still_writing, "new connections are refused while the write goes on"
        writer.join()
        assert server.wait(timeout=60) == 0
        output = server.stdout.read().decode() if server.stdout else ""
    assert outcome and outcome[0].status_code == 201, output
    assert verify_index(index_copy).documents == 45, "the write in flight was finished and kept"
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [e for e in lines if e.get("request_id") == "the-last-write" and e["logger"] == "citeline.access"]
    assert access and access[0]["status"] == 201
    assert any("stopped by SIGTERM" in e["msg"] for e in lines)


def test_shutdown_is_bounded_by_its_setting(index_copy: Path):
    env = {"CITELINE_API_KEY": KEY, "CITELINE_SHUTDOWN_SECONDS": "1"}
    with server_process("--index", str(index_copy), env=env) as (base, server):
        outcome: list[object] = []

        def write() -> None:
            try:
                outcome.append(httpx.post(f"{base}/documents", json=big_batch(120), headers=AUTH, timeout=120))
            except httpx.TransportError as error:
                outcome.append(error)

        writer = threading.Thread(target=write)
        writer.start()
        wait_for_write_in_flight(base)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        writer.join()
    cut = outcome[0]
    if isinstance(cut, httpx.Response):  # answered before the connection closed: a 503 that says why
        assert cut.status_code == 503 and "CITELINE_SHUTDOWN_SECONDS" in cut.json()["detail"], cut.text
        assert cut.headers["retry-after"] == "2"
    else:
        assert isinstance(cut, httpx.TransportError), "the write was cut, not waited for"
    assert verify_index(index_copy).documents in (5, 125), "the index is whole: before or after the write"
