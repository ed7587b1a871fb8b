"""The report's headline per curve: the elasticity answer (``roi.elasticity``), its interval (``roi.intervals``)
and, with a value per +1%, the break-even size. Computation only; words are ``roi.answer``'s.

Curves are read on the mean across seeds (grid points aligned, cost = mean cost); the interval uses the
per-query scores when the table has them (``roi.load.load_query_scores``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from roi.curves import CURVE_KEY, GROUP_KEY
from roi.elasticity import FOUND, read_elasticity
from roi.intervals import QueryScores, answer_interval
from roi.load import QUERY_SCORES
from roi.price import Prices

ANSWER_COLUMNS = (
    "answer_state",
    "answer_cost",
    "answer_bound",
    "answer_low",
    "answer_high",
    "answer_method",
    "answer_found_fraction",
    "last_elasticity",
    "answer_hint",
    "target_elasticity",
    "seed_sd",
)


def headline_table(
    points: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    table: pd.DataFrame,
    queries: pd.DataFrame | None = None,
    target: float = 0.3,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per curve (``CURVE_KEY``) with ``ANSWER_COLUMNS``.

    Args:
        points: ``roi.curves.roi_curve`` output (per seed).
        curves: ``roi.curves.aggregate_seeds`` on the same points.
        table: the validated results table (its baseline rows name the baseline trials of the per-query scores).
        queries: per-query scores (trial_id, epoch, query, rr, ap, recall), or None.
        target: the elasticity that ends the search (1 - drop).
        n_boot: resamples for the interval.
        seed: seed of the resampling.
    """
    by_trial = _query_vectors(queries)
    rows = []
    point_groups = dict(iter(points.groupby(list(CURVE_KEY), sort=False)))
    for key, cur in curves.groupby(list(CURVE_KEY), sort=False):
        cur = cur.sort_values("grid", kind="stable")
        pts = point_groups[key]
        gains = pts.pivot_table(index="seed", columns="grid", values="improvement", aggfunc="mean")
        gains = gains.reindex(columns=cur["grid"].to_numpy())
        costs = cur["cost"].to_numpy(dtype=float)
        answer = read_elasticity(costs, cur["improvement"].to_numpy(dtype=float), target=target)
        scores = _curve_scores(dict(zip(CURVE_KEY, key, strict=True)), pts, gains, table, by_trial)
        order = np.argsort(costs, kind="stable")
        ci = answer_interval(
            costs[order], gains.to_numpy(dtype=float)[:, order], queries=_reorder(scores, order), target=target,
            n_boot=n_boot, seed=seed,
        )  # fmt: skip
        rows.append(
            dict(zip(CURVE_KEY, key, strict=True))
            | {
                "answer_state": answer.state,
                "answer_cost": answer.cost,
                "answer_bound": answer.bound,
                "answer_low": ci.low,
                "answer_high": ci.high,
                "answer_method": ci.method,
                "answer_found_fraction": ci.found_fraction,
                "last_elasticity": answer.last_elasticity,
                "answer_hint": answer.hint,
                "target_elasticity": target,
                "seed_sd": ci.seed_sd,
            }
        )
    return pd.DataFrame(rows, columns=[*CURVE_KEY, *ANSWER_COLUMNS])


def with_headline(
    summary: pd.DataFrame,
    points: pd.DataFrame,
    curves: pd.DataFrame,
    table: pd.DataFrame,
    queries: pd.DataFrame | None,
    prices: pd.DataFrame,
    spec: Prices,
    *,
    drop: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """``summary`` with the headline's columns (``headline_table``) and the break-even size (``break_even``)."""
    heads = headline_table(points, curves, table=table, queries=queries, target=1 - drop, n_boot=n_boot, seed=seed)
    out = summary.merge(heads, on=list(CURVE_KEY), how="left")
    return out.merge(break_even(prices, spec), on=list(GROUP_KEY), how="left")


def _query_vectors(queries: pd.DataFrame | None) -> dict[tuple[str, int], pd.DataFrame]:
    if queries is None or queries.empty:
        return {}
    q = queries.sort_values(["trial_id", "epoch", "query"], kind="stable")
    return {(str(t), int(e)): g for (t, e), g in q.groupby(["trial_id", "epoch"], sort=False)}


def _curve_scores(
    key: dict, pts: pd.DataFrame, gains: pd.DataFrame, table: pd.DataFrame, by_trial: dict
) -> QueryScores | None:
    """The curve's per-query scores as arrays, or None when any trial (or its baseline) has none."""
    column = QUERY_SCORES.get(str(key["metric"]).split("@")[0])
    if not by_trial or column is None:
        return None
    base = table[
        (table["size"] == 0)
        & (table["model"] == key["model"])
        & (table["dataset"] == key["dataset"])
        & (table["eval_set"] == key["eval_set"])
    ]
    base_vec = {int(r.seed): by_trial.get((r.trial_id, int(r.epoch))) for r in base.itertuples()}
    any_base = next((v for v in base_vec.values() if v is not None), None)
    if any_base is None:
        return None
    n_q = len(any_base)
    seeds, grid = list(gains.index), list(gains.columns)
    tuned = np.full((len(seeds), len(grid), n_q), np.nan)
    for r in pts.itertuples():
        vec = by_trial.get((r.trial_id, int(r.epoch)))
        if vec is None or len(vec) != n_q:
            return None  # a trial without scores: the whole curve falls back to seeds only
        tuned[seeds.index(r.seed), grid.index(r.grid)] = vec[column].to_numpy(dtype=float)
    baseline = np.stack(
        [
            (base_vec.get(int(s)) if base_vec.get(int(s)) is not None else any_base)[column].to_numpy(float)
            for s in seeds
        ]
    )
    return QueryScores(baseline=baseline, tuned=tuned)


def _reorder(scores: QueryScores | None, order: np.ndarray) -> QueryScores | None:
    return None if scores is None else QueryScores(scores.baseline, scores.tuned[:, order, :])


def break_even(prices: pd.DataFrame, spec: Prices) -> pd.DataFrame:
    """Per curve (``GROUP_KEY``), the size past which the next +1% costs more than ``spec.value_per_point``.

    The cost of the next +1% between neighbouring grid points (``roi.price``) is placed at their geometric mean
    and interpolated in log N, like the elasticity; a crossing counts when the chord from there to the largest
    size also costs more per +1% than it is worth. States: ``found``, ``does not pay`` (the first size's average
    +1% already costs more), ``pays through the grid``, ``no value`` (no value per point given).

    Returns:
        ``GROUP_KEY``, break_even_state, break_even_cost (items or seconds, NaN unless found).
    """
    if prices is None or prices.empty:
        return pd.DataFrame(columns=[*GROUP_KEY, "break_even_state", "break_even_cost"])
    rows = []
    for key, cur in prices.groupby(list(GROUP_KEY), sort=False):
        axis = "items" if key[GROUP_KEY.index("experiment")] == "data_size" else "train_seconds"
        state, cost = _break_even_one(cur.sort_values("grid"), axis, spec)
        rows.append(dict(zip(GROUP_KEY, key, strict=True)) | {"break_even_state": state, "break_even_cost": cost})
    return pd.DataFrame(rows)


def _break_even_one(cur: pd.DataFrame, axis: str, spec: Prices) -> tuple[str, float]:
    value = spec.value_per_point
    if value is None or not spec.priced:
        return "no value", math.nan
    n = cur[axis].to_numpy(float)
    total = cur["total_cost"].to_numpy(float)
    gain = cur["improvement"].to_numpy(float) * 100.0
    if not (gain[0] > 0 and total[0] / gain[0] <= value):
        return "does not pay", math.nan
    for i in range(1, n.size):
        step = (total[i] - total[i - 1]) / (gain[i] - gain[i - 1]) if gain[i] > gain[i - 1] else math.inf
        if step <= value:
            continue
        chord = (total[-1] - total[i - 1]) / (gain[-1] - gain[i - 1]) if gain[-1] > gain[i - 1] else math.inf
        if chord <= value:
            continue  # one dear step, but the rest of the grid still pays: not the break-even
        prev = (total[i - 1] - (total[i - 2] if i > 1 else 0.0)) / (gain[i - 1] - (gain[i - 2] if i > 1 else 0.0))
        x0 = math.log(math.sqrt(n[i - 2] * n[i - 1])) if i > 1 else math.log(n[0])
        x1 = math.log(math.sqrt(n[i - 1] * n[i]))
        if math.isfinite(step) and prev > 0 and step > prev:
            frac = (math.log(value) - math.log(prev)) / (math.log(step) - math.log(prev))
            return FOUND, float(math.exp(x0 + min(max(frac, 0.0), 1.0) * (x1 - x0)))
        return FOUND, float(n[i - 1])
    return "pays through the grid", math.nan
