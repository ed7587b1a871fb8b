"""The next round: label another round or stop, and what the round is expected to give and cost.

For one data-size curve (one dataset, model, eval set, setting and metric) and the user's largest measured size N:

- **Verdict**: the headline rule (``roi.elasticity``) read on the sizes up to N: ``keep labeling`` while the
  elasticity e = d ln G / d ln N has not persistently fallen to 0.3, ``stop`` once it has (or from the first size);
  the local elasticity is the last segment's.
- **The next round** (N -> f N, f = 2 by default, never more than ``MAX_ROUND``): the expected relative improvement
  at f N per seed from the forecast's fit (``roi.forecast.fit_seeds``, family chosen on a held-out size), or, where
  the fit refuses (fewer than three sizes, a poor fit), from the seed's last elasticity (G(f N) = G(N) f^e, e clipped
  to [0, 1]). The interval is the seeds' spread widened on both sides by the **measured** one-round error of that
  method on that metric (``roi/forecast_errors.csv``, written by ``python -m roi.plan_backtest --write``
  from the published tables): a user's curve gets the largest error the tool made on real curves, not a guess.
- **Cost of the round**: (f - 1) N new labels x the label cost, plus the GPU time of training at f N (retrained from
  scratch, as a data-size point is), estimated from the measured sizes: GPU-seconds(N) x f^s with s the log-log
  slope of GPU-seconds over the last two sizes (1 with one size). Training seconds the same way (a CPU run's cost).
- **Price of the next +1%**: the round's cost / its expected gain in percentage points, with the interval's ends,
  against ``value_per_point``; and whether a ``target`` score is expected at f N.

Nothing is forecast further than one round: the error is measured one round out (1.5x to 2.5x) and grows past it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from roi.curves import GROUP_KEY
from roi.elasticity import BELOW, DEFAULT_TARGET, FOUND, NEVER_POSITIVE, NOT_REACHED, Elasticity, read_elasticity
from roi.elasticity import segment_elasticities as _segments
from roi.errors import RoiInputError
from roi.forecast import fit_seeds
from roi.price import Prices

DEFAULT_ROUND = 2.0
MAX_ROUND = 2.5  # the one-round backtest covers 1.5x to 2.5x; past it the measured error does not apply
FIT, ELASTICITY = "fit", "elasticity"
KEEP, STOP, MEASURE = "keep labeling", "stop", "measure more"
ERRORS_FILE = "forecast_errors.csv"


@dataclass(frozen=True)
class Margin:
    """The measured one-round error of a method on a metric (relative improvement, as a fraction)."""

    method: str
    metric: str
    error: float  # the largest absolute error measured (0.01 = 1 percentage point of relative improvement)
    n_cases: int
    note: str = ""


def load_margins() -> dict[tuple[str, str], Margin]:
    """(method, metric) -> Margin from the packaged ``roi/forecast_errors.csv`` (``python -m roi.plan_backtest``)."""
    text = resources.files("roi").joinpath(ERRORS_FILE).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    out = {}
    for row in csv.DictReader(lines):
        out[(row["method"], row["metric"])] = Margin(
            row["method"], row["metric"], float(row["max_abs_error_pp"]) / 100.0, int(row["n_cases"])
        )
    return out


def margin_for(margins: dict[tuple[str, str], Margin], method: str, metric: str) -> Margin:
    """The measured margin of ``method`` on ``metric``; a metric never backtested gets the method's largest one."""
    if (method, metric) in margins:
        return margins[(method, metric)]
    same = [m for (meth, _), m in margins.items() if meth == method]
    if not same:
        return Margin(method, metric, math.nan, 0, "no backtest of this method")
    worst = max(same, key=lambda m: m.error)
    return Margin(method, metric, worst.error, worst.n_cases, f"{metric} never backtested: {worst.metric}'s error used")


@dataclass(frozen=True)
class RoundPlan:
    """The plan for one curve at its largest measured size (all gains are relative improvements, fractions)."""

    key: dict  # GROUP_KEY values
    size: float  # N: the largest measured size used
    next_size: float  # f N
    factor: float
    n_seeds: int
    baseline: float  # the pretrained model's metric value
    value: float  # the measured metric value at N (mean over seeds)
    gain: float  # measured G(N), mean over seeds
    answer: Elasticity  # the headline rule on the sizes up to N
    verdict: str
    method: str  # fit | elasticity | "" (no forecast)
    method_note: str
    expected_gain: float  # G(f N), mean over seeds
    spread_low: float  # the seeds' lowest / highest G(f N)
    spread_high: float
    margin: Margin
    train_seconds: float  # estimated for training at f N
    gpu_seconds: float
    labels_added: float
    label_cost: float  # NaN without prices
    training_cost: float
    total_cost: float
    notes: list[str] = field(default_factory=list)

    @property
    def gain_low(self) -> float:
        return self.spread_low - self.margin.error

    @property
    def gain_high(self) -> float:
        # mrr, map, recall and ndcg at k are at most 1: the interval stops at the gain of a perfect score
        return min(self.spread_high + self.margin.error, 1.0 / self.baseline - 1.0)

    def value_at(self, gain: float) -> float:
        """The metric value at relative improvement ``gain``."""
        return self.baseline * (1.0 + gain)

    def price_per_point(self, gain: float) -> float:
        """The round's cost per percentage point it adds, if it reaches ``gain``; inf when it adds nothing."""
        added = (gain - self.gain) * 100.0
        return self.total_cost / added if added > 0 else math.inf


def plan_round(
    points: pd.DataFrame,
    *,
    factor: float = DEFAULT_ROUND,
    prices: Prices | None = None,
    margins: dict[tuple[str, str], Margin] | None = None,
    target: float = DEFAULT_TARGET,
    method: str | None = None,
) -> RoundPlan:
    """The plan for ONE data-size curve on the labeled-items axis.

    Args:
        points: ``roi.curves.roi_curve`` rows of one curve (``GROUP_KEY`` fixed, cost_axis ``size``), per seed,
            only the sizes the plan may read (the caller cuts at ``--at``).
        factor: the round: f N labeled items after it (1 < f <= ``MAX_ROUND``).
        prices: label cost and GPU-hour price (None: items and seconds only).
        margins: ``load_margins()`` (default: the packaged file).
        target: the elasticity that ends the search (1 - drop).
        method: None (the fit, else the elasticity), or force ``fit`` / ``elasticity`` (the backtest).
    """
    check_round(factor)
    prices = prices or Prices()
    margins = load_margins() if margins is None else margins
    key = {k: points[k].iloc[0] for k in GROUP_KEY}
    mean = points.groupby("grid").agg(
        improvement=("improvement", "mean"),
        value=("value", "mean"),
        baseline=("baseline", "mean"),
        train_seconds=("train_seconds", "mean"),
        gpu_seconds=("gpu_seconds", lambda s: s.fillna(0.0).mean()),
    )
    sizes = mean.index.to_numpy(float)
    size = float(sizes[-1])
    answer = read_elasticity(sizes, mean["improvement"].to_numpy(float), target=target)
    per_seed = points.pivot_table(index="seed", columns="grid", values="improvement", aggfunc="mean")
    # Only the seeds measured at N forecast f N: in a partial sweep a seed that stopped at a smaller size would
    # forecast its own next round, not this one.
    at_n = per_seed[per_seed[size].notna()]
    partial = len(at_n) < len(per_seed)
    used = points[points["seed"].isin(at_n.index)]
    method, note, preds = _forecast(used, at_n, factor, method=method)
    metric = str(key["metric"])
    margin = margin_for(margins, method, metric) if method else Margin("", metric, math.nan, 0)
    train_s = _scaled(sizes, mean["train_seconds"].to_numpy(float), factor)
    gpu_s = _scaled(sizes, mean["gpu_seconds"].to_numpy(float), factor)
    labels = (factor - 1.0) * size
    label_cost = labels * prices.label_cost if prices.label_cost is not None else math.nan
    training_cost = gpu_s / 3600.0 * prices.gpu_hour if prices.gpu_hour is not None else math.nan
    total = float(np.nansum([label_cost, training_cost])) if prices.priced else math.nan
    notes = [margin.note] if margin.note else []
    if partial:
        notes.append(
            f"{len(per_seed) - len(at_n)} seed(s) without the largest size (a partial sweep?): the forecast uses the "
            f"{len(at_n)} measured there"
        )
    if prices.gpu_hour is not None and gpu_s == 0:
        notes.append("no GPU-seconds in the records (CPU trials): training priced at 0")
    return RoundPlan(
        key=key,
        size=size,
        next_size=factor * size,
        factor=factor,
        n_seeds=int(at_n.shape[0]),
        baseline=float(mean["baseline"].iloc[-1]),
        value=float(mean["value"].iloc[-1]),
        gain=float(mean["improvement"].iloc[-1]),
        answer=answer,
        verdict=_verdict(answer),
        method=method,
        method_note=note,
        expected_gain=float(np.mean(preds)) if preds.size else math.nan,
        spread_low=float(np.min(preds)) if preds.size else math.nan,
        spread_high=float(np.max(preds)) if preds.size else math.nan,
        margin=margin,
        train_seconds=train_s,
        gpu_seconds=gpu_s,
        labels_added=labels,
        label_cost=label_cost,
        training_cost=training_cost,
        total_cost=total,
        notes=notes,
    )


def check_round(factor: float) -> float:
    """``factor`` if 1 < factor <= ``MAX_ROUND``; RoiInputError otherwise."""
    if not (isinstance(factor, (int, float)) and 1.0 < factor <= MAX_ROUND):
        raise RoiInputError(
            f"--round must be above 1 and at most {MAX_ROUND:g} (the items after the round over the items now); "
            f"got {factor}",
            fix=f"give --round 2 (one doubling, the default) or up to {MAX_ROUND:g}: the forecast's error is measured "
            "one round out, so plan one round, measure it, and plan again",
        )
    return float(factor)


def _verdict(answer: Elasticity) -> str:
    if answer.state == NOT_REACHED:
        return KEEP
    if answer.state in (FOUND, BELOW, NEVER_POSITIVE):
        return STOP
    return MEASURE


def _forecast(
    points: pd.DataFrame, per_seed: pd.DataFrame, factor: float, *, method: str | None = None
) -> tuple[str, str, np.ndarray]:
    """(method, note, per-seed G(f N)): the fit where it does not refuse, else each seed's last elasticity
    (``method`` forces one: the backtest measures both)."""
    fitted = fit_seeds(points[["seed", "grid", "improvement"]])
    why = fitted.note.removeprefix("no forecast: ")

    if fitted.ok and method in (None, FIT):
        preds = [fitted.fits[int(s)].predict(factor * float(g.dropna().index.max())) for s, g in per_seed.iterrows()]
        return FIT, f"fitted on the sizes up to N: {fitted.note}", np.asarray(preds, float)
    if method == FIT:
        return "", f"no fit: {why}", np.array([])
    preds = []
    for _, g in per_seed.iterrows():
        g = g.dropna()
        gains, sizes = g.to_numpy(float), g.index.to_numpy(float)
        if sizes.size < 2 or gains[-1] <= 0:  # one size: no slope; no gain: no logarithm
            continue
        _, slope = _segments(sizes, gains)
        e = float(slope[-1]) if np.isfinite(slope[-1]) else 1.0
        preds.append(gains[-1] * factor ** min(max(e, 0.0), 1.0))
    if not preds:
        short = per_seed.notna().sum(axis=1).max() < 2
        return (
            "",
            f"no forecast: {why}; "
            + ("and one size has no elasticity to carry" if short else "and no positive gain to extrapolate"),
            np.array([]),
        )
    lead = "the last elasticity carried one round (G x f^e, e in [0, 1])"
    return ELASTICITY, lead if fitted.ok else f"{lead}; no fit: {why}", np.asarray(preds)


def _scaled(sizes: np.ndarray, seconds: np.ndarray, factor: float) -> float:
    """Seconds at ``factor`` x the last size: the last value x factor^slope, slope = log-log over the last two."""
    last = float(seconds[-1]) if seconds.size else math.nan
    if not last > 0:
        return 0.0 if last == 0 else math.nan
    slope = 1.0
    if sizes.size >= 2 and seconds[-2] > 0:
        slope = math.log(seconds[-1] / seconds[-2]) / math.log(sizes[-1] / sizes[-2])
        slope = min(max(slope, 0.0), 1.5)  # timing noise: never shrinking, never steeper than 1.5
    return last * factor**slope


def plan_table(
    points: pd.DataFrame,
    *,
    at: float | None = None,
    factor: float = DEFAULT_ROUND,
    prices: Prices | None = None,
    margins: dict[tuple[str, str], Margin] | None = None,
    target: float = DEFAULT_TARGET,
) -> list[RoundPlan]:
    """A plan for every data-size curve on the labeled-items axis, read on the sizes up to ``at`` (default: all).

    Raises:
        RoiInputError: no data-size curve, or no measured size at or under ``at``.
    """
    check_round(factor)
    margins = load_margins() if margins is None else margins
    sub = points[(points["experiment"] == "data_size") & (points["cost_axis"] == "size")]
    if sub.empty:
        raise RoiInputError(
            "no data-size curve on labeled items: `roi plan` plans the next round of labels",
            fix="run a data-size sweep (sweep.experiment: data_size, docs/sweep-files.md) and plan on its run folder",
        )
    if at is not None:
        cut = sub[sub["grid"] <= at]
        if cut.empty:
            raise RoiInputError(
                f"--at {at:g}: no measured size at or under it (the smallest is {sub['grid'].min():,.0f})",
                fix="give --at a measured size or larger, or leave it out to plan from the largest size",
            )
        sub = cut
    return [
        plan_round(cur, factor=factor, prices=prices, margins=margins, target=target)
        for _, cur in sub.groupby(list(GROUP_KEY), sort=False)
    ]


# ---- words (numbers above, formatting only below) ----


def describe_plan(plan: RoundPlan, prices: Prices | None = None, *, goal: float | None = None) -> list[str]:
    """The plan as lines: verdict, the next round's expected score with its interval, its cost and price per +1%,
    and (``goal``: a target metric value) whether the round is expected to reach it. ``plan.notes`` are left out:
    they repeat across curves, so the caller prints them once."""
    prices = prices or Prices()
    metric, a = plan.key["metric"], plan.answer
    ratio = 1.0 / a.target
    head = f"{metric} at {plan.size:,.0f} items: {plan.value:.4f} ({plan.gain:+.2%} over pretrained)"
    e = f"local elasticity {a.last_elasticity:.2f}" if math.isfinite(a.last_elasticity) else "no elasticity"
    if a.state == NOT_REACHED:
        verdict = (
            f"{KEEP}: up to {plan.size:,.0f} items the next +1% still costs less than {ratio:.1f}x the average ({e})"
        )
    elif a.state == FOUND:
        verdict = f"{STOP}: past ~{a.cost:,.0f} items each further +1% costs more than {ratio:.1f}x the average ({e})"
    elif a.state == BELOW:
        verdict = f"{STOP}: from the first size on each further +1% costs more than {ratio:.1f}x the average ({e})"
    elif a.state == NEVER_POSITIVE:
        verdict = f"{STOP}: fine-tuning did not beat the pretrained model on this curve"
    else:
        verdict = f"{MEASURE}: one size measured; the rule needs two"
    lines = [f"{head}; {verdict}."]
    if not plan.method:
        lines.append(f"next round ({plan.next_size:,.0f} items): {plan.method_note}.")
        return lines
    lo, hi = plan.gain_low, plan.gain_high
    lines.append(
        f"next round ({plan.factor:g}x, {plan.next_size:,.0f} items): expected {metric} {plan.value_at(plan.expected_gain):.4f} "
        f"[{plan.value_at(lo):.4f} to {plan.value_at(hi):.4f}], {plan.expected_gain:+.2%} over pretrained "
        f"[{lo:+.2%} to {hi:+.2%}]: {(plan.expected_gain - plan.gain) * 100:+.2f} pp for the round "
        f"[{(lo - plan.gain) * 100:+.2f} to {(hi - plan.gain) * 100:+.2f}]."
    )
    lines.append(
        f"how: {plan.method_note}; interval = the {plan.n_seeds} seed(s)' spread +- {plan.margin.error * 100:.2f} pp, "
        f"the largest one-round error of this method on {plan.margin.metric} in the published backtest "
        f"({plan.margin.n_cases} cases, docs/plan.md)."
    )
    lines.append(_cost_line(plan, prices))
    if goal is not None:
        lines.append(_goal_line(plan, goal))
    return lines  # plan.notes are the caller's to print once


def _cost_line(plan: RoundPlan, prices: Prices) -> str:
    work = (
        f"{plan.labels_added:,.0f} new labels, training at {plan.next_size:,.0f} items ~{plan.train_seconds:,.0f} s"
        + (f" ({plan.gpu_seconds:,.0f} GPU-s)" if plan.gpu_seconds > 0 else " (no GPU-seconds measured: CPU)")
    )
    if not prices.priced:
        return f"cost of the round: {work}; give --label-cost and --gpu-hour for money."
    mid, best, worst = (plan.price_per_point(g) for g in (plan.expected_gain, plan.gain_high, plan.gain_low))
    text = (
        f"cost of the round: {prices.money(plan.total_cost)} ({work}); the next +1% costs {_money(prices, mid)} "
        f"[{_money(prices, best)} to {_money(prices, worst)}]"
    )
    value = prices.value_per_point
    if value is None:
        return text + "."
    if worst <= value:
        says = "pays even at the interval's low end"
    elif mid <= value:
        says = "pays at the expected gain, not at the interval's low end"
    elif best <= value:
        says = "pays only at the interval's high end"
    else:
        says = "does not pay"
    return f"{text}; against +1% worth {prices.money(value)}: {says}."


def _money(prices: Prices, value: float) -> str:
    return "n/a (no gain)" if math.isinf(value) else prices.money(value)


def _goal_line(plan: RoundPlan, goal: float) -> str:
    metric = plan.key["metric"]
    lo, mid, hi = (plan.value_at(g) for g in (plan.gain_low, plan.expected_gain, plan.gain_high))
    if plan.value >= goal:
        return f"target {metric} {goal:g}: already measured at {plan.size:,.0f} items ({plan.value:.4f})."
    if lo >= goal:
        return f"target {metric} {goal:g}: expected at {plan.next_size:,.0f} items, even at the interval's low end."
    if mid >= goal:
        return f"target {metric} {goal:g}: expected at {plan.next_size:,.0f} items ({mid:.4f}), not certain (low end {lo:.4f})."
    if hi >= goal:
        return (
            f"target {metric} {goal:g}: not expected at {plan.next_size:,.0f} items ({mid:.4f}); only the interval's "
            f"high end ({hi:.4f}) reaches it: measure the round, then plan again."
        )
    return (
        f"target {metric} {goal:g}: not within one round ({hi:.4f} at the interval's high end); nothing is forecast "
        "further: label this round, measure, and plan again."
    )
