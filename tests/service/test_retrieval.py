"""The pure functions of the ranking: fusion math, top-k, segments of CSR arrays, span overlap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.store.view import gather_segments
from service.search.retrieval import (
    Span,
    bm25,
    convex_fusion,
    document_bm25,
    min_max,
    overlap_fraction,
    rank_order,
    rrf_fusion,
    segment_max,
    top_allowed,
    top_indices,
    with_document,
    z_scores,
)


def test_min_max_rescales_to_the_unit_interval_and_flattens_ties():
    assert min_max({1: 2.0, 2: 4.0, 3: 3.0}) == {1: 0.0, 2: 1.0, 3: 0.5}
    assert min_max({1: 7.0, 2: 7.0}) == {1: 0.0, 2: 0.0}
    assert min_max({}) == {}


def test_convex_fusion_weighs_normalised_scores_and_gives_missing_items_the_minimum():
    dense = {1: 0.9, 2: 0.5, 3: 0.7}  # normalised: 1.0, 0.0, 0.5
    bm25 = {2: 12.0, 4: 2.0}  # normalised: 1.0, 0.0
    fused = convex_fusion(dense, bm25, dense_weight=0.5)
    assert fused == pytest.approx({1: 0.5, 2: 0.5, 3: 0.25, 4: 0.0})
    assert convex_fusion(dense, bm25, dense_weight=1.0) == pytest.approx({1: 1.0, 2: 0.0, 3: 0.5, 4: 0.0})
    # Scale-free: multiplying one list's scores by a constant changes nothing.
    assert convex_fusion(dense, {i: 10 * s for i, s in bm25.items()}) == pytest.approx(fused)


def test_rrf_sums_reciprocal_ranks_over_the_lists():
    fused = rrf_fusion({1: 0.9, 2: 0.5}, {2: 3.0, 3: 1.0}, constant=60)
    assert fused == pytest.approx({1: 1 / 61, 2: 1 / 62 + 1 / 61, 3: 1 / 62})


def test_top_indices_is_best_first_and_stable_for_ties():
    scores = np.array([0.1, 0.5, 0.5, 0.9, 0.0])
    assert top_indices(scores, 3).tolist() == [3, 1, 2]
    assert top_indices(scores, 10).tolist() == [3, 1, 2, 0, 4]
    assert top_indices(scores, 0).tolist() == []
    allowed = np.array([True, False, True, False, True])
    assert top_allowed(scores, 2, allowed).tolist() == [2, 0]


@given(st.dictionaries(st.integers(0, 10**6), st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, 3.5])))
def test_rank_order_is_best_first_with_ties_by_row(scores: dict[int, float]):
    assert rank_order(scores) == sorted(scores, key=lambda row: (-scores[row], row))


@given(st.lists(st.lists(st.integers(-50, 50), min_size=1, max_size=6), min_size=1, max_size=8), st.data())
def test_gather_segments_and_segment_max_match_their_loops(segments: list[list[int]], data: st.DataObject):
    ptr = np.concatenate(([0], np.cumsum([len(s) for s in segments]))).astype(np.int64)
    values = np.array([v for s in segments for v in s], dtype=np.float64)
    rows = np.array(data.draw(st.lists(st.integers(0, len(segments) - 1), min_size=1, max_size=10)), dtype=np.int64)
    gathered, lengths = gather_segments(ptr, values, rows)
    assert gathered.tolist() == [v for r in rows for v in segments[r]]
    assert lengths.tolist() == [len(segments[r]) for r in rows]
    assert segment_max(gathered, lengths).tolist() == [max(segments[r]) for r in rows]


def test_overlap_fraction_is_the_shared_share_of_the_shorter_span():
    assert overlap_fraction(Span(0, 10), Span(5, 25)) == 0.5
    assert overlap_fraction(Span(0, 10), Span(10, 20)) == 0.0
    assert overlap_fraction(Span(0, 100), Span(20, 30)) == 1.0
    assert overlap_fraction(Span(3, 3), Span(0, 10)) == 0.0


def test_z_scores_center_and_scale_and_flatten_ties():
    assert z_scores({1: 1.0, 2: 3.0}) == pytest.approx({1: -1.0, 2: 1.0})
    assert z_scores({1: 5.0, 2: 5.0}) == {1: 0.0, 2: 0.0}
    assert z_scores({}) == {}


def test_convex_fusion_by_z_scores_gives_missing_items_the_lowest_of_the_list():
    dense = {1: 0.9, 2: 0.5}  # z: 1, -1
    bm25 = {2: 4.0, 3: 2.0}  # z: 1, -1
    fused = convex_fusion(dense, bm25, dense_weight=0.5, normalize="zscore")
    # 1 lacks a BM25 score and 3 a dense one: each gets that list's lowest (-1), not its mean (0).
    assert fused == pytest.approx({1: 0.0, 2: 0.0, 3: -1.0})


def test_document_bm25_scores_a_document_as_the_sum_of_its_parts():
    # Two documents: the first in two parts (terms a, a, b | b, c), the second in one (c, c).
    parts_tf = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 2.0]])
    lengths = np.array([3.0, 2.0, 2.0])
    weights = np.array([1.5, 0.7, 1.1])
    scores = document_bm25(parts_tf, lengths, np.array([0, 0, 1]), 2, 3.5, weights, 0.9, 0.75)
    whole = bm25(np.array([[2.0, 2.0, 1.0], [0.0, 0.0, 2.0]]), np.array([5.0, 2.0]), 3.5, weights, 0.9, 0.75)
    assert scores == pytest.approx(whole)
    assert document_bm25(np.zeros((0, 0)), np.zeros(0), np.zeros(0, np.int64), 3, 1.0, weights, 0.9, 0.75).tolist() == [
        0.0,
        0.0,
        0.0,
    ]


def test_with_document_mixes_the_passage_and_its_document():
    passage, document = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert with_document(passage, document, 0.0).tolist() == [1.0, 0.0]
    assert with_document(passage, document, 0.25).tolist() == pytest.approx([1.0, 1 / 3])
