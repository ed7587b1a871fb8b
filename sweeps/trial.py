"""One trial: fine-tune a pretrained model on the first N items of the pool and evaluate after every epoch.

``run_trial`` is the unit the Ray sweep schedules; it knows nothing about Ray. ``size == 0`` (or
``epochs == 0``) evaluates the pretrained model: the baseline every improvement is measured against.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from sweeps.config import TrialConfig
from sweeps.data.order import group_batches, nested_order, take
from sweeps.device import Runtime, resolve_runtime, seed_everything
from sweeps.evaluate import evaluate
from sweeps.models import RetrievalModel, build_model
from sweeps.prepare import PreparedData
from sweeps.train import build_optimizer, build_scheduler, build_train_set, train_one_epoch


@dataclass(frozen=True)
class EpochReport:
    """What a trial reports after each epoch (epoch 0: the pretrained baseline)."""

    size: int
    epochs: int
    epoch: int
    seed: int
    train_seconds: float  # cumulative, training only, device synchronised
    eval_seconds: float  # this evaluation
    items_seen: int
    loss: float | None  # mean training loss of this epoch
    peak_memory_mb: float
    device: str
    metrics: dict[str, float] = field(default_factory=dict)

    def as_row(self) -> dict:
        row = asdict(self)
        row.update(row.pop("metrics"))
        return row


def run_trial(
    cfg: TrialConfig,
    *,
    prepared: PreparedData,
    size: int,
    epochs: int,
    seed: int,
    runtime: Runtime | None = None,
    model: RetrievalModel | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    eval_epochs: Collection[int] | None = None,
) -> list[EpochReport]:
    """Fine-tune on ``size`` items for ``epochs`` epochs and evaluate after each one.

    Args:
        prepared: the dataset, split and features (see ``prepare_data``); shared by all trials.
        model: an already-built pretrained model to fine-tune in place (default: build it from ``cfg``).
        on_epoch: called with each report as soon as it exists (the sweep forwards it to Ray).
        eval_epochs: the epochs to evaluate after (default: every one). The last epoch is always evaluated;
            an independent e-epoch run needs only its final metrics, and evaluation can cost more than training.

    Returns:
        One report per evaluated epoch: ``[epoch 0]`` for the baseline, ``[epoch 1..epochs]`` otherwise.
    """
    runtime = runtime or resolve_runtime(cfg.device, cfg.train.precision, task=cfg.task)
    seed_everything(seed)
    model = (model if model is not None else build_model(cfg.model, task=cfg.task)).to(runtime.device)
    if cfg.train.compile != "off":
        # Every trial compiles afresh, as the independent fine-tuning job it stands for would: without the
        # reset, the first trial a reused worker runs would pay the whole compilation and the later ones
        # none, and cells' training seconds would not be comparable. (Inductor's on-disk cache still
        # makes recompiling the same graphs much cheaper than the first compile on a machine.)
        torch._dynamo.reset()
        model.compile_towers(cfg.train.compile)
    runtime.reset_peak_memory()
    reports: list[EpochReport] = []

    try:
        if size == 0 or epochs == 0:
            baseline = evaluate_epoch(
                model, prepared, cfg, runtime=runtime, size=size, epochs=epochs, epoch=0, seed=seed,
                train_seconds=0.0, items_seen=0, loss=None,
            )  # fmt: skip
            reports.append(baseline)
            if on_epoch is not None:
                on_epoch(baseline)
            return reports
        pool = prepared.pool.data
        order = nested_order(pool, seed=seed, group_size=cfg.train.group_size)
        take(pool, order, size)  # raises a DataError when the pool is too small: never a silent cap
        train_set = build_train_set(pool, order[:size])
        steps_per_epoch = len(_batches(cfg, train_set.labels_for_batching, size, seed=seed, epoch=1))
        optimizer = build_optimizer(model, cfg.train, runtime=runtime)
        scheduler = build_scheduler(optimizer, cfg.train, total_steps=steps_per_epoch * epochs)
        scaler = runtime.grad_scaler()  # active under fp16 only; its scale carries over from epoch to epoch
        train_seconds, items_seen = 0.0, 0
        for epoch in range(1, epochs + 1):
            stats = train_one_epoch(
                model,
                _batches(cfg, train_set.labels_for_batching, size, seed=seed, epoch=epoch),
                train_set=train_set,
                query_features=prepared.pool.query_features,
                doc_features=prepared.pool.doc_features,
                cfg=cfg.train,
                optimizer=optimizer,
                scheduler=scheduler,
                runtime=runtime,
                scaler=scaler,
            )
            train_seconds += stats.seconds
            items_seen += stats.items
            if eval_epochs is None or epoch in eval_epochs or epoch == epochs:
                rep = evaluate_epoch(
                    model, prepared, cfg, runtime=runtime, size=size, epochs=epochs, epoch=epoch, seed=seed,
                    train_seconds=train_seconds, items_seen=items_seen, loss=stats.loss,
                )  # fmt: skip
                reports.append(rep)
                if on_epoch is not None:
                    on_epoch(rep)
        return reports
    finally:
        # Free the accelerator before the next trial in the same worker process.
        model = None
        runtime.release()


def evaluate_epoch(
    model: RetrievalModel,
    prepared: PreparedData,
    cfg: TrialConfig,
    *,
    runtime: Runtime,
    size: int,
    epochs: int,
    epoch: int,
    seed: int,
    train_seconds: float,
    items_seen: int,
    loss: float | None,
) -> EpochReport:
    """Evaluate ``model`` on the held-out set after ``epoch`` and report it with the training so far."""
    ev = evaluate(
        model,
        prepared.eval.data,
        query_features=prepared.eval.query_features,
        doc_features=prepared.eval.doc_features,
        queries=prepared.queries,
        k=cfg.eval.k,
        batch_size=cfg.eval.batch_size,
        runtime=runtime,
    )
    return EpochReport(
        size=size,
        epochs=epochs if size else 0,
        epoch=epoch,
        seed=seed,
        train_seconds=train_seconds,
        eval_seconds=ev.seconds,
        items_seen=items_seen,
        loss=loss,
        peak_memory_mb=runtime.peak_memory_mb(),
        device=runtime.device_name,
        metrics=ev.metrics,
    )


def _batches(cfg: TrialConfig, labels, n: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    batch_size = min(cfg.train.batch_size, n)
    return group_batches(labels, n, batch_size=batch_size, group_size=cfg.train.group_size, seed=seed, epoch=epoch)
