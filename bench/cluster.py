"""`python -m bench.cluster` (`make bench-ray`): bulk indexing on Ray against the local indexer, on this machine.
Writes bench/RAY.md.

The same documents (SQuAD dev paragraphs, `--documents` of them, from ../shared/eval) are indexed into a fresh
directory each way, side by side in one run: the local path as `citeline index` runs it, then Ray Data with
encoder actors of 1 CPU (as many as the machine's cores) and with one actor of every core. Each figure is the
whole `sync_index` (chunking, embedding, store writes, sealing), with the actors' model loads, but not the
Ray start, which is timed on its own. The store writes alone (records prepared beforehand) bound what any
number of actors can feed one writer: the scaling plan for N nodes comes from the per-actor rate and
that bound.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

from bench.common import ROOT
from indexer.build import BATCH_DOCUMENTS, PrepareBatches, prepare, sync_index
from indexer.model.embedding import Embedder
from indexer.store.records import DocumentRecord
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import Document
from indexer.text.lexical import BM25Config
from service.settings import Settings
from service.startup import actor_embedder, chunker_config, load_embedder

logger = logging.getLogger("bench.cluster")
REPORT = ROOT / "bench" / "RAY.md"
CORPUS = ROOT.parent / "shared" / "eval" / "squad-dev-v1.1" / "corpus.jsonl"


def paragraphs(count: int) -> list[Document]:
    documents = []
    with CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            title = row["title"].replace("_", " ")
            documents.append(Document(doc_id=row["_id"].replace("::", "-"), text=row["text"], title=title))
            if len(documents) == count:
                break
    return documents


def timed_index(
    documents: Sequence[Document], folder: Path, embedder: Embedder, prepare_batches: PrepareBatches | None = None
) -> tuple[float, int]:
    """Seconds to index `documents` into a fresh `folder`, and the passages embedded."""
    settings = Settings(index=folder)
    started = time.perf_counter()
    report = sync_index(
        documents,
        folder,
        embedder,
        chunker_config(settings, embedder),
        show_progress=False,
        prepare_batches=prepare_batches,
    )
    return time.perf_counter() - started, report.embedded_passages


def replay(batches: list[list[DocumentRecord]]) -> PrepareBatches:
    """Records prepared beforehand, handed over as if just embedded: what is left is the writer's work."""

    def run(
        documents: Iterable[Sequence[Document]], chunker: ChunkerConfig, bm25: BM25Config, bulk: bool
    ) -> Iterator[list[DocumentRecord]]:
        for _ in documents:
            pass
        yield from batches

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000, help="SQuAD dev paragraphs to index (default 1000)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray

    from indexer import cluster

    documents = paragraphs(args.documents)
    cores = os.cpu_count() or 1
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="citeline-bench-ray-") as work:
        base = Path(work)
        embedder = load_embedder(Settings(index=base / "local"), spin=True)  # as `citeline index` loads it
        seconds, passages = timed_index(documents, base / "local", embedder)
        rows.append(("local (`citeline index`, one process, all cores)", seconds, passages))
        logger.info("local: %.1f s", seconds)

        started = time.perf_counter()
        cluster.connect(cluster.LOCAL, object_store_bytes=1024 * 2**20)
        ray_start = time.perf_counter() - started
        try:
            settings = Settings(index=base / "local")  # the actors reuse its ONNX export
            load = partial(actor_embedder, settings)
            for actors, threads in ((cores, 1), (1, cores)):
                plan = cluster.plan(actors, threads)
                folder = base / f"ray-{actors}x{threads}"
                seconds, passages = timed_index(documents, folder, embedder, cluster.ray_prepare(load, plan))
                rows.append((f"Ray Data, {actors} actor(s) × {threads} CPU", seconds, passages))
                logger.info("ray %dx%d: %.1f s", actors, threads, seconds)
        finally:
            ray.shutdown()

        chunker = chunker_config(Settings(index=base / "local"), embedder)
        batches = [
            prepare(documents[at : at + BATCH_DOCUMENTS], embedder, chunker, BM25Config())
            for at in range(0, len(documents), BATCH_DOCUMENTS)
        ]
        write_seconds, written = timed_index(documents, base / "writes", embedder, replay(batches))

    local_rate = rows[0][2] / rows[0][1]
    per_actor = rows[1][2] / rows[1][1] / cores
    write_rate = written / write_seconds
    lines = [
        "# Bulk indexing on Ray (`make bench-ray`)",
        "",
        f"{len(documents):,} SQuAD dev paragraphs ({rows[0][2]:,} passages; sentences are embedded too), on this "
        f"machine ({cores} cores), side by side in one run. Each figure is the whole index build into a fresh "
        "directory (chunking, embedding, store writes, sealing), actors' model loads included, the Ray start "
        f"not: starting a local Ray took {ray_start:.1f} s. Written by bench/cluster.py.",
        "",
        "| how | seconds | passages/s | vs local |",
        "|---|---|---|---|",
    ]
    for name, seconds, passages in rows:
        rate = passages / seconds
        lines.append(f"| {name} | {seconds:.1f} | {rate:.0f} | ×{rate / local_rate:.2f} |")
    lines.append(f"| store writes alone (records prepared beforehand) | {write_seconds:.1f} | {write_rate:.0f} | — |")
    lines += [
        "",
        "On one host Ray can only add overhead: the same cores embed either way, and the records travel "
        "through Ray's object store to the one writer. The point of this table is that overhead.",
        "",
        "## Scaling plan (on paper, from the figures above)",
        "",
        f"One encoder actor of one CPU embeds about {per_actor:.0f} passages/s here (the {cores}-actor row, per "
        f"actor). N nodes of C such cores would embed about N × C × {per_actor:.0f} passages/s, until the one "
        f"writer's ceiling of about {write_rate:.0f} passages/s (store writes alone, above) is reached: at about "
        f"{max(1, round(write_rate / per_actor)):,} actors. For example 10M passages on 8 nodes of 16 cores: "
        f"{10_000_000 / min(8 * 16 * per_actor, write_rate) / 3600:.1f} h, against "
        f"{10_000_000 / local_rate / 3600:.1f} h on this machine alone. Past that ceiling the collection must be "
        "split into shards, each with its own writer (the sharded serving of `citeline serve --ray`).",
    ]
    args.report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote %s", args.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
