"""Write cost: one document added, replaced and deleted, and 1,000 added at once, at several collection sizes.

The collections replicate a real index's documents, passages and sentences under new ids with random
unit vectors (embedding a million passages here would take days; a write embeds only the documents it
brings, so the vectors of the others only need to exist), written through the store's normal bulk path
and sealed into a memory-mapped segment, as `citeline index` leaves a large collection.
The encoder is the real one, and every write goes through the engine as an HTTP write would.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.common import percentile
from indexer.collection import API_SOURCE
from indexer.model.embedding import Embedder
from indexer.store.records import DocumentRecord
from indexer.store.store import Store, writer_lock
from indexer.text.documents import Document
from service.engine import Engine
from service.search.retrieval import Mode
from service.settings import Settings

# About 800 words, the size of a news article.
ARTICLE = (
    "The Syrian Democratic Forces said on Tuesday they had taken the Tabqa dam, 40 km west of Raqqa, after "
    "weeks of fighting. The operation was supported by coalition air strikes and by special forces on the "
    "ground. Engineers were inspecting the spillway, which had been damaged, and officials said the lake "
    "behind it posed no immediate danger to the villages downstream. "
) * 13


def replicated_index(template: Path, target_passages: int, index: Path, seed: int = 0) -> float:
    """Write an index of about `target_passages` passages made of copies of `template`'s documents, with
    random unit vectors, through the store's bulk path; returns seconds taken."""
    started = time.perf_counter()
    source = Store.open(template)
    try:
        records = list(source.records.records(None, source.dimension))
        settings = source.settings
    finally:
        source.close()
    per_copy = max(1, sum(len(r.passages) for r in records))
    copies = max(1, round(target_passages / per_copy))
    rng = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        vectors = rng.standard_normal((n, settings.model.dimension)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    with writer_lock(index):
        store = Store.create(index, settings.model, settings.chunker, settings.bm25)
        try:
            for copy in tqdm(range(copies), desc=f"replicating to {target_passages:,} passages", unit="copy"):
                batch = [
                    DocumentRecord(
                        document=replace(r.document, doc_id=f"{r.document.doc_id}~{copy}"),
                        passages=r.passages,
                        sentences=r.sentences,
                        passage_vectors=unit(len(r.passages)),
                        sentence_vectors=unit(len(r.sentences)),
                    )
                    for r in records
                ]
                for at in range(0, len(batch), 512):
                    store.write(batch[at : at + 512])
        finally:
            store.close()
    return time.perf_counter() - started


def seal(index: Path) -> float:
    """Seal the collection into one memory-mapped segment, as `citeline index` does at the end of a large
    run; returns seconds taken."""
    started = time.perf_counter()
    store = Store.open(index)
    try:
        store.seal(1)
    finally:
        store.close()
    return time.perf_counter() - started


def memory_mib() -> dict[str, float]:
    """This process's resident memory (/proc/self/status): anonymous (its own) and file-backed (mapped
    pages the kernel may drop and read again)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def _timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def write_cost(index: Path, embedder: Embedder, repeats: int = 5, bulk: int = 1000) -> dict[str, float]:
    """Seconds (p50, p95) of adding, replacing and deleting one news-sized document through the engine, and of
    adding `bulk` small documents in one write (0 skips it)."""
    before = memory_mib()
    started = time.perf_counter()
    engine = Engine.load(Settings(index=index, api_key="bench"), embedder=embedder)
    load_s = time.perf_counter() - started
    loaded = memory_mib()
    try:
        engine.search("when was the dam taken", 10, Mode.hybrid)  # touches every sealed vector once
        searched = memory_mib()
        adds, puts, deletes = [], [], []
        for i in range(repeats):
            document = Document(doc_id=f"bench-write-{i}", text=ARTICLE, title="Dam taken", source=API_SOURCE)
            adds.append(_timed(lambda d=document: engine.add_documents([d])))
            changed = replace(document, text=ARTICLE.replace("Tuesday", "Wednesday"))
            puts.append(_timed(lambda d=changed: engine.put_document(d)))
            deletes.append(_timed(lambda d=document: engine.delete_document(d.doc_id)))
        result = {
            "passages": float(engine.view.live_passages),
            "load_s": load_s,
            "anon_mib": loaded["RssAnon"] - before["RssAnon"],
            "file_mib": searched["RssFile"] - before["RssFile"],
            "add_p50_s": percentile(adds, 50),
            "add_p95_s": percentile(adds, 95),
            "replace_p50_s": percentile(puts, 50),
            "replace_p95_s": percentile(puts, 95),
            "delete_p50_s": percentile(deletes, 50),
            "delete_p95_s": percentile(deletes, 95),
        }
        if bulk:
            documents = [
                Document(doc_id=f"bench-bulk-{i}", text=ARTICLE[: 300 + i % 200], source=API_SOURCE)
                for i in range(bulk)
            ]
            result["bulk_s"] = _timed(lambda: engine.add_documents(documents))
            one = [Document(doc_id="bench-bulk-one", text=ARTICLE[:400], source=API_SOURCE)]
            result["bulk_one_s"] = _timed(lambda: engine.add_documents(one))
        return result
    finally:
        engine.close()


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    """Write cost (p50) against collection size, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["passages"] for r in results.values()]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for key, label in (("add_p50_s", "add"), ("replace_p50_s", "replace"), ("delete_p50_s", "delete")):
        axes.plot(sizes, [r[key] for r in results.values()], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_xlabel("passages in the collection")
    axes.set_ylabel("seconds per write (p50)")
    axes.set_ylim(bottom=0)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import shutil
    import tempfile

    from bench.report import write_section
    from service.startup import index_sources, load_embedder

    parser = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="passage counts of the collections")
    parser.add_argument("--template", type=Path, default=Path("seeds"), help="documents to replicate")
    parser.add_argument("--work", type=Path, help="where the collections are built (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=5, help="writes of each kind per collection")
    parser.add_argument("--report", type=Path, default=Path("bench/WRITES.md"))
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="citeline-writes-"))
    settings = Settings(index=work / "template", sources=str(args.template))
    embedder = load_embedder(settings)
    index_sources(settings, embedder, show_progress=False)
    results: dict[str, dict[str, float]] = {}
    for size in [int(s) for s in args.sizes.split(",") if s]:
        folder = work / f"writes-{size}"
        shutil.rmtree(folder, ignore_errors=True)
        build_s = replicated_index(work / "template", size, folder)
        seal_s = seal(folder)
        results[str(size)] = {**write_cost(folder, embedder, args.repeats), "build_s": build_s, "seal_s": seal_s}
        print(json.dumps({size: results[str(size)]}), flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    plot(results, args.report.with_suffix(".png"))
    args.report.write_text(
        "# Write cost (`make bench-writes`)\n\n"
        f"`python -m bench.writes --sizes {args.sizes} --repeats {args.repeats}` on this project's 2-core machine, "
        f"documents of `{args.template}` replicated.\n\n"
        f"{write_section(results)}\n\n![write cost against collection size]({args.report.with_suffix('.png').name})\n",
        encoding="utf-8",
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
