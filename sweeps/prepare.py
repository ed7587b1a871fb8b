"""Load, split and preprocess a dataset once, for every trial of a sweep.

Tokenising texts and decoding images is the same work for every trial on a node, so it happens here,
once; trials index into these features. The features are also cached on disk per collection of items and
preprocessing settings (``sweeps.data.cache``): other sweep files and reruns on the same data skip the work.
``PreparedData`` is picklable: the sweep driver ships it to the workers through Ray's object store
(``tune.with_parameters``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeps.config import TrialConfig
from sweeps.data import load_data
from sweeps.data.cache import CacheOutcome, cache_root, cached_features
from sweeps.data.items import LabeledItems, Pairs, RetrievalData
from sweeps.data.split import sample_queries, split_data
from sweeps.dataclass_io import config_hash
from sweeps.errors import ConfigError
from sweeps.models import RetrievalModel, Tower, build_model


@dataclass(frozen=True)
class Encoded:
    """A collection with its preprocessed features on both sides."""

    data: RetrievalData
    query_features: Any  # of data.items (labeled) or data.queries (pairs)
    doc_features: Any | None  # of data.docs (pairs); None for labeled data


@dataclass(frozen=True)
class PreparedData:
    dataset: str
    pool: Encoded  # the training pool: trials take the first N of a seeded nested ordering
    eval: Encoded  # the held-out evaluation set, identical for the baseline and every trial
    queries: np.ndarray  # positions of the evaluated queries in the eval set (seeded sample)
    eval_id: str  # identifies (dataset, split, query sample): the baseline key in the results
    data_id: str  # identifies the training pool's content and the evaluation: part of every trial id

    @property
    def structure(self) -> str:
        return "pairs" if isinstance(self.pool.data, Pairs) else "labeled"


def check_compatible(cfg: TrialConfig, data: RetrievalData) -> None:
    """Loss and task must fit the data's shape; a mismatch is a config error, found before training."""
    if isinstance(data, LabeledItems) and cfg.train.loss == "infonce":
        raise ConfigError(
            "infonce needs pair data, but this dataset is labeled items",
            field="train.loss",
            fix="use auto, supcon or batch-hard-triplet",
        )
    if isinstance(data, Pairs) and cfg.train.loss in ("supcon", "batch-hard-triplet"):
        raise ConfigError(
            f"{cfg.train.loss} needs labeled items, but this dataset is pairs",
            field="train.loss",
            fix="use auto or infonce",
        )
    if isinstance(data, LabeledItems) and cfg.train.batch_size <= cfg.train.group_size:
        raise ConfigError(
            f"train.batch_size {cfg.train.batch_size} holds no more than one label group of "
            f"train.group_size {cfg.train.group_size}: batches would have positives but no negatives",
            field="train.batch_size",
            fix=f"use a batch_size above {cfg.train.group_size} (32 or more is usual) or a smaller group_size",
        )
    modalities = {data.modality} if isinstance(data, LabeledItems) else {data.query_modality, data.doc_modality}
    expected = {"text-to-text": {"text"}, "text-to-image": {"text", "image"}, "image-to-image": {"image"}}[cfg.task]
    if modalities != expected:
        raise ConfigError(
            f"task {cfg.task} does not fit data with {' and '.join(sorted(modalities))} items",
            field="task",
            fix="set task to match the data (text-to-text, text-to-image or image-to-image)",
        )


def _encode(model: RetrievalModel, data: RetrievalData, outcomes: list[CacheOutcome]) -> Encoded:
    if isinstance(data, LabeledItems):
        return Encoded(data=data, query_features=_features(model.query_tower, data.items, outcomes), doc_features=None)
    return Encoded(
        data=data,
        query_features=_features(model.query_tower, data.queries, outcomes),
        doc_features=_features(model.doc_tower, data.docs, outcomes),
    )


def _features(tower: Tower, items, outcomes: list[CacheOutcome]):
    """``tower.preprocess(items)``, through the prepared-data cache (``sweeps.data.cache``) when it is on."""
    root, settings = cache_root(), tower.preprocess_key()
    if root is None or settings is None:
        return tower.preprocess(items)
    features, outcome = cached_features(
        lambda: tower.preprocess(items), items=items, modality=tower.modality, settings=settings, root=root
    )
    outcomes.append(outcome)
    return features


def cache_hit_line(where: object, *, read: float, built: float) -> str:
    """What reading prepared features from the cache bought: ``read`` seconds now against the ``built`` seconds
    building them took when they were cached. On small data reading can take as long as building (a second
    ``make run`` on 1,500 short texts: 0.3 s read, 0.2 s built), and the line says so rather than claim a saving."""
    head = f"preparation skipped, features read from the prepared-data cache ({where}) in {read:.1f}s"
    if built > read:
        return f"{head} instead of the {built:.1f}s building them took"
    return (
        f"{head}; building them took {built:.1f}s, so the cache saves nothing on data this small "
        "(FINETUNING_BUDGET_CACHE=off turns it off)"
    )


def _report(dataset: str, outcomes: list[CacheOutcome], seconds: float) -> None:
    """One line: whether preparation was skipped (and the seconds saved) or done (and cached)."""
    if not outcomes:
        return
    where = cache_root()
    for o in outcomes:
        if o.rebuilt:
            print(f"[prepare] {dataset}: cache entry {o.key} discarded ({o.rebuilt}); rebuilt", flush=True)
    hits = [o for o in outcomes if o.hit]
    if len(hits) == len(outcomes):
        print(
            f"[prepare] {dataset}: {cache_hit_line(where, read=seconds, built=sum(o.seconds for o in hits))}",
            flush=True,
        )
    else:
        built = sum(o.seconds for o in outcomes if not o.hit)
        print(f"[prepare] {dataset}: features prepared in {built:.1f}s and cached in {where}", flush=True)


def prepare_data(cfg: TrialConfig, *, model: RetrievalModel | None = None) -> PreparedData:
    """Load, split and preprocess ``cfg.data`` (paths already resolved, see ``sweepfile.resolve_paths``)."""
    data = load_data(cfg.data)
    check_compatible(cfg, data)
    split = split_data(data, cfg.split, max_eval=cfg.eval.max_index)
    model = model if model is not None else build_model(cfg.model, task=cfg.task)
    queries = sample_queries(split.eval, max_queries=cfg.eval.max_queries, seed=cfg.eval.query_seed)
    eval_id = config_hash({"split": split.eval_id, "queries": queries.tolist()}, length=12)
    outcomes: list[CacheOutcome] = []
    start = time.perf_counter()
    pool, eval_set = _encode(model, split.train, outcomes), _encode(model, split.eval, outcomes)
    _report(cfg.data.name, outcomes, time.perf_counter() - start)
    return PreparedData(
        dataset=cfg.data.name,
        pool=pool,
        eval=eval_set,
        queries=queries,
        eval_id=eval_id,
        data_id=config_hash({"eval": eval_id, "pool": split.pool_id}, length=12),
    )
