"""The analysis behind a report, computed and not yet presented: ``roi.analyse(table) -> Analysis``.

Compute apart from presentation, as scikit-learn's ``learning_curve`` is apart from ``LearningCurveDisplay``:
this module validates a results table and computes the curves, the summary, the forecasts, the prices and the
answer; ``roi.plots`` turns an ``Analysis`` into figures and ``roi.report`` writes it. Nothing here writes a
file or imports plotly, so a notebook gets the numbers with pandas alone (docs/roi.md, "Python API").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from roi.answer import Answer, recommendations
from roi.curves import (
    COST_AXES,
    CURVE_KEY,
    DEFAULT_DROP,
    aggregate_seeds,
    check_drop,
    relative_improvement,
    roi_curve,
    summarize,
)
from roi.epoch_grid import best_epochs, grid_table
from roi.errors import RoiInputError
from roi.forecast import Forecast, forecast_all, forecast_summary
from roi.frontier import frontier_cells, pareto_frontier
from roi.headline import with_headline
from roi.load import NOTES_ATTR, SOURCE_ATTR, resolve_metrics, validate_table
from roi.plan import plan_table
from roi.price import Prices, price_table
from roi.tables import summary_notes

__all__ = ["Analysis", "Answer", "analyse"]


@dataclass
class Analysis:
    """Everything a report shows, computed, not yet written.

    Attributes:
        source: where the table came from (a path, a URI or "results table").
        metrics: the metric columns analysed, in the report's order.
        drop: the drop fraction (target elasticity = 1 - drop).
        points: per seed, per grid point, per cost axis (``roi.curves.roi_curve``).
        curves: the mean across seeds with min-max bands (``roi.curves.aggregate_seeds``).
        summary: one row per curve: the answer, Jina's drop point, their intervals, a ``note`` column.
        notes: what was left out of the analysis and why, in words.
        answers: one ``Answer`` per curve on its experiment's own axis: the report's first section.
    """

    source: str
    metrics: list[str]
    drop: float
    points: pd.DataFrame  # per seed, per grid point, per cost axis
    curves: pd.DataFrame  # mean across seeds with bands
    summary: pd.DataFrame  # one row per curve, with a `note` column
    notes: list[str] = field(default_factory=list)
    forecasts: dict[tuple, Forecast] = field(default_factory=dict)  # data-size curves, labeled-items axis
    prices: pd.DataFrame = field(default_factory=pd.DataFrame)  # roi.price.price_table
    price_spec: Prices = field(default_factory=Prices)
    answers: list[Answer] = field(default_factory=list)
    # the data x epochs grid (roi.epoch_grid): empty unless a data-size sweep evaluated more than one epoch
    epoch_grid: pd.DataFrame = field(default_factory=pd.DataFrame)
    best_epochs: pd.DataFrame = field(default_factory=pd.DataFrame)  # per trial, the epoch chosen on validation
    plans: list = field(default_factory=list)  # roi.plan.RoundPlan per data-size curve: the next round
    # the cost frontier (roi.frontier), for a data x epochs grid only: every cell, and the frontier's cells
    frontier_cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    frontier: pd.DataFrame = field(default_factory=pd.DataFrame)


def analyse(
    df: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    drop: float = DEFAULT_DROP,
    n_boot: int = 1000,
    boot_seed: int = 0,
    prices: Prices | None = None,
    queries: pd.DataFrame | None = None,
) -> Analysis:
    """Validate the table and compute curves, mean curves, the summary, forecasts, prices and the answers.

    Args:
        df: a results table (``roi.load.load_results`` output, or any table that follows the schema).
        metrics: metric columns or bare names; None = every metric with values.
        drop: fraction of the peak ROI lost at the drop point.
        n_boot, boot_seed: bootstrap resamples and their seed.
        prices: label cost, GPU-hour price, currency and value per +1%; queries: per-query scores (or None).

    Raises:
        RoiInputError: missing baseline, missing columns, a single point, all-NaN metrics, zero cost, bad option.
    """
    drop = check_drop(drop)
    table = validate_table(df, source=df.attrs.get(SOURCE_ATTR, "results table"))
    source = table.attrs[SOURCE_ATTR]
    notes = list(table.attrs.get(NOTES_ATTR, []))
    chosen, metric_notes = resolve_metrics(table, metrics)
    notes += metric_notes
    try:
        improvements = relative_improvement(table, metrics=chosen)
        points = roi_curve(improvements)
    except RoiInputError as exc:
        raise RoiInputError(f"{source}: {exc.message}", fix=exc.fix) from exc

    nan_rows = improvements[improvements["value"].isna()].drop_duplicates(["trial_id", "epoch"])
    if len(nan_rows):
        notes.append(f"{len(nan_rows)} ok row(s) with NaN metric values: those values are left out of the curves")
    data = improvements[improvements["experiment"] == "data_size"]
    unfinished = ~data.groupby("trial_id")["final"].any()
    if unfinished.any():
        notes.append(
            f"{int(unfinished.sum())} data-size trial(s) without their final epoch row left out (still running?)"
        )
    if points.empty:
        raise RoiInputError(
            f"{source}: no curve point: no final data_size row and no epochs row with epoch >= 1 has a value"
        )

    curves = aggregate_seeds(points)
    n_points = curves.groupby(list(CURVE_KEY)).size()
    if (n_points < 2).all():
        raise RoiInputError(
            f"{source}: single point: every curve has one grid point (e.g. {_describe(n_points.index[0])}); "
            f"ROI curves and drop points need at least two sizes or epochs; run more cells of the sweep"
        )
    if (n_points < 2).any():
        notes.append(f"{int((n_points < 2).sum())} curve(s) with a single grid point: no drop point for them")
    groups = curves[["experiment", "cost_axis", "dataset", "metric"]].drop_duplicates()
    for experiment, axes in COST_AXES.items():
        for axis in axes[1:]:
            with_primary = groups[(groups["experiment"] == experiment) & (groups["cost_axis"] == axes[0])]
            with_axis = groups[(groups["experiment"] == experiment) & (groups["cost_axis"] == axis)]
            if len(with_primary) > len(with_axis):
                notes.append(
                    f"{axis} axis skipped for {len(with_primary) - len(with_axis)} {experiment} curve(s): {axis} is 0 "
                    f"or missing (CPU runs)"
                )
    if (curves.groupby(list(CURVE_KEY))["n_seeds"].nunique() > 1).any():
        notes.append("some grid points have fewer seeds than others (a partial sweep?): means use the seeds present")

    # The choice reads the validated table's keys, epochs, val_score, steps and min_steps only (the step floor;
    # roi.epoch_grid.best_epochs).
    best = best_epochs(table)
    grid = grid_table(improvements, best)
    if not grid.empty and best.empty:
        notes.append(
            "the data x epochs grid has no validation scores (sweep.select_epoch: validation records them): no best "
            "epoch is chosen; picking it on the held-out metrics would overstate what a user gets"
        )

    prices = prices or Prices()
    priced = price_table(points, prices)
    summary = summarize(points, curves, drop=drop, n_boot=n_boot, seed=boot_seed, metric_order=chosen)
    summary = with_headline(summary, points, curves, table, queries, priced, prices, drop=drop, n_boot=n_boot)
    summary["note"] = summary_notes(summary)
    forecasts = forecast_all(points, drop=drop, n_boot=n_boot, seed=boot_seed)
    summary = forecast_summary(summary, forecasts)
    if prices.gpu_hour is not None and not priced.empty and not (priced["gpu_seconds"].fillna(0) > 0).any():
        notes.append("no GPU-seconds in the records (CPU trials): training is priced at 0; labels only")
    answers = recommendations(summary, forecasts=forecasts, prices=priced, price_spec=prices)
    plans = plan_table(points, prices=prices, target=1 - drop) if _has_data_size(points) else []
    cells = frontier_cells(improvements, best) if not grid.empty else pd.DataFrame()
    front = pareto_frontier(cells, prices) if not cells.empty else pd.DataFrame()
    return Analysis(
        source=source,
        metrics=chosen,
        drop=drop,
        points=points,
        curves=curves,
        summary=summary,
        notes=notes,
        forecasts=forecasts,
        prices=priced,
        price_spec=prices,
        answers=answers,
        epoch_grid=grid,
        best_epochs=best,
        plans=plans,
        frontier_cells=cells,
        frontier=front,
    )


def _has_data_size(points: pd.DataFrame) -> bool:
    return bool(((points["experiment"] == "data_size") & (points["cost_axis"] == "size")).any())


def _describe(key: tuple) -> str:
    return ", ".join(
        f"{k}={v}" for k, v in zip(CURVE_KEY, key, strict=True) if k in ("dataset", "metric", "experiment", "cost_axis")
    )
