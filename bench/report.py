"""Turn the benchmark's raw results into bench/REPORT.md and its PNG plots (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from bench import scale

matplotlib.use("Agg")
import matplotlib.pyplot as plt

QUALITY_COLUMNS = ["ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10", "highlight@1"]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)])


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _quality_table(results: dict[str, Any]) -> str:
    rows = []
    for dataset, by_mode in results["quality"].items():
        for mode, metrics in by_mode.items():
            rows.append([dataset, mode, *(_f(metrics.get(c)) for c in QUALITY_COLUMNS)])
        peer = results["peer_quality"].get(dataset)
        if peer:
            rows.append([dataset, "txtai (peer, dense)", *(_f(peer.get(c)) for c in QUALITY_COLUMNS)])
    return _table(["dataset", "mode", *QUALITY_COLUMNS], rows)


def _ablation_table(results: dict[str, Any], key: str = "ablations") -> str:
    rows = []
    for dataset, by_lever in results[key].items():
        for lever, metrics in by_lever.items():
            rows.append(
                [
                    dataset,
                    lever,
                    *(_f(metrics.get(c)) for c in ("ndcg@10", "recall@1", "recall@5", "mrr@10", "highlight@1")),
                ]
            )
    return _table(["dataset", "setting (hybrid)", "ndcg@10", "recall@1", "recall@5", "mrr@10", "highlight@1"], rows)


def _index_ablation_section(results: dict[str, Any]) -> list[str]:
    if "index_ablations" not in results:
        return []
    return [
        "### Index-time ablations (each lever set when the index is built, changed one at a time; hybrid mode)",
        "",
        "Each row is an index of its own. SQuAD: an index of the held-out articles only (so its figures are "
        "higher than the full-corpus rows above; compare rows with the first one of the same dataset), the same "
        f"{results['ablation_queries']} held-out questions; SQuAD articles: the held-out articles as long "
        "documents (the only corpus here besides the seeds with many paragraphs per document); seeds: all.",
        "",
        _ablation_table(results, "index_ablations"),
        "",
    ]


def _latency_rows(name: str, levels: dict[str, Any]) -> list[list[str]]:
    return [
        [
            name,
            str(clients),
            str(s["requests"]),
            str(s["failures"]),
            _f(s["p50"], 1),
            _f(s["p95"], 1),
            _f(s["p99"], 1),
            _f(s["rps"], 1),
        ]
        for clients, s in levels.items()
    ]


def _plot_quality(results: dict[str, Any], path: Path) -> None:
    datasets = list(results["quality"])
    modes = ["bm25", "dense", "hybrid", "txtai"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("recall@5", "ndcg@10"), strict=True):
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            values = [
                (results["peer_quality"].get(d, {}) if mode == "txtai" else results["quality"][d].get(mode, {})).get(
                    metric, 0
                )
                for d in datasets
            ]
            axis.bar([x + i * width for x in range(len(datasets))], values, width, label=mode)
        axis.set_xticks([x + 0.4 - width / 2 for x in range(len(datasets))], datasets)
        axis.tick_params(axis="x", labelrotation=15)
        axis.set_ylim(0.5, 1.0)
        axis.set_title(metric)
        axis.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(modes))  # above the bars, not over them
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_latency(results: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    systems = {f"citeline ({name})": data["levels"] for name, data in results["http"].items()}
    systems["txtai API (peer)"] = results["peer_http"]
    for name, levels in systems.items():
        clients = [int(c) for c in levels]
        axes[0].plot(clients, [levels[c]["p50"] for c in levels], marker="o", label=name)
        axes[1].plot(clients, [levels[c]["rps"] for c in levels], marker="o", label=name)
    axes[0].axhline(results["floor"]["encode_ms"], color="grey", linestyle="--", label="bare torch encode (floor)")
    axes[0].set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="p50 ms", title="HTTP /search p50")
    axes[1].set(xscale="log", xlabel="concurrent clients", ylabel="requests/s", title="throughput")
    for axis in axes[:2]:
        axis.set_xticks([1, 8, 32], ["1", "8", "32"])
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    labels, values = [], []
    for encoder, data in results["http"].items():
        for mode, summary in data["modes"].items():
            labels.append(f"{encoder}\n{mode}" if len(results["http"]) > 1 else mode)
            values.append(summary["p50"])
    axes[2].bar(range(len(values)), values, color="tab:blue")
    axes[2].axhline(results["floor"]["encode_ms"], color="grey", linestyle="--")
    axes[2].set_xticks(range(len(values)), labels, fontsize=7)
    axes[2].set(ylabel="p50 ms (1 client)", title="latency per encoder and mode")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_section(writes: dict[str, dict[str, float]]) -> str:
    """The write-cost table (`make bench`, `make bench-writes`)."""
    return "\n".join(
        [
            "One news-sized document (about 800 words) added, replaced and deleted through the engine, as "
            "`POST`, `PUT` and `DELETE /documents` do: chunk and embed the document, store it in the record file "
            "(one SQLite transaction, fsynced), update the BM25 index (one tantivy commit), append to the live view. "
            "Then 1,000 short documents in one write, beside one of them written alone: a batch is embedded in "
            "batches, so it costs less than its documents one by one. Collections replicate real documents under "
            "new ids with random vectors, sealed into one memory-mapped segment (as `citeline index` leaves a large "
            "collection). Before the store (bench/REPORT.md of 6749e6c), adding one document took "
            "3.6 s at 12k passages and 30 s at 97k, since every write rewrote the whole index. Beside it: sealing "
            "the collection, loading it (`Engine.load`: texts and spans from the record file, vectors mapped), "
            "the memory that load took (anonymous: the process's own; mapped: segment pages read by a search, "
            "which the kernel may drop and read again).",
            "",
            _table(
                [
                    "passages",
                    "add p50 / p95 (s)",
                    "replace p50 / p95 (s)",
                    "delete p50 / p95 (s)",
                    "1,000 at once (s)",
                    "one of them alone (s)",
                    "building the collection (s)",
                    "sealing it (s)",
                    "loading it (s)",
                    "memory: own / mapped (MiB)",
                ],
                [
                    [
                        f"{int(w['passages']):,}",
                        f"{_f(w['add_p50_s'], 3)} / {_f(w['add_p95_s'], 3)}",
                        f"{_f(w['replace_p50_s'], 3)} / {_f(w['replace_p95_s'], 3)}",
                        f"{_f(w['delete_p50_s'], 3)} / {_f(w['delete_p95_s'], 3)}",
                        _f(w.get("bulk_s", float("nan")), 1),
                        _f(w.get("bulk_one_s", float("nan")), 3),
                        _f(w["build_s"], 0),
                        _f(w.get("seal_s", float("nan")), 1),
                        _f(w.get("load_s", float("nan")), 1),
                        f"{_f(w.get('anon_mib', float('nan')), 0)} / {_f(w.get('file_mib', float('nan')), 0)}",
                    ]
                    for w in writes.values()
                ],
            ),
        ]
    )


def write_report(results: dict[str, Any], report: Path, command: str) -> None:
    """Write `report` (Markdown) and its plots beside it."""
    folder = report.parent
    _plot_quality(results, folder / "quality.png")
    _plot_latency(results, folder / "latency.png")
    floor = results["floor"]
    http = results["http"]
    default_encoder = results["default_encoder"] if results["default_encoder"] in http else next(iter(http))
    one = (
        http[default_encoder]["levels"]["1"]
        if "1" in http[default_encoder]["levels"]
        else http[default_encoder]["levels"][1]
    )
    best_one = min((data["levels"].get("1", data["levels"].get(1)) for data in http.values()), key=lambda s: s["p50"])
    eight = {name: data["levels"].get("8", data["levels"].get(8)) for name, data in http.items()}
    peer_eight = results["peer_http"].get("8", results["peer_http"].get(8))
    best_eight_name = max(eight, key=lambda n: eight[n]["rps"])
    idx = results["indexing"]
    counts = results["query_counts"]
    lines = [
        "# Citeline benchmark report",
        "",
        f"Produced by `{command}` (`python -m bench`) on {results['started']}, "
        f"in {results['seconds'] / 60:.1f} minutes, on {results['machine']['cpus']} CPUs "
        f"({results['machine']['platform']}, Python {results['machine']['python']}). "
        "Every figure below comes from that one run; ratios compare numbers measured side by side in it. "
        "The machine is shared and noisy: treat differences under ~10% in latency as noise.",
        "",
        "## Headlines",
        "",
        f"- SQuAD dev, held-out half ({counts['squad-heldout']} questions), recall@5: "
        + ", ".join(
            f"{m} {_f(results['quality']['squad-heldout'][m]['recall@5'])}" for m in ("bm25", "dense", "hybrid")
        )
        + f"; txtai {_f(results['peer_quality']['squad-heldout']['recall@5'])}.",
        f"- HTTP `/search` p50, one client, hybrid, seeds, default server (questions on `{default_encoder}`): "
        f"{_f(one['p50'], 1)} ms against a bare torch encode of {_f(floor['encode_ms'], 1)} ms "
        f"(ratio {one['p50'] / floor['encode_ms']:.2f}); bare encode + FAISS {_f(floor['encode_search_ms'], 1)} ms. "
        f"Fastest question encoder: {_f(best_one['p50'], 1)} ms.",
        f"- 8 concurrent clients: {_f(eight[default_encoder]['rps'], 1)} requests/s (default server) against txtai's "
        f"API {_f(peer_eight['rps'], 1)} (ratio {eight[default_encoder]['rps'] / peer_eight['rps']:.2f}); "
        f"best: {_f(eight[best_eight_name]['rps'], 1)} ({best_eight_name}).",
        f"- Indexing SQuAD dev ({int(idx['citeline']['documents'])} paragraphs, "
        f"{int(idx['citeline']['chunks'])} passages and {int(idx['citeline']['sentences'])} sentences embedded): "
        f"{_f(idx['citeline']['passages_per_s'], 1)} passages/s; "
        f"a bare `model.encode` of the same passages alone: {_f(idx['bare_encode']['passages_per_s'], 1)} passages/s.",
        "",
        "## 1. Quality",
        "",
        f"Seed questions: {counts['seeds']} questions of `tests/data/seed_questions.jsonl`, judged per passage "
        "(a passage of the right document holding the answer). SQuAD v1.1 dev in BEIR layout, paragraph retrieval, "
        "judged per document (a paragraph ranks where its first passage does), split by article with a stable hash "
        f"into `dev` ({counts['squad-dev']} questions; any tuning happened there) "
        f"and `heldout` ({counts['squad-heldout']}). "
        + (
            f"SQuAD articles: the held-out half's articles as long documents (one paragraph per line), "
            f"{counts['squad-articles-heldout']} of their questions, judged per passage at the answer's offset "
            "(the passage must hold that occurrence): there chunking matters, as on the seeds. "
            if "squad-articles-heldout" in counts
            else ""
        )
        + "`highlight@1`: the first result is relevant and its highlight sentence holds the answer. "
        "txtai indexes exactly Citeline's passages (the same title line + passage text) "
        "with the same model files.",
        "",
        _quality_table(results),
        "",
        "![quality](quality.png)",
        "",
        "### Ablations (each lever of the retrieval design switched off, hybrid mode)",
        "",
        f"SQuAD held-out: a fixed sample of {results['ablation_queries']} questions; seeds: all.",
        "",
        _ablation_table(results),
        "",
        *_index_ablation_section(results),
        "## 2. Latency",
        "",
        "`citeline serve` on the seed index (passages embedded by `onnx` fp32; the encoder named is the one that "
        "encodes questions), queried over loopback HTTP with 1, 8 and 32 concurrent clients (seed questions in "
        "turn, k=5). Each client is one keep-alive connection of a minimal asyncio HTTP/1.1 client "
        "(`bench/common.py`); txtai is measured with the same client. (httpx costs about 1 ms of Python per "
        "request, which would be counted as the server's time.) The floor, measured in the same run in process: a bare "
        f"`SentenceTransformer.encode` of one question, p50 {_f(floor['encode_ms'], 2)} ms, and encode + FAISS search, "
        f"p50 {_f(floor['encode_search_ms'], 2)} ms. txtai in process (`Embeddings.search`): p50 "
        f"{_f(results['peer_inprocess_ms'], 2)} ms.",
        "",
        _table(
            ["server", "clients", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "requests/s"],
            [row for name, data in http.items() for row in _latency_rows(f"citeline ({name})", data["levels"])]
            + _latency_rows(f"citeline ({default_encoder}, no micro-batching)", results["http_unbatched"])
            + _latency_rows("txtai API (peer)", results["peer_http"]),
        ),
        "",
        "Per mode, one client:",
        "",
        _table(
            ["question encoder", "mode", "p50 ms", "p95 ms", "p99 ms", "p50 / bare encode"],
            [
                [name, mode, _f(s["p50"], 1), _f(s["p95"], 1), _f(s["p99"], 1), _f(s["p50"] / floor["encode_ms"], 2)]
                for name, data in http.items()
                for mode, s in data["modes"].items()
            ],
        ),
        "",
        "![latency](latency.png)",
        "",
        "## 3. Indexing",
        "",
        _table(
            ["what", "passages", "seconds", "passages/s"],
            [
                [
                    "`citeline index` of SQuAD dev (chunk, embed passages and sentences, BM25, write; "
                    "default encoder, int8 for a run this size)",
                    str(int(idx["citeline"]["chunks"])),
                    _f(idx["citeline"]["seconds"], 1),
                    _f(idx["citeline"]["passages_per_s"], 1),
                ],
                *(
                    [
                        [
                            "`citeline index --encoder onnx` of the same (fp32 throughout)",
                            str(int(idx["citeline_fp32"]["chunks"])),
                            _f(idx["citeline_fp32"]["seconds"], 1),
                            _f(idx["citeline_fp32"]["passages_per_s"], 1),
                        ]
                    ]
                    if "citeline_fp32" in idx
                    else []
                ),
                [
                    "bare `model.encode` of the same passages",
                    str(int(idx["bare_encode"]["passages"])),
                    _f(idx["bare_encode"]["seconds"], 1),
                    _f(idx["bare_encode"]["passages_per_s"], 1),
                ],
                [
                    "txtai `Embeddings.index` of the same passages",
                    str(int(idx["citeline"]["chunks"])),
                    _f(results["peer_build"]["squad_s"], 1),
                    _f(idx["citeline"]["chunks"] / results["peer_build"]["squad_s"], 1),
                ],
            ],
        ),
        "",
        "Citeline embeds every sentence of every passage too (for the sentence-level dense score and the highlight), "
        f"{int(idx['citeline']['sentences'])} more texts, shorter ones; that is most of the difference.",
        "",
        "## 4. Write cost",
        "",
        write_section(results["writes"]),
        "",
    ]
    if results.get("scale"):
        lines += ["## 5. Scale", "", *scale.section(results["scale"], report.parent / "SCALE.png"), ""]
    report.write_text("\n".join(lines), encoding="utf-8")
