"""Shared fixtures: the real model is loaded once per test run, and the seeds indexed once."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A private user cache: an ONNX export left in ~/.cache/citeline by another run would be reused instead of the
# one the tests expect beside their index (tests/indexer/test_encoders.py), and servers started by tests inherit this.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="citeline-test-cache-")

from fastapi.testclient import TestClient

from indexer.model.embedding import Embedder
from indexer.model.encoders import DEFAULT_QUERY_ENCODER, index_encoder_cache
from indexer.text.documents import Document, load_documents
from service.api.app import create_app
from service.engine import Engine
from service.settings import Settings
from service.startup import index_sources

atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seed-index")


@pytest.fixture(scope="session")
def embedder(seed_index_dir: Path) -> Embedder:
    # The default encoders (fp32 passages, int8 questions); their ONNX exports, made once per run, are cached
    # beside the seed index, and every index a test makes (and every server it starts) reads them from there
    # as a shared cache: an export of its own in each would cost seconds and ~150 MB of disk per index.
    os.environ["CITELINE_ENCODER_CACHE"] = str(index_encoder_cache(seed_index_dir))
    return Embedder(query_encoder=DEFAULT_QUERY_ENCODER, cache_dir=index_encoder_cache(seed_index_dir))


@pytest.fixture(scope="session")
def seed_documents() -> list[Document]:
    return load_documents([SEEDS])


@pytest.fixture(scope="session")
def seed_index(seed_index_dir: Path, embedder: Embedder) -> Path:
    index_sources(Settings(index=seed_index_dir, sources=str(SEEDS)), embedder, show_progress=False)
    return seed_index_dir


@pytest.fixture(scope="session")
def engine(embedder: Embedder, seed_index: Path) -> Engine:
    return Engine.load(Settings(index=seed_index), embedder=embedder)


@pytest.fixture(scope="session")
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine)) as test_client:
        yield test_client
