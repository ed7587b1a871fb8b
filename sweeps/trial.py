"""One trial: fine-tune a pretrained model on the first N items of the pool under a training budget.

``run_trial`` is the unit the Ray sweep schedules; it knows nothing about Ray. ``size == 0`` (or
``epochs == 0``) evaluates the pretrained model: the baseline every improvement is measured against.
How long a trial trains (fixed epochs, a step minimum, or early stopping on a validation carve-out of its
N items, optionally refit on all N items for the chosen length) is its ``Budget`` (``sweeps.budget``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from sweeps.budget import Budget
from sweeps.compiled import obtain_model, reset_weights
from sweeps.config import TrialConfig
from sweeps.data.order import group_batches, nested_order, take
from sweeps.device import Runtime, resolve_runtime, seed_everything
from sweeps.evaluate import evaluate
from sweeps.models import RetrievalModel
from sweeps.prepare import PreparedData
from sweeps.progress import EpochReport, Progress
from sweeps.train import EpochStats, TrainSet, build_optimizer, build_scheduler, build_train_set, train_one_epoch
from sweeps.validation import ValidationSet, carve_validation, score_validation

if TYPE_CHECKING:
    import torch


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
    budget: Budget | None = None,
) -> list[EpochReport]:
    """Fine-tune on ``size`` items under ``budget`` (default: exactly ``epochs`` epochs) and evaluate.

    Args:
        prepared: the dataset, split and features (see ``prepare_data``); shared by all trials.
        model: an already-built pretrained model to fine-tune in place (default: build it from ``cfg``).
        on_epoch: called with each report as soon as it exists (the sweep forwards it to Ray).
        eval_epochs: the epochs to evaluate the held-out set after, besides the last (default: every one under
            ``epochs``, none under ``steps``): an independent e-epoch run needs only its final metrics, and
            evaluation can cost more than training. ``converged`` and ``validated`` evaluate it once, on the
            chosen epoch's model (weights restored; ``budget.refit``: retrained on all N items for the chosen
            epochs), after stopping. With a carve-out every evaluated epoch (validation rules: every epoch) is
            first scored on validation (``val_score``).
        budget: how long to train (``sweeps.budget``); ``budget.epochs`` replaces ``epochs`` when given.

    Returns:
        One report per evaluated epoch: ``[epoch 0]`` for the baseline, ``[..., final]`` otherwise.
    """
    budget = budget if budget is not None else Budget.fixed(max(1, epochs))
    runtime = runtime or resolve_runtime(cfg.device, cfg.train.precision, task=cfg.task)
    seed_everything(seed)
    # This worker's kept model with the pretrained weights loaded back, or built (and compiled, warmed up) now:
    # compilation is paid once per worker and reported apart from training (sweeps.compiled).
    obtained = obtain_model(cfg, runtime=runtime, prepared=prepared, model=model)
    model = obtained.model
    runtime.reset_peak_memory()
    reports: list[EpochReport] = []

    def emit(progress: Progress) -> None:
        report = evaluate_epoch(model, prepared, cfg, runtime=runtime, progress=progress)
        reports.append(replace(report, compile_seconds=obtained.compile_seconds))
        if on_epoch is not None:
            on_epoch(reports[-1])

    try:
        if size == 0 or epochs == 0:
            emit(Progress(size=size, epochs=0, seed=seed, final=True))
            return reports
        rule, budget = budget.train_to, budget.for_items(size, batch_size=cfg.train.batch_size)
        train_set, val = _trial_items(prepared, cfg, budget, size=size, seed=seed)
        # budget.refit (a carve-out to refit): the weights the refit starts from, before anything trains
        pretrained = _weights(model) if budget.refit else None
        steps_per_epoch = _steps_per_epoch(cfg, train_set)  # for the schedule's horizon
        planned = budget.planned_epochs(steps_per_epoch)
        optimization = _Optimization.fresh(model, cfg, runtime=runtime, total_steps=steps_per_epoch * planned)
        # The held-out set after these epochs too (the last is always evaluated): every epoch of a fixed grid.
        shown = (
            set(eval_epochs)
            if eval_epochs is not None
            else set(range(1, planned + 1) if budget.train_to == "epochs" else ())
        )
        stopping, at = budget.stopping(), Progress(size=size, epochs=planned, seed=seed, train_to=rule)
        chosen, weights = at, None  # validation rules: the best validated epoch so far, and its weights
        for epoch in itertools.count(1):
            stats = _train_epoch(model, prepared, cfg, train_set, optimization, seed=seed, epoch=epoch, runtime=runtime)
            at = at.after(stats)
            # Validation before the held-out evaluation, so a row's val_score is of the same model; the choice
            # among rows is the stopping policy's (validation rules) or the report's (roi.epoch_grid), never here.
            if val is not None and (stopping.scores(at.steps) or (budget.select_epoch and epoch in shown | {planned})):
                at = at.validated(*_validate(model, prepared, val, cfg, budget, runtime=runtime))
            verdict = stopping.after_epoch(epoch, steps=at.steps, score=at.val_score)
            if budget.stops_on_validation and verdict.keep:  # a weight copy is cheaper than retraining to it
                chosen, weights = at, (None if budget.refit else _weights(model))
            if verdict.stop:
                break
            if not budget.stops_on_validation and epoch in shown:
                emit(at)
        # The epochs after the chosen one stay in train_seconds and items_seen: the user paid them.
        if pretrained is not None:
            refit = _refit(model, prepared, cfg, pretrained, size=size, seed=seed, epochs=chosen.epoch, runtime=runtime)
            at = at.refitted(chosen, refit)
        elif weights is not None:
            model.load_state_dict(weights)
            at = replace(at, epoch=chosen.epoch, steps=chosen.steps, val_score=chosen.val_score)
        emit(replace(at, epochs=epoch, final=True, stop_reason=verdict.reason))
        return reports
    finally:
        # Free the accelerator before the next trial in the same worker process.
        model = None
        runtime.release()


@dataclass(frozen=True)
class _Optimization:
    """A run's optimizer, learning-rate schedule and loss scaler (fp16 only; its scale carries over epochs)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler

    @classmethod
    def fresh(cls, model: RetrievalModel, cfg: TrialConfig, *, runtime: Runtime, total_steps: int) -> _Optimization:
        optimizer = build_optimizer(model, cfg.train, runtime=runtime)
        scheduler = build_scheduler(optimizer, cfg.train, total_steps=total_steps)
        return cls(optimizer=optimizer, scheduler=scheduler, scaler=runtime.grad_scaler())


def _train_epoch(
    model: RetrievalModel,
    prepared: PreparedData,
    cfg: TrialConfig,
    train_set: TrainSet,
    optimization: _Optimization,
    *,
    seed: int,
    epoch: int,
    runtime: Runtime,
) -> EpochStats:
    return train_one_epoch(
        model,
        _batches(cfg, train_set, seed=seed, epoch=epoch),
        train_set=train_set,
        query_features=prepared.pool.query_features,
        doc_features=prepared.pool.doc_features,
        cfg=cfg.train,
        optimizer=optimization.optimizer,
        scheduler=optimization.scheduler,
        runtime=runtime,
        scaler=optimization.scaler,
    )


def _refit(
    model: RetrievalModel,
    prepared: PreparedData,
    cfg: TrialConfig,
    pretrained: dict[str, torch.Tensor],
    *,
    size: int,
    seed: int,
    epochs: int,
    runtime: Runtime,
) -> EpochStats:
    """Train all ``size`` items for ``epochs`` epochs from the ``pretrained`` weights (``budget.refit``).

    A fresh fixed-epoch run of the chosen length: the same nested-order items with no carve-out, the seed's
    batches, a new optimizer and the configured schedule planned for ``epochs``, the random state reseeded as a
    trial starts. So the refit is the model a ``Budget.fixed(epochs)`` trial of ``size`` items trains.

    Returns:
        The refit's totals: items, optimizer steps and training seconds; ``loss`` is its last epoch's.
    """
    reset_weights(model, pretrained)
    seed_everything(seed)
    train_set, _ = _trial_items(prepared, cfg, Budget.fixed(epochs), size=size, seed=seed)
    steps_per_epoch = _steps_per_epoch(cfg, train_set)
    optimization = _Optimization.fresh(model, cfg, runtime=runtime, total_steps=steps_per_epoch * epochs)
    total = EpochStats(loss=math.nan, items=0, steps=0, seconds=0.0)
    for epoch in range(1, epochs + 1):
        stats = _train_epoch(model, prepared, cfg, train_set, optimization, seed=seed, epoch=epoch, runtime=runtime)
        total = EpochStats(
            loss=stats.loss,
            items=total.items + stats.items,
            steps=total.steps + stats.steps,
            seconds=total.seconds + stats.seconds,
        )
    return total


def _weights(model: RetrievalModel) -> dict[str, torch.Tensor]:
    """A copy of the model's state (weights and buffers) on its device."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _steps_per_epoch(cfg: TrialConfig, train_set: TrainSet) -> int:
    n = len(train_set.positions)
    return math.ceil(n / min(cfg.train.batch_size, n))


def _trial_items(
    prepared: PreparedData, cfg: TrialConfig, budget: Budget, *, size: int, seed: int
) -> tuple[TrainSet, ValidationSet | None]:
    """The first ``size`` items of the seed's nested order, less the validation carve-out when the budget has one.

    The carved items never train: a score on items the model trained on would not be validation.
    """
    pool = prepared.pool.data
    order = nested_order(pool, seed=seed, group_size=cfg.train.group_size)
    take(pool, order, size)  # raises a DataError when the pool is too small: never a silent cap
    if not budget.validates:
        return build_train_set(pool, order[:size]), None
    val = carve_validation(
        pool,
        order[:size],
        fraction=budget.val_fraction,
        seed=seed,
        within_labels=budget.train_to == "validated",
        max_queries=budget.val_queries,
    )
    return build_train_set(pool, val.train_positions), val


def _validate(
    model: RetrievalModel, prepared: PreparedData, val: ValidationSet, cfg: TrialConfig, budget: Budget, *, runtime
) -> tuple[float, float]:
    """(the model's validation score, ``budget.monitor`` at the eval k; the seconds it took)."""
    scores, seconds = score_validation(
        model,
        prepared.pool.data,
        val,
        query_features=prepared.pool.query_features,
        doc_features=prepared.pool.doc_features,
        k=cfg.eval.k,
        batch_size=cfg.eval.batch_size,
        runtime=runtime,
    )
    return scores[f"{budget.monitor}@{cfg.eval.k}"], seconds


def evaluate_epoch(
    model: RetrievalModel, prepared: PreparedData, cfg: TrialConfig, *, runtime: Runtime, progress: Progress
) -> EpochReport:
    """Evaluate ``model`` on the held-out set and report it with the trial's ``progress``."""
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
        **asdict(progress),
        eval_seconds=ev.seconds,
        peak_memory_mb=runtime.peak_memory_mb(),
        device=runtime.device_name,
        metrics=ev.metrics,
        query_scores={name: np.round(v, 6).tolist() for name, v in (ev.per_query or {}).items()},
    )


def _batches(cfg: TrialConfig, train_set: TrainSet, *, seed: int, epoch: int) -> list[np.ndarray]:
    n = len(train_set.positions)
    batch_size = min(cfg.train.batch_size, n)
    return group_batches(
        train_set.labels_for_batching, n, batch_size=batch_size, group_size=cfg.train.group_size, seed=seed, epoch=epoch
    )
