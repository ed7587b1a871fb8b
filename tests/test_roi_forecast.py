"""The learning-curve forecast: a known power law is recovered, refusals say why, the backtest reports errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from roi_fixtures import brentq

from roi.forecast import backtest, fit_family, fit_seeds, forecast_all, forecast_curve

C, A, B = 0.30, 2.0, 0.5  # I(N) = 0.30 - 2.0 N^-0.5: 0.10 at 100, 0.2293 at 800, -> 0.30


def power(n):
    return C - A * np.asarray(n, dtype=float) ** -B


def _points(sizes, curve, *, seeds=(0, 1, 2), noise=0.0, rng_seed=0, baseline=0.5):
    rng = np.random.default_rng(rng_seed)
    rows = []
    for s in seeds:
        for n in sizes:
            imp = float(curve(n)) + noise * rng.standard_normal()
            rows.append(
                {
                    "task": "text-to-text",
                    "model": "m",
                    "dataset": "designed",
                    "eval_set": "e",
                    "experiment": "data_size",
                    "setting": "epochs=1",
                    "metric": "mrr@20",
                    "cost_axis": "size",
                    "seed": s,
                    "grid": n,
                    "cost": float(n),
                    "improvement": imp,
                    "roi": imp / n,
                    "baseline": baseline,
                }
            )
    return pd.DataFrame(rows)


def test_fit_recovers_a_known_power_law():
    sizes = [100, 200, 400, 800, 1600]
    fit = fit_family("power", sizes, power(sizes))
    assert (
        fit.c == pytest.approx(C, rel=0.01)
        and fit.a == pytest.approx(A, rel=0.03)
        and fit.k == pytest.approx(B, rel=0.02)
    )
    assert fit.r2 > 0.9999
    assert fit.predict(12_800) == pytest.approx(float(power(12_800)), abs=1e-3)


def test_the_held_out_point_picks_the_family_that_made_the_data():
    sizes = [100, 200, 400, 800, 1600]
    assert fit_seeds(_points(sizes, power, noise=0.002)).family == "power"
    expo = lambda n: 0.2 * (1 - np.exp(-np.asarray(n, dtype=float) / 300.0))  # noqa: E731
    assert fit_seeds(_points(sizes, expo, noise=0.002)).family == "exp"


def test_forecast_drop_point_of_a_known_power_law_past_the_grid():
    # ROI = I(N) / N peaks at the first size (100): 0.001; 30% of it, 0.0003, is crossed at N* ~ 758 items.
    n_star = brentq(lambda n: float(power(n)) / n - 0.3 * float(power(100)) / 100, 100, 1e6)
    assert 750 < n_star < 765
    pts = _points([100, 200, 300, 400, 600], power, noise=0.001)
    fc = forecast_curve(pts, n_boot=300)
    assert fc.status == "ok" and fc.family == "power" and fc.drop_status == "forecast"
    assert fc.drop_cost == pytest.approx(n_star, rel=0.05)
    assert fc.drop_low <= n_star <= fc.drop_high and fc.drop_high < 2 * n_star
    # The forecast curve starts past the last measured size, with a band around the mean.
    assert fc.curve["grid"].min() > 600 and (fc.curve["improvement_low"] <= fc.curve["improvement_high"]).all()
    far = fc.curve.iloc[-1]
    assert far["improvement"] == pytest.approx(float(power(far["grid"])), abs=0.01)


def test_refuses_with_fewer_than_three_sizes_and_on_a_poor_fit():
    fc = forecast_curve(_points([100, 200], power))
    assert fc.status == "refused" and "at least 3" in fc.note and math.isnan(fc.drop_cost)
    noise = lambda n: 0.0 * np.asarray(n, dtype=float)  # noqa: E731
    fc = forecast_curve(_points([100, 200, 400, 800, 1600], noise, noise=0.05, rng_seed=3))
    assert fc.status == "refused" and ("poor fit" in fc.note or "does not rise" in fc.note)


def test_single_seed_has_no_interval_and_forecast_all_keys_by_curve():
    pts = _points([100, 200, 400, 800], power, seeds=(0,))
    out = forecast_all(pts, n_boot=50)
    (fc,) = out.values()
    assert fc.status == "ok" and "single seed" in fc.note and math.isnan(fc.drop_low)


def test_backtest_predicts_the_held_back_size_of_a_known_power_law():
    pts = _points([100, 200, 500, 1000, 2000], power, noise=0.0)
    bt = backtest(pts, fit_up_to=1000)
    assert list(bt["size"]) == [2000]
    assert bt["error"].abs().max() < 1e-3 and bt["metric_error"].iloc[0] == pytest.approx(bt["error"].iloc[0] * 0.5)
