"""`python -m bench.shards` (`make bench-ray`): one collection split over shards against one store. Writes
bench/SHARDS.md.

SQuAD dev (../shared/eval/squad-dev-v1.1: 2,067 paragraphs, a sample of its questions) is embedded once; its
records are written into one store and into 1, 2 and 4 shard stores (documents placed by their id's hash).

- Quality: nDCG@10 and recall@10 of the sample, per mode, one store against 2 and 4 shards searched through
  `ShardedEngine` in this process (what the Ray router runs): dense must be equal; BM25 and hybrid use the
  collection's statistics and scales, and the table says how far what stays each shard's own moves them.
- Serving: `citeline serve` over the one store against `citeline serve --ray --shards N` (Ray Serve on this
  machine) for N = 1, 2, 4: searches per second and latency from 4 concurrent keep-alive clients, the same
  questions in the same order, one server at a time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np

from bench.cluster import replay
from bench.common import ROOT, LatencySummary, free_port, load, running
from indexer.build import BATCH_DOCUMENTS, prepare, sync_index
from indexer.model.embedding import Embedder
from indexer.store.records import DocumentRecord
from indexer.text.documents import load_documents
from indexer.text.lexical import BM25Config
from service.engine import Engine
from service.evaluation.evaluate import Dataset, evaluate, load_beir
from service.search.retrieval import Hit, Mode, Retriever
from service.settings import Settings
from service.shards import LocalShard, ShardedEngine, shard_dirs, shard_of
from service.startup import chunker_config, load_embedder

logger = logging.getLogger("bench.shards")
REPORT = ROOT / "bench" / "SHARDS.md"
SQUAD = ROOT.parent / "shared" / "eval" / "squad-dev-v1.1"
SHARD_COUNTS = (1, 2, 4)


class ShardedRetriever:
    """What `evaluate` asks of a retriever, answered by the shards."""

    def __init__(self, engine: ShardedEngine) -> None:
        self.engine = engine

    def search(
        self, query: str, k: int, mode: Mode, vector: np.ndarray | None = None, highlight_top: int | None = None
    ) -> list[Hit]:
        return self.engine.search(query, k, mode, vector=vector)


def build(base: Path, embedder: Embedder) -> tuple[Path, dict[int, Path]]:
    """The one store and the sharded indexes (`<index>/shards/<n>`), from records embedded once."""
    documents = load_documents([SQUAD / "corpus.jsonl"])
    chunker = chunker_config(Settings(index=base / "single"), embedder)
    records: list[DocumentRecord] = []
    for at in range(0, len(documents), BATCH_DOCUMENTS):
        records += prepare(documents[at : at + BATCH_DOCUMENTS], embedder, chunker, BM25Config())
        logger.info("embedded %d of %d documents", min(at + BATCH_DOCUMENTS, len(documents)), len(documents))
    single = base / "single"
    sync_index(documents, single, embedder, chunker, show_progress=False, prepare_batches=replay([records]))
    sharded = {}
    for count in SHARD_COUNTS:
        sharded[count] = base / f"sharded-{count}"
        for number, folder in enumerate(shard_dirs(sharded[count], count)):
            owned = [r for r in records if shard_of(r.document.doc_id, count) == number]
            mine = [r.document for r in owned]
            sync_index(mine, folder, embedder, chunker, show_progress=False, prepare_batches=replay([owned]))
    return single, sharded


def quality(single: Path, sharded: dict[int, Path], dataset: Dataset, embedder: Embedder) -> list[str]:
    modes = list(Mode)
    engines = [Engine.load(Settings(index=single), embedder)]
    rows = {"one store": evaluate(engines[0].retriever(), dataset, modes, embedder.encode_queries)}
    for count in (c for c in SHARD_COUNTS if c > 1):
        shards = [Engine.load(Settings(index=f), embedder) for f in shard_dirs(sharded[count], count)]
        engines += shards
        split = ShardedEngine(embedder, [LocalShard(e) for e in shards], sharded[count])
        retriever = cast(Retriever, ShardedRetriever(split))
        rows[f"{count} shards"] = evaluate(retriever, dataset, modes, embedder.encode_queries)
        split.close()
    for engine in engines:
        engine.close()
    base = rows["one store"]
    lines = [
        "| index | " + " | ".join(f"{m.value} nDCG@10 | {m.value} recall@10" for m in modes) + " |",
        "|---|" + "---|---|" * len(modes),
    ]
    for name, row in rows.items():
        cells = []
        for mode in modes:
            ndcg, recall = row[mode.value]["ndcg@10"], row[mode.value]["recall@10"]
            delta = "" if name == "one store" else f" ({ndcg - base[mode.value]['ndcg@10']:+.4f})"
            cells.append(f"{ndcg:.4f}{delta} | {recall:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def serving(single: Path, sharded: dict[int, Path], dataset: Dataset, requests: int) -> list[str]:
    params: Sequence[dict[str, str | int]] = [{"q": q.text, "k": 5} for q in dataset.queries]
    env = {"CITELINE_LOG_LEVEL": "WARNING", "CITELINE_RELOAD_SECONDS": "0", "CITELINE_RAY_OBJECT_STORE_MB": "256"}
    results: dict[str, LatencySummary] = {}
    servers: list[tuple[str, Path, list[str]]] = [("one store (`citeline serve`)", single, [])] + [
        (f"{count} shard(s) (`serve --ray --shards {count}`)", sharded[count], ["--ray", "--shards", str(count)])
        for count in SHARD_COUNTS
    ]
    for name, index, extra in servers:
        port = free_port()
        command = [sys.executable, "-m", "service.cli", "serve", "--index", str(index), "--port", str(port), *extra]
        with running(command, f"http://127.0.0.1:{port}/health", env):
            results[name] = load(f"http://127.0.0.1:{port}/search", params, clients=4, requests=requests)
        logger.info("%s: %s", name, results[name])
    base = results[servers[0][0]]
    lines = [
        "| server | searches/s | p50 ms | p95 ms | p99 ms | failed | p50 vs one store |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, summary in results.items():
        lines.append(
            f"| {name} | {summary.rps:.1f} | {summary.p50:.1f} | {summary.p95:.1f} | {summary.p99:.1f} | "
            f"{summary.failures} | ×{summary.p50 / base.p50:.2f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="evaluate every N-th SQuAD question (default 10)")
    parser.add_argument("--requests", type=int, default=400, help="searches per server (default 400)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    full = load_beir(SQUAD)
    dataset = Dataset(full.name, full.kind, full.queries[:: args.every], full.corpus)
    with tempfile.TemporaryDirectory(prefix="citeline-bench-shards-") as work:
        base = Path(work)
        embedder = load_embedder(Settings(index=base / "single"), spin=True)
        single, sharded = build(base, embedder)
        table = quality(single, sharded, dataset, embedder)
        speed = serving(single, sharded, dataset, args.requests)
    lines = [
        "# One collection over shards (`make bench-ray`)",
        "",
        f"SQuAD dev: 2,067 paragraphs, {len(dataset.queries):,} of its questions (every {args.every}th), embedded "
        "once and written into one store and into 1, 2 and 4 shards. Written by bench/shards.py.",
        "",
        "## Quality: the shards' merged answers against one store's",
        "",
        *table,
        "",
        "Dense scores are the passage's own, so dense results equal one store's. For BM25 and hybrid the router "
        "first sums the shards' BM25 statistics for the question's terms, then gathers their candidates' scores to "
        "find the collection's candidate sets and scales, so each shard scores and fuses as one store would; what "
        "stays each shard's own (the second stage over its best 30, folding copies, the share of shared sentences "
        "in a document's BM25 length) is the difference above.",
        "",
        f"## Serving on this machine ({os.cpu_count()} cores): {args.requests} searches per server, 4 clients",
        "",
        *speed,
        "",
        "On one host the shards share its cores, so more shards cannot be faster here: the table shows what the "
        "router's fan-out and Ray Serve's proxy and handles cost (a hybrid search is three rounds to every shard: "
        "statistics, candidates, search). The gain of shards is capacity (each holds a part of the collection in "
        "its own memory) and throughput across machines.",
    ]
    args.report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote %s", args.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
