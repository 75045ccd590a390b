"""Quality: `citeline eval`'s metrics per mode on the seed questions and SQuAD dev, and the ablations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from indexer.embedding import Embedder
from service.engine import Engine
from service.evaluation import Dataset, corpus_groups, evaluate, load_dataset, split_half
from service.retrieval import Mode, RetrievalConfig, Retriever

MODES = list(Mode)
Metrics = dict[str, dict[str, float]]  # mode -> metric -> value

# Each lever of the retrieval design, switched off (or to its alternative) one at a time.
ABLATIONS: dict[str, RetrievalConfig] = {
    "default (all levers on)": RetrievalConfig(),
    "fusion: RRF instead of convex": RetrievalConfig(fusion="rrf"),
    "fusion: dense weight 0.6 instead of 0.5": RetrievalConfig(dense_weight=0.6),
    "fusion: dense weight 0.4 instead of 0.5": RetrievalConfig(dense_weight=0.4),
    "no second stage (best-sentence answer score)": RetrievalConfig(answer_rerank=0.0),
    "second stage without the answer-kind cue": RetrievalConfig(rerank_cue=0.0),
    "dense: passage cosine only (no best sentence)": RetrievalConfig(sentence_weight=0.0),
    "highlight: cosine only (no term coverage, no cue)": RetrievalConfig(highlight_term_weight=0.0, cue_bonus=0.0),
    "highlight: no question-type cue": RetrievalConfig(cue_bonus=0.0),
    "no near-duplicate collapse": RetrievalConfig(duplicate_overlap=1.01, copy_similarity=1.01),
}


def squad_halves(folder: Path) -> dict[str, Dataset]:
    """SQuAD dev split by article: `dev` (tuned on) and `heldout` (reported)."""
    dataset = load_dataset(folder)
    groups = corpus_groups(dataset.corpus) if dataset.corpus else None
    return {half: split_half(dataset, half, groups) for half in ("dev", "heldout")}


def run_quality(
    engine: Engine,
    embedder: Embedder,
    dataset: Dataset,
    modes: Sequence[Mode] = MODES,
    config: RetrievalConfig | None = None,
) -> Metrics:
    """Metrics per mode over `dataset` (queries encoded once, in batches)."""
    retriever = Retriever(engine.snapshot, embedder.encode_query, config or RetrievalConfig())
    return evaluate(retriever, dataset, modes, encode_queries=embedder.encode_queries, show_progress=False)


def run_ablations(engine: Engine, embedder: Embedder, dataset: Dataset) -> dict[str, dict[str, float]]:
    """Hybrid metrics of each ablation over `dataset`, with the query vectors encoded once.

    When questions have an encoder of their own (int8), one more row encodes them with the passages' (fp32).
    """
    texts = [q.text for q in dataset.queries]
    vectors = embedder.encode_queries(texts)
    results = {}
    for name, config in ABLATIONS.items():
        retriever = Retriever(engine.snapshot, embedder.encode_query, config)
        metrics = evaluate(retriever, dataset, [Mode.hybrid], encode_queries=lambda _texts: vectors)
        results[name] = metrics["hybrid"]
    if embedder.query_encoder != embedder.encoder:
        passage_vectors = embedder.encode(texts)
        retriever = Retriever(engine.snapshot, embedder.encode_query, RetrievalConfig())
        metrics = evaluate(retriever, dataset, [Mode.hybrid], encode_queries=lambda _texts: passage_vectors)
        results[f"questions encoded by {embedder.encoder} (like passages), not {embedder.query_encoder}"] = metrics[
            "hybrid"
        ]
    return results


def sample(dataset: Dataset, size: int) -> Dataset:
    """A fixed sample of `size` queries (all when `size` is 0 or larger than the set)."""
    import random

    if not size or size >= len(dataset.queries):
        return dataset
    return replace(dataset, queries=random.Random(0).sample(dataset.queries, size))
