"""`citeline index --ray`: cutting and embedding on a Ray cluster (Ray Data, a pool of encoder actors) gives the
index the local path gives: the same documents and passages, vectors equal to within float noise (cosine
≥ 0.9999 per passage), and the same answer to every seed question."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import ray

import indexer.build
from indexer import cluster
from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.store.store import Store
from indexer.text.documents import Document
from service.engine import Engine
from service.evaluation.evaluate import load_qa
from service.settings import Settings
from service.startup import actor_embedder
from tests.server import ROOT

pytestmark = pytest.mark.ray
QUESTIONS = ROOT / "tests" / "data" / "seed_questions.jsonl"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A Ray of this machine for the module, bounded, quiet, and shut down even when a test fails."""
    cluster.connect(cluster.LOCAL, object_store_bytes=256 * 2**20)
    try:
        yield
    finally:
        ray.shutdown()


def stored(index: Path) -> dict[str, tuple[list[tuple[int, int]], np.ndarray]]:
    """doc_id → (passage spans, passage vectors)."""
    store = Store.open(index)
    try:
        dimension = store.settings.model.dimension
        return {
            r.document.doc_id: ([(p.start, p.end) for p in r.passages], r.passage_vectors)
            for r in store.records.records(dimension=dimension)
        }
    finally:
        store.close()


def answers(index: Path, embedder: Embedder) -> list[list[tuple[str, int, int]]]:
    engine = Engine.load(Settings(index=index), embedder=embedder)
    try:
        return [
            [(h.reference.doc_id, h.reference.start, h.reference.end) for h in engine.search(q.text, 5, "hybrid")]
            for q in load_qa(QUESTIONS).queries
        ]
    finally:
        engine.close()


def assert_same_index(local: Path, on_ray: Path, embedder: Embedder) -> None:
    expected, got = stored(local), stored(on_ray)
    assert sorted(got) == sorted(expected)
    for doc_id, (spans, vectors) in expected.items():
        ray_spans, ray_vectors = got[doc_id]
        assert ray_spans == spans, doc_id
        cosines = np.sum(vectors * ray_vectors, axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(ray_vectors, axis=1)
        )
        assert cosines.min() >= 0.9999, (doc_id, cosines.min())
    assert answers(on_ray, embedder) == answers(local, embedder), "every seed question answered alike"


def test_ray_data_embeds_what_the_local_path_embeds(
    local_ray: None,
    seed_documents: list[Document],
    embedder: Embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(indexer.build, "BATCH_DOCUMENTS", 2)  # several batches, so both actors get work
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    sync_index(seed_documents, local, embedder, show_progress=False)
    settings = Settings(index=on_ray, encoder_cache=os.environ["CITELINE_ENCODER_CACHE"])
    plan = cluster.plan(actors=2, threads=1)
    report = sync_index(
        seed_documents,
        on_ray,
        embedder,
        show_progress=False,
        prepare_batches=cluster.ray_prepare(partial(actor_embedder, settings), plan),
    )
    assert report.documents == len(seed_documents) and report.embedded_passages == report.passages
    assert_same_index(local, on_ray, embedder)
    again = sync_index(
        seed_documents,
        on_ray,
        embedder,
        show_progress=False,
        prepare_batches=cluster.ray_prepare(partial(actor_embedder, settings), plan),
    )
    assert again.embedded_passages == 0, "a second run embeds nothing: the store decides what is new"


def test_the_command_starts_a_local_ray_and_builds_the_same_index(
    seed_index: Path, embedder: Embedder, tmp_path: Path
) -> None:
    on_ray = tmp_path / "ray"
    env = {**os.environ, "CITELINE_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1", "CITELINE_RAY_OBJECT_STORE_MB": "256"}
    command = [sys.executable, "-m", "service.cli", "index", str(ROOT / "seeds"), "--index", str(on_ray)]
    done = subprocess.run([*command, "--ray", "--quiet"], cwd=ROOT, env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    verified = subprocess.run(
        [sys.executable, "-m", "service.cli", "index", "--verify", str(on_ray)], cwd=ROOT, env=env, timeout=300
    )
    assert verified.returncode == 0
    assert_same_index(seed_index, on_ray, embedder)
