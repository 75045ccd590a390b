"""Background work (sealing, merging, building HNSW graphs) runs at the lowest CPU priority, down to the
OpenMP workers FAISS starts for a graph, so that it yields the two cores to searches."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from indexer.store.vector_index import build_graph
from service.background import at_low_priority


def nice_values() -> dict[int, int]:
    """Each thread of this process and its nice value (field 19 of /proc/self/task/TID/stat)."""
    values = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        values[int(tid)] = int(fields[16])
    return values


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc to read thread priorities")
def test_a_graph_built_in_the_background_runs_every_thread_at_the_lowest_priority(tmp_path: Path):
    before = nice_values()
    vectors = np.random.default_rng(0).normal(size=(5000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def work() -> dict[int, int]:
        build_graph(vectors, tmp_path / "graph.hnsw")
        # libgomp keeps a thread's OpenMP workers alive until that thread ends: they can be read here.
        return {tid: nice for tid, nice in nice_values().items() if tid not in before}

    started = at_low_priority(work)
    # The background thread, and FAISS's OpenMP workers where there is more than one core.
    assert len(started) >= min(2, os.cpu_count() or 1), started
    assert set(started.values()) == {19}, started
    assert nice_values()[threading.get_native_id()] == before[threading.get_native_id()], "the caller is untouched"
    assert (tmp_path / "graph.hnsw").stat().st_size > 0
