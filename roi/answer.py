"""The report's answer first: one plain sentence per dataset, metric and experiment.

Words only: every number comes from the summary (``roi.curves.summarize``), the forecasts (``roi.forecast``)
and the price table (``roi.price``). A curve whose ROI is never positive says so in words, never as a "peak
ROI" of a negative number.
"""

from __future__ import annotations

import math

import pandas as pd

from roi.curves import GROUP_KEY
from roi.forecast import Forecast
from roi.price import Prices, step_past
from roi.tables import format_cost

NEVER_POSITIVE = "fine-tuning did not beat the pretrained model on this data at these settings"
PRIMARY = {"data_size": "size", "epochs": "train_seconds"}


def recommendations(
    summary: pd.DataFrame,
    *,
    forecasts: dict[tuple, Forecast] | None = None,
    prices: pd.DataFrame | None = None,
    price_spec: Prices | None = None,
) -> list[dict]:
    """One answer per curve on its experiment's own axis (labeled items, training seconds).

    Returns:
        Dicts with the curve's dataset, metric, experiment and setting, ``text`` (the sentence) and ``kind``
        (``found``, ``forecast``, ``not found``, ``never positive``).
    """
    forecasts = forecasts or {}
    price_spec = price_spec or Prices()
    several = [k for k in ("dataset", "model") if summary[k].nunique() > 1] if not summary.empty else []
    if not summary.empty and summary.groupby("dataset")["eval_set"].nunique().max() > 1:
        several.append("eval_set")  # two query samples of one dataset
    if not summary.empty and summary.groupby(["dataset", "experiment"])["setting"].nunique().max() > 1:
        several.append("setting")  # two curves of one dataset: e.g. the last epoch and the best on validation
    out = []
    for _, row in summary.iterrows():
        if PRIMARY.get(row["experiment"]) != row["cost_axis"]:
            continue
        key = tuple(row[k] for k in GROUP_KEY)
        curve_prices = None
        if prices is not None and not prices.empty:
            mask = pd.Series(True, index=prices.index)
            for k, v in zip(GROUP_KEY, key, strict=True):
                mask &= prices[k] == v
            curve_prices = prices[mask]
        kind, text = _sentence(row, forecasts.get(key), curve_prices, price_spec)
        if several:  # which dataset, where the report holds more than one (model and eval set likewise)
            text = f"{' · '.join(str(row[k]) for k in several)}: {text}"
        out.append(
            {
                "dataset": row["dataset"],
                "metric": row["metric"],
                "experiment": row["experiment"],
                "setting": row["setting"],
                "kind": kind,
                "text": text,
            }
        )
    return out


def _sentence(row: pd.Series, fc: Forecast | None, prices: pd.DataFrame | None, spec: Prices) -> tuple[str, str]:
    axis, metric = row["cost_axis"], row["metric"]
    at = _at(row["experiment"], axis, row["best_cost"])
    if row["drop_status"] == "no positive ROI" or not row["best_improvement"] > 0:
        return "never positive", (
            f"{metric}: {NEVER_POSITIVE} (best {row['best_improvement']:+.1%} {at}, at {row['setting']})."
        )
    head = f"{metric} gains {row['best_improvement']:+.1%} {at}"
    if row["drop_reached"]:
        text = f"{head}; the drop point is ~{_cost(axis, row['drop_cost'])}{_interval(axis, row)}"
        text += _past_ratio(row, prices, spec)
        return "found", text + "."
    last = _cost(axis, row["last_cost"])
    if fc is not None and fc.status == "ok" and math.isfinite(fc.drop_cost):
        band = ""
        if math.isfinite(fc.drop_low):
            high = format_cost(axis, fc.drop_high) if math.isfinite(fc.drop_high) else "beyond the forecast range"
            band = f" [{format_cost(axis, fc.drop_low)} to {high}]"
        return "forecast", (
            f"{head}; ROI had not dropped by {last}: the FORECAST drop point is ~{_cost(axis, fc.drop_cost)}{band} "
            f"({fc.family} law fitted past the grid; measure there to confirm)."
        )
    why = f"; {fc.note}" if fc is not None and fc.status != "ok" else ""
    return "not found", (
        f"{head}; ROI stays above {1 - row['drop']:.0%} of its peak up to {last}, so the drop point is past the "
        f"grid{why}. Measure larger sizes (sweep.sizes: auto finds it)."
        if row["experiment"] == "data_size"
        else f"{head}; ROI stays above {1 - row['drop']:.0%} of its peak up to {last}: train longer to find it{why}."
    )


def _at(experiment: str, axis: str, cost: float) -> str:
    return f"with {cost:,.0f} items" if axis == "size" else f"after {_cost(axis, cost)} of training"


def _cost(axis: str, value: float) -> str:
    text = format_cost(axis, value)
    return f"{text} items" if axis == "size" else text


def _interval(axis: str, row: pd.Series) -> str:
    if row["drop_ci_note"] or not math.isfinite(row["drop_ci_low"]):
        return " (single seed: no interval)" if row["drop_ci_note"] else ""
    high = format_cost(axis, row["drop_ci_high"]) if math.isfinite(row["drop_ci_high"]) else "beyond the grid"
    return f" [{format_cost(axis, row['drop_ci_low'])} to {high}]"


def _past_ratio(row: pd.Series, prices: pd.DataFrame | None, spec: Prices) -> str:
    """'; past it each +1% costs 3.2x more (...)': the step across the drop against the average at the peak ROI."""
    if prices is None or prices.empty:
        return ""
    step = step_past(prices, row["drop_cost"])
    if step is not None and not step["step_gain_pct"] > 0:
        return f"; past it, more {'items' if row['experiment'] == 'data_size' else 'training'} did not improve {row['metric']}"
    peak = prices[prices["grid"] == _grid_of(prices, row["peak_cost"])]
    if step is None or peak.empty:
        return ""
    peak = peak.iloc[0]
    gain = peak["improvement"] * 100.0
    if not gain > 0:
        return ""
    if spec.priced and math.isfinite(step["cost_per_pct"]) and peak["total_cost"] > 0:
        before, after = peak["total_cost"] / gain, step["cost_per_pct"]
        shown = f"{spec.money(after)} vs {spec.money(before)} at the peak ROI"
    elif row["experiment"] == "data_size" and math.isfinite(step["items_per_pct"]):
        before, after = peak["items"] / gain, step["items_per_pct"]
        shown = f"{after:,.0f} items vs {before:,.0f} at the peak ROI"
    elif math.isfinite(step["gpu_seconds_per_pct"]) and peak["gpu_seconds"] > 0:
        before, after = peak["gpu_seconds"] / gain, step["gpu_seconds_per_pct"]
        shown = f"{after:,.1f} GPU-s vs {before:,.1f} at the peak ROI"
    else:
        return ""
    if not (before > 0 and after > 0):
        return ""
    return f"; past it each +1% costs {after / before:.1f}x more ({shown})"


def _grid_of(prices: pd.DataFrame, cost: float) -> float:
    """The grid point whose mean cost is ``cost`` (epoch curves: grid = epoch, cost = seconds)."""
    col = "items" if (prices["experiment"] == "data_size").all() else "train_seconds"
    idx = (prices[col] - cost).abs().idxmin()
    return prices.loc[idx, "grid"]
