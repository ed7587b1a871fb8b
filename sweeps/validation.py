"""The validation carve-out of a trial's N items, and its cheap score (``sweep.train_to: validated``, ``converged``).

Early stopping must never read the held-out evaluation set: it decides on a share of the N labeled items the
trial was given (a user with N labels has nothing else). The carve-out:

- labeled data: from every label with at least 3 of the N items, ``round(n * val_fraction)`` items (at least 1,
  leaving at least 2 to train on, so the label keeps an in-batch positive); of the labels with exactly 2
  items (small sizes under ``train.group_size: 2``), ``round(count * val_fraction)`` whole labels; labels with
  one item stay in training. The validation queries are the carved items; the index is all N items (training
  items included), so a validation item with one sibling in training still has something to find.
- labeled data, within labels (``train_to: validated``): ``round(N * val_fraction)`` items, at most
  ``max_queries``, drawn in rounds across the labels in a seeded order (one item of each label, then a second
  of each, ...), never a label's last item: every label keeps at least one item in training, so a label of
  two validates with one item that finds its sibling in training. Whole-label hold-outs (above) take both items
  of a pair out of training: at 100 items and 50 labels of two, 20 items that neither train nor have a trained
  sibling to find.
- pairs: ``round(n_docs * val_fraction)`` documents (at most ``max_queries``) (at least 1, at most all but one) with all their pairs;
  their queries search the documents of all N pairs.

Scoring embeds only these N items (or the N pairs' queries of the carve-out and their documents), with the
held-out evaluation's own path (``sweeps.evaluate.embed``, ``sweeps.index.search``, ``sweeps.metrics``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from sweeps.data.items import LabeledItems, RetrievalData
from sweeps.device import Runtime
from sweeps.errors import DataError
from sweeps.evaluate import embed
from sweeps.index import search
from sweeps.metrics import retrieval_metrics
from sweeps.models import RetrievalModel


@dataclass(frozen=True)
class ValidationSet:
    """Positions into the training pool: what trains, and what validates."""

    train_positions: np.ndarray  # (N - V,) in the trial's nested order
    val_positions: np.ndarray  # (V,) the validation queries
    index_positions: np.ndarray  # labeled: all N items; pairs: the N pairs (their documents form the index)


def carve_validation(
    pool: RetrievalData,
    positions: np.ndarray,
    *,
    fraction: float,
    seed: int,
    within_labels: bool = False,
    max_queries: int = 0,
) -> ValidationSet:
    """Split the trial's ``positions`` (into the pool) into training and validation items; seeded.

    ``within_labels``: draw items within labels (``validated``) instead of whole small labels (``converged``,
    ``select_epoch``, kept as they were so their trials stay what they were). ``max_queries``: cap (0: none).
    """
    positions = np.asarray(positions, dtype=np.int64)
    rng = np.random.default_rng([seed, 3])  # its own stream: the carve-out must not shift the batch order
    labeled = isinstance(pool, LabeledItems)
    keys = [pool.labels[i] for i in positions] if labeled else [pool.doc_of[i] for i in positions]
    groups: dict = defaultdict(list)
    for j, key in enumerate(keys):
        groups[key].append(j)
    held = np.zeros(len(positions), dtype=bool)
    if labeled and within_labels:
        held[_within_labels(groups, len(positions), fraction=fraction, max_queries=max_queries, rng=rng)] = True
    elif labeled:
        pairs = []
        for key in sorted(groups, key=str):
            members = groups[key]
            n = len(members)
            if n == 2:
                pairs.append(key)
            if n < 3:
                continue
            k = int(min(max(int(np.floor(n * fraction + 0.5)), 1), n - 2))
            held[[members[i] for i in rng.permutation(n)[:k]]] = True
        for i in rng.permutation(len(pairs))[: int(np.floor(len(pairs) * fraction + 0.5))]:
            held[groups[pairs[i]]] = True  # a label of two: both validate (one finds the other), none train
    elif len(groups) >= 2:
        docs = sorted(groups)
        k = int(min(max(int(np.floor(len(docs) * fraction + 0.5)), 1), len(docs) - 1))
        k = min(k, max_queries) if max_queries else k
        for i in rng.permutation(len(docs))[:k]:
            held[groups[docs[i]]] = True
    if not held.any():
        raise DataError(
            f"no validation items can be carved out of {len(positions)} training items "
            + ("(too few labels with 2 or more of them)" if labeled else "(fewer than 2 documents)"),
            field="sweep.train_to",
            fix="use sweep.train_to: steps for sizes this small, or larger sizes, or a larger train.group_size",
        )
    return ValidationSet(train_positions=positions[~held], val_positions=positions[held], index_positions=positions)


def fold_validation(pool: RetrievalData, positions: np.ndarray, *, folds: int, fold: int, seed: int) -> ValidationSet:
    """Fold ``fold`` of a ``folds``-fold split of the trial's ``positions`` into training and validation; seeded.

    At small N one carve-out is too few queries to rank epochs (20 of 100 items); k folds score every item once.
    Labeled data: the items are dealt over the folds like cards, label after label in a seeded order, so no fold holds
    more than ceil(m / folds) of a label's m items and, for m >= 2 and folds >= 2, every label keeps an item in
    training to be found; a label's lone item never validates (nothing to find). Pairs: documents are dealt over
    the folds, each with all its pairs. The index is all N items, as in ``carve_validation``.
    """
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"fold_validation: need folds >= 2 and 0 <= fold < folds, got fold {fold} of {folds}")
    positions = np.asarray(positions, dtype=np.int64)
    rng = np.random.default_rng([seed, 4])  # its own stream, as the carve-out's
    labeled = isinstance(pool, LabeledItems)
    keys = [pool.labels[i] for i in positions] if labeled else [pool.doc_of[i] for i in positions]
    groups: dict = defaultdict(list)
    for j, key in enumerate(keys):
        groups[key].append(j)
    assigned = np.full(len(positions), -1)
    if labeled:
        keys = sorted(groups, key=str)
        dealt = int(rng.integers(folds))  # one deal over all labels (seeded order): the folds' sizes differ by <= 1
        for i in rng.permutation(len(keys)):
            members = [groups[keys[i]][j] for j in rng.permutation(len(groups[keys[i]]))]
            if len(members) >= 2:
                assigned[members] = (dealt + np.arange(len(members))) % folds
                dealt += len(members)
    else:
        docs = sorted(groups, key=str)
        for rank, i in enumerate(rng.permutation(len(docs))):
            assigned[groups[docs[i]]] = rank % folds
    held = assigned == fold
    if not held.any() or held.all():
        raise DataError(
            f"fold {fold} of {folds} of {len(positions)} training items is empty or holds them all",
            field="sweep.train_to",
            fix="use fewer folds, or larger sizes",
        )
    return ValidationSet(train_positions=positions[~held], val_positions=positions[held], index_positions=positions)


def _within_labels(groups: dict, n: int, *, fraction: float, max_queries: int, rng) -> list[int]:
    """Positions (into the trial's items) of the validation items drawn within labels, in rounds over labels."""
    want = int(np.floor(n * fraction + 0.5))
    want = min(want, max_queries) if max_queries else want
    keys = sorted(groups, key=str)
    # Each label's candidates: all its items but one (that one trains), in a seeded order.
    candidates = [[groups[k][i] for i in rng.permutation(len(groups[k]))][1:] for k in keys]
    order = rng.permutation(len(keys))  # which labels give first in every round
    picked: list[int] = []
    for depth in range(max((len(c) for c in candidates), default=0)):
        picked += [candidates[i][depth] for i in order if depth < len(candidates[i])]
        if len(picked) >= want:
            break
    return picked[:want]


def score_validation(
    model: RetrievalModel,
    pool: RetrievalData,
    val: ValidationSet,
    *,
    query_features,
    doc_features,
    k: int,
    batch_size: int,
    runtime: Runtime,
) -> tuple[dict[str, float], float]:
    """(metrics keyed like the held-out ones, seconds) of ``model`` on the validation carve-out."""
    runtime.synchronize()
    start = time.perf_counter()
    if isinstance(pool, LabeledItems):
        index = val.index_positions
        index_emb = embed(model.query_tower, query_features, index, batch_size=batch_size, runtime=runtime)
        rows = np.flatnonzero(np.isin(index, val.val_positions))  # the queries' rows in the index
        found = search(index_emb, index_emb[torch.as_tensor(rows, device=index_emb.device)], k, query_ids=rows)
        labels = np.asarray([pool.labels[i] for i in index])
        relevant = labels[found] == labels[rows][:, None]  # (V, k)
        counts = Counter(labels.tolist())
        n_relevant = np.array([counts[labels[r]] - 1 for r in rows])
    else:
        docs = np.unique(np.asarray(pool.doc_of)[val.index_positions])  # the N pairs' documents
        index_emb = embed(model.doc_tower, doc_features, docs, batch_size=batch_size, runtime=runtime)
        query_emb = embed(model.query_tower, query_features, val.val_positions, batch_size=batch_size, runtime=runtime)
        found = docs[search(index_emb, query_emb, k)]
        relevant = found == np.asarray(pool.doc_of)[val.val_positions][:, None]
        n_relevant = np.ones(len(val.val_positions), dtype=np.int64)
    if relevant.shape[1] < k:  # an index smaller than k: the missing results are simply not relevant
        relevant = np.pad(relevant, ((0, 0), (0, k - relevant.shape[1])))
    metrics = retrieval_metrics(relevant, n_relevant)
    runtime.synchronize()
    return metrics, time.perf_counter() - start
