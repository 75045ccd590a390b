"""Built-in evaluation: BEIR folders (document-level) and QA files (passage-level) against a retriever."""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.errors import CitelineError
from indexer.text.sentences import normalize_whitespace
from service.evaluation.measures import Judged, summarize
from service.search.retrieval import Hit, Mode, Retriever

DEPTH = 100


class DatasetError(CitelineError, ValueError):
    """An evaluation dataset is missing or malformed."""


@dataclass(frozen=True)
class Query:
    """One evaluation question with its judgements.

    BEIR: `relevant` maps doc_id -> graded relevance, `answers` from queries.jsonl when it has them
    (SQuAD does). QA file: `doc_id`, optional `answer` and optional `answer_start`, the answer's offset
    in the document's text (then only the passage and highlight holding that very occurrence count).
    """

    query_id: str
    text: str
    relevant: dict[str, float]
    answer: str | None = None
    answers: tuple[str, ...] = ()
    answer_start: int | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # "beir" or "qa"
    queries: list[Query]
    corpus: Path | None = None  # BEIR corpus.jsonl, for --build


def load_beir(folder: Path, split: str = "test") -> Dataset:
    """A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (query-id, corpus-id, score)."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise DatasetError(f"{folder} is not a BEIR dataset: {needed.name} is missing")
    qrels: dict[str, dict[str, float]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if not row or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = float(row[2])
    texts: dict[str, str] = {}
    answers: dict[str, tuple[str, ...]] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                texts[str(record["_id"])] = record["text"]
                given = record.get("answers")
                if isinstance(given, list):
                    answers[str(record["_id"])] = tuple(a for a in given if isinstance(a, str) and a.strip())
    queries = [
        Query(qid, texts[qid], rel, answers=answers.get(qid, ()))
        for qid, rel in qrels.items()
        if qid in texts and any(rel.values())
    ]
    return Dataset(folder.name, "beir", queries, folder / "corpus.jsonl")


def load_qa(path: Path) -> Dataset:
    """A QA file: JSONL lines {"q", "doc_id", "answer"?, "answer_start"?}; a hit is a passage of doc_id
    containing answer (with answer_start: containing the answer at that offset of the document)."""
    if not path.is_file():
        raise DatasetError(f"QA file {path} does not exist")
    queries = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise DatasetError(f"{path}:{number}: not a JSON object ({error})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: each line is a JSON object, not {type(record).__name__}")
            if not isinstance(record.get("q"), str) or not isinstance(record.get("doc_id"), str):
                raise DatasetError(f"{path}:{number}: each line needs string fields 'q' and 'doc_id'")
            answer = record.get("answer")
            start = record.get("answer_start")
            if start is not None and (not isinstance(start, int) or start < 0 or not answer):
                raise DatasetError(f"{path}:{number}: 'answer_start' must be an offset >= 0 and needs 'answer'")
            queries.append(
                Query(
                    str(number),
                    record["q"],
                    {record["doc_id"]: 1.0},
                    answer,
                    answers=(answer,) if answer else (),
                    answer_start=start,
                )
            )
    return Dataset(path.stem, "qa", queries)


def load_dataset(path: Path) -> Dataset:
    """A BEIR folder or a QA JSONL file, by what `path` is."""
    if path.is_dir():
        return load_beir(path)
    return load_qa(path)


def answer_highlighted(hits: Sequence[Hit], query: Query) -> bool | None:
    """Whether the first passage is of a relevant document and its highlight holds an answer (None: no answers)."""
    if not query.answers:
        return None
    if not hits or hits[0].doc_id not in query.relevant:
        return False
    if query.answer_start is not None:
        return hits[0].highlight.start <= query.answer_start < hits[0].highlight.end
    highlight = normalize_whitespace(hits[0].highlight_text).casefold()
    return any(normalize_whitespace(a).casefold() in highlight for a in query.answers)


def judge_beir(hits: Sequence[Hit], query: Query) -> Judged:
    """Document-level: a document's rank is the rank of its first passage.

    A document whose id is the query's is left out (BEIR's `ignore_identical_ids`): sets whose queries are
    documents of the corpus (ArguAna's arguments) would otherwise find the query itself first.
    """
    seen: list[str] = []
    for hit in hits:
        if hit.doc_id not in seen and hit.doc_id != query.query_id:
            seen.append(hit.doc_id)
    return Judged(
        [query.relevant.get(d, 0.0) for d in seen], list(query.relevant.values()), answer_highlighted(hits, query)
    )


def holds_answer(hit: Hit, query: Query) -> bool:
    """Whether a passage of a relevant document holds the answer (at `answer_start` when it is known)."""
    if query.answer is None:
        return True
    if query.answer_start is not None:
        return hit.start <= query.answer_start and query.answer_start + len(query.answer) <= hit.end
    return normalize_whitespace(query.answer) in normalize_whitespace(hit.text)


def judge_qa(hits: Sequence[Hit], query: Query) -> Judged:
    """Passage-level: relevant when it belongs to the expected document and contains the answer.

    The question has one answer: only the first passage that holds it counts (overlapping passages
    may hold it twice), so the metrics stay within [0, 1].
    """
    gains = [0.0] * len(hits)
    for rank, hit in enumerate(hits):
        if hit.doc_id in query.relevant and holds_answer(hit, query):
            gains[rank] = 1.0
            break
    return Judged(gains, [1.0], answer_highlighted(hits, query))


HALVES = ("dev", "heldout")


def split_half(dataset: Dataset, half: str, group_of: dict[str, str] | None = None) -> Dataset:
    """The queries of one half of `dataset`, split by a stable hash of their first relevant document's group.

    `group_of` maps doc_id -> group (BEIR: the corpus title, e.g. a SQuAD article), so a whole article
    falls in one half; without it each document is its own group. Tune on "dev", report on "heldout".
    """
    if half not in HALVES:
        raise DatasetError(f"half must be one of {', '.join(HALVES)}, not {half!r}")

    def side(query: Query) -> str:
        doc_id = min(query.relevant)
        return half_of((group_of or {}).get(doc_id, doc_id))

    return replace(dataset, name=f"{dataset.name}[{half}]", queries=[q for q in dataset.queries if side(q) == half])


def half_of(group: str) -> str:
    """The half ("dev" or "heldout") that a group of documents (a SQuAD article) falls in, by a stable hash."""
    return HALVES[zlib.crc32(group.encode("utf-8")) % 2]


def corpus_groups(corpus: Path) -> dict[str, str]:
    """doc_id -> title (or the doc_id when untitled) of a BEIR corpus.jsonl: the unit `split_half` keeps together."""
    groups: dict[str, str] = {}
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                doc_id = str(record.get("_id", record.get("id")))
                groups[doc_id] = str(record.get("title") or doc_id)
    return groups


def evaluate(
    retriever: Retriever,
    dataset: Dataset,
    modes: Sequence[Mode],
    encode_queries: object | None = None,
    depth: int = DEPTH,
    show_progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Metrics per mode. Query vectors are encoded once, in batches, and shared by the modes."""
    texts = [q.text for q in dataset.queries]
    vectors: np.ndarray | None = None
    if any(m != Mode.bm25 for m in modes) and callable(encode_queries):
        vectors = encode_queries(texts)
    judge = judge_beir if dataset.kind == "beir" else judge_qa
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        judged = []
        for i, query in enumerate(tqdm(dataset.queries, desc=f"eval {mode.value}", disable=not show_progress)):
            vector = vectors[i] if vectors is not None else None
            # Only the first hit's highlight is judged (highlight@1): the others need none.
            hits = retriever.search(query.text, depth, mode, vector=vector, highlight_top=1)
            judged.append(judge(hits, query))
        results[mode.value] = {**summarize(judged), "queries": float(len(judged))}
    return results
