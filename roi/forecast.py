"""Forecast a data-size learning curve past the last measured size, and where its ROI would drop.

Per dataset, metric and seed, two saturating families are fitted to relative improvement I(N):

- ``power``: I(N) = c - a * N^(-b)  (a >= 0, b in [0.01, 3]): the usual learning-curve law;
- ``exp``:   I(N) = c - a * exp(-N / s)  (a >= 0): saturates faster, for curves that flatten abruptly.

Each is fitted by least squares over a fine grid of its shape parameter (b or s), with c and a solved exactly
for each; no optimiser to diverge. The family is picked by a held-out point: both are refitted on every size
but the largest of each seed, and the one that predicts that size better wins, then is refitted on all
sizes. The forecast is the mean over seeds of the per-seed fits; its band is a bootstrap over seeds (seeds
resampled with replacement, the mean recomputed). The forecast drop point is found on the measured mean ROI
followed by the forecast ROI, with the same rule as the measured one (``roi.curves.drop_point``).

A forecast is refused, with a note that says why, from fewer than three sizes above zero in any seed, or a
poor fit (median R^2 across seeds below ``MIN_R2``, or a curve that does not rise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from roi.curves import DEFAULT_DROP, GROUP_KEY, drop_point

FAMILIES: tuple[str, ...] = ("power", "exp")
MIN_SIZES = 3
MIN_R2 = 0.6
HORIZON = 16.0  # forecast up to 16x the last measured size (four more doublings)
_B_GRID = np.geomspace(0.01, 3.0, 400)
_GRID_POINTS = 120


@dataclass(frozen=True)
class Fit:
    """One fitted curve: I(N) = c - a * shape(N)."""

    family: str
    c: float
    a: float
    k: float  # b (power) or s (exp)
    r2: float

    def predict(self, n: np.ndarray | Sequence[float] | float) -> np.ndarray:
        n = np.asarray(n, dtype=float)
        return self.c - self.a * _shape(self.family, n, self.k)


def _shape(family: str, n: np.ndarray, k: float | np.ndarray) -> np.ndarray:
    if family == "power":
        return n ** (-np.asarray(k))
    return np.exp(-n / np.asarray(k))


def fit_family(family: str, n: Sequence[float], y: Sequence[float]) -> Fit:
    """Least squares of one family on points (n, y): c and a solved for each shape value on a grid.

    Raises:
        ValueError: fewer than two points, or an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")
    n, y = np.asarray(n, dtype=float), np.asarray(y, dtype=float)
    if n.size < 2:
        raise ValueError("a fit needs at least two points")
    grid = _B_GRID if family == "power" else np.geomspace(n.min() / 10.0, n.max() * 10.0, 400)
    x = _shape(family, n[None, :], grid[:, None])  # (grid, points)
    # y = c - a x: closed-form simple regression per grid value.
    xm, ym = x.mean(axis=1, keepdims=True), y.mean()
    sxx = ((x - xm) ** 2).sum(axis=1)
    sxy = ((x - xm) * (y - ym)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > 0, sxy / sxx, 0.0)
    a = np.maximum(-slope, 0.0)  # a rising curve only: a >= 0
    c = ym + a * xm[:, 0]
    sse = ((y[None, :] - (c[:, None] - a[:, None] * x)) ** 2).sum(axis=1)
    best = int(np.argmin(sse))
    sst = float(((y - ym) ** 2).sum())
    r2 = 1.0 - float(sse[best]) / sst if sst > 0 else 1.0
    return Fit(family, float(c[best]), float(a[best]), float(grid[best]), r2)


@dataclass(frozen=True)
class SeedCurves:
    """The choice of family and the per-seed fits of one curve, or why there are none."""

    family: str | None
    fits: dict[int, Fit]
    holdout_error: dict[str, float]  # family -> mean absolute error at the held-out sizes
    note: str

    @property
    def ok(self) -> bool:
        return self.family is not None


def fit_seeds(points: pd.DataFrame, *, families: Sequence[str] = FAMILIES, min_r2: float = MIN_R2) -> SeedCurves:
    """Pick a family by the held-out largest size of each seed, then fit it on each seed's points.

    Args:
        points: one curve's per-seed points: columns seed, grid (items) and improvement.
    """
    per_seed = {
        int(s): (g["grid"].to_numpy(float), g["improvement"].to_numpy(float))
        for s, g in points[points["improvement"].notna()].sort_values("grid").groupby("seed")
    }
    fewest = min((len(n) for n, _ in per_seed.values()), default=0)
    if fewest < MIN_SIZES:
        return SeedCurves(
            None, {}, {}, f"no forecast: {fewest} size(s) above zero in a seed, at least {MIN_SIZES} needed"
        )
    errors: dict[str, float] = {}
    if fewest >= MIN_SIZES + 1:
        for fam in families:
            errs = [abs(fit_family(fam, n[:-1], y[:-1]).predict(n[-1]) - y[-1]) for n, y in per_seed.values()]
            errors[fam] = float(np.mean(errs))
        family = min(errors, key=lambda f: (errors[f], families.index(f)))
        note = (
            f"{family} law chosen by the held-out largest size (error {errors[family]:.3g} vs "
            + ", ".join(f"{f} {e:.3g}" for f, e in errors.items() if f != family)
            + ")"
        )
    else:
        family = families[0]
        note = f"{family} law (three sizes: too few to choose a family by a held-out point)"
    fits = {s: fit_family(family, n, y) for s, (n, y) in per_seed.items()}
    r2 = float(np.median([f.r2 for f in fits.values()]))
    if r2 < min_r2:
        return SeedCurves(None, fits, errors, f"no forecast: poor fit ({family} law, median R² {r2:.2f} < {min_r2:g})")
    if all(f.a <= 0 for f in fits.values()):
        return SeedCurves(None, fits, errors, "no forecast: the measured improvement does not rise with size")
    return SeedCurves(family, fits, errors, note)


@dataclass(frozen=True)
class Forecast:
    """One curve's forecast: the dense curve past the last size, and the forecast drop point."""

    key: tuple  # GROUP_KEY values
    status: str  # ok | refused
    note: str
    family: str
    last_size: float
    curve: pd.DataFrame  # grid, improvement, improvement_low, improvement_high, roi, roi_low, roi_high
    drop_cost: float
    drop_low: float
    drop_high: float  # inf: beyond the forecast range in the upper quantile of resamples
    drop_status: str


def forecast_curve(
    points: pd.DataFrame,
    *,
    key: tuple = (),
    drop: float = DEFAULT_DROP,
    horizon: float = HORIZON,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Forecast:
    """Forecast one data-size curve (per-seed points on the labeled-items axis) past its last size.

    Args:
        points: per-seed points of ONE curve (``roi.curves.roi_curve`` rows of one curve, cost axis ``size``).
        key: the curve's ``GROUP_KEY`` values, carried through.
        drop: fraction of the peak ROI lost at the drop point.
        horizon: forecast up to ``horizon`` x the last measured size.
        n_boot, seed, level: the bootstrap over seeds.
    """
    fitted = fit_seeds(points)
    last = float(points["grid"].max()) if not points.empty else math.nan
    empty = pd.DataFrame(
        columns=["grid", "improvement", "improvement_low", "improvement_high", "roi", "roi_low", "roi_high"]
    )
    if not fitted.ok:
        return Forecast(key, "refused", fitted.note, "", last, empty, math.nan, math.nan, math.nan, "no forecast")
    seeds = sorted(fitted.fits)
    grid = np.geomspace(last, last * horizon, _GRID_POINTS)[1:]  # (G,) sizes past the last measured one
    pred = np.stack([fitted.fits[s].predict(grid) for s in seeds])  # (S, G)
    measured = points.pivot_table(index="seed", columns="grid", values="improvement", aggfunc="mean").reindex(seeds)
    sizes = measured.columns.to_numpy(float)
    meas = measured.to_numpy(float)  # (S, M), NaN where a seed lacks a size

    def mean_drop(weights: np.ndarray) -> tuple[np.ndarray, float]:
        w = weights / weights.sum()
        fc = w @ pred  # (G,)
        present = np.isfinite(meas)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = (w @ np.where(present, meas, 0.0)) / (w @ present)
        costs = np.concatenate([sizes, grid])
        dp = drop_point(costs, np.concatenate([m / sizes, fc / grid]), drop=drop)
        return fc, (dp.cost if dp.reached and dp.cost is not None else math.inf)

    mean_fc, dp_cost = mean_drop(np.ones(len(seeds)))
    rng = np.random.default_rng(seed)
    alpha = (1.0 - level) / 2.0
    if len(seeds) >= 2:
        draws = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
        boots, drops = [], []
        for d in draws:
            fc, c = mean_drop(np.bincount(d, minlength=len(seeds)).astype(float))
            boots.append(fc)
            drops.append(c)
        boots = np.stack(boots)
        low, high = np.quantile(boots, [alpha, 1 - alpha], axis=0)
        d_low, d_high = np.quantile(np.asarray(drops), [alpha, 1 - alpha], method="inverted_cdf")
    else:
        low = high = np.full_like(mean_fc, np.nan)
        d_low = d_high = math.nan
    curve = pd.DataFrame(
        {
            "grid": grid,
            "improvement": mean_fc,
            "improvement_low": low,
            "improvement_high": high,
            "roi": mean_fc / grid,
            "roi_low": low / grid,
            "roi_high": high / grid,
        }
    )
    if math.isinf(dp_cost):
        status = f"not reached by {last * horizon:,.0f} items (forecast range)"
    elif dp_cost <= last:
        status = "reached within the grid"
    else:
        status = "forecast"
    note = fitted.note if len(seeds) >= 2 else f"{fitted.note}; single seed: no interval"
    return Forecast(key, "ok", note, fitted.family or "", last, curve, dp_cost, float(d_low), float(d_high), status)


def forecast_all(
    points: pd.DataFrame, *, drop: float = DEFAULT_DROP, n_boot: int = 1000, seed: int = 0, horizon: float = HORIZON
) -> dict[tuple, Forecast]:
    """A forecast for every data-size curve on the labeled-items axis: ``GROUP_KEY`` values -> Forecast."""
    sub = points[(points["experiment"] == "data_size") & (points["cost_axis"] == "size")]
    return {
        key: forecast_curve(cur, key=key, drop=drop, n_boot=n_boot, seed=seed, horizon=horizon)
        for key, cur in sub.groupby(list(GROUP_KEY), sort=False)
    }


def backtest(points: pd.DataFrame, *, fit_up_to: float = 1000) -> pd.DataFrame:
    """Fit each data-size curve on sizes <= ``fit_up_to``, predict every larger measured size, report the error.

    Returns:
        One row per curve and predicted size: dataset, metric, size, family, measured and predicted mean
        improvement, error (predicted - measured, in improvement units) and the metric-value error
        (error x baseline), or the refusal note.
    """
    sub = points[(points["experiment"] == "data_size") & (points["cost_axis"] == "size")]
    rows = []
    for key, cur in sub.groupby(list(GROUP_KEY), sort=False):
        train, test = cur[cur["grid"] <= fit_up_to], cur[cur["grid"] > fit_up_to]
        if test.empty:
            continue
        fitted = fit_seeds(train)
        base = float(cur["baseline"].mean())
        for size, g in test.groupby("grid"):
            row = dict(zip(GROUP_KEY, key, strict=True)) | {
                "fit_sizes": ", ".join(f"{int(s):,}" for s in sorted(train["grid"].unique())),
                "size": int(size),
                "family": fitted.family or "",
                "measured": float(g["improvement"].mean()),
                "note": fitted.note,
            }
            if fitted.ok:
                pred = float(np.mean([fitted.fits[int(s)].predict(size) for s in g["seed"] if int(s) in fitted.fits]))
                row |= {
                    "predicted": pred,
                    "error": pred - row["measured"],
                    "metric_error": (pred - row["measured"]) * base,
                }
            else:
                row |= {"predicted": math.nan, "error": math.nan, "metric_error": math.nan}
            rows.append(row)
    return pd.DataFrame(rows)


FORECAST_COLUMNS: tuple[str, ...] = (
    "forecast_status",
    "forecast_note",
    "forecast_family",
    "forecast_drop_cost",
    "forecast_drop_low",
    "forecast_drop_high",
    "forecast_drop_status",
)


def forecast_summary(summary: pd.DataFrame, forecasts: dict[tuple, Forecast]) -> pd.DataFrame:
    """The summary with the forecast's columns (``FORECAST_COLUMNS``; empty/NaN for curves without one)."""
    out = summary.copy()
    values = {c: [] for c in FORECAST_COLUMNS}
    for _, row in out.iterrows():
        fc = forecasts.get(tuple(row[k] for k in GROUP_KEY)) if row["cost_axis"] == "size" else None
        got = (
            (fc.status, fc.note, fc.family, fc.drop_cost, fc.drop_low, fc.drop_high, fc.drop_status)
            if fc is not None
            else ("", "", "", math.nan, math.nan, math.nan, "")
        )
        for c, v in zip(FORECAST_COLUMNS, got, strict=True):
            values[c].append(v)
    for c, v in values.items():
        out[c] = v
    return out


def forecast_curves_table(forecasts: dict[tuple, Forecast]) -> pd.DataFrame:
    """Every forecast curve in one table: ``GROUP_KEY``, family, grid (items), improvement and ROI with bands."""
    frames = [
        fc.curve.assign(**dict(zip(GROUP_KEY, key, strict=True)), family=fc.family)
        for key, fc in forecasts.items()
        if fc.status == "ok"
    ]
    if not frames:
        return pd.DataFrame(columns=[*GROUP_KEY, "family", "grid", "improvement", "roi"])
    out = pd.concat(frames, ignore_index=True)
    return out[[*GROUP_KEY, "family", *[c for c in out.columns if c not in (*GROUP_KEY, "family")]]]
