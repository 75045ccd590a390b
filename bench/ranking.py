"""`python -m bench.ranking` (`make bench-quality`): the ranking on every development set, both halves, with
the plain baselines and one row per lever switched off; writes bench/QUALITY.md.

Every development set (bench/devsets.py) is indexed with the defaults (kept in --work between runs unless
--rebuild), searched in each mode, and compared with whole-document BM25 and the plain model where it is
judged by document. The ablations change one `RetrievalConfig` knob at a time, over the tuning halves
(what choices are made on) and the reporting halves (what is reported).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import baselines, devsets
from bench.common import ROOT
from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.store import vector_index
from indexer.store.maintenance import reseal
from indexer.text.lexical import Analyzer
from service.engine import Engine
from service.evaluation.evaluate import Dataset, evaluate
from service.search.retrieval import STATEMENT, TOPIC, Mode, RetrievalConfig, Retriever
from service.settings import Settings
from service.startup import chunker_config

logger = logging.getLogger("bench.ranking")
Metrics = dict[str, float]

# Each lever of the ranking, switched off (or to its alternative), one at a time.
LEVERS: dict[str, RetrievalConfig] = {
    "default": RetrievalConfig(),
    "no document evidence": RetrievalConfig(document_bm25=0.0, document_dense=0.0, document_bm25_alone=0.0),
    "no document BM25": RetrievalConfig(document_bm25=0.0),
    "no document vector": RetrievalConfig(document_dense=0.0),
    "document BM25 0.8, vector 0.5": RetrievalConfig(document_bm25=0.8, document_dense=0.5),
    "document evidence fading beyond 12 passages": RetrievalConfig(document_span=12),
    "fusion: RRF instead of convex": RetrievalConfig(fusion="rrf"),
    "fusion: dense weight 0.6 for questions too": RetrievalConfig(dense_weight=0.6),
    "fusion: z-scores instead of min-max": RetrievalConfig(normalize="zscore"),
    "no second stage (best-sentence answer score)": RetrievalConfig(answer_rerank=0.0),
    "no headline penalty": RetrievalConfig(heading_penalty=0.0),
    "dense: passage cosine only (no best sentence)": RetrievalConfig(sentence_weight=0.0),
    "dense candidates: also the passages of the nearest sentences": RetrievalConfig(sentence_candidates=True),
    "query styles: every query ranked as a question": RetrievalConfig(topic=None, statement=None),
    "paragraph-long queries ranked as questions": RetrievalConfig(topic=None),
    "keywords and claims ranked as questions": RetrievalConfig(statement=None),
    "paragraph-long queries: document vector 0.7": RetrievalConfig(topic=replace(TOPIC, document_dense=0.7)),
    "keywords and claims: dense weight 0.7": RetrievalConfig(statement=replace(STATEMENT, dense_weight=0.7)),
}

# The BM25 mode with one lever changed: its scoring constants (the index's `BM25Config`, read at search time)
# as the BEIR literature runs them, and its document evidence.
BM25_LEVERS: dict[str, tuple[RetrievalConfig, dict[str, float]]] = {
    "k1 1.2 (Lucene's default) instead of 0.9": (RetrievalConfig(), {"k1": 1.2}),
    "b 0.4 (Anserini's BEIR runs) instead of 0.75": (RetrievalConfig(), {"b": 0.4}),
    "b 0.9 instead of 0.75": (RetrievalConfig(), {"b": 0.9}),
    "document weight 0.5 (hybrid's) instead of 0.8": (RetrievalConfig(document_bm25_alone=0.5), {}),
    "no document evidence (passages alone)": (RetrievalConfig(document_bm25_alone=0.0), {}),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ranking", description=__doc__)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "devsets", help="indexes, results")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "QUALITY.md")
    parser.add_argument("--sets", default=",".join(devsets.LOADERS), help="development sets, comma-separated")
    parser.add_argument("--sample", type=int, default=1000, help="queries per half of a large set (0: all)")
    parser.add_argument("--levers", default="", help="only these lever rows (comma-separated names; default all)")
    parser.add_argument("--rebuild", action="store_true", help="index every set anew")
    return parser.parse_args()


def collection(devset: devsets.DevSet, half: str, work: Path, embedder: Embedder, rebuild: bool) -> Engine:
    """An engine over the collection `half` searches, indexed with the defaults when it is not yet."""
    index = work / devset.collection_key(half)
    if rebuild or not (index / "records.sqlite").exists():
        logger.info("indexing %s (%d documents)", index.name, len(devset.documents[half]))
        sync_index(devset.documents[half], index, embedder, chunker_config(Settings(), embedder), show_progress=True)
    return Engine.load(Settings(index=index), embedder=embedder)


def graph_copy(index: Path) -> Path:
    """A copy of `index` whose vectors are one segment searched through an HNSW graph (made anew each run)."""
    copy = index.with_name(f"{index.name}-hnsw")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index, copy, ignore=shutil.ignore_patterns("*.lock", "segments"))
    reseal(copy, vector_index.HNSW)
    return copy


def run(
    engine: Engine, embedder: Embedder, dataset: Dataset, config: RetrievalConfig, modes: list[Mode]
) -> dict[str, Metrics]:
    retriever = engine.retriever(config, embedder.encode_query)
    return evaluate(retriever, dataset, modes, encode_queries=embedder.encode_queries)


def run_bm25(
    engine: Engine, embedder: Embedder, dataset: Dataset, config: RetrievalConfig, scoring: dict[str, float]
) -> Metrics:
    """The BM25 mode with `config` and the index's BM25 constants changed by `scoring` (k1, b)."""
    base = engine.analyzer.config
    analyzer = Analyzer(replace(base, k1=scoring.get("k1", base.k1), b=scoring.get("b", base.b)))
    retriever = Retriever(engine.view, embedder.encode_query, analyzer, config)
    return evaluate(retriever, dataset, [Mode.bm25], encode_queries=embedder.encode_queries)["bm25"]


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench %(message)s")
    for noisy in ("faiss.loader", "sentence_transformers", "indexer.build", "service.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args.work.mkdir(parents=True, exist_ok=True)
    defaults = Settings()
    embedder = Embedder(encoder=defaults.encoder, query_encoder=defaults.query_encoder)
    sets = devsets.development_sets([s for s in args.sets.split(",") if s], args.sample)
    levers = {n: c for n, c in LEVERS.items() if not args.levers or n in args.levers.split(",") or n == "default"}
    began = time.perf_counter()
    results: dict[str, object] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "sets": {}}
    for devset in sets:
        per_half: dict[str, object] = {}
        for half in devsets.HALVES:
            dataset = devset.queries[half]
            engine = collection(devset, half, args.work, embedder, args.rebuild)
            logger.info("%s: %d queries", dataset.name, len(dataset.queries))
            entry: dict[str, object] = {
                "queries": len(dataset.queries),
                "modes": run(engine, embedder, dataset, RetrievalConfig(), list(Mode)),
                "graph": run(  # the same collection, its vectors searched through an HNSW graph
                    Engine.load(Settings(index=graph_copy(engine.index_dir)), embedder=embedder),
                    embedder,
                    dataset,
                    RetrievalConfig(),
                    [Mode.hybrid, Mode.dense],
                ),
                "levers": {
                    name: run(engine, embedder, dataset, config, [Mode.hybrid])["hybrid"]
                    for name, config in levers.items()
                    if name != "default"
                },
                "bm25_levers": {
                    name: run_bm25(engine, embedder, dataset, config, scoring)
                    for name, (config, scoring) in BM25_LEVERS.items()
                    if not args.levers or name in args.levers.split(",")
                },
            }
            if devset.document_level:
                documents = devset.documents[half]
                entry["plain"] = {
                    "bm25": baselines.plain_bm25(documents, [dataset])[0],
                    "dense": baselines.plain_dense(documents, [dataset], embedder)[0],
                }
            per_half[half] = entry
        results["sets"][devset.name] = {"note": devset.note, "halves": per_half}  # type: ignore[index]
    results["seconds"] = time.perf_counter() - began
    results["config"] = asdict(RetrievalConfig())
    (args.work / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_report(results, args.report, "make bench-quality")
    print(json.dumps(summary(results), indent=1))
    return 0


def summary(results: dict[str, object]) -> dict[str, dict[str, float]]:
    """nDCG@10 per set, half and row: the modes, the plain baselines and the levers."""
    table: dict[str, dict[str, float]] = {}
    for name, entry in results["sets"].items():  # type: ignore[attr-defined]
        for half, values in entry["halves"].items():
            row: dict[str, float] = {}
            for mode, metrics in values["modes"].items():
                row[mode] = round(metrics["ndcg@10"], 4)
            for mode, metrics in values.get("graph", {}).items():
                row[f"{mode} (HNSW)"] = round(metrics["ndcg@10"], 4)
            for kind, metrics in values.get("plain", {}).items():
                row[f"plain {kind}"] = round(metrics["ndcg@10"], 4)
            for lever, metrics in values["levers"].items():
                row[lever] = round(metrics["ndcg@10"], 4)
            for lever, metrics in values.get("bm25_levers", {}).items():
                row[f"bm25: {lever}"] = round(metrics["ndcg@10"], 4)
            table[f"{name}[{half}]"] = row
    return table


def write_report(results: dict[str, Any], path: Path, command: str) -> None:
    """bench/QUALITY.md: per set, each mode and plain baseline in both halves, then the lever rows."""
    lines = [
        "# Ranking quality on every development set",
        "",
        f"Written by `{command}` ({results['started']}, {results['seconds'] / 60:.0f} min). nDCG@10 of each mode on",
        "the tuning half (choices are made on it) and the reporting half of each development set",
        "(bench/devsets.py says what each is and how it is split). On sets judged by document, the plain",
        "methods every mode must not lose to: BM25 over whole documents (bm25s defaults, stemmed) and the model",
        "over whole documents (one vector of title + text). Seeds: hit@1 and the right highlight.",
        "",
    ]
    for name, entry in results["sets"].items():
        halves = entry["halves"]
        lines += [
            f"## {name}",
            "",
            f"{entry['note']}; queries: " + ", ".join(f"{h} {v['queries']}" for h, v in halves.items()) + ".",
            "",
        ]
        lines += ["| | " + " | ".join(halves) + " |", "|---|" + "---:|" * len(halves)]
        rows: dict[str, list[str]] = {}
        for values in halves.values():
            for mode, metrics in values["modes"].items():
                rows.setdefault(mode, []).append(cell(metrics))
            for mode, metrics in values.get("graph", {}).items():
                rows.setdefault(f"{mode}, vectors searched through an HNSW graph", []).append(cell(metrics))
            for kind, metrics in values.get("plain", {}).items():
                rows.setdefault(f"plain {kind} (whole documents)", []).append(cell(metrics))
        lines += [f"| {row} | " + " | ".join(cells) + " |" for row, cells in rows.items()]
        levers = next(iter(halves.values()))["levers"]
        if levers:
            lines += ["", "Hybrid with one lever changed, nDCG@10 change against the default:", ""]
            lines += ["| lever | " + " | ".join(halves) + " |", "|---|" + "---:|" * len(halves)]
            for lever in levers:
                deltas = [
                    values["levers"][lever]["ndcg@10"] - values["modes"]["hybrid"]["ndcg@10"]
                    for values in halves.values()
                ]
                lines.append(f"| {lever} | " + " | ".join(f"{d:+.4f}" for d in deltas) + " |")
        bm25_levers = next(iter(halves.values())).get("bm25_levers", {})
        if bm25_levers:
            lines += ["", "The BM25 mode with one lever changed, nDCG@10 change against its default:", ""]
            lines += ["| lever | " + " | ".join(halves) + " |", "|---|" + "---:|" * len(halves)]
            for lever in bm25_levers:
                deltas = [
                    values["bm25_levers"][lever]["ndcg@10"] - values["modes"]["bm25"]["ndcg@10"]
                    for values in halves.values()
                ]
                lines.append(f"| {lever} | " + " | ".join(f"{d:+.4f}" for d in deltas) + " |")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def cell(metrics: Metrics) -> str:
    text = f"{metrics['ndcg@10']:.4f}"
    if "highlight@1" in metrics:
        text += f" (hit@1 {metrics['recall@1']:.3f}, highlight {metrics['highlight@1']:.3f})"
    return text


if __name__ == "__main__":
    sys.exit(main())
