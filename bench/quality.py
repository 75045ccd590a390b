"""Quality: `citeline eval`'s metrics per mode on the seed questions and SQuAD dev, and the ablations."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.store.migrate import rebuild
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import Document
from indexer.text.lexical import BM25Config
from service.engine import Engine
from service.evaluation.evaluate import Dataset, Query, corpus_groups, evaluate, half_of, load_dataset, split_half
from service.search.retrieval import Mode, RetrievalConfig
from service.settings import Settings

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
    "second stage without the sentence's cosine": RetrievalConfig(rerank_cosine=0.0),
    "answering sentence: no penalty for headline-like lines": RetrievalConfig(heading_penalty=0.0),
    "dense: passage cosine only (no best sentence)": RetrievalConfig(sentence_weight=0.0),
    "highlight: cosine only (no term coverage, no cue)": RetrievalConfig(highlight_term_weight=0.0, cue_bonus=0.0),
    "highlight: no question-type cue": RetrievalConfig(cue_bonus=0.0),
    "BM25 and term coverage keep question words (what, when, did ...)": RetrievalConfig(skip_question_words=False),
    "no near-duplicate collapse": RetrievalConfig(duplicate_overlap=1.01, copy_similarity=1.01),
}


# Levers fixed when the index is built: each variant is a whole index of its own.
INDEX_ABLATIONS: dict[str, tuple[dict[str, Any], BM25Config]] = {
    "passages of 64 tokens instead of 96": ({"passage_tokens": 64}, BM25Config()),
    "passages of 128 tokens instead of 96": ({"passage_tokens": 128}, BM25Config()),
    "no sentence overlap between passages": ({"overlap_sentences": 0}, BM25Config()),
    "passages embedded without their title line": ({"embed_title": False}, BM25Config()),
    "passages end at paragraph ends (short paragraphs whole)": ({"paragraphs": True}, BM25Config()),
    "BM25 without stemming": ({}, BM25Config(stemmer="")),
    'BM25 without acronym pairs ("IS" for "Islamic State")': ({}, BM25Config(expand_acronyms=False)),
    "BM25 k1 1.2 (Lucene's default) instead of 0.9": ({}, BM25Config(k1=1.2)),
    "BM25 k1 0.5 instead of 0.9": ({}, BM25Config(k1=0.5)),
}


def run_index_ablations(
    documents: Sequence[Document], chunker: ChunkerConfig, embedder: Embedder, dataset: Dataset, work: Path
) -> dict[str, dict[str, float]]:
    """Hybrid metrics over `dataset` of an index of `documents` built with each index-time lever changed.

    The first row is the default build of the same documents, so every row compares like with like.
    A variant that keeps the chunker (BM25 settings) starts from a copy of the default and re-embeds nothing.
    """
    texts = [q.text for q in dataset.queries]
    vectors = embedder.encode_queries(texts)
    default_dir = work / "default"
    variants: dict[str, tuple[ChunkerConfig, BM25Config]] = {"default (all levers on)": (chunker, BM25Config())}
    variants.update({name: (replace(chunker, **changes), bm25) for name, (changes, bm25) in INDEX_ABLATIONS.items()})
    results = {}
    for position, (name, (variant_chunker, bm25)) in enumerate(variants.items()):
        index = default_dir if position == 0 else work / f"variant-{position}"
        shutil.rmtree(index, ignore_errors=True)
        if variant_chunker == chunker and position:
            rebuild(default_dir, index, bm25)  # other BM25 settings: the same passages and vectors
        else:
            sync_index(documents, index, embedder, variant_chunker, bm25, show_progress=False)
        variant = Engine.load(Settings(index=index), embedder=embedder)
        retriever = variant.retriever(RetrievalConfig(), embedder.encode_query)
        results[name] = evaluate(retriever, dataset, [Mode.hybrid], encode_queries=lambda _texts: vectors)["hybrid"]
        if position:
            shutil.rmtree(index, ignore_errors=True)
    return results


def heldout_documents(documents: Sequence[Document], corpus: Path) -> list[Document]:
    """The documents of the held-out half's articles: a corpus the held-out questions are judged against."""
    groups = corpus_groups(corpus)
    return [d for d in documents if half_of(groups.get(d.doc_id, d.doc_id)) == "heldout"]


def squad_articles(folder: Path, half: str) -> tuple[list[Document], Dataset] | None:
    """SQuAD dev's articles of one half as long documents, one paragraph per line, with their questions.

    Each question is judged at its answer's offset (`answer_start`): the passage must hold that very
    occurrence. Unlike the BEIR corpus (one paragraph per document) this makes chunking matter, as on the
    seeds, at SQuAD's scale. None when the folder lacks SQuAD's original `dev-v1.1.json`.
    """
    source = folder / "dev-v1.1.json"
    if not source.is_file():
        return None
    documents: list[Document] = []
    queries: list[Query] = []
    for article in json.loads(source.read_text(encoding="utf-8"))["data"]:
        if half_of(article["title"]) != half:
            continue
        text = ""
        for paragraph in article["paragraphs"]:
            offset = len(text) + 1 if text else 0
            text = f"{text}\n{paragraph['context']}" if text else paragraph["context"]
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                queries.append(
                    Query(
                        qa["id"],
                        qa["question"],
                        {article["title"]: 1.0},
                        answer["text"],
                        answers=(answer["text"],),
                        answer_start=offset + answer["answer_start"],
                    )
                )
        documents.append(Document(doc_id=article["title"], text=text, title=article["title"].replace("_", " ")))
    return documents, Dataset(f"squad-articles-{half}", "qa", queries)


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
    retriever = engine.retriever(config or RetrievalConfig(), embedder.encode_query)
    return evaluate(retriever, dataset, modes, encode_queries=embedder.encode_queries, show_progress=False)


def run_ablations(engine: Engine, embedder: Embedder, dataset: Dataset) -> dict[str, dict[str, float]]:
    """Hybrid metrics of each ablation over `dataset`, with the query vectors encoded once.

    When questions have an encoder of their own (int8), one more row encodes them with the passages' (fp32).
    """
    texts = [q.text for q in dataset.queries]
    vectors = embedder.encode_queries(texts)
    results = {}
    for name, config in ABLATIONS.items():
        retriever = engine.retriever(config, embedder.encode_query)
        metrics = evaluate(retriever, dataset, [Mode.hybrid], encode_queries=lambda _texts: vectors)
        results[name] = metrics["hybrid"]
    if embedder.query_encoder != embedder.encoder:
        passage_vectors = embedder.encode(texts)
        retriever = engine.retriever(RetrievalConfig(), embedder.encode_query)
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
