"""Retrieval metrics exactly as the Jina study computed them (docarray's definitions, used by Finetuner).

Inputs are the top-k result lists already cut to k (a query never retrieves itself) as a boolean
relevance matrix, plus the number of relevant items each query could have found. Per query, with
``r_i = 1`` when the i-th result is relevant:

- RR = 1 / (rank of the first relevant result), 0 if none in the top k; ``mrr@k`` is the mean.
- AP = mean of precision@i over the positions i <= k where r_i = 1, i.e. divided by the number of
  relevant results *retrieved*, not by all relevant items; 0 if none. ``map@k`` is the mean.
  (This is why mRR = mAP on one-match tasks, and why mAP can be high while recall is low.)
- recall@k = relevant results in the top k / all relevant items in the index (minus the query itself).
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("mrr", "map", "recall")


def metric_keys(k: int) -> tuple[str, ...]:
    """Column names of the metrics at cutoff k: ``mrr@k``, ``map@k``, ``recall@k``."""
    return tuple(f"{name}@{k}" for name in METRIC_NAMES)


def per_query_metrics(relevant: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query RR, AP and recall.

    Args:
        relevant: (nq, k) bool, whether the i-th result of each query is relevant.
        n_relevant: (nq,) int, relevant items in the index for each query (the query itself excluded);
            must be >= 1: queries with nothing to find are dropped before evaluation.

    Returns:
        ``{"rr": (nq,), "ap": (nq,), "recall": (nq,)}`` float64 arrays.
    """
    relevant = np.asarray(relevant, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    if relevant.ndim != 2 or n_relevant.shape != (relevant.shape[0],):
        raise ValueError(f"shapes do not match: relevant {relevant.shape}, n_relevant {n_relevant.shape}")
    if (n_relevant < 1).any():
        raise ValueError("every query needs at least one relevant item in the index")
    nq, k = relevant.shape
    ranks = np.arange(1, k + 1, dtype=np.float64)  # (k,)
    hits = relevant.cumsum(axis=1)  # (nq, k) relevant results within the first i
    found = hits[:, -1] if k else np.zeros(nq, dtype=np.int64)  # (nq,)

    first = np.where(found > 0, relevant.argmax(axis=1) + 1, 0)  # 1-based rank of the first hit, 0 = none
    rr = np.divide(1.0, first, out=np.zeros(nq), where=first > 0)
    precision_at_hits = np.where(relevant, hits / ranks, 0.0)  # (nq, k)
    ap = np.divide(precision_at_hits.sum(axis=1), found, out=np.zeros(nq), where=found > 0)
    recall = found / n_relevant
    return {"rr": rr, "ap": ap, "recall": recall}


def retrieval_metrics(relevant: np.ndarray, n_relevant: np.ndarray) -> dict[str, float]:
    """Mean metrics keyed ``mrr@k``, ``map@k``, ``recall@k`` (k = relevant.shape[1])."""
    per_query = per_query_metrics(relevant, n_relevant)
    k = np.asarray(relevant).shape[1]
    mrr, map_, recall = metric_keys(k)
    return {
        mrr: float(per_query["rr"].mean()),
        map_: float(per_query["ap"].mean()),
        recall: float(per_query["recall"].mean()),
    }
