"""Improvement, ROI and drop-point computations: pure functions, DataFrame in, DataFrame out.

Definitions (also in ``docs/roi.md``):

- relative improvement = (m_finetuned - m_pretrained) / m_pretrained, against the baseline (``size == 0``) of the
  same model, dataset, eval_set and seed (any seed when that seed has none);
- average ROI = relative improvement / cost; marginal ROI = delta improvement / delta cost between neighbouring
  grid points of one seed (undefined at the first grid point);
- drop point = the smallest cost after the peak ROI at which ROI has fallen to (1 - drop) x peak, linearly
  interpolated between the two grid points that bracket the crossing (``roi.drop_point``, re-exported here).

ROI is undefined at cost 0, so the baseline is only the reference, never a point of a curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from roi.drop_point import DEFAULT_DROP, DropInterval, DropPoint, bootstrap_drop_point, drop_point
from roi.epoch_grid import best_epoch_points, best_epochs
from roi.errors import RoiInputError

__all__ = [  # the drop point lives in roi.drop_point; its names stay importable from here
    "DEFAULT_DROP",
    "DropInterval",
    "DropPoint",
    "aggregate_seeds",
    "bootstrap_drop_point",
    "check_drop",
    "drop_point",
    "relative_improvement",
    "roi_curve",
    "select_points",
    "summarize",
]

# A curve: one line of a chart. `setting` holds what the experiment keeps fixed (epochs=E or size=N).
GROUP_KEY: tuple[str, ...] = ("task", "model", "dataset", "eval_set", "experiment", "setting", "metric")
CURVE_KEY: tuple[str, ...] = GROUP_KEY + ("cost_axis",)
# The first axis of each experiment is the seed's; a curve on it must have a positive cost at every point.
COST_AXES: dict[str, tuple[str, ...]] = {
    "data_size": ("size", "gpu_seconds"),
    "epochs": ("train_seconds", "gpu_seconds"),
}
AXIS_LABELS: dict[str, str] = {
    "size": "labeled items",
    "train_seconds": "training seconds",
    "gpu_seconds": "GPU-seconds",
}
BASELINE_KEY: tuple[str, ...] = ("model", "dataset", "eval_set")
_ROW_COLUMNS: tuple[str, ...] = (
    "sweep",
    "experiment",
    "trial_id",
    "task",
    "model",
    "dataset",
    "eval_set",
    "seed",
    "size",
    "epochs",
    "epoch",
    "train_seconds",
    "num_gpus",
    "gpu_seconds",
    "steps",
    "train_to",
    "min_steps",
    "stop_reason",
    "final",
    "val_score",
    "refit",
)


def check_drop(drop: float) -> float:
    """``drop`` as a float in (0, 1]; RoiInputError otherwise."""
    drop = float(drop)
    if not (0.0 < drop <= 1.0):
        raise RoiInputError(f"--drop must be in (0, 1] (0.7 = ROI fallen to 30% of its peak); got {drop}")
    return drop


def relative_improvement(df: pd.DataFrame, *, metrics: Sequence[str]) -> pd.DataFrame:
    """Relative improvement of every fine-tuned row over its baseline, one row per (table row, metric).

    Args:
        df: validated ``ok`` rows, baseline rows (``size == 0``) included.
        metrics: metric columns to use.

    Returns:
        The row's identity and cost columns plus ``metric``, ``value``, ``baseline``, ``improvement`` (NaN where
        the row's metric is NaN).

    Raises:
        RoiInputError: no fine-tuned rows, a missing baseline, or a baseline of 0.
    """
    metrics = list(metrics)
    base = df[df["size"] == 0]
    tuned = df[df["size"] > 0]
    if tuned.empty:
        raise RoiInputError(
            "no fine-tuned rows (size > 0, status ok): only the baseline is there; run the sweep's cells"
        )
    keep = [c for c in _ROW_COLUMNS if c in tuned.columns]
    long = tuned.melt(id_vars=keep, value_vars=metrics, var_name="metric", value_name="value")
    # Schema rule: same (model, dataset, eval_set, seed); else the same (model, dataset, eval_set), any seed.
    by_seed = base.groupby([*BASELINE_KEY, "seed"])[metrics].mean().stack(future_stack=True).rename("b_seed")
    by_any = base.groupby(list(BASELINE_KEY))[metrics].mean().stack(future_stack=True).rename("b_any")
    by_seed.index = by_seed.index.set_names([*BASELINE_KEY, "seed", "metric"])
    by_any.index = by_any.index.set_names([*BASELINE_KEY, "metric"])
    long = long.join(by_seed, on=[*BASELINE_KEY, "seed", "metric"]).join(by_any, on=[*BASELINE_KEY, "metric"])
    long["baseline"] = long["b_seed"].fillna(long["b_any"])
    long = long.drop(columns=["b_seed", "b_any"])

    missing = long[long["baseline"].isna() & long["value"].notna()]
    if not missing.empty:
        cases = missing[[*BASELINE_KEY, "metric"]].drop_duplicates().head(3)
        which = "; ".join(", ".join(f"{k}={r[k]}" for k in (*BASELINE_KEY, "metric")) for _, r in cases.iterrows())
        raise RoiInputError(
            f"missing baseline: no ok row with size == 0 and a value in that metric column for {which}; add the "
            f"pretrained model's evaluation of the same eval_set (re-run the sweep: its baseline cell runs first; a "
            f"failed baseline row does not count) or drop those rows"
        )
    zero = long[(long["baseline"] <= 0) & long["value"].notna()]
    if not zero.empty:
        r = zero.iloc[0]
        raise RoiInputError(
            f"baseline {r['metric']} is {r['baseline']:g} for model={r['model']}, dataset={r['dataset']}, "
            f"eval_set={r['eval_set']}: relative improvement divides by it; report the other metrics only (--metric with their names, e.g. --metric mrr)"
        )
    long["improvement"] = (long["value"] - long["baseline"]) / long["baseline"]
    return long.reset_index(drop=True)


def select_points(improvements: pd.DataFrame) -> pd.DataFrame:
    """The rows that are points of a curve, with ``setting`` and ``grid`` added.

    Data-size curves take the final row of each trial (``final``), grid = size, setting = ``epochs=E`` under the
    fixed-epoch rule, ``train_to=steps`` / ``train_to=converged`` otherwise (``train_to=validated, refit`` for a
    sweep whose points were retrained on all N items, ``sweep.refit``): sizes that trained different numbers of
    epochs under one budget rule form one curve. A data x epochs grid whose rows carry validation scores
    (``sweep.select_epoch: validation``) adds one more data-size curve, setting ``best of E epochs (validation)``:
    each trial's row at the epoch its validation score chose (``roi.epoch_grid``).
    Epoch curves take every epoch row, grid = epoch, setting = ``size=N``; where several trials report the same
    epoch (one run per epoch count), the trial that ended there wins, since it trained with that schedule.

    Args:
        improvements: output of ``relative_improvement``.

    Returns:
        The selected rows, one per (group, seed, grid).
    """
    final = improvements["final"] if "final" in improvements else improvements["epoch"] == improvements["epochs"]
    data = improvements[(improvements["experiment"] == "data_size") & final.astype(bool)]
    rule = data["train_to"] if "train_to" in data else pd.Series("epochs", index=data.index)
    fixed = rule.isin(["", "epochs"])
    setting = ("epochs=" + data["epochs"].astype(str)).where(fixed, "train_to=" + rule.astype(str))
    # sweep.refit (retrained on all N items for the chosen length) is another curve than the searched models. It is
    # a sweep's setting: that sweep's sizes without a carve-out (not refit: they trained all N items already) are
    # points of its refit curve too.
    refit = data["refit"].astype(bool) if "refit" in data else pd.Series(False, index=data.index)
    if refit.any() and "sweep" in data:
        refit = data["sweep"].isin(set(data.loc[refit, "sweep"])) & ~fixed
    setting = setting.where(~refit, setting + ", refit")
    data = data.assign(setting=setting, grid=data["size"])
    best = best_epoch_points(improvements, best_epochs(improvements))
    if not best.empty:
        data = pd.concat([data, best], ignore_index=True)
    ep = improvements[(improvements["experiment"] == "epochs") & (improvements["epoch"] >= 1)]
    ep = ep.assign(setting="size=" + ep["size"].astype(str), grid=ep["epoch"], _final=ep["epoch"] == ep["epochs"])
    ep = ep.sort_values(["_final", "epochs", "trial_id"], ascending=[False, False, True], kind="stable").drop(
        columns="_final"
    )
    both = pd.concat([data, ep], ignore_index=True)
    # A re-run cell (same group, seed and grid point twice) keeps one row, chosen deterministically.
    both = both.drop_duplicates(subset=[*GROUP_KEY, "seed", "grid"], keep="first")
    return both.sort_values([*GROUP_KEY, "seed", "grid"], kind="stable").reset_index(drop=True)


def roi_curve(improvements: pd.DataFrame, *, cost_axes: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Per-seed curve points with average and marginal ROI, one row per (curve, seed, grid point).

    Rows whose metric is NaN are left out, so marginal ROI spans the gap to the next valid point.

    Args:
        improvements: output of ``relative_improvement``.
        cost_axes: experiment -> cost columns; the first is required to be positive, later ones (GPU-seconds)
            are kept only for groups where every point has a positive cost. Default ``COST_AXES``.

    Returns:
        Columns of ``CURVE_KEY`` plus seed, grid, cost, value, baseline, improvement, roi, marginal_roi, and the
        row identity (trial_id, size, epochs, epoch, train_seconds, gpu_seconds).

    Raises:
        RoiInputError: a zero, negative or missing cost on an experiment's first axis.
    """
    axes = dict(COST_AXES if cost_axes is None else cost_axes)
    pts = select_points(improvements)
    pts = pts[pts["improvement"].notna()]
    frames = []
    for experiment, columns in axes.items():
        sub = pts[pts["experiment"] == experiment]
        if sub.empty:
            continue
        for i, axis in enumerate(columns):
            positive = sub[axis] > 0
            if i == 0 and not positive.all():
                bad_rows = sub[~positive].drop_duplicates(["trial_id", "epoch"])  # table rows, not row x metric
                bad = bad_rows.iloc[0]
                raise RoiInputError(
                    f"zero cost: column {axis} is {bad[axis]} in {len(bad_rows)} row(s) of the {experiment} "
                    f"experiment (e.g. dataset={bad['dataset']}, seed={bad['seed']}, size={bad['size']}, "
                    f"epoch={bad['epoch']}); ROI = improvement / cost is undefined there; fix the exported {axis} "
                    f"or drop those rows"
                )
            ok_groups = positive.groupby([sub[k] for k in GROUP_KEY]).transform("all")
            part = sub[ok_groups]
            if part.empty:
                continue
            frames.append(part.assign(cost_axis=axis, cost=part[axis].astype(float)))
    if not frames:
        return pd.DataFrame(columns=[*CURVE_KEY, "seed", "grid", "cost", "improvement", "roi", "marginal_roi"])
    out = pd.concat(frames, ignore_index=True).sort_values([*CURVE_KEY, "seed", "grid"], kind="stable")
    out["roi"] = out["improvement"] / out["cost"]
    groups = out.groupby([*CURVE_KEY, "seed"], sort=False)
    d_imp, d_cost = groups["improvement"].diff(), groups["cost"].diff()
    # A non-increasing cost between neighbours (timing noise across separate runs) has no meaningful slope.
    out["marginal_roi"] = (d_imp / d_cost).where(d_cost > 0)
    return out.reset_index(drop=True)


def aggregate_seeds(points: pd.DataFrame) -> pd.DataFrame:
    """Mean curve across seeds with its band, one row per (curve, grid point).

    Points are aligned on the grid (size, or epoch), since seconds differ between seeds; ``cost`` is the mean
    cost across seeds. ROI columns are means of the per-seed ROI, and the band is their std (ddof 1, NaN for one
    seed), min and max.

    Args:
        points: output of ``roi_curve``.

    Returns:
        ``CURVE_KEY``, grid, n_seeds, cost (+ cost_min/cost_max), value, baseline, and mean/std/min/max of
        improvement, roi and marginal_roi (e.g. ``roi``, ``roi_std``, ``roi_min``, ``roi_max``), sorted by cost.
    """
    spec: dict[str, tuple[str, str]] = {
        "n_seeds": ("seed", "nunique"),
        "cost": ("cost", "mean"),
        "cost_min": ("cost", "min"),
        "cost_max": ("cost", "max"),
        "value": ("value", "mean"),
        "baseline": ("baseline", "mean"),
    }
    for col in ("improvement", "roi", "marginal_roi"):
        spec |= {col: (col, "mean"), f"{col}_std": (col, "std"), f"{col}_min": (col, "min"), f"{col}_max": (col, "max")}
    curves = points.groupby([*CURVE_KEY, "grid"], sort=False).agg(**spec).reset_index()
    return curves.sort_values([*CURVE_KEY, "cost", "grid"], kind="stable").reset_index(drop=True)


def summarize(
    points: pd.DataFrame,
    curves: pd.DataFrame,
    *,
    drop: float = DEFAULT_DROP,
    n_boot: int = 1000,
    seed: int = 0,
    metric_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per curve: baseline, best, peak ROI and the drop point of the mean curve with its interval.

    Args:
        points: output of ``roi_curve``.
        curves: output of ``aggregate_seeds`` on the same points.
        drop: fraction of the peak lost.
        n_boot: bootstrap resamples over seeds.
        seed: seed of the bootstrap.
        metric_order: the order of metrics in the summary (default: as they appear in ``points``).

    Returns:
        ``CURVE_KEY`` and n_seeds, n_points, first_cost, last_cost, baseline, best_value, best_improvement, best_cost,
        peak_roi, peak_cost, peak_at_first, drop, threshold, drop_cost (NaN when not reached), drop_reached,
        drop_status, drop_ci_low, drop_ci_high (inf = beyond the grid), drop_ci_high_beyond_grid, drop_ci_note, boot_reached_fraction, gain_ratio_at_drop
        (improvement at the drop over improvement at the peak), peak_marginal_roi, min_marginal_roi,
        first_nonpositive_marginal_cost.
    """
    rows = []
    point_groups = dict(iter(points.groupby(list(CURVE_KEY), sort=False)))
    for key, cur in curves.groupby(list(CURVE_KEY), sort=False):
        cur = cur.sort_values("cost", kind="stable")
        dp = drop_point(cur["cost"], cur["roi"], drop=drop)
        ci = bootstrap_drop_point(point_groups[key], drop=drop, n_boot=n_boot, seed=seed)
        best = cur.loc[cur["improvement"].idxmax()]
        marginal = cur["marginal_roi"]
        nonpos = cur.loc[marginal <= 0, "cost"]
        gain_ratio = (1.0 - drop) * dp.cost / dp.peak_cost if dp.reached and dp.cost is not None else math.nan
        rows.append(
            dict(zip(CURVE_KEY, key, strict=True))
            | {
                "n_seeds": int(point_groups[key]["seed"].nunique()),
                "n_points": len(cur),
                "first_cost": dp.first_cost,
                "last_cost": float(cur["cost"].max()),
                "baseline": float(cur["baseline"].mean()),
                "best_value": float(best["value"]),
                "best_improvement": float(best["improvement"]),
                "best_cost": float(best["cost"]),
                "peak_roi": dp.peak_value,
                "peak_cost": dp.peak_cost,
                "peak_at_first": dp.peak_at_first,
                "drop": drop,
                "threshold": dp.threshold,
                "drop_cost": dp.cost if dp.cost is not None else math.nan,
                "drop_reached": dp.reached,
                "drop_status": dp.status,
                "drop_ci_low": ci.low,
                "drop_ci_high": ci.high,
                "drop_ci_high_beyond_grid": bool(np.isinf(ci.high)),
                "drop_ci_note": ci.note,
                "boot_reached_fraction": ci.reached_fraction,
                "gain_ratio_at_drop": gain_ratio,
                "peak_marginal_roi": float(marginal.max()) if marginal.notna().any() else math.nan,
                "min_marginal_roi": float(marginal.min()) if marginal.notna().any() else math.nan,
                "first_nonpositive_marginal_cost": float(nonpos.iloc[0]) if not nonpos.empty else math.nan,
            }
        )
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    # The seed's axes (labeled items, training seconds) before GPU-seconds; metrics in the order given.
    axis_rank = summary["cost_axis"].map({a: i for i, a in enumerate(AXIS_LABELS)}).fillna(len(AXIS_LABELS))
    order_of = dict.fromkeys([*(metric_order or []), *points["metric"]])
    metric_rank = summary["metric"].map({m: i for i, m in enumerate(order_of)})
    order = ["task", "model", "dataset", "eval_set", "experiment", "setting", "_axis", "_metric"]
    summary = summary.assign(_axis=axis_rank, _metric=metric_rank).sort_values(order, kind="stable")
    return summary.drop(columns=["_axis", "_metric"]).reset_index(drop=True)
