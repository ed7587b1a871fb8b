"""Intervals for the headline answer that mean what they say, from what the data has.

Two sources of noise, both in the answer:

- training noise (seeds): each (size, seed) is its own training run. Its spread is estimated from the seeds'
  deviations from the mean at each size, POOLED over sizes (degrees of freedom = sum of (seeds - 1)), so two seeds
  on five sizes give 5 degrees of freedom instead of a two-point range. A resample adds normal noise of that size
  to the mean curve, with the spread itself redrawn (s^2 df / chi^2_df) so few degrees of freedom widen the
  interval as a t distribution would;
- evaluation noise (queries): every trial is scored on the same held-out queries, so a resample of the queries
  (with replacement, the same resample for the baseline and every trial) moves the whole curve together. This
  needs the per-query scores (``queries.parquet``, written by sweeps since the schema's per-query table); older
  tables have none, and the interval's label says it covers training noise only.

Each resample's mean curve is read with ``roi.elasticity.read_elasticity``; the interval is the resamples'
2.5% and 97.5% quantiles (0 = below the first size, inf = not reached within the grid). The coverage of this
interval is measured by simulation on designed curves with known answers (``roi.coverage``, docs/roi.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from roi.elasticity import DEFAULT_TARGET, read_many

SEEDS_AND_QUERIES = "seeds (pooled over sizes) and held-out queries"
SEEDS_ONLY = "seeds (pooled over sizes); no per-query scores in this table"
QUERIES_ONLY = "held-out queries; one seed: training noise not covered"
NO_INTERVAL = "one seed and no per-query scores: no interval"


@dataclass(frozen=True)
class QueryScores:
    """Per-query scores of one curve, aligned on the same queries.

    Attributes:
        baseline: (S, Q) the pretrained model's per-query score for each seed's baseline (a shared baseline repeated).
        tuned: (S, n, Q) per-query score of seed s at grid point i; NaN rows where a trial is missing.
    """

    baseline: np.ndarray
    tuned: np.ndarray


@dataclass(frozen=True)
class AnswerInterval:
    """Interval of the headline answer.

    Attributes:
        low: lower bound; 0 = below the first size.
        high: upper bound; inf = not reached within the grid.
        level: nominal coverage (0.95).
        n_boot: resamples drawn (0 when no interval).
        method: what the interval covers (``SEEDS_AND_QUERIES``, ``SEEDS_ONLY``, ``QUERIES_ONLY``, ``NO_INTERVAL``).
        found_fraction: share of resamples whose curve has the answer inside the grid.
        seed_sd: the pooled seeds' standard deviation of the relative improvement (NaN with one seed).
    """

    low: float
    high: float
    level: float
    n_boot: int
    method: str
    found_fraction: float
    seed_sd: float

    @property
    def exists(self) -> bool:
        return self.n_boot > 0


def pooled_seed_sd(seed_gains: np.ndarray) -> tuple[float, int]:
    """(pooled standard deviation, degrees of freedom) of the seeds around each size's mean; (NaN, 0) with one seed.

    Args:
        seed_gains: (S, n) relative improvement per seed and size; NaN where a seed has no point.
    """
    g = np.asarray(seed_gains, dtype=float)
    present = np.isfinite(g)
    counts = present.sum(axis=0)
    df = int(np.clip(counts - 1, 0, None).sum())
    if df == 0:
        return math.nan, 0
    mean = np.nanmean(np.where(present, g, np.nan), axis=0)
    sq = np.where(present, (g - mean) ** 2, 0.0).sum()
    return float(math.sqrt(sq / df)), df


def replicate_curves(
    seed_gains: np.ndarray,
    *,
    queries: QueryScores | None = None,
    n_boot: int = 1000,
    rng: np.random.Generator,
) -> tuple[np.ndarray, str, float]:
    """(B, n) resampled mean curves, the method's label and the pooled seed sd (see the module docstring)."""
    g = np.asarray(seed_gains, dtype=float)
    counts = np.isfinite(g).sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(g, axis=0)
    sd, df = pooled_seed_sd(g)
    if queries is not None:
        q = queries.baseline.shape[1]
        weights = rng.multinomial(q, np.full(q, 1.0 / q), size=n_boot) / q  # (B, Q)
        base = weights @ queries.baseline.T  # (B, S)
        tuned = np.einsum("bq,snq->bsn", weights, np.nan_to_num(queries.tuned))  # (B, S, n)
        missing = ~np.isfinite(queries.tuned).all(axis=2)  # (S, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed = np.where(missing[None], np.nan, tuned / base[:, :, None] - 1.0)
            curves = np.nanmean(per_seed, axis=1)
        method = SEEDS_AND_QUERIES if df else QUERIES_ONLY
    elif df:
        curves = np.broadcast_to(mean, (n_boot, mean.size)).copy()
        method = SEEDS_ONLY
    else:
        return np.empty((0, mean.size)), NO_INTERVAL, sd
    if df:
        scale = sd * np.sqrt(df / rng.chisquare(df, size=n_boot))  # (B,): the spread's own uncertainty
        curves = curves + scale[:, None] * rng.standard_normal(curves.shape) / np.sqrt(np.maximum(counts, 1))
    return curves, method, sd


def answer_interval(
    costs: np.ndarray,
    seed_gains: np.ndarray,
    *,
    queries: QueryScores | None = None,
    target: float = DEFAULT_TARGET,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> AnswerInterval:
    """The interval of the headline answer on one curve.

    Args:
        costs: (n,) the grid's mean costs, ascending.
        seed_gains: (S, n) relative improvement per seed.
        queries: per-query scores of the same curve, when the table has them.
        target: the elasticity that ends the search.
        n_boot: resamples.
        level: nominal coverage.
        seed: seed of the resampling.
    """
    rng = np.random.default_rng(seed)
    curves, method, sd = replicate_curves(seed_gains, queries=queries, n_boot=n_boot, rng=rng)
    if curves.shape[0] == 0:
        return AnswerInterval(math.nan, math.nan, level, 0, method, math.nan, sd)
    answers = read_many(costs, curves, target=target)
    answers = np.where(np.isnan(answers), np.inf, answers)  # never positive: no answer, counted as not reached
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(answers, [alpha, 1.0 - alpha], method="inverted_cdf")
    found = float(np.mean((answers > 0) & np.isfinite(answers)))
    return AnswerInterval(float(low), float(high), level, int(n_boot), method, found, sd)
