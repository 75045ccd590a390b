"""Metrics against hand-computed values, and both dataset formats end to end on tiny fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from indexer.build import sync_index
from indexer.text.documents import load_documents
from indexer.text.sentences import Span
from service.engine import Engine
from service.evaluation.evaluate import (
    Dataset,
    DatasetError,
    Query,
    corpus_groups,
    evaluate,
    judge_beir,
    judge_qa,
    load_beir,
    load_dataset,
    load_qa,
    split_half,
)
from service.evaluation.measures import Judged, dcg, ndcg, recall, reciprocal_rank, summarize
from service.search.retrieval import Hit, Mode, Reference
from service.settings import Settings

DATA = Path(__file__).resolve().parents[1] / "data"


def test_metrics_match_hand_computed_values():
    gains = [0.0, 1.0, 0.0, 1.0]
    assert dcg(gains, 10) == pytest.approx(1 / math.log2(3) + 1 / math.log2(5))
    ideal = 1 + 1 / math.log2(3)
    assert ndcg(gains, [1.0, 1.0], 10) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert ndcg(gains, [1.0, 1.0], 1) == 0.0
    assert ndcg([2.0, 1.0], [1.0, 2.0], 10) == pytest.approx(1.0)  # graded: best order
    assert recall(gains, 2, 1) == 0.0 and recall(gains, 2, 2) == 0.5 and recall(gains, 2, 4) == 1.0
    assert reciprocal_rank(gains) == 0.5 and reciprocal_rank([0.0] * 20 + [1.0]) == 0.0
    summary = summarize([Judged([1.0], [1.0]), Judged([0.0, 0.0, 1.0], [1.0])])
    assert summary["recall@1"] == 0.5 and summary["recall@5"] == 1.0
    assert summary["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert summary["ndcg@10"] == pytest.approx((1 + 0.5) / 2)


def hit(doc_id: str, text: str) -> Hit:
    return Hit(1, 0.0, Reference(doc_id, None, "", 0, len(text)), text, Span(0, 1), text[:1], 0.0, 0.0, 0.0)


def test_beir_judging_is_document_level_first_passage_counts():
    query = Query("q", "x", {"b": 1.0})
    judged = judge_beir([hit("a", "p1"), hit("a", "p2"), hit("b", "p3")], query)
    assert judged.ranked_gains == [0.0, 1.0]  # a's second passage does not push b down


def test_qa_judging_is_passage_level_with_normalised_whitespace():
    query = Query("q", "x", {"d": 1.0}, answer="200 additional\u00a0US forces")
    hits = [
        hit("d", "nothing here"),
        hit("e", "200 additional US forces"),
        hit("d", "approx 200\nadditional US  forces"),
    ]
    assert judge_qa(hits, query).ranked_gains == [0.0, 0.0, 1.0]
    # a second passage holding the same answer does not count twice (nDCG stays <= 1)
    twice = judge_qa([*hits, hit("d", "200 additional US forces")], query)
    assert twice.ranked_gains == [0.0, 0.0, 1.0, 0.0]


def test_qa_judging_by_answer_offset_counts_only_that_occurrence(tmp_path: Path):
    # "Denver" occurs twice in the document (offsets 0 and 30): the answer is the second.
    def at(start: int, end: int, highlight: Span) -> Hit:
        return Hit(1, 0.0, Reference("d", None, "", start, end), "", highlight, "", 0.0, 0.0, 0.0)

    query = Query("q", "x", {"d": 1.0}, answer="Denver", answers=("Denver",), answer_start=30)
    judged = judge_qa([at(0, 20, Span(0, 20)), at(25, 40, Span(36, 40)), at(20, 60, Span(28, 40))], query)
    assert judged.ranked_gains == [0.0, 1.0, 0.0] and judged.answer_highlighted is False
    assert judge_qa([at(28, 36, Span(28, 36))], query).answer_highlighted is True
    assert judge_qa([at(28, 35, Span(28, 35))], query).ranked_gains == [0.0]  # cuts the answer short
    lines = [{"q": "x", "doc_id": "d", "answer": "Denver", "answer_start": 30}]
    (tmp_path / "ok.jsonl").write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    assert load_dataset(tmp_path / "ok.jsonl").queries[0].answer_start == 30
    (tmp_path / "bad.jsonl").write_text(json.dumps({"q": "x", "doc_id": "d", "answer_start": 3}), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl:1: 'answer_start' must be an offset >= 0 and needs 'answer'"):
        load_dataset(tmp_path / "bad.jsonl")


def test_dataset_loading_and_errors(tmp_path: Path):
    beir = load_beir(DATA / "tiny-beir")
    assert beir.kind == "beir" and len(beir.queries) == 4 and beir.queries[0].relevant == {"apollo": 1.0}
    qa = load_dataset(DATA / "seed_questions.jsonl")
    assert qa.kind == "qa" and len(qa.queries) >= 30 and all(q.answer for q in qa.queries)
    with pytest.raises(DatasetError, match=r"not a BEIR dataset: corpus\.jsonl is missing"):
        load_beir(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "none.jsonl")


def test_evaluate_on_tiny_beir_end_to_end(tmp_path: Path, embedder):
    dataset = load_beir(DATA / "tiny-beir")
    sync_index(load_documents([dataset.corpus]), tmp_path / "index", embedder, show_progress=False)
    retriever = Engine.load(Settings(index=tmp_path / "index"), embedder=embedder).state.retriever
    results = evaluate(retriever, dataset, list(Mode), encode_queries=embedder.encode)
    assert set(results) == {"hybrid", "dense", "bm25"}
    for metrics in results.values():
        assert metrics["queries"] == 4
        assert metrics["recall@100"] == 1.0  # 4 documents: everything is retrieved
    assert results["dense"]["recall@1"] == 1.0 and results["hybrid"]["ndcg@10"] == 1.0


def test_cli_eval_builds_and_prints_a_table(tmp_path: Path, capsys):
    from service.cli import main

    index = str(tmp_path / "index")
    assert main(["eval", str(DATA / "tiny-beir"), "--build", "--index", index, "--mode", "hybrid"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "tiny-beir (beir, 4 queries)" in out and "hybrid" in out and "ndcg@10" in out
    assert "eval hybrid" not in captured.err and "\r" not in captured.err  # no progress bar off a terminal
    assert main(["eval", str(DATA / "seed_questions.jsonl"), "--index", index, "--json", "--sample", "3"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["kind"] == "qa" and set(body["results"]) == {"hybrid", "dense", "bm25"}
    for metrics in body["results"].values():
        assert metrics["queries"] == 3 and 0.0 <= metrics["ndcg@10"] <= 1.0


def test_highlight_at_1_needs_a_relevant_first_hit_whose_highlight_holds_an_answer():
    def with_highlight(doc_id: str, highlight: str) -> Hit:
        return Hit(1, 0.0, Reference(doc_id, None, "", 0, 10), "passage", Span(0, 1), highlight, 0.0, 0.0, 0.0)

    query = Query("q", "x", {"d": 1.0}, answers=("Neil Armstrong", "Armstrong"))
    assert judge_beir([with_highlight("d", "then\u00a0armstrong stepped out")], query).answer_highlighted is True
    assert judge_beir([with_highlight("d", "Aldrin followed")], query).answer_highlighted is False
    assert judge_beir([with_highlight("e", "Armstrong")], query).answer_highlighted is False
    assert judge_beir([with_highlight("d", "x")], Query("q", "x", {"d": 1.0})).answer_highlighted is None
    summary = summarize([Judged([1.0], [1.0], True), Judged([1.0], [1.0], False), Judged([1.0], [1.0], None)])
    assert summary["highlight@1"] == 0.5
    assert "highlight@1" not in summarize([Judged([1.0], [1.0])])


def test_split_half_partitions_queries_by_group_stably():
    queries = [Query(f"q{i}", "x", {f"article{i % 7}::{i}": 1.0}) for i in range(200)]
    dataset = Dataset("toy", "beir", queries)
    groups = {f"article{i % 7}::{i}": f"article{i % 7}" for i in range(200)}
    dev, heldout = split_half(dataset, "dev", groups), split_half(dataset, "heldout", groups)
    assert {q.query_id for q in dev.queries} | {q.query_id for q in heldout.queries} == {q.query_id for q in queries}
    assert not {q.query_id for q in dev.queries} & {q.query_id for q in heldout.queries}
    assert dev.queries and heldout.queries
    dev_articles = {groups[min(q.relevant)] for q in dev.queries}
    assert not dev_articles & {groups[min(q.relevant)] for q in heldout.queries}, "an article falls in one half"
    assert split_half(dataset, "dev", groups) == dev
    with pytest.raises(DatasetError, match="half must be one of"):
        split_half(dataset, "train", groups)


def test_beir_answers_and_corpus_groups_are_read(tmp_path: Path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        json.dumps({"_id": "A::0", "title": "A", "text": "t"}) + "\n" + json.dumps({"_id": "B::0", "text": "u"}) + "\n"
    )
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "x", "answers": ["one", "", 3]}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tA::0\t1\n")
    assert load_beir(folder).queries[0].answers == ("one",)
    assert corpus_groups(folder / "corpus.jsonl") == {"A::0": "A", "B::0": "B::0"}


def test_judge_beir_leaves_out_the_document_that_is_the_query_itself():
    query = Query("a", "an argument", {"b": 1.0})
    judged = judge_beir([hit("a", "p1"), hit("b", "p2")], query)
    assert judged.ranked_gains == [1.0]


@pytest.mark.parametrize("line", ["0", "[1, 2]", '"q"', "{not json", '{"q": 1, "doc_id": "a"}', "null"])
def test_a_qa_file_that_is_not_question_objects_says_which_line(tmp_path: Path, line: str):
    path = tmp_path / "questions.jsonl"
    path.write_text('{"q": "a question", "doc_id": "a"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"questions.jsonl:2:"):
        load_qa(path)
