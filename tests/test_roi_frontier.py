"""The cost frontier (issue 27, item 2) on a designed data x epochs grid whose frontier is known by hand.

Sizes 100, 200, 400 x epochs 1..3, two seeds with the same values. Held-out mrr@20 improvement I (value =
0.5 x (1 + I)):

    size  e1    e2    e3          cost at 1 per item + 1 per GPU-second, seconds = 0.1 x size x epoch
    100   0.10  0.20  0.25        110  120  130
    200   0.15  0.30  0.28        220  240  260
    400   0.22  0.35  0.40        440  480  520

Sorted by cost, a cell is on the frontier when it beats every cheaper one: (100,1) (100,2) (100,3) (200,2) (400,2)
(400,3). To reach I = 0.28 (mrr 0.64): 200 items x 2 epochs, 240; the cheapest with 2x the items: 400 x 2, 480.

With validation scores that pick epoch 2 at 100, 1 at 200 and 3 at 400 (never where the held-out set peaks at 200),
only those cells are candidates: the frontier is (100,2) (400,3), and I = 0.28 takes 400 x 3, 520.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from roi_fixtures import _row as fixture_row
from roi_fixtures import baseline_rows, metric_values, table

from roi.curves import relative_improvement
from roi.epoch_grid import best_epochs
from roi.frontier import (
    VALIDATION,
    default_targets,
    describe_reach,
    frontier_cells,
    frontier_display,
    pareto_frontier,
    reach,
)
from roi.load import validate_table
from roi.price import Prices

HELD = {100: [0.10, 0.20, 0.25], 200: [0.15, 0.30, 0.28], 400: [0.22, 0.35, 0.40]}
VAL = {100: [0.3, 0.5, 0.4], 200: [0.6, 0.5, 0.4], 400: [0.1, 0.2, 0.3]}  # peaks: epoch 2, 1, 3
PRICES = Prices(label_cost=1.0, gpu_hour=3600.0, currency="EUR")  # 1 EUR per item and per GPU-second
KEY = {"task": "text-to-text", "model": "package:tiny", "dataset": "designed", "eval_set": "eval-designed"}


def designed(*, val: bool) -> pd.DataFrame:
    rows = [{**r, "final": True, "train_to": "", "val_score": np.nan} for r in baseline_rows("designed", seeds=(0, 1))]
    for seed in (0, 1):
        for size, held in HELD.items():
            for epoch in (1, 2, 3):
                rows.append(
                    fixture_row(
                        experiment="data_size",
                        dataset="designed",
                        seed=seed,
                        size=size,
                        epochs=3,
                        epoch=epoch,
                        seconds=0.1 * size * epoch,
                        values=metric_values(held[epoch - 1]),
                        train_to="epochs",
                        final=epoch == 3,
                        val_score=VAL[size][epoch - 1] if val else np.nan,
                    )
                )
    return validate_table(table(rows))


def cells_of(df: pd.DataFrame) -> pd.DataFrame:
    return frontier_cells(relative_improvement(df, metrics=["mrr@20", "map@20"]), best_epochs(df))


def test_frontier_of_the_designed_grid_is_the_hand_computed_one():
    cells = cells_of(designed(val=False))
    assert len(cells[cells["metric"] == "mrr@20"]) == 9 and cells["candidate"].all()
    front = pareto_frontier(cells, PRICES)
    mrr = front[front["metric"] == "mrr@20"]
    assert list(zip(mrr["size"], mrr["epoch"], strict=True)) == [
        (100, 1),
        (100, 2),
        (100, 3),
        (200, 2),
        (400, 2),
        (400, 3),
    ]
    assert mrr["total_cost"].tolist() == pytest.approx([110, 120, 130, 240, 480, 520])
    assert mrr["value"].tolist() == pytest.approx(
        [0.5 * (1 + HELD[s][e - 1]) for s, e in zip(mrr["size"], mrr["epoch"], strict=True)]
    )
    # the same improvements on map@20 (factor 0.5): the same cells
    mapf = front[front["metric"] == "map@20"]
    assert list(zip(mapf["size"], mapf["epoch"], strict=True)) == list(zip(mrr["size"], mrr["epoch"], strict=True))


def test_reach_names_the_cheapest_cell_and_the_cheapest_with_twice_the_items():
    cells = cells_of(designed(val=False))
    r = reach(cells, KEY | {"metric": "mrr@20"}, 0.64, prices=PRICES)
    assert (r.cell["size"], r.cell["epoch"], r.cell["total_cost"]) == (200, 2, pytest.approx(240))
    assert (r.more_items["size"], r.more_items["epoch"], r.more_items["total_cost"]) == (400, 2, pytest.approx(480))
    text = describe_reach(r, PRICES)
    assert text.startswith("to reach mrr@20 0.640: 200 items x 2 epochs (of a 3-epoch schedule), 240.00 EUR")
    assert "the cheapest with 2x the items: 400 items x 2 epochs (of a 3-epoch schedule), 480.00 EUR" in text
    # above the best cell: unreachable, said so
    none = reach(cells, KEY | {"metric": "mrr@20"}, 0.71, prices=PRICES)
    assert none.cell is None and "no measured cell reaches it (best 0.700)" in describe_reach(none)


def test_with_validation_scores_only_the_validation_epoch_stands_for_a_size():
    df = designed(val=True)
    cells = cells_of(df)
    chosen = cells[cells["candidate"] & (cells["metric"] == "mrr@20")]
    assert dict(zip(chosen["size"], chosen["epoch"], strict=True)) == {100: 2, 200: 1, 400: 3}
    assert (cells["chosen_on"] == VALIDATION).all()
    front = pareto_frontier(cells, PRICES)
    mrr = front[front["metric"] == "mrr@20"]
    assert list(zip(mrr["size"], mrr["epoch"], strict=True)) == [(100, 2), (400, 3)]
    r = reach(cells, KEY | {"metric": "mrr@20"}, 0.64, prices=PRICES)
    assert (r.cell["size"], r.cell["epoch"]) == (400, 3) and r.more_items is None
    assert "epoch chosen on validation" in describe_reach(r, PRICES)
    # The choice never reads a held-out score: scrambling every metric column leaves the candidates as they were.
    rng = np.random.default_rng(0)
    scrambled = df.assign(**{m: rng.permutation(df[m].to_numpy()) for m in ("mrr@20", "map@20", "recall@20")})
    again = cells_of(scrambled)
    again = again[again["candidate"] & (again["metric"] == "mrr@20")]
    assert dict(zip(again["size"], again["epoch"], strict=True)) == {100: 2, 200: 1, 400: 3}


def test_without_prices_items_are_the_cost_and_seconds_break_ties():
    cells = cells_of(designed(val=False))
    front = pareto_frontier(cells)  # no prices: (size, seconds) order, same cells on this grid
    mrr = front[front["metric"] == "mrr@20"]
    assert list(zip(mrr["size"], mrr["epoch"], strict=True)) == [
        (100, 1),
        (100, 2),
        (100, 3),
        (200, 2),
        (400, 2),
        (400, 3),
    ]
    assert mrr["total_cost"].isna().all()
    text = describe_reach(reach(cells, KEY | {"metric": "mrr@20"}, 0.64), Prices())
    assert "200 items x 2 epochs (of a 3-epoch schedule), 40 s of training, 40 GPU-s" in text
    shown = frontier_display(mrr)
    assert list(shown["items"]) == ["100", "100", "100", "200", "400", "400"] and "cost" not in shown


def test_default_targets_are_fractions_of_the_reachable_gain_rounded_down():
    front = pareto_frontier(cells_of(designed(val=False)), PRICES)
    targets = default_targets(front[front["metric"] == "mrr@20"])
    # baseline 0.5, best 0.70: 0.60, 0.68, 0.70 (rounded down to 3 decimals)
    assert targets["target"].tolist() == pytest.approx([0.6, 0.68, 0.7])


def test_the_report_shows_the_frontier_and_the_next_round(tmp_path):
    from roi.report import write_report

    paths = write_report(designed(val=True), out_dir=tmp_path / "report", n_boot=20, png=False, prices=PRICES)
    a = paths.analysis
    mrr = a.frontier[a.frontier["metric"] == "mrr@20"]
    assert list(zip(mrr["size"], mrr["epoch"], strict=True)) == [(100, 2), (400, 3)]
    fig = paths.figures["frontier.designed.mrr@20"]
    assert fig.is_file() and (tmp_path / "report" / "frontier.csv").is_file()
    roles = [t["meta"]["role"] for t in __import__("json").loads(fig.read_text())["data"]]
    assert roles == ["cells", "candidates", "frontier"]
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    readme = (tmp_path / "report" / "README.md").read_text(encoding="utf-8")
    for text in (page, readme):
        assert "Cost frontier" in text and "The next round" in text
        assert "400 items x 3 epochs" in text and "nothing is forecast further than one round" in text.lower()
    assert a.plans and {p.key["setting"] for p in a.plans} >= {"epochs=3", "best of 3 epochs (validation)"}
