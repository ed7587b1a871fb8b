"""The adaptive grid's decision rule on designed curves whose drop point is known by hand."""

from __future__ import annotations

import math

import pytest
from roi_fixtures import BASELINE, baseline_rows, brentq, metric_values, table

from roi.grid import combine, plan_sizes, plan_table
from roi.load import validate_table


def saturating(n: float) -> float:
    """Relative improvement 0.4 x (1 - exp(-N / 300)): ROI = I / N falls monotonically from the first size."""
    return 0.4 * (1.0 - math.exp(-n / 300.0))


def true_drop(first: int, *, drop: float = 0.7) -> float:
    """Where ROI(N) = (1 - drop) x ROI(first) (the peak of a decreasing ROI sits at the first size)."""
    threshold = (1.0 - drop) * saturating(first) / first
    return brentq(lambda n: saturating(n) / n - threshold, first, 1e7)


def run_rule(curve, *, min_size=25, max_size=100_000, ratio=1.25, budget=100):
    """Measure what the rule asks for until it is done; returns (measured sizes in order, last plan)."""
    measured: dict[int, float] = {}
    order = []
    plan = None
    for _ in range(budget):
        plan = plan_sizes(measured, min_size=min_size, max_size=max_size, ratio=ratio)
        if plan.done:
            break
        for s in plan.next_sizes:
            measured[s] = curve(s) / s
            order.append(s)
    return order, plan


def test_doubling_then_refinement_brackets_the_known_drop_point():
    order, plan = run_rule(saturating)
    n_star = true_drop(25)  # ~ 1,006 items
    assert 1000 < n_star < 1010
    assert plan.done and plan.found and plan.bracketed
    lo, hi = plan.bracket
    assert lo < n_star <= hi and hi / lo <= 1.25
    # Geometric steps first: 25, 50, ..., 1600 (the first size whose ROI is below 30% of the peak) ...
    assert order[:7] == [25, 50, 100, 200, 400, 800, 1600]
    # ... then geometric means inside the bracket: 1131 (800-1600), then 951 (800-1131): 1131 / 951 <= 1.25.
    assert order[7:] == [1131, 951]
    assert (lo, hi) == (951, 1131)
    assert plan.drop_cost == pytest.approx(
        n_star, rel=0.01
    )  # linear interpolation inside a tight bracket  # linear interpolation inside a tight bracket


def test_a_looser_ratio_stops_earlier_and_still_brackets():
    order, plan = run_rule(saturating, ratio=2.0)
    assert order == [25, 50, 100, 200, 400, 800, 1600]
    assert plan.bracket == (800, 1600) and plan.bracketed


def test_never_dropping_within_max_size_ends_unfound_at_max_size():
    order, plan = run_rule(lambda n: 0.001 * n, max_size=300)  # ROI constant: never falls
    assert order == [25, 50, 100, 200, 300]
    assert plan.done and not plan.found and "not found" in plan.reason


def test_no_positive_roi_keeps_doubling_to_max_size():
    order, plan = run_rule(lambda n: -0.1, max_size=150)
    assert order == [25, 50, 100, 150]
    assert plan.done and not plan.found and "no positive ROI" in plan.reason


def test_pending_sizes_make_the_rule_wait_and_failed_sizes_are_not_retried():
    assert plan_sizes({}, min_size=25, max_size=1000, pending=[25]).phase == "wait"
    assert plan_sizes({}, min_size=25, max_size=1000, tried=[25]).phase == "done"
    # The next doubling waits for the size in flight, whatever is measured below it.
    plan = plan_sizes({25: 0.001, 50: 0.001}, min_size=25, max_size=1000, pending=[100])
    assert plan.phase == "wait" and plan.next_sizes == ()
    # A failed size counts as tried: doubling goes on above it.
    plan = plan_sizes({25: 0.001, 50: 0.001}, min_size=25, max_size=1000, tried=[100])
    assert plan.next_sizes == (200,)


def test_same_measurements_give_the_same_plan():
    measured = {s: saturating(s) / s for s in (25, 50, 100, 200, 400, 800, 1600)}
    a = plan_sizes(measured, min_size=25, max_size=10_000)
    b = plan_sizes(dict(reversed(list(measured.items()))), min_size=25, max_size=10_000)
    assert a == b and a.next_sizes == (1131,)


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        plan_sizes({}, min_size=0, max_size=10)
    with pytest.raises(ValueError):
        plan_sizes({}, min_size=10, max_size=20, ratio=1.0)


def _designed_table(sizes, *, seeds=(0, 1), offsets=(-0.01, 0.01)):
    rows = baseline_rows("designed")
    for seed, off in zip(seeds, offsets, strict=True):
        for n in sizes:
            imp = saturating(n) + off * saturating(n)  # seeds differ by +-1%: the mean is the designed curve
            rows.append(
                {
                    **baseline_rows("designed")[0],
                    "trial_id": f"n{n}-s{seed}",
                    "seed": seed,
                    "size": n,
                    "epochs": 1,
                    "epoch": 1,
                    "train_seconds": n / 100,
                    "gpu_seconds": n / 100,
                    **metric_values(imp),
                }
            )
    return validate_table(table(rows))


def test_plan_from_a_results_table_uses_the_mean_across_seeds_for_every_metric():
    df = _designed_table([25, 50, 100, 200, 400, 800])
    plan, per_curve = plan_table(df, min_size=25, max_size=10_000)
    assert set(k[-1] for k in per_curve) == set(BASELINE)
    assert plan.phase == "extend" and plan.next_sizes == (1600,)
    df = _designed_table([25, 50, 100, 200, 400, 800, 1600])
    plan, per_curve = plan_table(df, min_size=25, max_size=10_000)
    # Metric factors (0.5, 1, 2) scale ROI, not where it falls to 30% of its peak: every curve agrees.
    assert {p.next_sizes for p in per_curve.values()} == {(1131,)}
    assert plan.phase == "refine" and plan.next_sizes == (1131,)


def test_plan_from_a_table_without_a_sized_row_starts():
    df = validate_table(table(baseline_rows("designed")))
    plan, per_curve = plan_table(df, min_size=40, max_size=1000)
    assert plan.phase == "start" and plan.next_sizes == (40,) and per_curve == {}


def test_combine_extends_while_any_curve_is_unfound():
    found = plan_sizes({25: 0.01, 50: 0.001}, min_size=25, max_size=1000)
    unfound = plan_sizes({25: 0.01, 50: 0.01}, min_size=25, max_size=1000)
    assert combine([found, unfound]).next_sizes == (100,)
