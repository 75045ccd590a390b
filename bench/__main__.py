"""`python -m bench` (`make bench`): measure everything in one run and write bench/REPORT.md with plots."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from bench import indexing, latency, peer, quality, scale, writes
from bench.common import ROOT, LatencySummary, citeline_server
from bench.report import write_report
from indexer.model.embedding import Embedder
from indexer.text.documents import load_documents
from service.engine import Engine
from service.evaluation.evaluate import load_dataset
from service.settings import Settings
from service.startup import chunker_config

SEED_QUESTIONS = ROOT / "tests" / "data" / "seed_questions.jsonl"
DEFAULT_SQUAD = ROOT.parent / "shared" / "eval" / "squad-dev-v1.1"
logger = logging.getLogger("bench")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--squad", type=Path, default=Path(os.environ.get("CITELINE_BENCH_SQUAD", DEFAULT_SQUAD)))
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out", help="indexes and raw results")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "REPORT.md")
    parser.add_argument("--squad-sample", type=int, default=0, help="queries per SQuAD half (0: all)")
    parser.add_argument("--ablation-sample", type=int, default=2000, help="heldout queries for the ablations")
    parser.add_argument("--requests-per-client", type=int, default=60, help="HTTP requests per client and level")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the indexes already in --work (for iterating on the report)"
    )
    parser.add_argument("--write-sizes", default="10000,100000", help="passage counts for the write-cost runs")
    parser.add_argument(
        "--scale-sizes", default="10000,100000,1000000", help="passage counts of the scale runs (empty: none)"
    )
    return parser.parse_args()


def encoders_available() -> list[str]:
    """The question encoders this build offers (the `query_encoder` setting), torch alone when there is none."""
    names = {f.name for f in fields(Settings)}
    if "query_encoder" not in names:
        return []
    return ["torch", "onnx", "onnx-int8"]


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench %(message)s")
    for noisy in ("faiss.loader", "sentence_transformers", "httpx", "indexer.build", "service.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not (args.squad / "corpus.jsonl").is_file():
        print(
            f"bench: SQuAD dev (BEIR layout) not found at {args.squad}: pass --squad DIR or set "
            "CITELINE_BENCH_SQUAD; the benchmark does not run without it",
            file=sys.stderr,
        )
        return 2
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    began = time.perf_counter()
    defaults = Settings()
    embedder = Embedder(encoder=defaults.encoder, query_encoder=defaults.query_encoder)  # as `citeline serve`

    logger.info("indexing the seeds and SQuAD dev from scratch")
    seeds_index, squad_index = work / "seeds-index", work / "squad-index"
    indexing.index_corpus(ROOT / "seeds", seeds_index, embedder, rebuild=not args.reuse)
    results["indexing"] = {
        "citeline": indexing.index_corpus(args.squad / "corpus.jsonl", squad_index, embedder, rebuild=not args.reuse),
        "bare_encode": indexing.bare_encode(squad_index, embedder),
        # The default (auto) takes int8 for a run this size; fp32 throughout beside it (README, Encoders).
        "citeline_fp32": indexing.index_corpus(
            args.squad / "corpus.jsonl",
            work / "squad-index-fp32",
            Embedder(encoder="onnx", query_encoder=defaults.query_encoder),
            rebuild=True,
        ),
    }
    seeds_engine = Engine.load(Settings(index=seeds_index), embedder=embedder)
    squad_engine = Engine.load(Settings(index=squad_index), embedder=embedder)

    logger.info("quality: seeds and SQuAD halves, three modes")
    seeds = load_dataset(SEED_QUESTIONS)
    halves = {name: quality.sample(d, args.squad_sample) for name, d in quality.squad_halves(args.squad).items()}
    quality_results: dict[str, quality.Metrics] = {
        "seeds": quality.run_quality(seeds_engine, embedder, seeds),
        **{f"squad-{name}": quality.run_quality(squad_engine, embedder, d) for name, d in halves.items()},
    }
    query_counts = {"seeds": len(seeds.queries), **{f"squad-{n}": len(d.queries) for n, d in halves.items()}}

    logger.info("quality: ablations")
    results["ablations"] = {
        "seeds": quality.run_ablations(seeds_engine, embedder, seeds),
        "squad-heldout": quality.run_ablations(
            squad_engine, embedder, quality.sample(halves["heldout"], args.ablation_sample)
        ),
    }
    results["ablation_queries"] = min(args.ablation_sample or 10**9, len(halves["heldout"].queries))
    logger.info("quality: index-time ablations (an index per variant)")
    chunker = chunker_config(defaults, embedder)
    squad_corpus = args.squad / "corpus.jsonl"
    index_ablations = {
        "seeds": quality.run_index_ablations(
            load_documents([ROOT / "seeds"]), chunker, embedder, seeds, work / "ablations-seeds"
        ),
        "squad-heldout": quality.run_index_ablations(
            quality.heldout_documents(load_documents([squad_corpus]), squad_corpus),
            chunker,
            embedder,
            quality.sample(halves["heldout"], args.ablation_sample),
            work / "ablations-squad",
        ),
    }
    articles = quality.squad_articles(args.squad, "heldout")
    if articles is None:
        logger.warning("no dev-v1.1.json in %s: the SQuAD-articles rows are left out", args.squad)
    else:
        documents, article_questions = articles
        article_questions = quality.sample(article_questions, args.ablation_sample)
        index_ablations["squad-articles-heldout"] = quality.run_index_ablations(
            documents, chunker, embedder, article_questions, work / "ablations-articles"
        )
        articles_engine = Engine.load(Settings(index=work / "ablations-articles" / "default"), embedder=embedder)
        quality_results["squad-articles-heldout"] = quality.run_quality(articles_engine, embedder, article_questions)
        query_counts["squad-articles-heldout"] = len(article_questions.queries)
        del articles_engine
    results.update(quality=quality_results, query_counts=query_counts, index_ablations=index_ablations)

    logger.info("peer: txtai over the same passages")
    txtai_seeds, txtai_squad = work / "txtai-seeds", work / "txtai-squad"
    for folder in (txtai_seeds, txtai_squad):
        shutil.rmtree(folder, ignore_errors=True)
    peer_build = {
        "seeds_s": peer.build_txtai(seeds_engine.view, embedder, txtai_seeds),
        "squad_s": peer.build_txtai(squad_engine.view, embedder, txtai_squad),
    }
    results["peer_quality"] = {
        "seeds": peer.txtai_quality(seeds_engine.view, txtai_seeds, seeds),
        **{f"squad-{n}": peer.txtai_quality(squad_engine.view, txtai_squad, d) for n, d in halves.items()},
    }
    del squad_engine

    logger.info("latency: floor, citeline over HTTP, txtai over HTTP")
    questions = [q.text for q in seeds.queries]
    results["floor"] = latency.bare_floor(seeds_engine.view, embedder.name, questions, repeats=300)
    results["peer_inprocess_ms"] = peer.txtai_inprocess_latency(txtai_seeds, questions, repeats=300)
    results["peer_build"] = peer_build
    levels = [1, 8, 32]
    per_client = args.requests_per_client
    encoders = encoders_available()
    http: dict[str, object] = {}
    for encoder in encoders or ["default"]:
        env = {"CITELINE_QUERY_ENCODER": encoder} if encoder != "default" else {}
        with citeline_server(seeds_index, env) as base:
            by_mode = {
                mode: asdict(latency.http_load(base, "/search", params(questions, mode), [1], per_client * 5)[1])
                for mode in ("hybrid", "dense", "bm25")
            }
            levels_result = latency.http_load(base, "/search", params(questions, "hybrid"), levels, per_client)
        http[encoder] = {"modes": by_mode, "levels": {c: asdict(s) for c, s in levels_result.items()}}
    results["http"] = http
    results["default_encoder"] = Settings().query_encoder if encoders else "default"
    # The same default server without micro-batching: what batching questions buys under concurrency.
    with citeline_server(seeds_index, {"CITELINE_BATCH_QUERIES": "false"}) as base:
        unbatched = latency.http_load(base, "/search", params(questions, "hybrid"), levels, per_client)
    results["http_unbatched"] = {c: asdict(s) for c, s in unbatched.items()}
    with peer.txtai_server(txtai_seeds, work) as base:
        peer_levels: dict[int, LatencySummary] = latency.http_load(
            base, "/search", [{"query": q, "limit": 5} for q in questions], levels, per_client
        )
    results["peer_http"] = {c: asdict(s) for c, s in peer_levels.items()}

    logger.info("writes: one document into collections of %s passages", args.write_sizes)
    write_results = {}
    for size in [int(s) for s in args.write_sizes.split(",") if s]:
        folder = work / f"writes-{size}"
        shutil.rmtree(folder, ignore_errors=True)
        build_s = writes.replicated_index(squad_index, size, folder)
        write_results[str(size)] = {**writes.write_cost(folder, embedder), "build_s": build_s}
        shutil.rmtree(folder, ignore_errors=True)
    results["writes"] = write_results
    if args.scale_sizes:
        logger.info("scale: collections of %s passages", args.scale_sizes)
        sizes = [int(size) for size in args.scale_sizes.split(",")]
        scale_embedder = Embedder(
            encoder=defaults.encoder, query_encoder=defaults.query_encoder, shared_cache=work / "scale" / scale.ENCODERS
        )
        results["scale"] = scale.run(sizes, ["flat", "hnsw"], work / "scale", scale_embedder)

    results["seconds"] = time.perf_counter() - began
    (work / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_report(results, args.report, command="make bench")
    logger.info("report written to %s in %.0fs", args.report, results["seconds"])
    return 0


def params(questions: list[str], mode: str) -> list[dict[str, str | int]]:
    return [{"q": q, "k": 5, "mode": mode} for q in questions]


if __name__ == "__main__":
    sys.exit(main())
