"""The held-out evaluation set, and the sample of its queries (the training order: ``sweeps.data.order``).

Evaluation split (``split_data``):

- ``method: official``: eval = items whose official split is ``split.official_eval``, training pool = those
  of ``split.official_train`` (other official splits, e.g. CLINC150's ``val``, are left out).
- ``method: seeded, by: item``, labeled data: stratified by label. A label with n >= 4 items puts
  ``round(n * eval_fraction)`` of them on the eval side, clamped to [2, n - 2], so every eval item has a
  positive to find and every label keeps a pair to train on. A label with 2 or 3 items cannot be split that
  way; it goes whole to one side (to eval with probability ``eval_fraction``).
- ``method: seeded``, pairs (``by: item`` or ``by: label``): by document. ``round(n_docs * eval_fraction)``
  documents (at least one, at most all but one) go to eval with all their queries, so no eval document is
  ever trained on.
- ``method: seeded, by: label``, labeled data: whole labels are held out (unseen classes, e.g. faces of people
  never trained on); ``round(n_labels * eval_fraction)`` labels, at least one each side.

Labeled items whose label has no other item (kept by ``data.singletons: index``) are distractors: never in
the training pool (nothing to pair them with), always in the eval index with the seeded methods (with
``method: official``, only those of the official eval split), never queries (``sample_queries``).

``max_eval`` caps the eval set for very large sources: labeled data keeps a seeded share of each label
(at least 2, so queries keep positives), dropping whole labels if the minimum pushes it over the cap;
pairs keep whole documents in seeded order up to the cap.

``N`` counts training items: one labeled item (``LabeledItems``), one (query, document) pair (``Pairs``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sweeps.config import SplitConfig
from sweeps.data.items import LabeledItems, Pairs, RetrievalData
from sweeps.data.order import group_positions
from sweeps.errors import DataError


@dataclass(frozen=True)
class Split:
    """The training pool and the held-out evaluation set; ``eval_id`` identifies the evaluation set."""

    train: RetrievalData
    eval: RetrievalData
    eval_id: str
    pool_id: str  # identifies the training pool's content (as eval_id the evaluation set's)


# ---------------------------------------------------------------------------------------------- the split


def split_data(data: RetrievalData, cfg: SplitConfig, *, max_eval: int | None = None) -> Split:
    """Split ``data`` into a training pool and an evaluation set that never overlap."""
    if cfg.method == "official":
        train_idx, eval_idx = _official(data, cfg)
    elif isinstance(data, Pairs):
        train_idx, eval_idx = _by_document(data, cfg)
    elif cfg.by == "label":
        train_idx, eval_idx = _by_label(data, cfg)
    else:
        train_idx, eval_idx = _stratified(data, cfg)
    if isinstance(data, LabeledItems):
        train_idx, eval_idx = _singletons_to_index(data, train_idx, eval_idx, official=cfg.method == "official")
    if max_eval is not None and len(eval_idx) > max_eval:
        eval_idx = _cap(data, eval_idx, max_eval, seed=cfg.seed)
    train, eval_set = data.subset(train_idx), data.subset(eval_idx)
    if len(eval_set) == 0 or len(train) == 0:
        side = "evaluation set" if len(eval_set) == 0 else "training pool"
        raise DataError(
            f"the split leaves the {side} empty ({len(data)} items in all)",
            where=data.source,
            field="split",
            fix="use more data or change split.eval_fraction",
        )
    check_measurable(eval_set)
    return Split(train=train, eval=eval_set, eval_id=_eval_id(eval_set, cfg, max_eval), pool_id=_pool_id(train))


def check_measurable(eval_set: RetrievalData) -> None:
    """The held-out set must be able to tell a good model from a bad one: at least one query with a relevant
    item and an irrelevant one in the index. Otherwise every metric is 0 (nothing to find) or 1 (nothing else
    to find) whatever the model, and a sweep would draw ROI curves from noise-free nonsense."""
    fix = "use more data or more labels, or raise split.eval_fraction (or change split.method / split.by)"
    if isinstance(eval_set, LabeledItems):
        counts = Counter(eval_set.labels)
        if not any(c > 1 for c in counts.values()):
            raise DataError(
                f"no query in the evaluation set has a relevant item: its {len(eval_set)} item(s) each have a label "
                "no other held-out item shares",
                where=eval_set.source,
                field="split",
                fix=fix,
            )
        if len(counts) < 2:
            raise DataError(
                f"every query in the evaluation set is answered trivially: its {len(eval_set)} items all have the "
                f"label {next(iter(counts))!r}, so every result is relevant and every metric is 1.0",
                where=eval_set.source,
                field="split",
                fix=fix,
            )
    elif len(eval_set.docs) < 2:
        raise DataError(
            f"every query in the evaluation set is answered trivially: its {len(eval_set)} pair(s) share one "
            "document, the only one in the index",
            where=eval_set.source,
            field="split",
            fix=fix,
        )


def _official(data: RetrievalData, cfg: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    if data.official_split is None:
        raise DataError(
            "this source defines no official split",
            where=data.source,
            field="split.method",
            fix="use split.method: seeded (or a folder of train/test files, or data.hub_eval_split)",
        )
    names = np.asarray(data.official_split)
    available = sorted(set(data.official_split))
    for field, name in (("split.official_eval", cfg.official_eval), ("split.official_train", cfg.official_train)):
        if name not in available:
            raise DataError(
                f"no official split {name!r}; the source has {', '.join(map(repr, available))}",
                where=data.source,
                field=field,
                fix=f"set {field} to one of these",
            )
    if cfg.official_eval == cfg.official_train:
        raise DataError(
            "the evaluation and training splits are the same",
            where=data.source,
            field="split.official_eval",
            fix="hold out a different split",
        )
    return np.flatnonzero(names == cfg.official_train), np.flatnonzero(names == cfg.official_eval)


def _n_eval(n: int, fraction: float, *, low: int, high: int) -> int:
    return int(min(max(int(np.floor(n * fraction + 0.5)), low), high))


def _stratified(data: LabeledItems, cfg: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    train, eval_ = [], []
    groups = group_positions(data.labels)
    for label in sorted(groups):
        members = np.array(groups[label])[rng.permutation(len(groups[label]))]
        n = len(members)
        if n >= 4:
            k = _n_eval(n, cfg.eval_fraction, low=2, high=n - 2)
        else:  # too small to split with a positive on each side: the whole label goes to one side
            k = n if rng.random() < cfg.eval_fraction else 0
        eval_ += members[:k].tolist()
        train += members[k:].tolist()
    return np.sort(train), np.sort(eval_)


def _by_label(data: LabeledItems, cfg: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    labels = sorted(set(data.labels))
    if len(labels) < 2:
        raise DataError(
            "holding out whole labels needs at least two labels",
            where=data.source,
            field="split.by",
            fix="use split.by: item",
        )
    rng = np.random.default_rng(cfg.seed)
    k = _n_eval(len(labels), cfg.eval_fraction, low=1, high=len(labels) - 1)
    held = {labels[i] for i in rng.permutation(len(labels))[:k]}
    is_eval = np.array([label in held for label in data.labels])
    return np.flatnonzero(~is_eval), np.flatnonzero(is_eval)


def _by_document(data: Pairs, cfg: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    n_docs = len(data.docs)
    if n_docs < 2:
        raise DataError(
            "splitting by document needs at least two documents", where=data.source, field="split", fix="use more data"
        )
    rng = np.random.default_rng(cfg.seed)
    k = _n_eval(n_docs, cfg.eval_fraction, low=1, high=n_docs - 1)
    held = np.zeros(n_docs, dtype=bool)
    held[rng.permutation(n_docs)[:k]] = True
    is_eval = held[np.asarray(data.doc_of)]
    return np.flatnonzero(~is_eval), np.flatnonzero(is_eval)


def _singletons_to_index(
    data: LabeledItems, train_idx: np.ndarray, eval_idx: np.ndarray, *, official: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Single-item labels out of the training pool and, for the seeded methods, into the eval index."""
    counts = Counter(data.labels)
    single = np.array([counts[label] == 1 for label in data.labels], dtype=bool)
    if not single.any():
        return train_idx, eval_idx
    train_idx = np.asarray(train_idx, dtype=np.int64)
    moved = train_idx[single[train_idx]]
    train_idx = train_idx[~single[train_idx]]
    if not official:  # an official split fixes the eval set: its own single items are already there
        eval_idx = np.union1d(np.asarray(eval_idx, dtype=np.int64), moved)
    return train_idx, eval_idx


def _cap(data: RetrievalData, eval_idx: np.ndarray, max_eval: int, *, seed: int) -> np.ndarray:
    """At most ``max_eval`` of ``eval_idx``, seeded; keeps queries answerable (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])  # its own stream: capping must not shift the split itself
    keys = [data.labels[i] for i in eval_idx] if isinstance(data, LabeledItems) else [data.doc_of[i] for i in eval_idx]
    groups = group_positions(keys)
    keys = list(groups)
    order = [keys[i] for i in rng.permutation(len(keys))]
    keep: list[int] = []
    if isinstance(data, Pairs):
        for key in order:  # whole documents, so every kept query keeps its document
            if len(keep) + len(groups[key]) > max_eval:
                continue
            keep += groups[key]
    else:
        ratio = max_eval / len(eval_idx)
        quota = {key: min(len(groups[key]), max(2, int(np.floor(len(groups[key]) * ratio + 0.5)))) for key in order}
        for key in order:
            if len(keep) + quota[key] > max_eval:
                continue  # the minimum of 2 per label overshoots: leave this label out
            members = groups[key]
            keep += [members[j] for j in rng.permutation(len(members))[: quota[key]]]
    return np.sort(eval_idx[np.asarray(keep, dtype=np.int64)]) if keep else np.array([], dtype=np.int64)


def _content(data: RetrievalData) -> dict:
    """What a collection holds, independent of where it is mounted (image paths relative to their folder)."""
    if isinstance(data, LabeledItems):
        return {"items": _portable(data.items, data.modality), "labels": list(data.labels)}
    return {
        "queries": _portable(data.queries, data.query_modality),
        "docs": _portable(data.docs, data.doc_modality),
        "doc_of": list(data.doc_of),
    }


def _pool_id(pool: RetrievalData) -> str:
    """A stable short hash of the training pool's items and labels (image files by path, not by pixels)."""
    return hashlib.sha256(json.dumps(_content(pool), sort_keys=True).encode()).hexdigest()[:12]


def _eval_id(eval_set: RetrievalData, cfg: SplitConfig, max_eval: int | None) -> str:
    """A stable short hash of (source, split settings, eval items), independent of where the data is mounted."""
    content = _content(eval_set)
    source = os.path.basename(eval_set.source.rstrip("/\\")) if os.path.isabs(eval_set.source) else eval_set.source
    # Only the settings that shape this method's split: a changed eval_fraction must not rename an official split.
    keys = (
        ("method", "official_eval", "official_train")
        if cfg.method == "official"
        else ("method", "by", "eval_fraction", "seed")
    )
    settings = {k: v for k, v in asdict(cfg).items() if k in keys}
    blob = json.dumps({"source": source, "split": settings, "max_eval": max_eval, **content}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _portable(values: Sequence[str], modality: str) -> list[str]:
    """Image paths relative to their common folder (the same on every machine); texts unchanged."""
    if modality != "image" or not values:
        return list(values)
    root = os.path.commonpath(values) if len(values) > 1 else os.path.dirname(values[0])
    return [os.path.relpath(v, root) for v in values]


def sample_queries(eval_set: RetrievalData, *, max_queries: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``max_queries`` queries (all when None or more than there are).

    Only items with something to find are queries: in labeled data, an item whose label has no other item
    in the evaluation set has no relevant result, and every metric would score it 0 whatever the model.
    """
    if isinstance(eval_set, LabeledItems):
        counts = Counter(eval_set.labels)
        eligible = np.array([i for i, label in enumerate(eval_set.labels) if counts[label] > 1], dtype=np.int64)
    else:
        eligible = np.arange(len(eval_set), dtype=np.int64)
    if max_queries is None or max_queries >= len(eligible):
        return eligible
    return np.sort(np.random.default_rng(seed).choice(eligible, size=max_queries, replace=False)).astype(np.int64)
