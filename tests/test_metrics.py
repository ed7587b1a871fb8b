from __future__ import annotations

import numpy as np
import pytest

from sweeps.metrics import metric_keys, per_query_metrics, retrieval_metrics


def test_hand_computed_metrics():
    relevant = np.array(
        [
            [1, 0, 1, 0, 0],  # RR 1, AP (1/1 + 2/3) / 2 = 5/6, recall 2/5
            [0, 1, 0, 1, 0],  # RR 1/2, AP (1/2 + 2/4) / 2 = 1/2, recall 2/4
            [0, 0, 0, 0, 0],  # nothing found: 0, 0, 0
            [0, 0, 0, 0, 1],  # RR 1/5, AP 1/5 (one hit), recall 1/1
        ],
        dtype=bool,
    )
    n_relevant = np.array([5, 4, 3, 1])
    per_query = per_query_metrics(relevant, n_relevant)
    np.testing.assert_allclose(per_query["rr"], [1, 0.5, 0, 0.2])
    np.testing.assert_allclose(per_query["ap"], [5 / 6, 0.5, 0, 0.2])
    np.testing.assert_allclose(per_query["recall"], [0.4, 0.5, 0, 1.0])
    means = retrieval_metrics(relevant, n_relevant)
    assert set(means) == {"mrr@5", "map@5", "recall@5"}
    assert means["mrr@5"] == pytest.approx((1 + 0.5 + 0 + 0.2) / 4)
    assert means["map@5"] == pytest.approx((5 / 6 + 0.5 + 0 + 0.2) / 4)
    assert means["recall@5"] == pytest.approx((0.4 + 0.5 + 0 + 1.0) / 4)


def test_ap_divides_by_retrieved_not_by_all_relevant():
    # One hit at rank 1 out of 100 relevant items: AP is 1 (docarray), recall is 1/100.
    relevant = np.zeros((1, 20), dtype=bool)
    relevant[0, 0] = True
    m = retrieval_metrics(relevant, np.array([100]))
    assert m["map@20"] == 1.0 and m["mrr@20"] == 1.0 and m["recall@20"] == pytest.approx(0.01)


def test_one_match_task_has_mrr_equal_map():
    rng = np.random.default_rng(0)
    relevant = np.zeros((50, 20), dtype=bool)
    hit_rank = rng.integers(0, 30, size=50)  # >= 20 means not found
    for q, r in enumerate(hit_rank):
        if r < 20:
            relevant[q, r] = True
    m = retrieval_metrics(relevant, np.ones(50, dtype=int))
    assert m["mrr@20"] == pytest.approx(m["map@20"])
    assert m["recall@20"] == pytest.approx((hit_rank < 20).mean())


def test_metric_keys_and_input_checks():
    assert metric_keys(20) == ("mrr@20", "map@20", "recall@20")
    with pytest.raises(ValueError):
        per_query_metrics(np.zeros((2, 3), dtype=bool), np.array([1, 0]))
    with pytest.raises(ValueError):
        per_query_metrics(np.zeros((2, 3), dtype=bool), np.array([1]))
