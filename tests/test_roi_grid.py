"""The adaptive grid's decision rule (roi.grid) on designed curves whose answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from roi_fixtures import BASELINE, baseline_rows, metric_values, table

from roi.coverage import Design
from roi.grid import combine, plan_sizes, plan_table
from roi.load import validate_table

HILL = Design(k=300.0)  # G = 0.15 N / (300 + N): e = 1 / (1 + N/300) = 0.3 at N* = 300 x (1/0.3 - 1) = 700 items
N_STAR = 700.0


def run_rule(curve, *, min_size=25, max_size=100_000, ratio=1.25, budget=60):
    """Measure what the rule asks for until it is done; returns (measured sizes in order, last plan)."""
    measured: dict[int, float] = {}
    order = []
    plan = None
    for _ in range(budget):
        plan = plan_sizes(measured, min_size=min_size, max_size=max_size, ratio=ratio)
        if plan.done:
            break
        for s in plan.next_sizes:
            measured[s] = curve(s)
            order.append(s)
    return order, plan


def hill(n: float) -> float:
    return float(HILL.gain(np.float64(n)))


def test_doubling_then_refinement_brackets_the_known_answer():
    assert HILL.truth() == pytest.approx(N_STAR)
    order, plan = run_rule(hill, min_size=50)
    assert plan.done and plan.found and plan.bracketed
    # Doubling until the persistent crossing is inside the grid (slopes 0.53 at 566 and 0.27 at 1131 bracket 0.3),
    # then geometric means: 566 (400-800), 673 (566-800), and 800 / 673 <= 1.25.
    assert order == [50, 100, 200, 400, 800, 1600, 566, 673]
    lo, hi = plan.bracket
    assert (lo, hi) == (673, 800) and hi / lo <= 1.25
    assert plan.answer_cost == pytest.approx(N_STAR, rel=0.05)


@pytest.mark.parametrize("start", [25, 50, 100, 200, 600, 1500])
def test_the_answer_does_not_depend_on_min_size(start):
    """Started past the answer the rule halves (600 -> 300, 1,500 -> 750 -> 375): the same answer either way."""
    _, plan = run_rule(hill, min_size=start)
    assert plan.found and plan.answer_cost == pytest.approx(N_STAR, rel=0.05)


@pytest.mark.parametrize("start", [50, 100, 200, 600])
@pytest.mark.parametrize("draw", range(3))
def test_a_noisy_designed_curve_ends_within_15_percent_from_any_start(start, draw):
    """1% multiplicative noise per measured size (the same size always draws the same noise)."""

    def noisy(n: int) -> float:
        return hill(n) * (1.0 + 0.01 * np.random.default_rng([n, draw]).standard_normal())

    _, plan = run_rule(noisy, min_size=start)
    assert plan.found and abs(plan.answer_cost / N_STAR - 1.0) <= 0.15, plan


def test_a_looser_ratio_stops_earlier_and_still_brackets():
    order, plan = run_rule(hill, min_size=50, ratio=2.0)
    assert order == [50, 100, 200, 400, 800, 1600]
    assert plan.bracket == (400, 800) and plan.bracketed


def test_never_falling_within_max_size_ends_unfound_at_max_size():
    order, plan = run_rule(lambda n: 0.001 * n, max_size=300)  # e = 1 everywhere: never falls
    assert order == [25, 50, 100, 200, 300]
    assert plan.done and not plan.found and "not found" in plan.reason


def test_no_positive_gain_keeps_doubling_to_max_size():
    order, plan = run_rule(lambda n: -0.1, max_size=150)
    assert order == [25, 50, 100, 150]
    assert plan.done and not plan.found and "no positive gain" in plan.reason


def test_pending_sizes_make_the_rule_wait_and_failed_sizes_are_not_retried():
    assert plan_sizes({}, min_size=25, max_size=1000, pending=[25]).phase == "wait"
    assert plan_sizes({}, min_size=25, max_size=1000, tried=[25]).phase == "done"
    rising = {25: 0.025, 50: 0.05}  # e = 1: not found yet
    plan = plan_sizes(rising, min_size=25, max_size=1000, pending=[100])
    assert plan.phase == "wait" and plan.next_sizes == ()
    plan = plan_sizes(rising, min_size=25, max_size=1000, tried=[100])
    assert plan.next_sizes == (200,)
    flat = {400: 0.1, 800: 0.1}  # e = 0 from the first size on: below it, halve
    assert plan_sizes(flat, min_size=400, max_size=1000).next_sizes == (200,)
    assert plan_sizes(flat, min_size=400, max_size=1000, pending=[200]).phase == "wait"


def test_same_measurements_give_the_same_plan():
    measured = {s: hill(s) for s in (25, 50, 100, 200, 400, 800, 1600)}
    a = plan_sizes(measured, min_size=25, max_size=10_000)
    b = plan_sizes(dict(reversed(list(measured.items()))), min_size=25, max_size=10_000)
    assert a == b and a.next_sizes == (566,)


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        plan_sizes({}, min_size=0, max_size=10)
    with pytest.raises(ValueError):
        plan_sizes({}, min_size=10, max_size=20, ratio=1.0)


def _designed_table(sizes, *, seeds=(0, 1), offsets=(-0.01, 0.01)):
    rows = baseline_rows("designed")
    for seed, off in zip(seeds, offsets, strict=True):
        for n in sizes:
            imp = hill(n) * (1 + off)  # seeds differ by +-1%: the mean is the designed curve
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
    df = _designed_table([50, 100, 200, 400, 800])
    plan, per_curve = plan_table(df, min_size=50, max_size=10_000)
    assert set(k[-1] for k in per_curve) == set(BASELINE)
    assert plan.phase == "extend" and plan.next_sizes == (1600,)
    df = _designed_table([50, 100, 200, 400, 800, 1600])
    plan, per_curve = plan_table(df, min_size=50, max_size=10_000)
    # Metric factors (0.5, 1, 2) scale the gain, not its elasticity: every curve agrees.
    assert {p.next_sizes for p in per_curve.values()} == {(566,)}
    assert plan.phase == "refine" and plan.next_sizes == (566,)


def test_plan_from_a_table_without_a_sized_row_starts():
    df = validate_table(table(baseline_rows("designed")))
    plan, per_curve = plan_table(df, min_size=40, max_size=1000)
    assert plan.phase == "start" and plan.next_sizes == (40,) and per_curve == {}


def test_combine_extends_while_any_curve_is_unfound():
    found = plan_sizes({s: hill(s) for s in (100, 200, 400, 800, 1600)}, min_size=100, max_size=10_000)
    unfound = plan_sizes({25: 0.025, 50: 0.05}, min_size=25, max_size=1000)
    assert found.phase == "refine" and combine([found, unfound]).next_sizes == (100,)
