"""The report's answer, prices and the marks on its charts, on designed curves with hand-computed values."""

from __future__ import annotations

import math

import pytest
from roi_fixtures import (
    NEVER,
    NO_POSITIVE,
    SEED_OFFSETS,
    baseline_rows,
    data_size_rows,
    table,
)

from roi import plots
from roi.analysis import analyse
from roi.answer import NEVER_POSITIVE
from roi.errors import RoiInputError
from roi.price import Prices, price_display
from roi.tables import summary_table

# I = 0.2, 0.3, 0.36, 0.4, 0.42: ROI 0.002 (peak, at 100), 0.0015, 0.0009, 0.0005, 0.0002625. 30% of the peak,
# 0.0006, is crossed between 400 and 800 at 400 + 400 x 0.0003 / 0.0004 = 700 items. The step across it adds
# 400 items for +4 points: 100 items per +1%, against 100 / 20 = 5 items per +1% at the peak: 20x.
FOUND = {"sizes": [100, 200, 400, 800, 1600], "improvement": [0.2, 0.3, 0.36, 0.4, 0.42]}


def _analysis(rows, prices=None):
    return analyse(table(rows), metrics=["mrr@20"], prices=prices, n_boot=200)


def _found_rows():
    return baseline_rows("found") + data_size_rows("found", FOUND, seeds=(0, 1, 2), offsets=SEED_OFFSETS)


def test_the_answer_states_the_gain_the_drop_point_and_the_price_past_it_in_items():
    (answer,) = _analysis(_found_rows()).answers
    assert answer.kind == "found"
    text = answer.text
    # Elasticity: log2(0.3/0.2) = 0.585 at sqrt(100 x 200) = 141, log2(0.36/0.3) = 0.263 at 283; 0.3 lies
    # 0.285/0.322 = 0.885 of the way in log N: 141.4 x 2^0.885 = 261 items (it persists: the chord to 1,600 is 0.18).
    assert text.startswith("mrr@20 gains +42.0% with 1,600 items; past ~261 items [")
    assert "Jina's 70%-drop point (relative to the first size, N0 = 100 items): ~700 items [" in text
    assert "past it each +1% costs 20.0x more (100 items vs 5 at the peak ROI)" in text


def test_two_curves_of_one_dataset_say_which_setting_each_answer_is_about():
    # The Jina study's one epoch per size beside the default step minimum, on the same data: two answers per metric.
    steps = [
        {**r, "train_to": "steps", "stop_reason": "steps", "final": True, "trial_id": r["trial_id"] + "-steps"}
        for r in data_size_rows("found", NEVER, seeds=(0,))
    ]
    one_epoch = [{**r, "train_to": "epochs", "stop_reason": "epochs", "final": True} for r in _found_rows()]
    base = [{**r, "train_to": "", "stop_reason": "", "final": True} for r in baseline_rows("found")]
    answers = _analysis(base + one_epoch[len(base) :] + steps).answers
    assert sorted(a.setting for a in answers) == ["epochs=1", "train_to=steps"]
    for a in answers:
        assert a.text.startswith(f"{a.setting}: mrr@20 gains")
    (alone,) = _analysis(_found_rows()).answers
    assert alone.text.startswith("mrr@20 gains")  # one curve: no label


def test_with_prices_the_step_past_the_drop_is_in_money():
    a = _analysis(_found_rows(), Prices(label_cost=0.08, gpu_hour=2.5, currency="EUR"))
    # 400 items x 0.08 = 32 EUR for +4 points, plus 4 GPU-s at 2.50 EUR/h: 8.0007 EUR per +1%.
    assert "(8.00 EUR vs 0.40 EUR at the peak ROI)" in a.answers[0].text
    p = a.prices.set_index("grid")
    assert p.loc[800, "label_cost"] == pytest.approx(64.0)
    assert p.loc[800, "training_cost"] == pytest.approx(8.0 / 3600 * 2.5)  # 0.01 GPU-s per item, 1 GPU
    assert p.loc[800, "cost_per_pct"] == pytest.approx((32.0 + 4.0 / 3600 * 2.5) / 4.0)
    assert p.loc[100, "cost_per_pct"] == pytest.approx((8.0 + 1.0 / 3600 * 2.5) / 20.0)  # from the pretrained model
    shown = price_display(a.prices, a.price_spec)
    assert list(shown["cost of next +1%"])[:2] == ["0.40 EUR", "0.80 EUR"]


def test_without_prices_costs_are_items_and_gpu_seconds():
    a = _analysis(_found_rows())
    shown = price_display(a.prices, a.price_spec)
    assert "cost of next +1%" not in shown.columns
    assert list(shown["items per +1%"]) == ["5", "10", "33", "100", "400"]
    assert list(shown["GPU-s per +1%"]) == ["0.1", "0.1", "0.3", "1.0", "4.0"]


def test_a_never_positive_curve_says_so_in_words_not_as_a_negative_peak():
    a = _analysis(baseline_rows("neg") + data_size_rows("neg", NO_POSITIVE))
    (answer,) = a.answers
    assert answer.kind == "never positive" and NEVER_POSITIVE in answer.text
    assert "best -10.0% with 100 items" in answer.text
    assert summary_table(a.summary)["peak ROI (average)"].tolist() == ["never positive"] * 2  # items and GPU-s


def test_an_unreached_answer_gives_the_last_elasticity_and_only_a_labelled_hint_past_the_grid():
    # Elasticities log2(1.8) = 0.85 and log2(0.3/0.18) = 0.74: not reached by 400 items; falling 0.11 per doubling,
    # they reach 0.3 about 3.9 doublings past 283 items: a hint, never an answer.
    a = _analysis(baseline_rows("never") + data_size_rows("never", NEVER))
    (answer,) = a.answers
    assert answer.kind == "not reached" and "last elasticity 0.74" in answer.text
    assert "hint, not a measurement" in answer.text and "FORECAST" not in answer.text
    row = a.summary.iloc[0]
    assert row["forecast_status"] == "ok" and row["forecast_drop_cost"] > 400  # past the last measured size
    assert summary_table(a.summary)["forecast drop point [95% CI]"].iloc[0].endswith("(power law)")


def test_roi_chart_marks_the_drop_point_the_30_percent_line_and_the_forecast():
    a = _analysis(
        _found_rows() + baseline_rows("never") + data_size_rows("never", NEVER),
    )
    assert [x.text.split(": ", 1)[0] for x in a.answers] == [
        "found",
        "never",
    ]  # two datasets: each answer names its own
    figs = plots.build_figures(a.curves, a.summary, forecasts=a.forecasts)
    roi = figs["data_size.size.roi"]
    roles = {(t.meta["role"], t.meta["curve"]["dataset"]) for t in roi.data}
    assert {("drop", "found"), ("threshold", "found"), ("threshold", "never")} <= roles
    assert {("forecast", "never"), ("forecast_drop", "never")} <= roles
    line = next(t for t in roi.data if t.meta["role"] == "threshold" and t.meta["curve"]["dataset"] == "found")
    assert list(line.y) == pytest.approx([0.3 * 0.002] * 2) and line.x[0] == 100
    fc = next(t for t in figs["data_size.size.improvement"].data if t.meta["role"] == "forecast")
    assert fc.line.dash == "dash" and min(fc.x) > 400


def test_bad_prices_are_refused():
    with pytest.raises(RoiInputError, match="--label-cost"):
        Prices(label_cost=-1.0)
    with pytest.raises(RoiInputError, match="--gpu-hour"):
        Prices(gpu_hour=math.inf)


def test_prices_come_from_the_flags_or_the_sweep_files_cost_section(tmp_path, capsys):
    from roi_fixtures import write_run

    from roi.cli import main
    from roi.price import prices_for

    run = write_run(tmp_path / "run", table(_found_rows()), fmt="csv")
    (run / "config.yaml").write_text("name: run\ncost:\n  label_cost: 0.1\n  gpu_hour: 3\n  currency: USD\n")
    assert prices_for(str(run), label_cost=None, gpu_hour=None, currency="") == Prices(0.1, 3.0, "USD")
    assert prices_for(str(run), label_cost=0.08, gpu_hour=None, currency="EUR") == Prices(0.08, 3.0, "EUR")
    assert main(["report", str(run), "--no-png", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert out.index("- mrr@20 gains") < out.index("task ")  # the answer before the summary table
    assert "(10.00 USD vs 0.50 USD at the peak ROI)" in out
    readme = (run / "report" / "README.md").read_text()
    assert readme.index("## The answer") < readme.index("## Summary") < readme.index("## Definitions")
    (run / "config.yaml").write_text("cost:\n  label_cost: cheap\n")
    assert main(["report", str(run), "--no-png"]) == 2
    assert "cost.label_cost must be a number" in capsys.readouterr().err
    assert main(["report", str(run), "--no-png", "--label-cost", "-1"]) == 2


@pytest.mark.parametrize(
    ("value", "state", "cost"),
    [
        # Labels at 1 per item, no GPU price: the next +1% costs 5, 10, 33.3, 100 and 400 per step. Worth 50: the
        # step to 800 (100 per +1%) is the first dearer one, and the chord from 400 to 1,600 (1,200 / 6 = 200) too.
        # In log N between 33.3 at sqrt(200 x 400) = 283 and 100 at sqrt(400 x 800) = 566:
        # 283 x 2^(ln 1.5 / ln 3) = 365 items.
        (50.0, "found", 200 * 2**0.5 * 2 ** (math.log(1.5) / math.log(3))),
        (4.0, "does not pay", math.nan),  # the first size's average +1% costs 5
        (1000.0, "pays through the grid", math.nan),
    ],
)
def test_with_a_value_per_point_the_answer_gives_the_break_even_size(value, state, cost):
    a = _analysis(_found_rows(), Prices(label_cost=1.0, value_per_point=value))
    row = a.summary[a.summary["cost_axis"] == "size"].iloc[0]
    assert row["break_even_state"] == state
    if state == "found":
        assert row["break_even_cost"] == pytest.approx(cost)
        assert "with +1% worth 50.00, it pays up to ~365 items" in a.answers[0].text
    else:
        assert math.isnan(row["break_even_cost"]) and state in a.answers[0].text


def test_value_per_point_is_read_from_the_sweep_files_cost_section(tmp_path):
    from roi.price import prices_for

    (tmp_path / "config.yaml").write_text("cost: {label_cost: 0.08, value_per_point: 250}\n")
    p = prices_for(str(tmp_path), label_cost=None, gpu_hour=None, currency="", value_per_point=None)
    assert (p.label_cost, p.value_per_point) == (0.08, 250.0)
    assert (
        prices_for(str(tmp_path), label_cost=None, gpu_hour=None, currency="", value_per_point=10).value_per_point == 10
    )
    with pytest.raises(RoiInputError):
        Prices(value_per_point=-1.0)
