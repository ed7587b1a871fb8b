"""The adaptive data-size grid's decision rule: is the headline answer found and bracketed, and which sizes next?

Pure (pandas/numpy only): ``sweeps.search`` calls it from inside Ray Tune, and the report reads the same
answer (``roi.elasticity``), so a sweep and its report agree on what "found" means. The rule, on the mean
relative improvement across seeds:

1. nothing measured yet: try ``min_size``; one size measured: double it;
2. the elasticity has not fallen to ``1 - drop`` (0.3) persistently: double the largest size tried (geometric
   steps), capped at ``max_size``; at ``max_size`` the search ends unfound;
3. it is below the first size (the first measured elasticity is already at or under 0.3): halve the smallest
   size, so the answer does not depend on where the search started (down to 1 item);
4. it is found: the two measured sizes on either side of it; while their ratio is above ``ratio``, try their
   geometric mean (refinement in log space); at or below it the answer is bracketed and the search ends.

A budget of trials stops it early. The answer depends only on what has been measured and what is pending,
so a resumed sweep asks for the same sizes as an undisturbed one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from roi.curves import DEFAULT_DROP, aggregate_seeds, relative_improvement, roi_curve
from roi.elasticity import BELOW, DEFAULT_SPAN, FOUND, NEVER_POSITIVE, read_elasticity
from roi.load import metric_columns

DEFAULT_RATIO = 1.25
PHASES = ("start", "extend", "shrink", "refine", "wait", "done")


@dataclass(frozen=True)
class GridPlan:
    """What the rule says for one curve (or, combined, for a sweep).

    Attributes:
        phase: ``start`` (nothing measured), ``extend`` (doubling), ``shrink`` (halving: the answer is below the
            smallest size), ``refine`` (narrowing the bracket), ``wait`` (the next step needs sizes still pending)
            or ``done``.
        next_sizes: sizes to try now (empty when waiting or done).
        found: the elasticity falls to 1 - drop persistently within the measured sizes.
        bracket: the measured sizes on either side of the answer, when found.
        answer_cost: the answer (items), when found.
        reason: one plain sentence on why this is the plan.
    """

    phase: str
    next_sizes: tuple[int, ...]
    found: bool
    bracket: tuple[int, int] | None
    answer_cost: float | None
    reason: str

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def bracketed(self) -> bool:
        """Found, with the bracket's ratio at most the requested one (``done`` and ``found``)."""
        return self.done and self.found and "bracketed" in self.reason


def plan_sizes(
    gain_by_size: Mapping[int, float],
    *,
    min_size: int,
    max_size: int,
    drop: float = DEFAULT_DROP,
    ratio: float = DEFAULT_RATIO,
    pending: Iterable[int] = (),
    tried: Iterable[int] = (),
    span: float = DEFAULT_SPAN,
) -> GridPlan:
    """The decision for one curve.

    Args:
        gain_by_size: measured size -> mean relative improvement across seeds.
        min_size: the first size to try.
        max_size: the largest size allowed (the training pool).
        drop: the answer is where the elasticity falls to 1 - drop.
        ratio: the bracket is tight enough when its upper size / lower size <= ratio.
        pending: sizes proposed but not measured yet.
        tried: sizes that ran but gave no point (every seed failed): never proposed again.
    """
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    if ratio <= 1.0:
        raise ValueError(f"the bracket ratio must be > 1, got {ratio}")
    pending = {int(s) for s in pending}
    failed = {int(s) for s in tried}
    blocked = failed | pending
    sizes = sorted(int(s) for s, g in gain_by_size.items() if math.isfinite(g))
    if not sizes:
        if min_size in blocked:
            return _wait_or_done(pending, "the first size is still running", "the first size gave no result")
        return GridPlan("start", (min_size,), False, None, None, f"nothing measured yet: start at {min_size:,} items")
    target = 1.0 - drop
    answer = read_elasticity(sizes, [float(gain_by_size[s]) for s in sizes], target=target, span=span)
    largest = max([*sizes, *pending, *failed])
    if answer.state == BELOW:
        smallest = min([*sizes, *pending, *failed])
        why = f"elasticity <= {target:g} from {min(sizes):,} items on: the answer is below the smallest size"
        if any(s < min(sizes) for s in pending):
            return GridPlan("wait", (), False, None, None, f"{why}; waiting for {sorted(pending)}")
        if smallest <= 1:
            return GridPlan("done", (), False, None, None, f"{why}, and that is 1 item: not found")
        nxt = max(smallest // 2, 1)
        return GridPlan("shrink", (nxt,), False, None, None, f"{why}: halve to {nxt:,}")
    if answer.state != FOUND:
        why = "no positive gain yet" if answer.state == NEVER_POSITIVE else f"elasticity not yet down to {target:g}"
        if largest >= max_size:
            if pending:
                return GridPlan("wait", (), False, None, None, f"{why}; waiting for {sorted(pending)}")
            return GridPlan("done", (), False, None, None, f"{why} up to max_size {max_size:,}: not found")
        if any(s > max(sizes) for s in pending):  # the next doubling waits for the one in flight
            return GridPlan("wait", (), False, None, None, f"{why}; waiting for {sorted(pending)}")
        nxt = min(2 * largest, max_size)
        return GridPlan("extend", (nxt,), False, None, None, f"{why} at {max(sizes):,} items: double to {nxt:,}")
    lo, hi = (int(b) for b in answer.bracket)
    if hi <= lo * ratio or hi - lo <= 1:
        reason = f"answer bracketed by {lo:,} and {hi:,} items (ratio {hi / lo:.3g} <= {ratio:g})"
        return GridPlan("done", (), True, (lo, hi), answer.cost, reason)
    mid = int(round(math.sqrt(lo * hi)))
    mid = min(max(mid, lo + 1), hi - 1)
    if mid in pending:
        return GridPlan(
            "wait", (), True, (lo, hi), answer.cost, f"waiting for {mid:,} inside the bracket {lo:,}-{hi:,}"
        )
    if mid in blocked:
        reason = f"answer between {lo:,} and {hi:,}; {mid:,} gave no result"
        return GridPlan("done", (), True, (lo, hi), answer.cost, reason)
    return GridPlan(
        "refine", (mid,), True, (lo, hi), answer.cost, f"answer between {lo:,} and {hi:,} items: try {mid:,}"
    )


def _wait_or_done(pending: set[int], waiting: str, gave_up: str) -> GridPlan:
    if pending:
        return GridPlan("wait", (), False, None, None, waiting)
    return GridPlan("done", (), False, None, None, gave_up)


def mean_gain_by_size(table: pd.DataFrame, *, metrics: Sequence[str] | None = None) -> dict[tuple, dict[int, float]]:
    """Mean relative improvement per size for every data-size curve of a validated results table.

    Uses ``roi.curves`` exactly as the report does (final rows, baseline of the same eval set, mean across
    seeds), on the labeled-items axis only.

    Returns:
        (dataset, eval_set, setting, metric) -> {size: mean improvement}; empty when no baseline or no sized row yet.
    """
    data = table[table["experiment"] == "data_size"]
    if data.empty or not (data["size"] == 0).any() or not (data["size"] > 0).any():
        return {}
    metrics = list(metrics) if metrics else [m for m in metric_columns(data) if data[m].notna().any()]
    points = roi_curve(relative_improvement(data, metrics=metrics), cost_axes={"data_size": ("size",)})
    if points.empty:
        return {}
    curves = aggregate_seeds(points)
    out: dict[tuple, dict[int, float]] = {}
    for key, cur in curves.groupby(["dataset", "eval_set", "setting", "metric"], sort=True):
        out[key] = {int(g): float(r) for g, r in zip(cur["grid"], cur["improvement"], strict=True) if np.isfinite(r)}
    return out


def plan_table(
    table: pd.DataFrame,
    *,
    min_size: int,
    max_size: int,
    drop: float = DEFAULT_DROP,
    ratio: float = DEFAULT_RATIO,
    metrics: Sequence[str] | None = None,
    pending: Iterable[int] = (),
    tried: Iterable[int] = (),
) -> tuple[GridPlan, dict[tuple, GridPlan]]:
    """The sweep's plan from a validated results table: one plan per curve, and their combination.

    The combination starts, extends or shrinks while any curve asks to (extending first: a curve not found
    yet), else refines every loose bracket (the union of their next sizes), waits while any curve waits, and is
    done when every curve is done.
    """
    pending, tried = tuple(pending), tuple(tried)
    per_curve = {
        key: plan_sizes(
            by_size, min_size=min_size, max_size=max_size, drop=drop, ratio=ratio, pending=pending, tried=tried
        )
        for key, by_size in mean_gain_by_size(table, metrics=metrics).items()
    }
    if not per_curve:
        fresh = plan_sizes(
            {}, min_size=min_size, max_size=max_size, drop=drop, ratio=ratio, pending=pending, tried=tried
        )
        return fresh, {}
    return combine(per_curve.values()), per_curve


def combine(plans: Iterable[GridPlan]) -> GridPlan:
    """One plan for the sweep from the plans of its curves (see ``plan_table``)."""
    plans = list(plans)
    for phase in ("start", "extend", "shrink"):
        active = [p for p in plans if p.phase == phase]
        if active:
            sizes = tuple(sorted({s for p in active for s in p.next_sizes}))
            return GridPlan(phase, sizes[:1], False, None, None, active[0].reason)
    refine = [p for p in plans if p.phase == "refine"]
    if refine:
        sizes = tuple(sorted({s for p in refine for s in p.next_sizes}))
        return GridPlan(
            "refine", sizes, all(p.found for p in plans), refine[0].bracket, refine[0].answer_cost, refine[0].reason
        )
    waiting = [p for p in plans if p.phase == "wait"]
    if waiting:
        return GridPlan(
            "wait", (), all(p.found for p in plans), waiting[0].bracket, waiting[0].answer_cost, waiting[0].reason
        )
    found = all(p.found for p in plans)
    first = next((p for p in plans if not p.found), plans[0])
    return GridPlan("done", (), found, first.bracket, first.answer_cost, first.reason)
