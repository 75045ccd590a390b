"""A disk that really fills up: an index on a small tmpfs, written to until the file system refuses.

The write that hits the full disk is refused with a 507 and nothing of it is visible, after a restart
too; a seal that cannot write its segment fails clearly and leaves the segments as they were; once space
is freed, writes and seals work again and the index verifies. Mounting needs root (CAP_SYS_ADMIN): where
that is missing the test is skipped, saying so; `tests/indexer/test_store.py` covers the same refusal
through SQLite's page limit everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.model.embedding import Embedder
from indexer.store.errors import SegmentError
from indexer.store.maintenance import verify_index
from indexer.store.segments import SEGMENTS_DIR, read_manifest
from service.api.app import create_app
from service.engine import Engine
from service.search.retrieval import Mode
from service.settings import Settings

KEY = "disk-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SIZE_MB = 24


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a {SIZE_MB} MB tmpfs here ({result.stderr.strip()}): needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """A file that takes all the free space of `disk` but `leave_bytes`."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave_bytes
    with filler.open("wb") as handle:
        block = b"\0" * (1 << 20)
        while free > 0:
            written = handle.write(block[: min(len(block), free)])
            free -= written
        handle.flush()
        os.fsync(handle.fileno())
    return filler


def article(i: int) -> dict[str, str]:
    text = " ".join(f"Zqdune{i} report {n}: the harbour cranes moved {n} containers." for n in range(400))
    return {"doc_id": f"dune-{i}", "text": text}


def test_a_really_full_disk_refuses_writes_and_seals_and_loses_nothing(
    small_disk: Path, seed_index: Path, embedder: Embedder
):
    index = small_disk / "index"
    shutil.copytree(seed_index, index, ignore=shutil.ignore_patterns("encoders"))
    settings = Settings(index=index, api_key=KEY)
    engine = Engine.load(settings, embedder=embedder)
    with TestClient(create_app(settings, engine=engine)) as client:
        assert client.post("/documents", json=article(0), headers=AUTH).status_code == 201
        filler = fill(small_disk, leave_bytes=64 * 1024)
        refused = client.post("/documents", json=article(1), headers=AUTH)
        assert refused.status_code == 507, refused.text
        assert "full" in refused.json()["detail"] and "nothing was written" in refused.json()["detail"]
        assert client.get("/documents/dune-1").status_code == 404
        assert client.get("/documents/dune-0").status_code == 200
        with pytest.raises(SegmentError, match=r"could not be written.*free space"):
            engine.store.seal(1)
        assert read_manifest(index).segments == ()
        assert not list((index / SEGMENTS_DIR).glob("seg-*")), "the half-written segment was removed"
        filler.unlink()
        assert client.post("/documents", json=article(2), headers=AUTH).status_code == 201
        assert engine.store.seal(1) is not None
    restarted = Engine.load(Settings(index=index), embedder=embedder)
    ids = {d.doc_id for d in restarted.view.live_documents()}
    assert {"dune-0", "dune-2"} <= ids and "dune-1" not in ids
    assert restarted.search("zqdune2 harbour cranes", 1, Mode.bm25)[0].doc_id == "dune-2"
    assert verify_index(index).segments == 1
