"""Development sets for ranking choices: several collections, each split into a tuning and a reporting half.

A choice of the ranking stays only if it helps on most sets and hurts none beyond noise (issue #21), so
every set is read the same way: its documents, and its queries split by a stable hash into `tune` (what
choices are made on) and `report` (what is reported). The data is read from `../shared/eval/` by path and
never committed; a set whose folder is missing is left out, said loudly.

- `nfcorpus`: BEIR NFCorpus, PubMed abstracts against short health queries, graded; halves by query id.
- `squad`: SQuAD dev paragraphs as documents (BEIR layout), questions; halves by article, so no article's
  paragraphs are tuned on and reported alike. Large: each half is sampled (fixed seed).
- `squad-neighbours`: SQuAD paragraphs as queries, their neighbours in the article as the answers: queries
  that are whole paragraphs, matched by topic (generated, see `squad_neighbours`).
- `squad-articles`: SQuAD dev's articles as long documents, each question judged at its answer's offset;
  halves by article, so each half is a collection of its own.
- `seeds`: the project's own questions on the five seed articles, too few to split: reported whole.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import ROOT
from bench.quality import squad_articles
from indexer.text.documents import Document, load_documents
from service.evaluation.evaluate import Dataset, Query, corpus_groups, half_of, load_dataset, split_half

logger = logging.getLogger("bench.devsets")

EVAL = ROOT.parent / "shared" / "eval"
SEED_QUESTIONS = ROOT / "tests" / "data" / "seed_questions.jsonl"
HALVES = ("tune", "report")


@dataclass(frozen=True)
class DevSet:
    """One collection and its queries in halves; `documents` is the collection each half is searched in."""

    name: str
    documents: dict[str, list[Document]]  # half -> the collection it searches (often the same for both)
    queries: dict[str, Dataset]  # half -> its queries
    document_level: bool  # judged by document (BEIR), so whole-document baselines apply
    note: str = ""
    corpus: str = ""  # the name of its collection when another set's (sets over one corpus share its index)

    def collection_key(self, half: str) -> str:
        """A name for the collection a half searches: halves that share one share its index."""
        name = self.corpus or self.name
        return name if self.documents[half] is self.documents[HALVES[0]] else f"{name}-{half}"


def query_half(query_id: str) -> str:
    """`tune` or `report` by a stable hash of the query id."""
    return HALVES[zlib.crc32(query_id.encode("utf-8")) % 2]


def sample(dataset: Dataset, size: int) -> Dataset:
    """A fixed sample of `size` queries (all when `size` is 0 or larger than the set)."""
    if not size or size >= len(dataset.queries):
        return dataset
    return replace(dataset, queries=random.Random(0).sample(dataset.queries, size))


def nfcorpus(folder: Path) -> DevSet:
    dataset = load_dataset(folder)
    documents = load_documents([folder / "corpus.jsonl"])
    halves = {
        half: replace(
            dataset, name=f"nfcorpus[{half}]", queries=[q for q in dataset.queries if query_half(q.query_id) == half]
        )
        for half in HALVES
    }
    return DevSet("nfcorpus", {h: documents for h in HALVES}, halves, True, "halves by query id")


def squad_paragraphs(folder: Path, size: int) -> DevSet:
    dataset = load_dataset(folder)
    assert dataset.corpus is not None
    groups = corpus_groups(dataset.corpus)
    documents = load_documents([dataset.corpus])
    # split_half's "dev" half of the articles is what earlier rounds tuned on: it stays the tuning half.
    halves = {
        half: sample(replace(split_half(dataset, old, groups), name=f"squad[{half}]"), size)
        for half, old in zip(HALVES, ("dev", "heldout"), strict=True)
    }
    return DevSet("squad", {h: documents for h in HALVES}, halves, True, f"halves by article, {size} sampled each")


def squad_neighbours(folder: Path, size: int) -> DevSet:
    """Paragraph-long queries: a SQuAD paragraph (cut to the API's 1,000 characters) is the query, the
    paragraphs before and after it in its article are relevant, the paragraph itself is not counted.

    Generated from SQuAD (CC BY-SA 4.0) as a development stand-in for sets whose queries are whole
    paragraphs and whose answers are related in topic, not in wording (argument retrieval).
    """
    dataset = load_dataset(folder)
    assert dataset.corpus is not None
    documents = load_documents([dataset.corpus])
    by_article: dict[str, list[Document]] = {}
    for document in documents:
        by_article.setdefault(document.doc_id.rsplit("::", 1)[0], []).append(document)
    queries: dict[str, list[Query]] = {h: [] for h in HALVES}
    for article, paragraphs in by_article.items():
        half = HALVES[0] if half_of(article) == "dev" else HALVES[1]
        for i, paragraph in enumerate(paragraphs):
            neighbours = [p.doc_id for p in paragraphs[max(i - 1, 0) : i + 2] if p is not paragraph]
            queries[half].append(Query(paragraph.doc_id, paragraph.text[:1000], dict.fromkeys(neighbours, 1.0)))
    halves = {h: sample(Dataset(f"squad-neighbours[{h}]", "beir", qs), size) for h, qs in queries.items()}
    return DevSet("squad-neighbours", {h: documents for h in HALVES}, halves, True, f"{size} sampled each", "squad")


def squad_long(folder: Path, size: int) -> DevSet | None:
    halves = {half: squad_articles(folder, old) for half, old in zip(HALVES, ("dev", "heldout"), strict=True)}
    if any(h is None for h in halves.values()):
        return None
    return DevSet(
        "squad-articles",
        {h: v[0] for h, v in halves.items() if v is not None},
        {h: sample(replace(v[1], name=f"squad-articles[{h}]"), size) for h, v in halves.items() if v is not None},
        False,
        f"halves by article (a collection each), {size} sampled each",
    )


def seeds() -> DevSet:
    documents = load_documents([ROOT / "seeds"])
    questions = load_dataset(SEED_QUESTIONS)
    # Too few to split: both "halves" are the whole set, so it is watched, never tuned on alone.
    return DevSet("seeds", {h: documents for h in HALVES}, {h: questions for h in HALVES}, False, "whole set")


LOADERS: dict[str, Callable[[int], DevSet | None]] = {
    "nfcorpus": lambda size: nfcorpus(EVAL / "nfcorpus"),
    "squad": lambda size: squad_paragraphs(EVAL / "squad-dev-v1.1", size),
    "squad-neighbours": lambda size: squad_neighbours(EVAL / "squad-dev-v1.1", size),
    "squad-articles": lambda size: squad_long(EVAL / "squad-dev-v1.1", size),
    "seeds": lambda size: seeds(),
}


def development_sets(names: Sequence[str] = tuple(LOADERS), size: int = 1000) -> list[DevSet]:
    """The named sets that are present, each half sampled to `size` queries where it is larger."""
    found = []
    for name in names:
        try:
            devset = LOADERS[name](size)
        except (OSError, ValueError) as error:
            logger.warning("development set %s is missing and left out: %s", name, error)
            continue
        if devset is None:
            logger.warning("development set %s is missing and left out", name)
            continue
        found.append(devset)
    return found
