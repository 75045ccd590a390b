"""Scale: a collection of N passages built through the store's normal path, served by `citeline serve`, and
measured from outside: memory, disk, time to ready, latency per mode, and dense recall@10 of the vector
index against exact search over the same stored vectors.

    python -m bench.scale --passages 1000000 --index bench/out/scale/1m

The text is real: the development sets' collections (SQuAD, NFCorpus, as `make bench-quality` indexed
them), then the Linux kernel's documentation (bench/corpus.py), indexed once through `sync_index`
(chunking, passage and sentence vectors, BM25) into WORK/real; a rerun reuses it, and an interrupted one
continues from what it stored. A collection larger than these repeats their documents under new ids,
each copy's vectors sampled close to the real ones: a real vector plus Gaussian noise whose norm is the
median distance of a real passage vector to its nearest real neighbour, so a copy lies about as near its
original as real neighbours lie to each other. Recall@10 (of the 100 candidates a dense search takes,
against exact search; a row scoring as high as the exact 10th counts) is measured on each collection and
on real vectors alone (those and GCIDE's dictionary entries, passage vectors only), with real questions
(SQuAD dev) as queries.

The directory left behind is an ordinary index: `citeline serve --index DIR` serves it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.common import ROOT, free_port, load, stop, wait_until_up
from bench.corpus import gcide_documents, linux_documents
from bench.indexing import bare_encode
from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.store import vector_index
from indexer.store.maintenance import reseal
from indexer.store.records import DocumentRecord
from indexer.store.segments import read_manifest
from indexer.store.store import SegmentPolicy, Store, writer_lock
from indexer.text.chunking import clip_title, embedding_text, passage_spans
from indexer.text.lexical import BM25Config
from service.search.retrieval import nearest
from service.settings import Settings
from service.startup import chunker_config

logger = logging.getLogger("bench.scale")
WORK = ROOT / "bench" / "out" / "scale"
SQUAD = Path(os.environ.get("CITELINE_BENCH_SQUAD", ROOT.parent / "shared" / "eval" / "squad-dev-v1.1"))
WRITE_BATCH = 512  # documents per store transaction while building
ENCODERS = "encoders"  # under WORK: the ONNX exports the servers share (CITELINE_ENCODER_CACHE)
MARKER = "bench-scale.json"  # in a built collection: what it was built as, and its build figures
INDEXING = "indexing.json"  # under WORK: the real index's build speed beside a bare encode
BARE_SAMPLE = 4000  # passages of the real index that the bare torch encode is timed on


def real_index(work: Path, embedder: Embedder, bare_sample: int = BARE_SAMPLE) -> Path:
    """The kernel's documentation indexed through the normal path into `work`/real (only what is not stored
    yet is embedded). A run that embeds it all records its speed, all-in, beside a bare torch encode of a
    sample of the same passages measured right after, in `work`/INDEXING."""
    index = work / "real"
    documents = list(linux_documents())
    report = sync_index(documents, index, embedder, chunker_config(Settings(), embedder), show_progress=True)
    logger.info(
        "real index %s: %d documents, %d passages (%d embedded now, %.0f s)",
        index,
        report.documents,
        report.passages,
        report.embedded_passages,
        report.seconds,
    )
    if report.embedded_passages and not report.reused_documents:
        bulk = embedder.for_run(sum(len(d.text) for d in documents))
        figures = {
            "started": time.strftime("%Y-%m-%d %H:%M"),
            "documents": report.documents,
            "passages": report.embedded_passages,
            "seconds": report.seconds,
            "passages_per_s": report.embedded_passages / report.seconds,
            "encoder": bulk.encoder,
            "bare_encode": bare_encode(index, embedder, sample=bare_sample),
        }
        (work / INDEXING).write_text(json.dumps(figures, indent=1))
        logger.info("indexing speed: %s", figures)
    return index


def stored_records(indexes: Sequence[Path]) -> list[DocumentRecord]:
    """Every live document of `indexes`, with its vectors (documents whose id repeats are taken once)."""
    records: dict[str, DocumentRecord] = {}
    for index in indexes:
        store = Store.open(index)
        try:
            for record in store.records.records(None, store.dimension):
                records.setdefault(record.document.doc_id, record)
        finally:
            store.close()
    return list(records.values())


def real_pool(work: Path, embedder: Embedder) -> list[DocumentRecord]:
    """The real documents a collection is made of: the development sets' collections where `make
    bench-quality` has indexed them (SQuAD's paragraphs and articles, NFCorpus's abstracts), then the
    kernel's documentation."""
    devsets = sorted(p.parent for p in (ROOT / "bench" / "out" / "devsets").glob("*/records.sqlite"))
    # The development sets first: the queries are SQuAD questions, so every size holds what they ask about.
    return stored_records([*devsets, real_index(work, embedder)])


def neighbour_distance(vectors: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Median distance of a real vector to its nearest other real vector (on a sample)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(vectors), min(sample, len(vectors)), replace=False)
    scores = vectors[chosen] @ vectors.T
    scores[np.arange(len(chosen)), chosen] = -np.inf  # not itself
    return float(np.median(np.sqrt(np.maximum(0.0, 2 - 2 * scores.max(axis=1)))))


def near(vectors: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors each about `distance` away from a row of `vectors` (Gaussian noise of that norm)."""
    noise = rng.standard_normal(vectors.shape).astype(np.float32) * (distance / np.sqrt(vectors.shape[1]))
    moved = vectors + noise
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def collection_records(pool: list[DocumentRecord], passages: int, seed: int = 0) -> Iterator[DocumentRecord]:
    """Documents of about `passages` passages: the real ones first, then copies with sampled vectors."""
    vectors = np.vstack([r.passage_vectors for r in pool])
    distance = neighbour_distance(vectors)
    logger.info("sampled copies: noise of norm %.3f, the median nearest-neighbour distance", distance)
    rng = np.random.default_rng(seed)
    total, copy = 0, 0
    while total < passages:
        for record in pool:
            if total >= passages:
                return
            if copy == 0:
                yield replace(record, key=0)
            else:
                yield DocumentRecord(
                    document=replace(record.document, doc_id=f"{record.document.doc_id}~{copy}"),
                    passages=record.passages,
                    sentences=record.sentences,
                    passage_vectors=near(record.passage_vectors, distance, rng),
                    sentence_vectors=near(record.sentence_vectors, distance, rng),
                )
            total += len(record.passages)
        copy += 1


@dataclass
class Build:
    passages: int
    documents: int
    sentences: int
    write_s: float
    seal_s: float
    segments: list[str]


def built(
    pool: list[DocumentRecord], passages: int, index: Path, vectors: str, embedder: Embedder, siblings: list[Path]
) -> Build:
    """The collection in `index`: reused when a previous run built it alike; else taken over from a sibling
    of the same size (another index type, measured before): renamed, not copied (a million passages take
    tens of GB), and its segments rewritten; else built."""
    marker = index / MARKER
    wanted = {
        "passages": passages,
        "vector_index": vectors,
        "real_passages": sum(len(r.passages) for r in pool),
        "first": pool[0].document.doc_id if pool else "",
    }
    if marker.is_file() and json.loads(marker.read_text())["wanted"] == wanted:
        return Build(**json.loads(marker.read_text())["build"])
    source = next((s for s in siblings if s != index and (s / MARKER).is_file()), None)
    if source is not None and json.loads((source / MARKER).read_text())["wanted"]["passages"] == passages:
        shutil.rmtree(index, ignore_errors=True)
        previous = Build(**json.loads((source / MARKER).read_text())["build"])
        (source / MARKER).unlink()
        source.rename(index)
        started = time.perf_counter()
        reseal(index, vectors)
        made = replace(
            previous,
            seal_s=time.perf_counter() - started,
            segments=segment_names(index),
        )
    else:
        made = build(pool, passages, index, vectors, embedder)
    marker.write_text(json.dumps({"wanted": wanted, "build": asdict(made)}))
    return made


def segment_names(index: Path) -> list[str]:
    return [f"{s.index} {s.passages:,}" for s in read_manifest(index).segments]


def build(pool: list[DocumentRecord], passages: int, index: Path, vectors: str, embedder: Embedder) -> Build:
    """Write the collection through the store's bulk path (as `citeline index` stores what it embedded),
    then seal and merge its vectors as `citeline index` does, into segments of the type `vectors` asks."""
    shutil.rmtree(index, ignore_errors=True)
    settings = Settings(index=index)
    documents = sentences = written = 0
    started = time.perf_counter()
    with writer_lock(index):
        store = Store.create(index, embedder.info, chunker_config(settings, embedder), BM25Config())
        try:
            batch: list[DocumentRecord] = []
            progress = tqdm(total=passages, desc=f"writing {passages:,} passages", unit="passage", unit_scale=True)
            for record in collection_records(pool, passages):
                batch.append(record)
                if len(batch) == WRITE_BATCH:
                    store.write(batch)
                    progress.update(sum(len(r.passages) for r in batch))
                    batch = []
                documents += 1
                sentences += len(record.sentences)
                written += len(record.passages)
            if batch:
                store.write(batch)
                progress.update(sum(len(r.passages) for r in batch))
            progress.close()
            wrote = time.perf_counter()
            policy = SegmentPolicy(index=vectors)
            store.seal(1, policy.index)
            while store.merge(policy.max_segments, policy.index) is not None:
                pass
            sealed = time.perf_counter()
        finally:
            store.close()
    return Build(written, documents, sentences, wrote - started, sealed - wrote, segment_names(index))


def squad_questions(count: int, seed: int = 0) -> list[str]:
    """Real questions (SQuAD dev) as queries; `FileNotFoundError` when the set is missing."""
    raw = json.loads((SQUAD / "dev-v1.1.json").read_text(encoding="utf-8"))
    questions = [qa["question"] for article in raw["data"] for p in article["paragraphs"] for qa in p["qas"]]
    rng = np.random.default_rng(seed)
    return [questions[i] for i in rng.choice(len(questions), min(count, len(questions)), replace=False)]


def hits_at_10(scores: np.ndarray, found: np.ndarray) -> int:
    """How many of the first 10 `found` rows belong to the exact top 10 by `scores` (every row's exact
    score): a row scoring as high as the exact 10th counts, so that of equal vectors (a passage repeated
    in several documents), or scores equal to the last bit, any one is as right as another."""
    tenth = np.partition(scores, len(scores) - 10)[len(scores) - 10] if len(scores) >= 10 else -np.inf
    return min(10, int(np.count_nonzero(scores[found[:10]] >= tenth - 1e-6)))


def dense_recall(index: Path, queries: np.ndarray, depth: int = 100) -> float:
    """Mean recall@10 of the passages `nearest` finds (as a dense search does, `depth` candidates) against
    exact search over the same stored vectors."""
    store = Store.open(index)
    try:
        view = store.load()
    finally:
        store.close()
    vectors, mask = view.passage_vectors, view.live_mask()
    found = 0
    for query in queries:
        scores = vectors.scores(query)
        found += hits_at_10(
            scores if mask is None else np.where(mask, scores, -np.inf), nearest(vectors, query, depth, mask)
        )
    return found / (10 * len(queries))


def graph_recall(vectors: np.ndarray, queries: np.ndarray, folder: Path, depth: int = 100) -> dict[str, float]:
    """Recall@10 of an HNSW graph built by `vector_index` over `vectors`, candidates scored exactly."""
    from indexer.store.view import Vectors

    path = folder / "recall.hnsw"
    started = time.perf_counter()
    vector_index.build_graph(vectors, path)
    built = time.perf_counter() - started
    searched = Vectors((vectors,), np.zeros((0, vectors.shape[1]), np.float32), (vector_index.open_graph(path),))
    found = 0
    for query in queries:
        found += hits_at_10(vectors @ query, nearest(searched, query, depth, None))
    path.unlink()
    return {"vectors": len(vectors), "recall@10": found / (10 * len(queries)), "build_s": built}


def gcide_vectors(work: Path, embedder: Embedder, count: int, part: int = 4096) -> np.ndarray:
    """Passage vectors of the first `count` passages of GCIDE, cut as `citeline index` cuts them and encoded
    by the encoder of a bulk run (no sentences, no store: they serve to measure the graph's recall only).
    Saved part by part under `work`/gcide, so an interrupted run continues where it stopped."""
    embedder = embedder.bulk()
    folder = work / "gcide"
    folder.mkdir(parents=True, exist_ok=True)
    chunker = chunker_config(Settings(), embedder)
    texts: list[str] = []
    for document in gcide_documents():
        title = clip_title(document.title, embedder.token_counter, chunker.token_limit)
        for span in passage_spans(document, embedder.token_counter, chunker):
            texts.append(embedding_text(title, document.text[span.start : span.end]))
        if len(texts) >= count:
            break
    texts = texts[:count]
    parts = []
    for at in tqdm(range(0, len(texts), part), desc="GCIDE passage vectors", unit="part"):
        path = folder / f"part-{at // part:05d}-{part}.npy"
        if not path.exists():
            staging = path.with_suffix(".tmp.npy")
            np.save(staging, embedder.encode(texts[at : at + part]).astype(np.float32))
            os.replace(staging, path)
        parts.append(np.load(path))
    return np.vstack(parts) if parts else np.zeros((0, embedder.info.dimension), np.float32)


def crossover(
    vectors: np.ndarray, queries: np.ndarray, folder: Path, sizes: Sequence[int] = (10_000, 25_000, 50_000, 100_000)
) -> list[dict[str, float]]:
    """Per segment size: milliseconds of `nearest` (100 candidates, one thread) over a flat segment and
    over one with a graph, and the graph's recall@10: where the graph starts to win (`ANN_MIN_PASSAGES`)."""
    from indexer.store.view import Vectors

    rows = []
    empty = np.zeros((0, vectors.shape[1]), np.float32)
    for size in (s for s in sizes if s <= len(vectors)):
        part = np.ascontiguousarray(vectors[:size])
        path = folder / "crossover.hnsw"
        vector_index.build_graph(part, path)
        flat, graph = Vectors((part,), empty), Vectors((part,), empty, (vector_index.open_graph(path),))
        timings: dict[str, list[float]] = {"flat": [], "hnsw": []}
        found = 0
        for query in queries:
            for name, searched in (("flat", flat), ("hnsw", graph)):
                started = time.perf_counter()
                result = nearest(searched, query, 100, None)
                timings[name].append(time.perf_counter() - started)
                if name == "hnsw":
                    found += hits_at_10(part @ query, result)
        path.unlink()
        rows.append(
            {
                "passages": size,
                "flat_ms": 1000 * float(np.median(timings["flat"])),
                "hnsw_ms": 1000 * float(np.median(timings["hnsw"])),
                "recall@10": found / (10 * len(queries)),
            }
        )
        logger.info("crossover: %s", rows[-1])
    return rows


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of a process: all of it, and its anonymous part (the rest is mapped file pages)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return {"rss": fields.get("VmRSS", float("nan")), "anon": fields.get("RssAnon", float("nan"))}


@contextmanager
def served(index: Path, encoders: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """`citeline serve --index` as a user runs it; yields its URL, the process and seconds to `/ready` 200."""
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--index", str(index), "--port", str(port)]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "CITELINE_LOG_LEVEL": "WARNING", "CITELINE_ENCODER_CACHE": str(encoders)},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/ready", process, timeout_s=900)
        yield url, process, time.perf_counter() - started
    finally:
        stop(process)


def disk_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def measure(
    index: Path, questions: list[str], requests: int, encoders: Path, warmup: Sequence[str] = ()
) -> dict[str, object]:
    """Serve `index` and time one client's `GET /search` per mode; memory once warm; disk.

    The first questions a fresh server answers read the segments' pages from disk (the mapped vectors, the
    graph, BM25's files), where the page cache does not hold them yet: `warmup` questions (others than
    those measured) are asked first, hybrid, and their own figures kept as `first`."""
    figures: dict[str, object] = {"disk_mib": disk_mib(index)}
    with served(index, encoders) as (url, process, ready_s):
        figures["ready_s"] = ready_s
        figures["rss_at_ready_mib"] = rss_mib(process.pid)
        if warmup:
            asked: list[dict[str, str | int]] = [{"q": q, "k": 10, "mode": "hybrid"} for q in warmup]
            summary = load(f"{url}/search", asked, clients=1, requests=len(warmup))
            figures["first"] = {"p50": summary.p50, "p95": summary.p95, "p99": summary.p99, "requests": len(warmup)}
        for mode in ("hybrid", "dense", "bm25"):
            params = [{"q": q, "k": 10, "mode": mode} for q in questions]
            summary = load(f"{url}/search", params, clients=1, requests=requests)
            figures[mode] = {"p50": summary.p50, "p95": summary.p95, "p99": summary.p99, "failures": summary.failures}
        figures["rss_warm_mib"] = rss_mib(process.pid)
    return figures


def run(
    sizes: Sequence[int],
    types: Sequence[str],
    work: Path,
    embedder: Embedder,
    index: Path | None = None,
    requests: int = 300,
    recall_queries: int = 300,
    gcide_passages: int = 200_000,
    warmup: int = 100,
) -> dict[str, Any]:
    """Build (or reuse) each collection, measure it, and return the figures (also in `work`/results.json)."""
    pool = real_pool(work, embedder)
    asked = squad_questions(max(requests, recall_queries) + warmup)
    questions, first = asked[: len(asked) - warmup], asked[len(asked) - warmup :]
    queries = embedder.encode_queries(questions[:recall_queries])
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "real_passages": sum(len(r.passages) for r in pool),
        "rows": [],
    }
    if (work / INDEXING).is_file():
        results["indexing"] = json.loads((work / INDEXING).read_text())
    if gcide_passages:
        real = np.vstack([*(r.passage_vectors for r in pool), gcide_vectors(work, embedder, gcide_passages)])
        results["graph_recall"] = graph_recall(real, queries, work)
        logger.info("graph recall on real vectors: %s", results["graph_recall"])
        results["crossover"] = crossover(real, queries, work)
        del real
    for size in sizes:
        for kind in types:
            folder = index or work / f"{size}-{kind}"
            made = built(pool, size, folder, kind, embedder, [work / f"{size}-{other}" for other in types])
            logger.info("%s: %s", folder, made)
            row: dict[str, Any] = {"size": size, "vector_index": kind, "index": str(folder), "build": asdict(made)}
            row["recall@10"] = dense_recall(folder, queries)
            row.update(measure(folder, questions, requests, work / ENCODERS, first))
            logger.info("%s", json.dumps(row))
            results["rows"].append(row)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", default="10000,100000,1000000", help="collection sizes, comma-separated")
    parser.add_argument(
        "--index", type=Path, help="the collection's directory (one size only); default WORK/<size>-<type>"
    )
    parser.add_argument(
        "--vector-index",
        default="flat,hnsw",
        help=f"segment index types to measure, comma-separated ({', '.join(vector_index.SETTINGS)})",
    )
    parser.add_argument("--work", type=Path, default=WORK, help="where the real index and results live")
    parser.add_argument("--requests", type=int, default=300, help="searches per mode and collection")
    parser.add_argument("--recall-queries", type=int, default=300, help="questions for recall@10")
    parser.add_argument(
        "--warmup", type=int, default=100, help="other questions a fresh server answers before it is measured"
    )
    parser.add_argument(
        "--gcide-passages", type=int, default=200_000, help="real GCIDE passages embedded for graph recall (0: none)"
    )
    parser.add_argument("--report", type=Path, help="write a Markdown report (and a plot beside it)")
    parser.add_argument("--real-only", action="store_true", help="only index the real text (resumable), then stop")
    parser.add_argument("--from-results", action="store_true", help="only write --report again from WORK/results.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.from_results and args.report:
        results = json.loads((args.work / "results.json").read_text())
        write_report(results, args.report, results.get("command", ""))
        return 0
    settings = Settings()
    # ONNX exports in one folder that every server measured here shares: no start pays for an export.
    embedder = Embedder(
        encoder=settings.encoder, query_encoder=settings.query_encoder, shared_cache=args.work / ENCODERS
    )
    if args.real_only:
        real_index(args.work, embedder)
        return 0
    sizes = [int(n) for n in args.passages.split(",")]
    types = args.vector_index.split(",")
    if args.index and len(sizes) * len(types) != 1:
        parser.error("--index names one collection: give one --passages and one --vector-index")
    results = run(
        sizes,
        types,
        args.work,
        embedder,
        args.index,
        args.requests,
        args.recall_queries,
        args.gcide_passages,
        args.warmup,
    )
    results["command"] = " ".join(sys.argv[1:])
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    if args.report:
        write_report(results, args.report, results["command"])
    return 0


def write_report(results: dict[str, Any], path: Path, arguments: str) -> None:
    lines = [
        "# Scale (`python -m bench.scale`)",
        "",
        f"`python -m bench.scale {arguments}`, {results['started']}.",
        "",
        *section(results, path.with_suffix(".png")),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def section(results: dict[str, Any], plot: Path) -> list[str]:
    """The Scale section (of SCALE.md and REPORT.md): one row per size and index type, the graph's recall
    on real vectors, and a plot of latency and memory against size (written to `plot`)."""
    rows = results["rows"]
    lines = [
        "On this project's 2-core machine: each collection built through the store, then served by `citeline "
        "serve --index DIR` and measured from outside, one client. " + " ".join(__doc__.split("\n\n")[2].split()),
        "",
        f"Real passages in the collections: {results['real_passages']:,}; the rest are sampled copies.",
        "",
        *indexing_lines(results.get("indexing")),
        "Each server first answers other questions, hybrid (`first`: their figures, pages read from disk); "
        "then the measured ones, per mode; RSS once warm is taken after all of them.",
        "",
        "| passages | index | segments | disk (MiB) | write / seal (s) | ready (s) | RSS at ready / warm (MiB) "
        "| first hybrid p50 / p99 | hybrid p50 / p95 / p99 (ms) | dense p50 / p95 / p99 | BM25 p50 / p95 / p99 "
        "| dense recall@10 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        build = row["build"]

        def latency(mode: str, row: dict = row) -> str:
            figures = row[mode]
            return f"{figures['p50']:.1f} / {figures['p95']:.1f} / {figures['p99']:.1f}"

        lines.append(
            f"| {build['passages']:,} | {row['vector_index']} | {', '.join(build['segments'])} | "
            f"{row['disk_mib']:,.0f} | {build['write_s']:.0f} / {build['seal_s']:.0f} | {row['ready_s']:.1f} | "
            f"{row['rss_at_ready_mib']['rss']:,.0f} / {row['rss_warm_mib']['rss']:,.0f} | {first(row)} | "
            f"{latency('hybrid')} | "
            f"{latency('dense')} | {latency('bm25')} | {row['recall@10']:.3f} |"
        )
    graph = results.get("graph_recall")
    if graph:
        lines += [
            "",
            f"The HNSW graph alone on {graph['vectors']:,} real passage vectors (the collections' real ones and "
            f"GCIDE's), real questions as queries: recall@10 {graph['recall@10']:.3f} against exact search, "
            f"built in {graph['build_s']:.0f} s.",
        ]
    if results.get("crossover"):
        lines += [
            "",
            "One segment of real vectors searched for 100 candidates, in process (median ms a query), and the "
            "graph's recall@10: where a graph starts to pay (`auto` gives one from "
            f"{vector_index.ANN_MIN_PASSAGES:,} passages).",
            "",
            "| passages | flat (ms) | hnsw (ms) | hnsw recall@10 |",
            "| --- | --- | --- | --- |",
            *(
                f"| {r['passages']:,} | {r['flat_ms']:.2f} | {r['hnsw_ms']:.2f} | {r['recall@10']:.3f} |"
                for r in results["crossover"]
            ),
        ]
    lines += ["", f"![latency and memory against collection size]({plot.name})", ""]
    plot_scale(rows, plot)
    return lines


def first(row: dict[str, Any]) -> str:
    """The warm-up questions' hybrid p50 / p99 (– for a row measured without them)."""
    figures = row.get("first")
    return f"{figures['p50']:.1f} / {figures['p99']:.1f}" if figures else "–"


def indexing_lines(figures: dict[str, Any] | None) -> list[str]:
    """The real text's indexing speed against a bare encode, as measured when it was embedded."""
    if not figures:
        return []
    bare = figures["bare_encode"]
    return [
        f"Indexing ({figures['started']}): `sync_index`, as `citeline index` runs it (chunking, passage and "
        f"sentence vectors, BM25, store; encoder {figures['encoder']}, the default's choice for a run this "
        f"size), embedded the kernel's documentation, {figures['documents']:,} documents and "
        f"{figures['passages']:,} passages, in {figures['seconds']:,.0f} s: "
        f"**{figures['passages_per_s']:.1f} passages/s**, against {bare['passages_per_s']:.1f} for a bare torch "
        f"`SentenceTransformer.encode` (batch 64) of {bare['passages']:,.0f} of the same passages (a fixed "
        f"random sample) timed right after: **{figures['passages_per_s'] / bare['passages_per_s']:.2f}×**.",
        "",
    ]


def plot_scale(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, memory) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in sorted({r["vector_index"] for r in rows}):
        chosen = sorted((r for r in rows if r["vector_index"] == kind), key=lambda r: r["size"])
        sizes = [r["build"]["passages"] for r in chosen]
        latency.plot(sizes, [r["hybrid"]["p50"] for r in chosen], marker="o", label=f"{kind}: hybrid p50")
        latency.plot(sizes, [r["hybrid"]["p99"] for r in chosen], marker="x", linestyle=":", label=f"{kind}: p99")
        memory.plot(sizes, [r["rss_warm_mib"]["rss"] for r in chosen], marker="o", label=kind)
    for axis, label in ((latency, "ms, one client"), (memory, "server RSS once warm (MiB)")):
        axis.set_xscale("log")
        axis.set_xlabel("passages")
        axis.set_ylabel(label)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
