"""The training order: which N items a trial trains on, and in which batches, epoch by epoch.

``nested_order`` orders the whole training pool once per seed so that the first N items are nested across
sizes (100 ⊂ 200 ⊂ ...); ``take`` is the first N of it. ``group_batches`` cuts one epoch of N items into
batches that keep a label's items together (in-batch positives), deterministic in (seed, epoch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from sweeps.data.items import LabeledItems, RetrievalData
from sweeps.errors import DataError


def group_positions(keys: Sequence) -> dict:
    """{key: [positions]} in first-appearance order."""
    groups: dict = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key].append(i)
    return groups


# ---------------------------------------------------------------------------------------------- training order


def nested_order(pool: RetrievalData, *, seed: int, group_size: int) -> np.ndarray:
    """One ordering of the whole pool whose first N items, for every N, are nested (100 ⊂ 200 ⊂ ...).

    Labeled data: labels shuffled, items within each label shuffled, then rounds that take the next
    ``group_size`` items of every label in label order (100 items with group_size 4 = 25 labels x 4).
    Pairs: documents shuffled, then rounds that take one query of every document (queries shuffled within
    a document), so the first items have distinct documents (no duplicate document in an in-batch-negatives batch).
    """
    rng = np.random.default_rng(seed)
    if isinstance(pool, LabeledItems):
        groups = group_positions(pool.labels)
        keys = sorted(groups)
        step = group_size
    else:
        groups = group_positions(pool.doc_of)
        keys = sorted(groups)
        step = 1
    keys = [keys[i] for i in rng.permutation(len(keys))]
    queues = [np.asarray(groups[k])[rng.permutation(len(groups[k]))] for k in keys]
    order: list[np.ndarray] = []
    start = 0
    while queues:
        order += [q[start : start + step] for q in queues]
        start += step
        queues = [q for q in queues if len(q) > start]
    return np.concatenate(order).astype(np.int64) if order else np.array([], dtype=np.int64)


def take(pool: RetrievalData, order: np.ndarray, n: int) -> RetrievalData:
    """The first ``n`` items of ``order``; asking for more than the pool holds is an error, never a silent cap."""
    if n < 0:
        raise DataError(f"asked for {n} items", field="sweep.sizes", fix="sizes must be >= 0")
    if n > len(pool):
        raise DataError(
            f"asked for {n} training items but the training pool holds {len(pool)}",
            where=pool.source,
            field="sweep.sizes",
            fix=f"lower the size to at most {len(pool)}, lower split.eval_fraction, or use a larger dataset",
        )
    return pool.subset(order[:n])


# ---------------------------------------------------------------------------------------------- batches


def group_batches(
    labels: Sequence[str] | None, n: int, *, batch_size: int, group_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """The batch order of one epoch, as arrays of positions in ``range(n)``; deterministic in (seed, epoch).

    Labeled data: each label's items are shuffled and cut into chunks of up to ``group_size`` (never a lone
    last item: 5 items in groups of 4 are cut 3 + 2); the chunks are
    shuffled and packed into batches of ``batch_size`` so every anchor has in-batch positives. A chunk that
    does not fit is split only where both pieces keep >= 2 items; otherwise the batch closes a little short.
    A batch of a single label joins its neighbour (the last batch can then hold up to ``group_size`` extra items).
    Pairs (``labels`` None): a seeded permutation cut into batches. A last batch of fewer than 2 items is dropped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = np.random.default_rng([seed, epoch])
    if labels is None:
        perm = rng.permutation(n)
        batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
        return [b.astype(np.int64) for b in batches if len(b) >= 2]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} items")
    groups = group_positions(labels)
    chunks = []
    for key in sorted(groups):
        members = np.asarray(groups[key])[rng.permutation(len(groups[key]))]
        bounds = np.cumsum([0, *_chunk_sizes(len(members), group_size)])
        chunks += [members[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    batches: list[np.ndarray] = []
    current: list[int] = []
    for chunk in chunks:
        chunk = list(chunk)
        while chunk:
            room = batch_size - len(current)
            if len(chunk) <= room:
                current += chunk
                chunk = []
            else:
                put = room if len(chunk) - room >= 2 else room - 1  # never leave a lone item of a label behind
                if put < 2:
                    # Otherwise the batch closes a little short; but batches of 1-2 items cannot keep pairs
                    # apart (cut plainly), and a batch of one label so far needs a negative more than the
                    # chunk needs to stay whole.
                    put = room if not current or _one_label(labels, current) else 0
                current += chunk[:put]
                chunk = chunk[put:]
                batches.append(np.asarray(current, dtype=np.int64))  # full, or closed a little short
                current = []
            if len(current) == batch_size:
                batches.append(np.asarray(current, dtype=np.int64))
                current = []
    if current:
        batches.append(np.asarray(current, dtype=np.int64))
    # A batch of one label has positives but no negatives: its loss would only push the label's items apart.
    # It joins its neighbour. This is the last batch when n % batch_size <= group_size; elsewhere only batches
    # hardly bigger than a group (same-label chunks in a row) can be one label.
    merged: list[np.ndarray] = []
    for batch in batches:
        if merged and (_one_label(labels, batch) or _one_label(labels, merged[-1])):
            merged[-1] = np.concatenate([merged[-1], batch])
        else:
            merged.append(batch)
    batches = merged
    # A batch of one item (the last one, or a lone item of a label with one training item) has nothing to contrast.
    return [b for b in batches if len(b) >= 2]


def _one_label(labels: Sequence[str], batch: np.ndarray) -> bool:
    return len({labels[i] for i in batch}) == 1


def _chunk_sizes(n: int, group_size: int) -> list[int]:
    """Sizes of ``n`` items cut into groups of ``group_size``, with no lone last item (5, 4 -> [3, 2])."""
    sizes = [group_size] * (n // group_size) + ([n % group_size] if n % group_size else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        if group_size >= 3:
            sizes[-2], sizes[-1] = sizes[-2] - 1, 2
        else:
            sizes.pop()
            sizes[-1] += 1
    return sizes
