from __future__ import annotations

import numpy as np
import pytest
import torch

from sweeps.index import search


def _normalised(n: int, d: int, seed: int) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))
    return torch.nn.functional.normalize(x, dim=1)


def _brute_force(xb: torch.Tensor, xq: torch.Tensor, k: int) -> np.ndarray:
    return np.argsort(-(xq.numpy() @ xb.numpy().T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_exact_search_matches_brute_force(backend):
    xb, xq = _normalised(300, 16, 0), _normalised(40, 16, 1)
    found = search(xb, xq, 20, backend=backend)
    assert found.shape == (40, 20) and found.dtype == np.int64
    np.testing.assert_array_equal(found, _brute_force(xb, xq, 20))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_query_never_retrieves_itself(backend):
    xb = _normalised(100, 8, 2)
    queries = np.array([0, 5, 99])
    found = search(xb, xb[queries], 10, query_ids=queries, backend=backend)
    assert found.shape == (3, 10)
    assert not (found == queries[:, None]).any()
    np.testing.assert_array_equal(found, _brute_force(xb, xb[queries], 11)[:, 1:])


def test_self_removed_by_id_even_among_exact_duplicates():
    xb = _normalised(30, 8, 3)
    xb[7] = xb[3]  # an exact duplicate can outrank the query itself
    found = search(xb, xb[[3, 7]], 5, query_ids=np.array([3, 7]), backend="torch")
    assert found[0, 0] == 7 and found[1, 0] == 3
    assert 3 not in found[0] and 7 not in found[1]


def test_k_larger_than_index_is_cut():
    xb = _normalised(6, 4, 4)
    assert search(xb, xb[:2], 20, query_ids=np.array([0, 1])).shape == (2, 5)
    assert search(xb, xb[:2], 20).shape == (2, 6)


def test_torch_search_turns_tf32_off_while_it_runs(monkeypatch):
    # The runtime enables TF32 for training; TF32's 10-bit mantissa would reorder close neighbours, so the
    # exact search runs its products in full fp32 and then restores the setting.
    seen = []
    topk = torch.Tensor.topk

    def spy(self, *args, **kwargs):
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        return topk(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "topk", spy)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        xb = _normalised(50, 8, 0)
        found = search(xb, xb[:5], 3, backend="torch")
        assert seen == [False] and torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    np.testing.assert_array_equal(found, _brute_force(xb, xb[:5], 3))
