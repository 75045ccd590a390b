"""The peer: txtai over the same model files and the same passages, in process and behind its own HTTP API."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.common import free_port, percentile, running
from indexer.model.embedding import Embedder
from indexer.store.view import View
from indexer.text.chunking import clip_title, embedding_text
from indexer.text.sentences import Span, normalize_whitespace
from service.evaluation.evaluate import Dataset, judge_beir, judge_qa
from service.evaluation.measures import summarize
from service.search.retrieval import Hit, Reference


def build_txtai(view: View, embedder: Embedder, folder: Path) -> float:
    """Index the view's passages (the same text Citeline embeds) with txtai; returns seconds taken."""
    from txtai import Embeddings

    started = time.perf_counter()
    embeddings = Embeddings(path=embedder.info.path, content=True, backend="faiss")
    rows = []
    for row in range(view.num_passages):
        title = clip_title(view.passage_document(row).title, embedder.token_counter, embedder.token_limit)
        rows.append({"id": str(row), "text": embedding_text(title, view.passage_text(row))})
    embeddings.index(rows)
    embeddings.save(str(folder))
    return time.perf_counter() - started


def _hits(view: View, results: Sequence[dict[str, object]]) -> list[Hit]:
    hits = []
    for rank, result in enumerate(results, start=1):
        row = int(str(result["id"]))
        document = view.passage_document(row)
        span = view.passage_span(row)
        start, end = span.start, span.end
        text = document.text[start:end]
        score = float(str(result["score"]))
        hits.append(
            Hit(
                rank,
                score,
                Reference(document.doc_id, document.title, document.source, start, end),
                text,
                Span(start, end),
                text,
                score,
                0.0,
                score,
            )
        )
    return hits


def txtai_quality(view: View, folder: Path, dataset: Dataset, depth: int = 100) -> dict[str, float]:
    """txtai's metrics over `dataset`, judged exactly as Citeline's (its highlight is the whole passage)."""
    from txtai import Embeddings

    embeddings = Embeddings()
    embeddings.load(str(folder))
    judge = judge_beir if dataset.kind == "beir" else judge_qa
    judged = []
    batch = 256
    for at in range(0, len(dataset.queries), batch):
        queries = dataset.queries[at : at + batch]
        for query, results in zip(queries, embeddings.batchsearch([q.text for q in queries], depth), strict=True):
            judged.append(judge(_hits(view, results), query))
    return summarize(judged)


def txtai_inprocess_latency(folder: Path, questions: Sequence[str], repeats: int) -> float:
    """Median milliseconds of one txtai `search` (encode + FAISS + content lookup), in process."""
    from txtai import Embeddings

    embeddings = Embeddings()
    embeddings.load(str(folder))
    embeddings.search(questions[0], 5)
    timings = []
    for i in range(repeats):
        started = time.perf_counter()
        embeddings.search(normalize_whitespace(questions[i % len(questions)]), 5)
        timings.append(time.perf_counter() - started)
    return percentile(timings, 50) * 1000


@contextmanager
def txtai_server(folder: Path, workdir: Path) -> Iterator[str]:
    """txtai's own FastAPI app (`uvicorn txtai.api:app`) serving the saved index; yields its base URL."""
    config = workdir / "txtai.yml"
    config.write_text(f"path: {folder}\nembeddings:\n  content: true\n", encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "txtai.api:app", "--port", str(port), "--log-level", "warning"]
    with running(command, f"http://127.0.0.1:{port}/count", {"CONFIG": str(config), "HF_HUB_OFFLINE": "1"}):
        yield f"http://127.0.0.1:{port}"
