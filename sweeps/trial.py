"""One trial: fine-tune a pretrained model on the first N items of the pool under a training budget.

``run_trial`` is the unit the Ray sweep schedules; it knows nothing about Ray. ``size == 0`` (or
``epochs == 0``) evaluates the pretrained model: the baseline every improvement is measured against.
How long a trial trains (fixed epochs, a step minimum, or early stopping on a validation carve-out of its
N items) is its ``Budget`` (``sweeps.budget``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from sweeps.budget import Budget, EarlyStopping
from sweeps.compiled import obtain_model
from sweeps.config import TrialConfig
from sweeps.data.order import group_batches, nested_order, take
from sweeps.device import Runtime, resolve_runtime, seed_everything
from sweeps.evaluate import evaluate
from sweeps.models import RetrievalModel
from sweeps.prepare import PreparedData
from sweeps.train import build_optimizer, build_scheduler, build_train_set, train_one_epoch
from sweeps.validation import carve_validation, score_validation


@dataclass(frozen=True)
class EpochReport:
    """What a trial reports after each evaluated epoch (epoch 0: the pretrained baseline).

    Under ``converged`` the one report is the best epoch's model: ``epoch`` and ``steps`` are that model's,
    ``epochs`` and ``train_seconds`` what the trial ran (the epochs after the best included).
    """

    size: int
    epochs: int  # epochs the trial trains (converged: the epochs it ran before stopping)
    epoch: int
    seed: int
    train_seconds: float  # cumulative, training only, device synchronised
    eval_seconds: float  # this evaluation
    items_seen: int
    loss: float | None  # mean training loss of this epoch
    peak_memory_mb: float
    device: str
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0  # optimizer steps of the reported model
    final: bool = False  # the trial's last report: the point a data-size curve uses
    train_to: str = ""  # the budget rule (empty for the baseline)
    stop_reason: str = ""  # final report: epochs, steps, converged or cap
    val_seconds: float = 0.0  # cumulative validation scoring (converged, select_epoch), not part of train_seconds
    # the reported model's validation score (budget.monitor): converged (the best epoch's), select_epoch (this epoch's)
    val_score: float | None = None
    compile_seconds: float = 0.0  # compiling and warming up the towers for this trial (sweeps.compiled); not training

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
    budget: Budget | None = None,
) -> list[EpochReport]:
    """Fine-tune on ``size`` items under ``budget`` (default: exactly ``epochs`` epochs) and evaluate.

    Args:
        prepared: the dataset, split and features (see ``prepare_data``); shared by all trials.
        model: an already-built pretrained model to fine-tune in place (default: build it from ``cfg``).
        on_epoch: called with each report as soon as it exists (the sweep forwards it to Ray).
        eval_epochs: the epochs to evaluate after (default: every one under ``epochs``, the last one under
            ``steps``). The last epoch is always evaluated; an independent e-epoch run needs only its final
            metrics, and evaluation can cost more than training. ``converged`` evaluates the held-out set once,
            on the best epoch's model, after it stopped. With ``budget.select_epoch`` every evaluated epoch is
            first scored on the validation carve-out (``val_score``); nothing here chooses among them.
        budget: how long to train (``sweeps.budget``); ``budget.epochs`` replaces ``epochs`` when given.

    Returns:
        One report per evaluated epoch: ``[epoch 0]`` for the baseline, ``[epoch 1..epochs]`` otherwise.
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

    def emit(report: EpochReport) -> None:
        report = replace(report, compile_seconds=obtained.compile_seconds)
        reports.append(report)
        if on_epoch is not None:
            on_epoch(report)

    try:
        if size == 0 or epochs == 0:
            emit(
                evaluate_epoch(
                    model, prepared, cfg, runtime=runtime, size=size, epochs=0, epoch=0, seed=seed,
                    train_seconds=0.0, items_seen=0, loss=None, final=True,
                )
            )  # fmt: skip
            return reports
        pool = prepared.pool.data
        order = nested_order(pool, seed=seed, group_size=cfg.train.group_size)
        take(pool, order, size)  # raises a DataError when the pool is too small: never a silent cap
        positions = order[:size]
        val = None
        if budget.validates:  # converged, or an epoch grid that selects its epoch on validation
            # The carved items never train: a score on items the model trained on would not be validation.
            val = carve_validation(pool, positions, fraction=budget.val_fraction, seed=seed)
            positions = val.train_positions
        n_train = len(positions)
        train_set = build_train_set(pool, positions)
        steps_per_epoch = len(_batches(cfg, train_set.labels_for_batching, n_train, seed=seed, epoch=1))
        planned = budget.planned_epochs(steps_per_epoch)
        train_seconds, items_seen, loss, steps, val_seconds = 0.0, 0, None, 0, 0.0
        optimizer = build_optimizer(model, cfg.train, runtime=runtime)
        scheduler = build_scheduler(optimizer, cfg.train, total_steps=steps_per_epoch * planned)
        scaler = runtime.grad_scaler()  # fp16 only; its scale carries over from epoch to epoch
        if eval_epochs is None and budget.train_to == "steps":
            eval_epochs = ()  # a step minimum is a way to train, not an epoch grid: evaluate the end only
        # converged: stop on the validation carve-out; the held-out set is evaluated once, after stopping.
        stopper = EarlyStopping(patience=budget.patience) if budget.train_to == "converged" else None
        monitor = f"{budget.monitor}@{cfg.eval.k}"

        def validate() -> float:
            """The model's validation score now (``budget.monitor``); its seconds go to ``val_seconds``."""
            nonlocal val_seconds
            scores, seconds = score_validation(
                model,
                pool,
                val,
                query_features=prepared.pool.query_features,
                doc_features=prepared.pool.doc_features,
                k=cfg.eval.k,
                batch_size=cfg.eval.batch_size,
                runtime=runtime,
            )
            val_seconds += seconds
            return scores[monitor]

        reason = budget.fixed_reason(steps_per_epoch) if stopper is None else "cap"
        best: dict = {}
        for epoch in range(1, planned + 1):
            stats = train_one_epoch(
                model,
                _batches(cfg, train_set.labels_for_batching, n_train, seed=seed, epoch=epoch),
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
            steps += stats.steps
            loss = stats.loss
            if stopper is None:
                if eval_epochs is None or epoch in eval_epochs or epoch == planned:
                    last = epoch == planned
                    # select_epoch: validation first, so the row's score is of the same model; the choice among
                    # the rows is the report's (roi.epoch_grid), on val_score alone.
                    score = validate() if val is not None else None
                    emit(
                        evaluate_epoch(
                            model, prepared, cfg, runtime=runtime, size=size, epochs=planned, epoch=epoch, seed=seed,
                            train_seconds=train_seconds, items_seen=items_seen, loss=loss, steps=steps, final=last,
                            train_to=budget.train_to, stop_reason=reason if last else "", val_seconds=val_seconds,
                            val_score=score,
                        )
                    )  # fmt: skip
                continue
            score = validate()
            if stopper.update(epoch, score):
                # On the device: a copy of the weights is cheap next to re-training to the best epoch.
                best = {"epoch": epoch, "steps": steps, "score": score}
                best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if stopper.should_stop:
                reason = "converged"
                break
        if stopper is not None:
            planned = epoch  # the epochs it ran; their seconds stay in train_seconds: the user paid them
            model.load_state_dict(best.pop("state"))
            emit(
                evaluate_epoch(
                    model, prepared, cfg, runtime=runtime, size=size, epochs=planned, epoch=best["epoch"], seed=seed,
                    train_seconds=train_seconds, items_seen=items_seen, loss=loss, steps=best["steps"], final=True,
                    train_to=budget.train_to, stop_reason=reason, val_seconds=val_seconds, val_score=best["score"],
                )
            )  # fmt: skip
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
    **progress,
) -> EpochReport:
    """Evaluate ``model`` on the held-out set and report it with ``progress``: the trial's other
    ``EpochReport`` fields (size, epochs, epoch, seed, training so far, the budget's stop reason)."""
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
        **progress,
        eval_seconds=ev.seconds,
        peak_memory_mb=runtime.peak_memory_mb(),
        device=runtime.device_name,
        metrics=ev.metrics,
    )


def _batches(cfg: TrialConfig, labels, n: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    batch_size = min(cfg.train.batch_size, n)
    return group_batches(labels, n, batch_size=batch_size, group_size=cfg.train.group_size, seed=seed, epoch=epoch)
