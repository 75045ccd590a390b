"""Ranking metrics over one query's ranked gains: nDCG@k, recall@k, MRR@k (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RECALL_CUTOFFS = (1, 3, 5, 10, 100)


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first `k` gains: sum(g / log2(rank + 1))."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains[:k], start=1))


def ndcg(ranked_gains: Sequence[float], ideal_gains: Sequence[float], k: int = 10) -> float:
    """DCG of the ranking divided by the DCG of the best possible ranking (0 when nothing is relevant)."""
    best = dcg(sorted(ideal_gains, reverse=True), k)
    return dcg(ranked_gains, k) / best if best > 0 else 0.0


def recall(ranked_gains: Sequence[float], relevant: int, k: int) -> float:
    """Share of the `relevant` items found in the first `k`."""
    return min(1.0, sum(1 for g in ranked_gains[:k] if g > 0) / relevant) if relevant > 0 else 0.0


def reciprocal_rank(ranked_gains: Sequence[float], k: int = 10) -> float:
    """1 / rank of the first relevant item within the first `k`, else 0."""
    return next((1.0 / rank for rank, g in enumerate(ranked_gains[:k], start=1) if g > 0), 0.0)


@dataclass(frozen=True)
class Judged:
    """One query's outcome: gains in ranked order and the gains of all relevant items."""

    ranked_gains: list[float]
    ideal_gains: list[float]
    answer_highlighted: bool | None = None  # top passage relevant and its highlight holds the answer; None: unknown


def summarize(judged: Sequence[Judged]) -> dict[str, float]:
    """Mean nDCG@10, recall@1/3/5/10/100 and MRR@10 over queries, and highlight@1 where answers are known."""
    n = len(judged)
    if n == 0:
        return {}
    totals = {"ndcg@10": 0.0, "mrr@10": 0.0, **{f"recall@{k}": 0.0 for k in RECALL_CUTOFFS}}
    for j in judged:
        relevant = sum(1 for g in j.ideal_gains if g > 0)
        totals["ndcg@10"] += ndcg(j.ranked_gains, j.ideal_gains, 10)
        totals["mrr@10"] += reciprocal_rank(j.ranked_gains, 10)
        for k in RECALL_CUTOFFS:
            totals[f"recall@{k}"] += recall(j.ranked_gains, relevant, k)
    summary = {name: value / n for name, value in totals.items()}
    highlighted = [j.answer_highlighted for j in judged if j.answer_highlighted is not None]
    if highlighted:
        summary["highlight@1"] = sum(highlighted) / len(highlighted)
    return summary
