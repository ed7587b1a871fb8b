"""Jina's drop point: where the average ROI has fallen to (1 - drop) x its peak, and its bootstrap over seeds.

The article's rule, kept beside the elasticity answer (``roi.elasticity``): the smallest cost after the peak ROI
at which ROI <= (1 - drop) x peak, linearly interpolated between the two grid points that bracket the crossing.
Pure functions of arrays and tidy frames; ``roi.curves.summarize`` applies them to every curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_DROP = 0.7


@dataclass(frozen=True)
class DropPoint:
    """Where ROI has fallen to (1 - drop) x its peak.

    Attributes:
        cost: the interpolated cost of the drop point; None when not reached.
        peak_cost: cost of the peak ROI (NaN without data).
        peak_value: the peak ROI (NaN without data).
        first_cost: the grid's first cost; the peak of an average-ROI curve often sits there.
        reached: whether ROI falls that far within the grid.
        drop: the fraction of the peak lost (0.7 = ROI at 30% of the peak).
        status: ``reached``, ``not reached within the grid``, ``no positive ROI``, ``single point`` or ``no data``.
    """

    cost: float | None
    peak_cost: float
    peak_value: float
    first_cost: float
    reached: bool
    drop: float
    status: str

    @property
    def threshold(self) -> float:
        """The ROI level that counts as dropped: (1 - drop) x peak."""
        return (1.0 - self.drop) * self.peak_value

    @property
    def peak_at_first(self) -> bool:
        """True when the peak is the grid's first point, so the answer depends on where the grid starts."""
        return bool(np.isfinite(self.peak_cost)) and self.peak_cost == self.first_cost


@dataclass(frozen=True)
class DropInterval:
    """Bootstrap interval of a drop point over seeds.

    Attributes:
        low: lower bound (NaN with one seed).
        high: upper bound; ``inf`` when the upper quantile of resamples does not reach the drop within the grid.
        reached_fraction: share of resamples whose mean curve reaches the drop within the grid.
        n_seeds: seeds resampled.
        n_boot: resamples drawn.
        level: coverage of the interval (0.95 = 2.5% and 97.5% quantiles).
        note: ``single seed`` when no interval can be drawn, else empty.
    """

    low: float
    high: float
    reached_fraction: float
    n_seeds: int
    n_boot: int
    level: float
    note: str = ""


def drop_point(
    costs: Sequence[float] | np.ndarray, roi: Sequence[float] | np.ndarray, *, drop: float = DEFAULT_DROP
) -> DropPoint:
    """The smallest cost after the peak where ROI <= (1 - drop) x peak, interpolated between grid points.

    Args:
        costs: the grid's costs (any order; sorted here). NaN points are ignored.
        roi: ROI at those costs.
        drop: fraction of the peak lost; 0.7 means ROI at 30% of the peak.

    Returns:
        A ``DropPoint``; ``status == "no positive ROI"`` when every ROI is <= 0.
    """
    c = np.asarray(costs, dtype=float)
    r = np.asarray(roi, dtype=float)
    ok = np.isfinite(c) & np.isfinite(r)
    c, r = c[ok], r[ok]
    if c.size == 0:
        return DropPoint(None, math.nan, math.nan, math.nan, False, drop, "no data")
    order = np.argsort(c, kind="stable")
    c, r = c[order], r[order]
    peak = int(np.argmax(r))  # first maximum: the earliest cost that pays best
    first, peak_cost, peak_value = float(c[0]), float(c[peak]), float(r[peak])
    if peak_value <= 0:
        return DropPoint(None, peak_cost, peak_value, first, False, drop, "no positive ROI")
    threshold = (1.0 - drop) * peak_value
    for j in range(peak + 1, c.size):
        if r[j] <= threshold:
            # r[j-1] > threshold >= r[j], so the slope is non-zero.
            frac = (threshold - r[j - 1]) / (r[j] - r[j - 1])
            cost = float(c[j - 1] + frac * (c[j] - c[j - 1]))
            return DropPoint(cost, peak_cost, peak_value, first, True, drop, "reached")
    status = "single point" if c.size == 1 else "not reached within the grid"
    return DropPoint(None, peak_cost, peak_value, first, False, drop, status)


def bootstrap_drop_point(
    points: pd.DataFrame,
    *,
    drop: float = DEFAULT_DROP,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    value: str = "roi",
) -> DropInterval:
    """Interval of the mean curve's drop point, resampling seeds with replacement.

    Each resample's mean curve is built like ``aggregate_seeds`` (mean cost and mean ROI per grid point); a
    resample that does not reach the drop within the grid counts as ``inf``, so the interval's high end is ``inf``
    when the drop is often not reached.

    Args:
        points: per-seed points of ONE curve (columns seed, grid, cost and ``value``).
        drop: fraction of the peak lost.
        n_boot: resamples.
        seed: seed of the resampling.
        level: interval coverage.
        value: the ROI column (``roi`` or ``marginal_roi``).

    Returns:
        A ``DropInterval``; with fewer than two seeds its bounds are NaN and ``note == "single seed"``.
    """
    seeds = np.sort(points["seed"].unique())
    if seeds.size < 2:
        return DropInterval(math.nan, math.nan, math.nan, int(seeds.size), 0, level, "single seed")
    roi = points.pivot_table(index="seed", columns="grid", values=value, aggfunc="mean").reindex(seeds)
    cost = points.pivot_table(index="seed", columns="grid", values="cost", aggfunc="mean").reindex(
        index=seeds, columns=roi.columns
    )
    r, c = roi.to_numpy(dtype=float), cost.to_numpy(dtype=float)
    present = np.isfinite(r) & np.isfinite(c)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, seeds.size, size=(n_boot, seeds.size))
    weights = np.zeros((n_boot, seeds.size))
    np.add.at(weights, (np.arange(n_boot)[:, None], draws), 1.0)
    count = weights @ present
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_r = (weights @ np.where(present, r, 0.0)) / count
        mean_c = (weights @ np.where(present, c, 0.0)) / count
    found = np.full(n_boot, np.inf)
    for b in range(n_boot):
        dp = drop_point(mean_c[b], mean_r[b], drop=drop)
        if dp.reached and dp.cost is not None:
            found[b] = dp.cost
    alpha = (1.0 - level) / 2.0
    # inverted_cdf picks resample values, so an inf stays inf instead of poisoning an interpolation.
    low, high = np.quantile(found, [alpha, 1.0 - alpha], method="inverted_cdf")
    return DropInterval(float(low), float(high), float(np.isfinite(found).mean()), int(seeds.size), n_boot, level)
