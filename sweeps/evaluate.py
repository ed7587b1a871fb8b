"""Embed the held-out set, search it exactly, score the top-k: the Jina study's evaluation, once per call."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from sweeps.data.items import LabeledItems, RetrievalData
from sweeps.device import Runtime
from sweeps.index import search
from sweeps.metrics import per_query_metrics, retrieval_metrics
from sweeps.models import RetrievalModel, Tower


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]  # mrr@k, map@k, recall@k
    seconds: float  # embedding + search + scoring, device synchronised
    n_queries: int
    n_index: int
    # rr, ap, recall per query, in the order of ``queries``: roi bootstraps over them (docs/results-schema.md)
    per_query: dict[str, np.ndarray] | None = None


@torch.inference_mode()
def embed(tower: Tower, features, index: np.ndarray, *, batch_size: int, runtime: Runtime) -> torch.Tensor:
    """(len(index), D) float32 normalised embeddings on the device, in the order of ``index``."""
    tower.eval()
    # Sorting by length keeps padding small for text; image features have no lengths.
    lengths = getattr(features, "lengths", None)
    order = np.argsort(-np.asarray(lengths)[index], kind="stable") if lengths is not None else np.arange(len(index))
    chunks = []
    for start in range(0, len(index), batch_size):
        rows = index[order[start : start + batch_size]]
        batch = {k: runtime.to_device(v) for k, v in tower.collate(features, rows).items()}
        with runtime.autocast():
            # clone(): under train.compile: reduce-overhead each call replays a CUDA graph into the same
            # output buffer, so a kept output would be overwritten by the next batch's.
            chunks.append(tower(batch).float().clone())
    out = torch.cat(chunks) if chunks else torch.empty(0, tower.dim, device=runtime.device)
    unsorted = torch.empty_like(out)
    unsorted[torch.as_tensor(order, device=out.device)] = out
    return unsorted


def evaluate(
    model: RetrievalModel,
    eval_set: RetrievalData,
    *,
    query_features,
    doc_features,
    queries: np.ndarray,
    k: int,
    batch_size: int,
    runtime: Runtime,
) -> EvalResult:
    """Retrieval metrics of ``model`` on the held-out set.

    Args:
        query_features: preprocessed items (labeled data) or queries (pairs) of ``eval_set``.
        doc_features: preprocessed documents (pairs); ignored for labeled data.
        queries: positions of the queries to score (see ``sweeps.data.split.sample_queries``).
    """
    queries = np.array(queries)  # a private, writable copy (Ray hands out read-only shared arrays)
    runtime.synchronize()
    start = time.perf_counter()
    if isinstance(eval_set, LabeledItems):
        index_emb = embed(
            model.query_tower, query_features, np.arange(len(eval_set)), batch_size=batch_size, runtime=runtime
        )
        found = search(index_emb, index_emb[torch.as_tensor(queries, device=index_emb.device)], k, query_ids=queries)
        labels = np.asarray(eval_set.labels)
        relevant = labels[found] == labels[queries][:, None]  # (nq, k)
        counts = Counter(eval_set.labels)
        n_relevant = np.array([counts[labels[q]] - 1 for q in queries])
    else:
        index_emb = embed(
            model.doc_tower, doc_features, np.arange(len(eval_set.docs)), batch_size=batch_size, runtime=runtime
        )
        query_emb = embed(model.query_tower, query_features, queries, batch_size=batch_size, runtime=runtime)
        found = search(index_emb, query_emb, k)
        relevant = found == np.asarray(eval_set.doc_of)[queries][:, None]
        n_relevant = np.ones(len(queries), dtype=np.int64)
    metrics = retrieval_metrics(_pad_to_k(relevant, k), n_relevant)
    per_query = per_query_metrics(_pad_to_k(relevant, k), n_relevant)
    runtime.synchronize()
    return EvalResult(
        metrics=metrics,
        seconds=time.perf_counter() - start,
        n_queries=len(queries),
        n_index=index_emb.shape[0],
        per_query=per_query,
    )


def _pad_to_k(relevant: np.ndarray, k: int) -> np.ndarray:
    # An index smaller than k returns fewer columns; missing results are simply not relevant,
    # which keeps the metric keys at the configured k.
    if relevant.shape[1] >= k:
        return relevant
    return np.pad(relevant, ((0, 0), (0, k - relevant.shape[1])))
