"""Bulk indexing on a Ray cluster: the expensive part (cutting and embedding) as a Ray Data pipeline.

`ray_prepare` is a `PrepareBatches` for `sync_index`: batches of documents go through `map_batches` to a
pool of encoder actors (one model load each, `threads` CPUs each), and their records come back to this
process, which writes them through the normal store writer as they arrive. So the store, its resumability
and its checks are the local path's; only where the vectors are computed changes.

Ray is an optional extra (`pip install 'citeline[ray]'`): only this module imports it, and only
`citeline index --ray` imports this module. Every node needs this project installed (the model ships in a
PyPI package); the index directory only needs to exist where the command runs.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from indexer.build import PrepareBatches, prepare
from indexer.model.embedding import Embedder
from indexer.store.records import DocumentRecord
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import Document
from indexer.text.lexical import BM25Config

logger = logging.getLogger(__name__)
LOCAL = "local"  # start a Ray on this machine for the run
# Ray's own telemetry and dashboard stay off: nothing leaves the machine, nothing listens but Ray itself.
QUIET = {"RAY_USAGE_STATS_ENABLED": "0"}


@dataclass(frozen=True)
class ClusterPlan:
    """How many encoder actors, each with how many CPUs (encoder threads)."""

    actors: int
    threads: int


def connect(address: str, object_store_bytes: int | None = None) -> None:
    """Join the Ray cluster at `address` (`ray://host:10001`, `host:6379`, `auto`), or start one here for
    `local`; a no-op when this process is connected already."""
    os.environ.update(QUIET)
    if ray.is_initialized():
        return
    common: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
    if address == LOCAL:
        ray.init(object_store_memory=object_store_bytes, **common)
    else:
        ray.init(address=address, **common)
    logger.info("ray: connected to %s (%s CPUs)", address, ray.cluster_resources().get("CPU", 0))


def plan(actors: int, threads: int) -> ClusterPlan:
    """`actors` encoders (0: as many as the cluster's CPUs hold at `threads` CPUs each, at least one)."""
    threads = max(1, threads)
    if actors <= 0:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    return ClusterPlan(actors=actors, threads=threads)


class _Encoder:
    """One Ray Data actor: loads the model once, then cuts and embeds each batch it is handed."""

    def __init__(
        self, load: Callable[[int], Embedder], threads: int, chunker: ChunkerConfig, bm25: BM25Config, bulk: bool
    ):
        self.embedder = load(threads).bulk() if bulk else load(threads)
        self.chunker = chunker
        self.bm25 = bm25

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = [
            pickle.dumps(prepare(pickle.loads(blob), self.embedder, self.chunker, self.bm25))
            for blob in batch["documents"]
        ]
        return {"records": np.array(prepared, dtype=object)}


def ray_prepare(load: Callable[[int], Embedder], cluster: ClusterPlan) -> PrepareBatches:
    """Cut and embed on the connected Ray cluster; `load(threads)` makes the model in each actor."""

    def run(
        batches: Iterable[Sequence[Document]], chunker: ChunkerConfig, bm25: BM25Config, bulk: bool
    ) -> Iterator[list[DocumentRecord]]:
        items = [{"documents": pickle.dumps(list(batch))} for batch in batches]
        if not items:
            return
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # sync_index shows its own, by documents and passages
        logger.info("ray: %d batches to %d encoder actors of %d CPUs", len(items), cluster.actors, cluster.threads)
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _Encoder,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=cluster.actors),
            num_cpus=cluster.threads,
            fn_constructor_kwargs={
                "load": load,
                "threads": cluster.threads,
                "chunker": chunker,
                "bm25": bm25,
                "bulk": bulk,
            },
        )
        for row in dataset.iter_rows():
            yield pickle.loads(row["records"])

    return run
