"""`citeline serve --ray --shards N`: one collection split over shards on Ray Serve, behind the same API.

Over HTTP against a real `citeline serve --ray` process: dense answers equal the single-store index's, writes
land in the owning shard's store only, and a stop is clean. On a local multi-node cluster (three Ray nodes on
this host): a node that holds a shard is killed under a load of searches and writes; Serve starts the shard
again elsewhere, it reopens its directory, searches fail only for a while (measured), and no acknowledged
write is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import ray
from ray import serve
from ray.cluster_utils import Cluster

from indexer.model.embedding import Embedder
from service.engine import Engine
from service.evaluation.evaluate import load_qa
from service.search.retrieval import Mode
from service.settings import Settings
from service.shards import SHARDS_DIR, shard_of
from service.startup import load_embedder
from tests.server import ROOT, free_port, server_process

pytestmark = pytest.mark.ray
QUESTIONS = ROOT / "tests" / "data" / "seed_questions.jsonl"
KEY = "shard-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def holds(index: Path, shard: int, doc_id: str) -> bool:
    """Whether shard `shard`'s record file holds `doc_id` (read-only: the shard's process writes it)."""
    path = index / SHARDS_DIR / str(shard) / "records.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT 1 FROM documents WHERE doc_id = ?", (doc_id,)).fetchone() is not None


def test_serve_on_ray_answers_as_one_store_and_routes_writes(engine: Engine, tmp_path: Path) -> None:
    index = tmp_path / "sharded"
    env = {"CITELINE_API_KEY": KEY, "CITELINE_RAY_OBJECT_STORE_MB": "256"}
    args = ("--index", str(index), "--sources", str(ROOT / "seeds"), "--ray", "--shards", "2")
    with server_process(*args, env=env, timeout=600) as (url, process):
        for query in load_qa(QUESTIONS).queries:
            got = httpx.get(f"{url}/search", params={"q": query.text, "k": 5, "mode": "dense"}, timeout=60).json()
            expected = engine.search(query.text, 5, Mode.dense)
            assert [(r["citation"]["doc_id"], r["citation"]["start"]) for r in got["results"]] == [
                (h.reference.doc_id, h.reference.start) for h in expected
            ], query.text
        for n in range(6):
            doc_id = f"wire-{n}"
            put = httpx.put(f"{url}/documents/{doc_id}", json={"text": f"Convoy {n} crossed at dawn."}, headers=AUTH)
            assert put.status_code == 201, put.text
            assert [holds(index, s, doc_id) for s in range(2)] == [s == shard_of(doc_id, 2) for s in range(2)]
        assert httpx.get(f"{url}/documents/wire-3").json()["text"] == "Convoy 3 crossed at dawn."
        again = httpx.post(f"{url}/documents", json={"text": "Again.", "doc_id": "wire-3"}, headers=AUTH)
        assert again.status_code == 409 and again.json()["detail"].startswith("doc_id already exists: wire-3;")
        assert httpx.delete(f"{url}/documents/wire-3", headers=AUTH).status_code == 204
        assert httpx.get(f"{url}/documents/wire-3").status_code == 404
        assert httpx.get(f"{url}/health").json()["documents"] == 5 + 5
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0


@pytest.fixture
def three_nodes() -> Iterator[Cluster]:
    """A head (Serve's controller, proxy and the router) and two worker nodes for the shards, on this host."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    memory = 128 * 2**20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "resources": {"head": 1},
            "object_store_memory": memory,
            "include_dashboard": False,
        },
    )
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2, object_store_memory=memory)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        yield cluster
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


def test_a_killed_node_loses_no_acknowledged_write(three_nodes: Cluster, embedder: Embedder, tmp_path: Path) -> None:
    from service.ray_serve import deploy

    port = free_port()
    settings = Settings(
        index=tmp_path / "sharded",
        sources=str(ROOT / "seeds"),
        api_key=KEY,
        host="127.0.0.1",
        port=port,
        log_level="WARNING",
        encoder_cache=os.environ["CITELINE_ENCODER_CACHE"],
    )
    load_embedder(settings)  # the export in place before the replicas load it
    deploy(
        settings,
        2,
        shard_options={"ray_actor_options": {"num_cpus": 1}},
        router_options={"ray_actor_options": {"num_cpus": 0, "resources": {"head": 0.01}}},
    )
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/search", params={"q": "troops"}, timeout=60).status_code == 200

    acknowledged: list[str] = []
    searches: list[tuple[float, int, float]] = []  # (sent, status, seconds)
    stop = threading.Event()

    def write() -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not stop.is_set():
                doc_id = f"note-{n}"
                try:
                    answer = client.put(f"{url}/documents/{doc_id}", json={"text": f"Note {n}."}, headers=AUTH)
                    if answer.status_code == 201:
                        acknowledged.append(doc_id)
                        n += 1
                except httpx.TransportError:
                    pass
                time.sleep(0.05)

    def search() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status = client.get(f"{url}/search", params={"q": "how many US troops were sent"}).status_code
                except httpx.TransportError:
                    status = 0
                searches.append((sent, status, time.monotonic() - sent))
                time.sleep(0.1)

    workers = [threading.Thread(target=write), threading.Thread(target=search)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3)
        shard = serve.get_deployment_handle("shard-0", app_name="citeline")
        node_id, pid = shard.where.remote().result(timeout_s=60)
        node = next(n for n in three_nodes.worker_nodes if n.node_id == node_id)
        killed = time.monotonic()
        three_nodes.remove_node(node, allow_graceful=False)
        deadline = killed + 240
        restarted = None
        while restarted is None and time.monotonic() < deadline:
            try:
                if shard.where.remote().result(timeout_s=5)[1] != pid:
                    restarted = time.monotonic()
            except Exception:  # the replica is gone until Serve starts it again
                time.sleep(0.5)
        assert restarted is not None, "Serve started the shard again within 240 s"
        while time.monotonic() < deadline:
            recent = [status for at, status, _ in searches if at > restarted][-10:]
            if len(recent) == 10 and all(status == 200 for status in recent):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    after = [(at, status, took) for at, status, took in searches if at + took > killed]
    failed = [at for at, status, _ in after if status != 200]
    window = (max(failed) - killed) if failed else 0.0
    # Serve holds a request for a shard that is being started again, up to the router's request timeout: the
    # searches of the window wait rather than fail, unless it runs out.
    slowest = max(took for _, _, took in after)
    print(
        f"shard restarted {restarted - killed:.1f} s after its node was killed; searches after the kill: "
        f"{len(after)}, {len(failed)} failed (failing for {window:.1f} s), slowest {slowest:.1f} s; "
        f"{len(acknowledged)} writes acknowledged"
    )
    assert after[-1][1] == 200, "searches are answered again after the restart"
    assert all(status in (200, 503) for _, status, _ in after), "a lost shard is a 503 with Retry-After, never a 500"
    assert acknowledged, "writes were acknowledged during the test"
    with httpx.Client(timeout=30) as client:
        missing = [d for d in acknowledged if client.get(f"{url}/documents/{d}").status_code != 200]
    assert not missing, f"acknowledged writes lost: {missing}"
