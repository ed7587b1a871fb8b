"""The report's answer first: one plain sentence per dataset, metric and experiment.

Words only: every number comes from the summary (``roi.curves.summarize``), the forecasts (``roi.forecast``)
and the price table (``roi.price``). A curve whose ROI is never positive says so in words, never as a "peak
ROI" of a negative number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from roi.curves import GROUP_KEY
from roi.elasticity import BELOW, FOUND
from roi.forecast import Forecast
from roi.intervals import SEEDS_AND_QUERIES
from roi.price import Prices, step_past
from roi.tables import format_cost

NEVER_POSITIVE = "fine-tuning did not beat the pretrained model on this data at these settings"
PRIMARY = {"data_size": "size", "epochs": "train_seconds"}


@dataclass(frozen=True)
class Answer:
    """The answer for one curve, in words.

    Attributes:
        dataset, metric, experiment, setting: the curve (``setting`` says what the experiment kept fixed).
        kind: ``found``, ``below``, ``not reached`` or ``never positive``.
        text: the sentence the report opens with; every number in it comes from the summary.
    """

    dataset: str
    metric: str
    experiment: str
    setting: str
    kind: str
    text: str


def recommendations(
    summary: pd.DataFrame,
    *,
    forecasts: dict[tuple, Forecast] | None = None,
    prices: pd.DataFrame | None = None,
    price_spec: Prices | None = None,
) -> list[Answer]:
    """One answer per curve on its experiment's own axis (labeled items, training seconds).

    Returns:
        An ``Answer`` per curve: the elasticity answer first (``roi.elasticity``), then Jina's drop point, named
        with the first size it is relative to.
    """
    forecasts = forecasts or {}
    price_spec = price_spec or Prices()
    several = [k for k in ("dataset", "model") if summary[k].nunique() > 1] if not summary.empty else []
    if not summary.empty and summary.groupby("dataset")["eval_set"].nunique().max() > 1:
        several.append("eval_set")  # two query samples of one dataset
    # Two curves of one experiment on one dataset (one epoch and a step minimum, say): those answers name theirs.
    curve_keys = ["dataset", "model", "eval_set", "experiment"]
    shared: set[tuple] = set()
    if not summary.empty:
        curves = summary[summary["experiment"].map(PRIMARY) == summary["cost_axis"]]
        counts = curves.groupby(curve_keys)["setting"].nunique()
        shared = set(counts[counts > 1].index)
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
        named = several + (["setting"] if tuple(row[k] for k in curve_keys) in shared else [])
        if named:  # which dataset, where the report holds more than one (model, eval set, setting likewise)
            text = f"{' · '.join(str(row[k]) for k in named)}: {text}"
        out.append(Answer(row["dataset"], row["metric"], row["experiment"], row["setting"], kind, text))
    return out


def _sentence(row: pd.Series, fc: Forecast | None, prices: pd.DataFrame | None, spec: Prices) -> tuple[str, str]:
    axis, metric = row["cost_axis"], row["metric"]
    at = _at(row["experiment"], axis, row["best_cost"])
    if row["drop_status"] == "no positive ROI" or not row["best_improvement"] > 0:
        return "never positive", (
            f"{metric}: {NEVER_POSITIVE} (best {row['best_improvement']:+.1%} {at}, at {row['setting']})."
        )
    head = f"{metric} gains {row['best_improvement']:+.1%} {at}"
    ratio, target = 1.0 / row["target_elasticity"], row["target_elasticity"]
    more = "items" if row["experiment"] == "data_size" else "training"
    state = row["answer_state"]
    if state == FOUND:
        text = (
            f"{head}; past ~{_cost(axis, row['answer_cost'])}{_answer_interval(axis, row)} each further +1% costs "
            f"more than {ratio:.1f}x what the average +1% cost so far (elasticity {target:g})"
        )
        kind = "found"
    elif state == BELOW:
        text = (
            f"{head}; from the first size on ({_cost(axis, row['first_cost'])}) each further +1% already costs more "
            f"than {ratio:.1f}x the average +1% (elasticity <= {target:g} up to {_cost(axis, row['last_cost'])}): "
            f"the answer is below the first size{_answer_interval(axis, row)}; measure smaller "
            f"{'sizes' if more == 'items' else 'epochs'} to place it"
        )
        kind = "below"
    else:
        text = (
            f"{head}; up to {_cost(axis, row['last_cost'])} the next +1% still costs less than {ratio:.1f}x the "
            f"average (last elasticity {row['last_elasticity']:.2f}): not reached by the largest "
            f"{'size' if more == 'items' else 'training time'}{_answer_interval(axis, row)}"
        )
        if math.isfinite(row["answer_hint"]):
            text += f" (hint, not a measurement: the last elasticities extrapolate to {target:g} near {_cost(axis, row['answer_hint'])}; measure there)"
        kind = "not reached"
    text += _break_even(axis, row, spec) + ". " + _jina(axis, row, prices, spec)
    return kind, text


def _answer_interval(axis: str, row: pd.Series) -> str:
    """' [400 to 900, 95%, seeds and queries]', or why there is none."""
    if math.isnan(row["answer_low"]):
        return " (one seed, no per-query scores: no interval)"
    low = "below the first size" if row["answer_low"] == 0 else format_cost(axis, row["answer_low"])
    high = "beyond the grid" if math.isinf(row["answer_high"]) else format_cost(axis, row["answer_high"])
    high = "below the first size" if row["answer_high"] == 0 else high
    if row["answer_low"] == row["answer_high"] and row["answer_state"] != FOUND:
        return ""  # every resample agrees on the state: the state says it
    source = (
        "seeds and queries"
        if row["answer_method"] == SEEDS_AND_QUERIES
        else "seeds only"
        if "no per-query" in row["answer_method"]
        else "queries only"
    )
    return f" [{low} to {high}, 95%, {source}]"


def _break_even(axis: str, row: pd.Series, spec: Prices) -> str:
    state = row.get("break_even_state", "no value")
    if not isinstance(state, str) or state == "no value":
        return ""
    if state == FOUND:
        return (
            f"; with +1% worth {spec.money(spec.value_per_point)}, it pays up to ~{_cost(axis, row['break_even_cost'])}"
        )
    return f"; with +1% worth {spec.money(spec.value_per_point)}, {state}"


def _jina(axis: str, row: pd.Series, prices: pd.DataFrame | None, spec: Prices) -> str:
    """The article's rule, named: its number depends on the grid's first size, so that size is given with it."""
    name = f"Jina's {row['drop']:.0%}-drop point (relative to the first size, N0 = {_cost(axis, row['first_cost'])})"
    if row["drop_reached"]:
        return f"{name}: ~{_cost(axis, row['drop_cost'])}{_interval(axis, row)}{_past_ratio(row, prices, spec)}."
    return f"{name}: not reached within the grid."


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
