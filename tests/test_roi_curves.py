"""ROI curves, drop points and seed aggregation on designed curves with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from roi_fixtures import (
    BASELINE,
    EPOCH_NEG,
    EPOCH_NEG_DROP,
    METRICS,
    NEVER,
    NO_POSITIVE,
    PEAK_FIRST,
    PEAK_MID,
    PEAK_MID_DROP,
    SECONDS_PER_ITEM,
    SEED_OFFSETS,
    baseline_rows,
    data_size_rows,
    epoch_rows,
    metric_values,
    table,
)

from roi.curves import (
    aggregate_seeds,
    bootstrap_drop_point,
    drop_point,
    relative_improvement,
    roi_curve,
    select_points,
    summarize,
)
from roi.errors import RoiInputError
from roi.load import validate_table


def _points(df: pd.DataFrame, metrics=("mrr@20",)) -> pd.DataFrame:
    return roi_curve(relative_improvement(validate_table(df), metrics=list(metrics)))


def _one(points: pd.DataFrame, *, axis: str, dataset: str | None = None, metric: str = "mrr@20") -> pd.DataFrame:
    sel = (points["cost_axis"] == axis) & (points["metric"] == metric)
    if dataset is not None:
        sel &= points["dataset"] == dataset
    return points[sel].sort_values(["seed", "grid"]).reset_index(drop=True)


# --- drop_point on raw arrays ---------------------------------------------------------------------------


def test_drop_point_between_grid_points_after_a_mid_grid_peak():
    sizes = np.array(PEAK_MID["sizes"], dtype=float)
    roi = np.array(PEAK_MID["improvement"]) / sizes
    dp = drop_point(sizes, roi)
    assert dp.reached and dp.status == "reached"
    assert dp.peak_cost == 200 and dp.peak_value == pytest.approx(0.002)
    assert dp.threshold == pytest.approx(0.0006)
    assert dp.cost == pytest.approx(PEAK_MID_DROP)  # 500 + 500 * 0.0006 / 0.0007
    assert dp.first_cost == 100 and not dp.peak_at_first


def test_drop_point_other_drop_fraction():
    sizes = np.array(PEAK_MID["sizes"], dtype=float)
    dp = drop_point(sizes, np.array(PEAK_MID["improvement"]) / sizes, drop=0.5)
    # threshold 0.001, between 500 (0.0012) and 1000 (0.0005): 500 + 500 * 0.0002 / 0.0007
    assert dp.cost == pytest.approx(4500 / 7)


def test_drop_point_exactly_on_a_grid_point_with_the_peak_first():
    sizes = np.array(PEAK_FIRST["sizes"], dtype=float)
    dp = drop_point(sizes, np.array(PEAK_FIRST["improvement"]) / sizes)
    assert dp.reached and dp.cost == pytest.approx(500.0)
    assert dp.peak_at_first and dp.peak_cost == 100 and dp.first_cost == 100


def test_drop_point_not_reached_within_the_grid():
    sizes = np.array(NEVER["sizes"], dtype=float)
    dp = drop_point(sizes, np.array(NEVER["improvement"]) / sizes)
    assert not dp.reached and dp.cost is None
    assert dp.status == "not reached within the grid"
    assert dp.peak_value == pytest.approx(0.001) and dp.peak_cost == 100


def test_drop_point_without_positive_roi():
    dp = drop_point([100, 200], [-0.001, -0.001])
    assert not dp.reached and dp.cost is None and dp.status == "no positive ROI"


def test_drop_point_ignores_nan_and_order():
    # Shuffled input with a NaN point: same answer as the clean, sorted grid.
    costs = [1000, 100, 2000, 500, 200, 300]
    roi = [0.0005, 0.001, 0.0002, 0.0012, 0.002, math.nan]
    assert drop_point(costs, roi).cost == pytest.approx(PEAK_MID_DROP)


def test_drop_point_single_point_and_no_data():
    assert drop_point([100], [0.01]).status == "single point"
    assert drop_point([], []).status == "no data"


# --- relative improvement and curves from a table ------------------------------------------------------


def test_relative_improvement_uses_the_same_seed_baseline_else_any_seed():
    rows = baseline_rows("d", seeds=(0,), values={"mrr@20": 0.5}) + baseline_rows(
        "d", seeds=(1,), values={"mrr@20": 0.4}
    )
    for seed in (0, 1, 2):
        rows += data_size_rows("d", {"sizes": [100], "improvement": [0.0]}, seeds=(seed,))
    df = table(rows)
    df.loc[df["size"] > 0, "mrr@20"] = 0.6
    imp = relative_improvement(
        validate_table(
            df[
                [
                    "experiment",
                    "status",
                    "task",
                    "model",
                    "dataset",
                    "eval_set",
                    "seed",
                    "size",
                    "epochs",
                    "epoch",
                    "train_seconds",
                    "mrr@20",
                ]
            ]
        ),
        metrics=["mrr@20"],
    )
    by_seed = imp.set_index("seed")
    assert by_seed.loc[0, "baseline"] == pytest.approx(0.5) and by_seed.loc[0, "improvement"] == pytest.approx(0.2)
    assert by_seed.loc[1, "baseline"] == pytest.approx(0.4) and by_seed.loc[1, "improvement"] == pytest.approx(0.5)
    # seed 2 has no baseline of its own: the (model, dataset, eval_set) baseline over all seeds, mean 0.45
    assert by_seed.loc[2, "baseline"] == pytest.approx(0.45)


def test_data_size_curve_uses_the_final_epoch_and_both_cost_axes():
    df = table(baseline_rows("d") + data_size_rows("d", PEAK_MID, epochs=3))
    points = _points(df, METRICS)
    size = _one(points, axis="size")
    assert size["grid"].tolist() == PEAK_MID["sizes"]
    assert (size["epoch"] == 3).all()  # earlier epochs carry other values in the fixture
    np.testing.assert_allclose(size["improvement"], PEAK_MID["improvement"])
    np.testing.assert_allclose(size["roi"], np.array(PEAK_MID["improvement"]) / np.array(PEAK_MID["sizes"]))
    gpu = _one(points, axis="gpu_seconds")
    np.testing.assert_allclose(gpu["cost"], SECONDS_PER_ITEM * np.array(PEAK_MID["sizes"]))
    dp = drop_point(gpu["cost"], gpu["roi"])
    assert dp.cost == pytest.approx(PEAK_MID_DROP * SECONDS_PER_ITEM)
    # Metrics scaled by a constant factor have the same drop point.
    rec = _one(points, axis="size", metric="recall@20")
    assert drop_point(rec["cost"], rec["roi"]).cost == pytest.approx(PEAK_MID_DROP)
    assert rec["baseline"].iloc[0] == pytest.approx(BASELINE["recall@20"])


def test_epoch_curve_marginal_roi_goes_negative():
    df = table(baseline_rows("d", experiment="epochs") + epoch_rows("d", EPOCH_NEG))
    points = _points(df)
    cur = _one(points, axis="train_seconds")
    assert cur["grid"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(cur["cost"], EPOCH_NEG["seconds"])
    np.testing.assert_allclose(cur["roi"], [0.02, 0.015, 0.35 / 30, 0.0075, 0.005])
    np.testing.assert_allclose(cur["marginal_roi"], [np.nan, 0.01, 0.005, -0.005, -0.005])
    assert drop_point(cur["cost"], cur["roi"]).cost == pytest.approx(EPOCH_NEG_DROP)
    summary = summarize(points, aggregate_seeds(points), n_boot=50)
    row = summary[summary["cost_axis"] == "train_seconds"].iloc[0]
    assert row["min_marginal_roi"] == pytest.approx(-0.005)
    assert row["first_nonpositive_marginal_cost"] == pytest.approx(40.0)
    assert row["peak_marginal_roi"] == pytest.approx(0.01)
    assert row["drop_cost"] == pytest.approx(EPOCH_NEG_DROP)
    assert row["gain_ratio_at_drop"] == pytest.approx(0.3 * 46 / 10)
    assert row["drop_ci_note"] == "single seed" and math.isnan(row["drop_ci_low"])


def test_no_positive_roi_is_reported_as_such():
    df = table(baseline_rows("d") + data_size_rows("d", NO_POSITIVE))
    points = _points(df)
    summary = summarize(points, aggregate_seeds(points), n_boot=20)
    row = summary[summary["cost_axis"] == "size"].iloc[0]
    assert row["drop_status"] == "no positive ROI" and not row["drop_reached"] and math.isnan(row["drop_cost"])
    assert row["best_improvement"] == pytest.approx(-0.1)


def test_epochs_from_separate_runs_take_the_trial_that_ended_there():
    rows = baseline_rows("d", experiment="epochs")
    # Trials configured for 1, 2 and 3 epochs; each reports every epoch. The trial with epochs == e is the point.
    for epochs in (1, 2, 3):
        for epoch in range(1, epochs + 1):
            imp = 0.1 * epoch if epoch == epochs else -1.0  # intermediate rows would show up as -100%
            rows += epoch_rows(
                "d", {"size": 1000, "seconds": [10.0 * epoch], "improvement": [imp]}, trial_id=f"t{epochs}"
            )
            rows[-1].update(epochs=epochs, epoch=epoch)
    cur = _one(_points(table(rows)), axis="train_seconds")
    assert cur["grid"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(cur["improvement"], [0.1, 0.2, 0.3])
    assert cur["trial_id"].tolist() == ["t1", "t2", "t3"]


def test_nan_rows_are_left_out_and_marginal_roi_spans_the_gap():
    df = table(baseline_rows("d") + data_size_rows("d", PEAK_MID))
    df.loc[(df["size"] == 500), "mrr@20"] = np.nan
    cur = _one(_points(df, METRICS), axis="size")
    assert cur["grid"].tolist() == [100, 200, 1000, 2000]
    # from 200 (0.4) to 1000 (0.5): 0.1 / 800
    assert cur.loc[cur["grid"] == 1000, "marginal_roi"].item() == pytest.approx(0.1 / 800)
    # the other metrics keep the point
    assert 500 in _one(_points(df, METRICS), axis="size", metric="map@20")["grid"].tolist()


def test_unfinished_data_size_trial_is_not_a_point():
    rows = baseline_rows("d") + data_size_rows("d", PEAK_MID, epochs=2)
    df = table(rows)
    df = df[~((df["size"] == 2000) & (df["epoch"] == 2))]  # the 2000-item trial is still running
    points = select_points(relative_improvement(validate_table(df), metrics=["mrr@20"]))
    assert sorted(points["grid"].unique()) == [100, 200, 500, 1000]


def test_cpu_rows_have_no_gpu_axis():
    df = table(baseline_rows("d") + data_size_rows("d", PEAK_MID, num_gpus=0.0))
    points = _points(df)
    assert set(points["cost_axis"]) == {"size"}


# --- seeds -----------------------------------------------------------------------------------------------


def test_three_seeds_known_mean_and_band():
    df = table(baseline_rows("d") + data_size_rows("d", PEAK_MID, seeds=(0, 1, 2), offsets=SEED_OFFSETS))
    curves = aggregate_seeds(_points(df))
    cur = curves[curves["cost_axis"] == "size"].sort_values("grid")
    assert cur["n_seeds"].tolist() == [3] * 5
    np.testing.assert_allclose(cur["improvement"], PEAK_MID["improvement"])
    np.testing.assert_allclose(cur["improvement_std"], [0.03] * 5)  # ddof 1 of (-0.03, 0, 0.03)
    np.testing.assert_allclose(cur["improvement_min"], np.array(PEAK_MID["improvement"]) - 0.03)
    np.testing.assert_allclose(cur["improvement_max"], np.array(PEAK_MID["improvement"]) + 0.03)
    np.testing.assert_allclose(cur["roi"], np.array(PEAK_MID["improvement"]) / np.array(PEAK_MID["sizes"]))
    np.testing.assert_allclose(cur["roi_max"], (np.array(PEAK_MID["improvement"]) + 0.03) / np.array(PEAK_MID["sizes"]))
    assert drop_point(cur["cost"], cur["roi"]).cost == pytest.approx(PEAK_MID_DROP)


def test_epoch_seeds_are_aligned_on_the_epoch_with_mean_seconds():
    df = table(
        baseline_rows("d", experiment="epochs")
        + epoch_rows("d", EPOCH_NEG, seeds=(0, 1, 2), offsets=(0, 0, 0), seconds_scale=(1.0, 1.1, 1.2))
    )
    cur = aggregate_seeds(_points(df))
    cur = cur[cur["cost_axis"] == "train_seconds"].sort_values("grid")
    np.testing.assert_allclose(cur["cost"], np.array(EPOCH_NEG["seconds"]) * 1.1)
    np.testing.assert_allclose(cur["cost_min"], EPOCH_NEG["seconds"])
    # mean of per-seed ROI: I * mean(1/s, 1/1.1s, 1/1.2s)
    factor = np.mean([1 / 1.0, 1 / 1.1, 1 / 1.2])
    np.testing.assert_allclose(cur["roi"], np.array(EPOCH_NEG["improvement"]) / np.array(EPOCH_NEG["seconds"]) * factor)


def test_bootstrap_identical_seeds_collapses_to_the_point():
    df = table(baseline_rows("d") + data_size_rows("d", PEAK_MID, seeds=(0, 1, 2), offsets=(0, 0, 0)))
    pts = _one(_points(df), axis="size")
    ci = bootstrap_drop_point(pts, n_boot=200, seed=1)
    assert ci.low == pytest.approx(PEAK_MID_DROP) and ci.high == pytest.approx(PEAK_MID_DROP)
    assert ci.reached_fraction == 1.0 and ci.n_seeds == 3 and ci.note == ""


def test_bootstrap_interval_over_seeds_brackets_the_mean_curve_drop():
    df = table(baseline_rows("d") + data_size_rows("d", PEAK_MID, seeds=(0, 1, 2), offsets=SEED_OFFSETS))
    pts = _one(_points(df), axis="size")
    ci = bootstrap_drop_point(pts, n_boot=400, seed=0)
    # every seed's curve crosses 30% of its peak between 500 and 1000, so every resample does
    assert 500 < ci.low < PEAK_MID_DROP < ci.high < 1000
    assert ci.reached_fraction == 1.0
    again = bootstrap_drop_point(pts, n_boot=400, seed=0)
    assert (again.low, again.high) == (ci.low, ci.high)


def test_bootstrap_not_reached_and_single_seed():
    df = table(baseline_rows("d") + data_size_rows("d", NEVER, seeds=(0, 1), offsets=(0.0, 0.01)))
    ci = bootstrap_drop_point(_one(_points(df), axis="size"), n_boot=100)
    assert ci.reached_fraction == 0.0 and math.isinf(ci.high) and math.isinf(ci.low)
    single = bootstrap_drop_point(_one(_points(table(baseline_rows("d") + data_size_rows("d", NEVER))), axis="size"))
    assert single.note == "single seed" and math.isnan(single.low) and math.isnan(single.high)


# --- input errors detected while computing ---------------------------------------------------------------


def test_missing_baseline_names_the_dataset_and_fix():
    df = table(baseline_rows("other") + data_size_rows("d", PEAK_MID))
    with pytest.raises(RoiInputError, match=r"missing baseline.*size == 0.*dataset=d, eval_set=eval-d"):
        _points(df)


def test_zero_baseline_is_an_error():
    df = table(baseline_rows("d", values={**BASELINE, "mrr@20": 0.0}) + data_size_rows("d", PEAK_MID))
    with pytest.raises(RoiInputError, match=r"baseline mrr@20 is 0.*--metric"):
        _points(df)


def test_zero_training_seconds_in_the_epoch_sweep_is_an_error():
    df = table(
        baseline_rows("d", experiment="epochs") + epoch_rows("d", {**EPOCH_NEG, "seconds": [0.0, 20, 30, 40, 50]})
    )
    with pytest.raises(RoiInputError, match=r"zero cost: column train_seconds is 0.0 in 1 row"):
        _points(df)


def test_metric_values_fixture_is_what_the_docstring_says():
    # guards the designed answers above: value = baseline x (1 + I x factor)
    assert metric_values(0.4)["mrr@20"] == pytest.approx(0.7)
    assert metric_values(0.4)["recall@20"] == pytest.approx(0.3 * 1.8)


def test_epoch_curve_falling_below_the_baseline_has_negative_average_roi():
    curve = {"size": 1000, "seconds": [10.0, 20.0, 30.0], "improvement": [0.1, 0.05, -0.05]}
    cur = _one(_points(table(baseline_rows("d", experiment="epochs") + epoch_rows("d", curve))), axis="train_seconds")
    np.testing.assert_allclose(cur["roi"], [0.01, 0.0025, -0.05 / 30])
    np.testing.assert_allclose(cur["marginal_roi"], [np.nan, -0.005, -0.01])
    # threshold 0.003 between 10 s (0.01) and 20 s (0.0025): 10 + 10 x 0.007 / 0.0075
    assert drop_point(cur["cost"], cur["roi"]).cost == pytest.approx(10 + 10 * 0.007 / 0.0075)
