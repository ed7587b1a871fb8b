"""``roi plan`` (issue 27, item 1) on a designed curve whose verdict and next-round interval are known by hand.

The curve: I(N) = 0.30 - 2 N^-0.5 at 100, 200, 400, 800 items, seeds 0 and 1 at -0.01 and +0.01 (mrr@20 = 0.5 x
(1 + I)). Its elasticity e(N) = N^-0.5 / I(N) is 1.0 at 100, 0.45 at 200, 0.25 at 400: it falls to 0.3 between 200
and 400, so with all four sizes the verdict is stop. With the sizes up to 200 only, the segment's elasticity is
ln(I(200) / I(100)) / ln 2 = 0.67: keep labeling, and with two sizes the fit refuses, so each seed's last
elasticity is carried one doubling: G(400) = G(200) x 2^e = G(200)^2 / G(100) per seed.
"""

from __future__ import annotations

import math

import pytest
from roi_fixtures import baseline_rows, data_size_rows, epoch_rows, table, write_run

import roi.cli
import sweeps.cli
from roi.curves import relative_improvement, roi_curve
from roi.elasticity import FOUND, NOT_REACHED
from roi.load import validate_table
from roi.plan import ELASTICITY, FIT, KEEP, STOP, Margin, describe_plan, load_margins, plan_table
from roi.price import Prices

SIZES = [100, 200, 400, 800]
OFFSETS = (-0.01, 0.01)
MARGINS = {(m, "mrr@20"): Margin(m, "mrr@20", 0.005, 3) for m in (FIT, ELASTICITY)}
PRICES = Prices(label_cost=0.1, gpu_hour=3600.0, currency="EUR", value_per_point=100.0)


def power(n: float) -> float:
    return 0.30 - 2.0 * n**-0.5


def designed_table():
    curve = {"sizes": SIZES, "improvement": [power(n) for n in SIZES]}
    rows = [*baseline_rows("designed", seeds=(0, 1)), *data_size_rows("designed", curve, seeds=(0, 1), offsets=OFFSETS)]
    return table(rows)


def plans(*, at=None, prices=None):
    points = roi_curve(relative_improvement(validate_table(designed_table()), metrics=["mrr@20"]))
    (plan,) = plan_table(points, at=at, prices=prices, margins=MARGINS)
    return plan


def test_with_every_size_the_verdict_is_stop_and_the_fit_predicts_the_next_doubling():
    plan = plans(prices=PRICES)
    assert plan.answer.state == FOUND and plan.answer.bracket == (200.0, 400.0) and plan.verdict == STOP
    assert plan.method == FIT and (plan.size, plan.next_size) == (800, 1600)
    # each seed's power law is exact: the spread is the seeds' offsets around I(1600) = 0.25
    assert plan.expected_gain == pytest.approx(power(1600), abs=1e-3)
    assert (plan.spread_low, plan.spread_high) == (pytest.approx(0.24, abs=1e-3), pytest.approx(0.26, abs=1e-3))
    assert (plan.gain_low, plan.gain_high) == (pytest.approx(0.235, abs=1e-3), pytest.approx(0.265, abs=1e-3))
    # 800 new labels x 0.1 + training at 1,600 items: 0.01 s per item (slope 1 over 400 -> 800), 1 EUR per GPU-s
    assert plan.labels_added == 800 and plan.gpu_seconds == pytest.approx(16.0)
    assert plan.total_cost == pytest.approx(80.0 + 16.0)
    added = (power(1600) - power(800)) * 100.0
    assert plan.price_per_point(plan.expected_gain) == pytest.approx(96.0 / added, rel=2e-2)


def test_with_the_sizes_up_to_200_the_verdict_is_keep_and_each_seeds_elasticity_is_carried():
    plan = plans(at=300)  # a team with 300 labels: the sizes up to it are 100 and 200
    assert plan.size == 200 and plan.answer.state == NOT_REACHED and plan.verdict == KEEP
    assert plan.answer.last_elasticity == pytest.approx(math.log(power(200) / power(100)) / math.log(2), abs=1e-9)
    assert plan.method == ELASTICITY
    per_seed = [(power(200) + o) ** 2 / (power(100) + o) for o in OFFSETS]
    assert plan.expected_gain == pytest.approx(sum(per_seed) / 2)
    assert (plan.gain_low, plan.gain_high) == pytest.approx((min(per_seed) - 0.005, max(per_seed) + 0.005))


@pytest.mark.parametrize(
    ("goal", "says"),
    [
        (0.60, "already measured at 800 items"),
        (0.62, "expected at 1,600 items (0.62"),
        (0.63, "only the interval's high end (0.632"),
        (0.64, "not within one round"),
    ],
)
def test_a_target_is_placed_against_the_next_rounds_interval(goal, says):
    lines = describe_plan(plans(prices=PRICES), PRICES, goal=goal)
    assert any(line.startswith(f"target mrr@20 {goal:g}: ") and says in line for line in lines), lines


def test_the_price_of_the_next_point_is_set_against_the_value():
    text = "\n".join(describe_plan(plans(prices=PRICES), PRICES))
    assert text.startswith("mrr@20 at 800 items: 0.6146 (+22.93% over pretrained); stop: past ~")
    assert "cost of the round: 96.00 EUR (800 new labels" in text
    assert "against +1% worth 100.00 EUR: pays at the expected gain, not at the interval's low end" in text


def test_the_packaged_margins_are_the_published_backtests():
    margins = load_margins()
    assert {k for k in margins} == {(m, x) for m in (FIT, ELASTICITY) for x in ("mrr@20", "map@20", "recall@20")}
    # docs/plan.md: the fit on BANKING77's validated curve (seed 0) under-predicts recall@20 at 1,000 by 7.54 pp,
    # the largest (500 items had read flat: the validation carve-out's dent)
    assert margins[(FIT, "recall@20")].error == pytest.approx(0.075374, abs=1e-6)
    # at most 13.6 pp: the elasticity carried one round on BANKING77's validated recall@20 (200 -> 500 items)
    assert all(m.n_cases > 0 and 0 < m.error < 0.15 for m in margins.values())


def _run(tmp_path):
    return write_run(tmp_path / "run", designed_table())


@pytest.mark.parametrize("main", [roi.cli.main, sweeps.cli.main])
def test_roi_plan_end_to_end(tmp_path, capsys, main):
    run = _run(tmp_path)
    args = ["plan", str(run), "--label-cost", "0.1", "--gpu-hour", "3600", "--currency", "EUR", "--metric", "mrr@20"]
    assert main([*args, "--target", "mrr@20=0.62"]) == 0
    out = capsys.readouterr().out
    assert "one round only: 2x the largest measured size; nothing further is forecast" in out
    assert "- mrr@20 at 800 items: 0.6146 (+22.93% over pretrained); stop: past ~" in out
    assert "next round (2x, 1,600 items): expected mrr@20 0.62" in out
    assert "target mrr@20 0.62: expected at 1,600 items" in out


@pytest.mark.parametrize(
    ("extra", "problem", "fix"),
    [
        (["--round", "4"], "--round must be above 1 and at most 2.5", "give --round 2"),
        (["--round", "1"], "--round must be above 1", "plan one round, measure it, and plan again"),
        (["--target", "map@20"], "is not METRIC=VALUE", "--target map@20=0.90"),
        (["--target", "ndcg@10=0.9"], "ndcg@10 is not a metric of this run", "--target mrr@20=0.9"),
        (["--at", "50"], "--at 50: no measured size at or under it (the smallest is 100)", "give --at a measured size"),
        (["--label-cost", "-1"], "--label-cost must be a number >= 0", None),
    ],
)
def test_roi_plan_user_errors_are_one_message_with_a_fix_and_exit_2(tmp_path, capsys, extra, problem, fix):
    assert roi.cli.main(["plan", str(_run(tmp_path)), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and problem in captured.err
    assert "\n  fix: " in captured.err and "Traceback" not in captured.err
    if fix:
        assert fix in captured.err.split("fix: ", 1)[1]


def test_roi_plan_on_a_run_without_a_data_size_curve_and_on_a_missing_folder(tmp_path, capsys):
    epochs_only = table(
        [
            *baseline_rows("d", experiment="epochs"),
            *epoch_rows("d", {"size": 500, "seconds": [1.0, 2.0], "improvement": [0.1, 0.2]}),
        ]
    )
    run = write_run(tmp_path / "epochs", epochs_only)
    assert roi.cli.main(["plan", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no data-size curve on labeled items" in err and "fix: run a data-size sweep" in err
    assert roi.cli.main(["plan", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fix:" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_packaged_margins_file_is_what_the_backtest_command_writes(tmp_path):
    """``python -m roi.plan_backtest --write`` on the published tables reproduces roi/forecast_errors.csv."""
    from pathlib import Path

    from roi.plan_backtest import main

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "errors.csv"
    assert main(["--root", str(root), "--write", str(out)]) == 0
    packaged = (root / "roi" / "forecast_errors.csv").read_text(encoding="utf-8")
    body = [ln for ln in out.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    assert body == [ln for ln in packaged.splitlines() if not ln.startswith("#")]


def test_python_m_roi_plan_runs_without_torch_ray_or_faiss(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    run = _run(tmp_path)
    code = (
        "import sys, roi.cli, roi.plan, roi.frontier, roi.plan_cli, roi.plan_backtest; "
        f"rc = roi.cli.main(['plan', {str(run)!r}]); heavy = {{'torch', 'ray', 'faiss', 'sweeps'}} & set(sys.modules); "
        "assert rc == 0 and not heavy, (rc, heavy)"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "keep labeling" in done.stdout or "stop" in done.stdout


def test_the_interval_stops_at_a_perfect_score():
    points = roi_curve(relative_improvement(validate_table(designed_table()), metrics=["mrr@20"]))
    wide = {(FIT, "mrr@20"): Margin(FIT, "mrr@20", 5.0, 1)}  # a margin of 500 pp
    (plan,) = plan_table(points, margins=wide)
    assert plan.gain_high == pytest.approx(1.0)  # baseline mrr 0.5: a perfect 1.0 is +100%
    assert plan.value_at(plan.gain_high) == pytest.approx(1.0)


def test_a_seed_that_stopped_short_does_not_forecast_this_round():
    """A partial sweep: seed 1 has only 100 and 200 items; the round from 800 is forecast from seed 0 alone."""
    df = validate_table(designed_table())
    partial = df[~((df["seed"] == 1) & (df["size"] >= 400))]
    points = roi_curve(relative_improvement(partial, metrics=["mrr@20"]))
    (plan,) = plan_table(points, margins=MARGINS)
    assert plan.size == 800 and plan.n_seeds == 1 and plan.method == FIT
    assert plan.expected_gain == pytest.approx(power(1600) - 0.01, abs=1e-3)  # seed 0's curve, offset -0.01
    assert any("1 seed(s) without the largest size" in n for n in plan.notes)
