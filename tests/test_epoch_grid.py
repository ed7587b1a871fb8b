"""The data x epochs grid (issue 11, item 2): the best epoch per size chosen on validation, never on the held-out
set, its data-size curve, the grid table and heatmap in the report, and the sweep-file option that asks for it.

The designed grid: sizes 100, 200, 500, epochs 1..4, seeds 0 and 1. The validation score peaks at a known epoch
per size (VAL_BEST) while the held-out improvement peaks at another (HELD_BEST), so a choice that looked at the
held-out columns would pick different epochs and different improvements.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from roi_fixtures import _row as fixture_row
from roi_fixtures import baseline_rows, metric_values, table

from roi import plots
from roi.analysis import analyse
from roi.curves import relative_improvement, roi_curve
from roi.epoch_grid import DEFAULT_MIN_STEPS, best_epoch_points, best_epochs, best_setting, grid_table
from roi.plots import png
from roi.report import write_report
from sweeps.config import Cell, SweepSpec, cells_for
from sweeps.errors import ConfigError

SIZES = (100, 200, 500)
EPOCHS = 4
SEEDS = (0, 1)
# size -> validation score per epoch 1..4 (seed 0); seed 1 ties epochs 2 and 3 at size 100: the earlier wins.
VAL = {100: [0.50, 0.62, 0.60, 0.55], 200: [0.40, 0.50, 0.58, 0.57], 500: [0.30, 0.35, 0.45, 0.47]}
VAL_SEED1_100 = [0.50, 0.61, 0.61, 0.55]
VAL_BEST = {100: 2, 200: 3, 500: 4}
# size -> held-out relative improvement per epoch 1..4: peaks at epoch 4, 1 and 2, never where validation does.
HELD = {100: [0.05, 0.10, 0.12, 0.20], 200: [0.30, 0.20, 0.15, 0.10], 500: [0.20, 0.40, 0.30, 0.25]}
HELD_BEST = {100: 4, 200: 1, 500: 2}
SECONDS_PER_EPOCH = 2.0  # per 100 items


def grid_rows(*, val: bool = True, dataset: str = "clinc150") -> list[dict]:
    rows = []
    for seed in SEEDS:
        for size in SIZES:
            scores = VAL_SEED1_100 if (seed, size) == (1, 100) else VAL[size]
            for epoch in range(1, EPOCHS + 1):
                seconds = SECONDS_PER_EPOCH * size / 100 * epoch
                rows.append(
                    fixture_row(
                        experiment="data_size",
                        dataset=dataset,
                        seed=seed,
                        size=size,
                        epochs=EPOCHS,
                        epoch=epoch,
                        seconds=seconds,
                        values=metric_values(HELD[size][epoch - 1]),
                        sweep="grid",
                        trial_id=f"{dataset}-n{size}-e{EPOCHS}-s{seed}-val",
                        train_to="epochs",
                        final=epoch == EPOCHS,
                        stop_reason="epochs" if epoch == EPOCHS else "",
                        val_seconds=0.1 * epoch,
                        val_score=scores[epoch - 1] if val else np.nan,
                    )
                )
    return rows


def designed(*, val: bool = True) -> pd.DataFrame:
    base = [
        {**r, "final": True, "train_to": "", "val_seconds": 0.0, "val_score": np.nan} for r in baseline_rows("clinc150")
    ]
    return table(base + grid_rows(val=val))


def test_best_epoch_is_the_validation_peak_not_the_held_out_one():
    best = best_epochs(designed()).set_index(["size", "seed"])
    assert best["best_epoch"].to_dict() == {(s, seed): VAL_BEST[s] for s in SIZES for seed in SEEDS}
    assert best.loc[(100, 1), "best_val_score"] == 0.61  # the tie at epochs 2 and 3 goes to the earlier one
    assert (best["n_scored"] == EPOCHS).all() and (best["epochs"] == EPOCHS).all()
    assert all(VAL_BEST[s] != HELD_BEST[s] for s in SIZES)  # the design: the two peaks never agree


# The step floor (sweep.min_steps; results column min_steps). Optimizer steps per epoch of each size, so that at a
# floor of 50 size 100 reaches it at epoch 3 (past its validation peak, epoch 2), size 200 never does (40 steps
# after 4 epochs: only its last epoch counts, not its peak, epoch 3), and size 500 at epoch 1.
STEPS_PER_EPOCH = {100: 20, 200: 10, 500: 50}


def with_steps(df: pd.DataFrame, **floor) -> pd.DataFrame:
    """``df`` with its grid rows' cumulative steps, and the ``min_steps`` column when ``floor`` gives one."""
    steps = (df["size"].map(STEPS_PER_EPOCH).fillna(0) * df["epoch"]).astype("int64")
    return df.assign(steps=steps, **floor)


def test_no_epoch_below_the_step_floor_is_chosen_and_a_trial_that_never_reaches_it_takes_its_last():
    best = best_epochs(with_steps(designed(), min_steps=50)).set_index(["size", "seed"])
    # 100: the peak (epoch 2, 40 steps) is below the floor: the best of epochs 3-4 (60, 80 steps) is epoch 3.
    # 200: 10 steps an epoch never reach 50: its last epoch, 4 (0.57), not its peak, 3 (0.58). 500: unchanged.
    assert best["best_epoch"].to_dict() == {(s, seed): {100: 3, 200: 4, 500: 4}[s] for s in SIZES for seed in SEEDS}
    assert best.loc[(100, 0), "best_val_score"] == 0.60 and best.loc[(200, 0), "best_val_score"] == 0.57
    assert (best["min_steps"] == 50).all() and (best["n_scored"] == EPOCHS).all()
    # Ties still go to the earlier eligible epoch: at a floor of 40, seed 1's tie at epochs 2 and 3 picks 2.
    tied = best_epochs(with_steps(designed(), min_steps=40)).set_index(["size", "seed"])
    assert tied.loc[(100, 1), "best_epoch"] == 2 and tied.loc[(100, 1), "best_val_score"] == 0.61
    # A floor of 0 (or 20, which every epoch reaches) is no floor: the validation peaks.
    for floor in (0, 20):
        free = best_epochs(with_steps(designed(), min_steps=floor)).set_index(["size", "seed"])
        assert free["best_epoch"].to_dict() == {(s, seed): VAL_BEST[s] for s in SIZES for seed in SEEDS}


def test_a_table_without_the_floor_column_uses_the_default_100():
    # Older tables (docs/runs/clinc150-data-epochs) have no min_steps: their sweeps' default floor, 100. At 30,
    # 50 and 80 steps an epoch (size 100, 200, 500): epoch 4 only; epochs 2-4; every epoch.
    per_epoch = {100: 30, 200: 50, 500: 80}
    old = designed().assign(steps=lambda d: (d["size"].map(per_epoch).fillna(0) * d["epoch"]).astype("int64"))
    expected = {(s, seed): {100: 4, 200: 3, 500: 4}[s] for s in SIZES for seed in SEEDS}
    assert "min_steps" not in old
    assert best_epochs(old).set_index(["size", "seed"])["best_epoch"].to_dict() == expected
    assert DEFAULT_MIN_STEPS == 100 and (best_epochs(old)["min_steps"] == 100).all()
    from roi.load import validate_table

    loaded = validate_table(old)  # the loader leaves the missing column empty; the choice reads it as 100
    assert loaded["min_steps"].isna().all()
    assert best_epochs(loaded).set_index(["size", "seed"])["best_epoch"].to_dict() == expected
    # The same table with a min_steps column: the column, not the default, is the floor.
    assert best_epochs(old.assign(min_steps=0)).set_index("size")["best_epoch"].to_dict() == VAL_BEST


def test_the_published_grid_chooses_no_epoch_below_100_steps():
    # docs/runs/clinc150-data-epochs (10 epochs, batch 32, 20% carved out): 100 and 200 items train 3 and 5 steps
    # an epoch, 30 and 50 after 10 epochs, so both take epoch 10; without the floor validation chose epochs 1-5.
    from roi.load import load_results

    df = load_results(Path(__file__).parents[1] / "docs/runs/clinc150-data-epochs.results.csv")
    best = best_epochs(df).set_index(["size", "seed"])
    assert best["best_epoch"].to_dict() == {
        (100, 0): 10, (100, 1): 10, (200, 0): 10, (200, 1): 10,
        (500, 0): 9, (500, 1): 10, (1000, 0): 10, (1000, 1): 10, (2000, 0): 10, (2000, 1): 10,
    }  # fmt: skip
    unfloored = best_epochs(df.assign(min_steps=0)).set_index(["size", "seed"])["best_epoch"]
    assert unfloored.loc[[100, 200]].to_dict() == {(100, 0): 1, (100, 1): 3, (200, 0): 2, (200, 1): 5}
    assert (best["min_steps"] == 100).all()


def test_the_choice_never_reads_the_held_out_columns():
    df = designed()
    chosen = best_epochs(df)
    metrics = [c for c in df.columns if "@" in c]
    rng = np.random.default_rng(0)
    scrambled = df.assign(**{m: rng.permutation(df[m].to_numpy()) for m in metrics})
    pd.testing.assert_frame_equal(best_epochs(scrambled), chosen)
    pd.testing.assert_frame_equal(best_epochs(df.drop(columns=metrics)), chosen)  # no metric column at all
    # Only val_score moves it: the held-out peak becomes the choice when validation says so.
    moved = df.assign(val_score=np.where(df["epoch"] == df["size"].map(HELD_BEST), 0.99, df["val_score"]))
    assert best_epochs(moved).set_index("size")["best_epoch"].to_dict() == HELD_BEST


def test_without_validation_scores_nothing_is_chosen_and_other_rules_are_not_a_grid():
    assert best_epochs(designed(val=False)).empty
    converged = designed().assign(train_to="converged")  # converged rows carry val_score of their best model
    assert best_epochs(converged).empty


def test_best_epoch_curve_takes_each_seed_at_its_own_choice_and_pays_for_all_epochs():
    df = designed()
    improvements = relative_improvement(df, metrics=["mrr@20"])
    points = best_epoch_points(improvements, best_epochs(df))
    assert set(points["setting"]) == {best_setting(EPOCHS)} == {"best of 4 epochs (validation)"}
    assert sorted(zip(points["size"], points["seed"], points["epoch"], strict=True)) == sorted(
        (s, seed, VAL_BEST[s]) for s in SIZES for seed in SEEDS
    )
    # improvement is the held-out one at the chosen epoch; the training cost is the whole 4-epoch run
    by_size = points.groupby("size")
    assert by_size["improvement"].mean().to_dict() == pytest.approx({s: HELD[s][VAL_BEST[s] - 1] for s in SIZES})
    assert by_size["gpu_seconds"].mean().to_dict() == pytest.approx(
        {s: SECONDS_PER_EPOCH * s / 100 * EPOCHS for s in SIZES}
    )
    curve = roi_curve(improvements)
    best_curve = curve[(curve["setting"] == best_setting(EPOCHS)) & (curve["cost_axis"] == "size")]
    plain = curve[(curve["setting"] == f"epochs={EPOCHS}") & (curve["cost_axis"] == "size")]
    assert best_curve.groupby("grid")["roi"].mean().to_dict() == pytest.approx(
        {s: HELD[s][VAL_BEST[s] - 1] / s for s in SIZES}
    )
    assert plain.groupby("grid")["improvement"].mean().to_dict() == pytest.approx({s: HELD[s][-1] for s in SIZES})


def test_grid_table_marks_the_chosen_epoch_per_size():
    df = designed()
    grid = grid_table(relative_improvement(df, metrics=["mrr@20", "map@20"]), best_epochs(df))
    mrr = grid[grid["metric"] == "mrr@20"].set_index(["size", "epoch"])
    assert len(mrr) == len(SIZES) * EPOCHS and (mrr["n_seeds"] == 2).all()
    assert mrr["improvement"].to_dict() == pytest.approx(
        {(s, e): HELD[s][e - 1] for s in SIZES for e in range(1, EPOCHS + 1)}
    )
    assert mrr["roi"].to_dict() == pytest.approx(
        {(s, e): HELD[s][e - 1] / s for s in SIZES for e in range(1, EPOCHS + 1)}
    )
    assert {k for k, v in mrr["best"].items() if v} == {(s, VAL_BEST[s]) for s in SIZES}
    assert mrr.loc[(100, 2), ["chosen_by", "n_chosen"]].tolist() == [2, 2]
    assert mrr.loc[(100, 3), "chosen_by"] == 0 and mrr.loc[(100, 2), "val_score"] == pytest.approx(0.615)
    # The grid is there without validation scores too, with nothing marked.
    bare = grid_table(relative_improvement(designed(val=False), metrics=["mrr@20"]), best_epochs(designed(val=False)))
    assert len(bare) == len(SIZES) * EPOCHS and not bare["best"].any() and (bare["chosen_by"] == 0).all()


def test_report_renders_the_grid_view(tmp_path, monkeypatch):
    monkeypatch.setattr(png, "find_chromium", lambda: None)
    paths = write_report(designed(), out_dir=tmp_path / "report", n_boot=20)
    page = paths.html.read_text(encoding="utf-8")
    assert '<h2 id="epoch-grid">Data x epochs</h2>' in page and "never on the held-out set" in page
    assert "+20.0% · 0.002/item" in page  # size 100, epoch 4 of mrr@20: the held-out peak, not marked
    assert "+10.0% · 0.001/item *" in page  # size 100, epoch 2: the validation choice, marked
    assert "epoch 2 (2 of 2 seeds)" in page
    assert "epoch_grid.csv" in {p.name for p in paths.tables.values()}
    heatmap = plots.epoch_grid_figures(paths.analysis.epoch_grid)["epoch_grid.clinc150.mrr-20"]
    assert heatmap.layout.meta["shows"] == "epoch_grid"
    assert 'id="fig-epoch_grid-clinc150-mrr@20"' not in page and "fig-epoch_grid-clinc150-mrr-20" in page
    (grid,) = heatmap.data
    assert grid.meta["role"] == "grid" and list(grid.x) == [1, 2, 3, 4] and list(grid.y) == ["100", "200", "500"]
    assert grid.z[0] == pytest.approx(HELD[100])  # row 0: size 100, held-out improvement at epochs 1..4
    starred = {(grid.y[i], grid.x[j]) for i, row in enumerate(grid.text) for j, t in enumerate(row) if "★" in t}
    assert starred == {(f"{s}", VAL_BEST[s]) for s in SIZES} and grid.text[0][1] == "+10.0% ★"
    outlined = {(round((sh.x0 + sh.x1) / 2), round((sh.y0 + sh.y1) / 2)) for sh in heatmap.layout.shapes}
    assert outlined == {(VAL_BEST[s], i) for i, s in enumerate(SIZES)}  # category row i is at y = i
    assert paths.figures["epoch_grid.clinc150.mrr-20"].is_file()
    readme = paths.readme.read_text(encoding="utf-8")
    assert "## Data x epochs" in readme and "best of 4 epochs (validation)" in readme
    summary = paths.analysis.summary
    row = summary[
        (summary["setting"] == "best of 4 epochs (validation)")
        & (summary["cost_axis"] == "size")
        & (summary["metric"] == "mrr@20")
    ].iloc[0]
    # validation chose epochs 2, 3, 4: +10%, +15%, +25% (the held-out peaks would say +20%, +30%, +40%)
    assert row["best_improvement"] == pytest.approx(0.25) and row["best_cost"] == 500
    answers = [a.text for a in paths.analysis.answers if a.metric == "mrr@20"]
    assert any(t.startswith("best of 4 epochs (validation): mrr@20 gains +25.0%") for t in answers)
    assert any(t.startswith("epochs=4: mrr@20 gains +25.0%") for t in answers)  # two curves, each named
    assert list(dict.fromkeys(paths.analysis.epoch_grid["metric"])) == ["mrr@20", "map@20", "recall@20"]


def test_report_of_a_grid_without_validation_scores_says_why_nothing_is_chosen():
    analysis = analyse(designed(val=False), n_boot=10)
    assert any("no validation scores" in n for n in analysis.notes)
    assert not analysis.summary["setting"].str.contains("validation").any()  # no best-epoch curve
    assert len(analysis.epoch_grid) == len(SIZES) * EPOCHS * 3 and not analysis.epoch_grid["best"].any()
    (heatmap,) = [f for n, f in plots.epoch_grid_figures(analysis.epoch_grid).items() if n.endswith("mrr-20")]
    assert not heatmap.layout.shapes and not any("★" in t for row in heatmap.data[0].text for t in row)


def test_older_tables_without_val_score_still_load():
    old = designed().drop(columns=["val_score", "val_seconds"])
    from roi.load import validate_table

    df = validate_table(old)
    assert df["val_score"].isna().all() and (df["val_seconds"] == 0).all()


def test_select_epoch_is_checked_at_the_edge_and_is_part_of_the_trial_id():
    spec = SweepSpec(experiment="data_size", sizes=(100,), epochs=5, select_epoch="validation")
    (_, cell) = cells_for(spec)
    assert cell.label == "n100-e5-s0-val" and cell.train_to == "epochs"
    assert cell.budget == "monitor=map,select_epoch=validation,val_fraction=0.2"
    plain = cells_for(dataclasses.replace(spec, select_epoch="none"))[1]
    assert plain == Cell(100, 5, 0)  # a grid without validation keeps the id it always had
    from sweeps.budget import Budget

    budget = Budget.for_cell(spec, epochs=5, train_to="epochs", select_epoch=cell.selects_epoch)
    assert cell.selects_epoch and budget.select_epoch and budget.validates and budget.planned_epochs(3) == 5
    assert budget == Budget.for_cell(spec, epochs=5, train_to="epochs")  # the spec's rule when no cell says
    # A trial runs what its cell (its id) says: a plain cell under this spec (roi trial) carves nothing out.
    assert not Budget.for_cell(spec, epochs=5, train_to="epochs", select_epoch=plain.selects_epoch).validates
    assert not Budget.for_cell(dataclasses.replace(spec, select_epoch="none"), epochs=5, train_to="epochs").validates
    for bad, field in (
        (dict(epochs=1), "sweep.epochs"),
        (dict(train_to="converged"), "sweep.select_epoch"),
        (dict(experiment="epochs"), "sweep.select_epoch"),
        (dict(sizes="auto"), "sweep.select_epoch"),
    ):
        with pytest.raises(ConfigError) as err:
            SweepSpec(**{**dataclasses.asdict(spec), **bad})
        assert err.value.field == field and err.value.fix


def test_the_floor_is_the_sweeps_min_steps_and_travels_in_the_results_table():
    from sweeps.budget import DEFAULT_MIN_STEPS as budget_default_floor
    from sweeps.budget import Budget
    from sweeps.dataclass_io import to_dict
    from sweeps.results import records_to_table

    spec = SweepSpec(experiment="data_size", sizes=(100,), epochs=5, select_epoch="validation")
    (base, default) = cells_for(spec)
    # The default floor is not named in the cell: the ids of grids run before the floor existed stay as they were.
    assert default.budget == "monitor=map,select_epoch=validation,val_fraction=0.2"
    (_, other) = cells_for(dataclasses.replace(spec, min_steps=50))
    assert other.budget == "min_steps=50,monitor=map,select_epoch=validation,val_fraction=0.2"
    assert other.label == default.label == "n100-e5-s0-val" and other.selects_epoch
    assert Budget.for_cell(spec, epochs=5, train_to="epochs").min_steps == 100
    assert DEFAULT_MIN_STEPS == budget_default_floor == SweepSpec.min_steps  # roi's default for older tables
    validated = cells_for(SweepSpec(experiment="data_size", sizes=(100,), min_steps=80))[1]
    plain = cells_for(dataclasses.replace(spec, select_epoch="none"))[1]
    # as the results table reads it: from the record's cell (a dict), rebuilt into a Cell
    floors = [Cell(**to_dict(c)).min_steps for c in (default, other, validated, plain, base)]
    assert floors == [100, 50, 80, 0, 0]

    def record(cell: Cell, trial_id: str) -> dict:
        rows = [{"epoch": e, "steps": 3 * e, "val_score": 0.5, "mrr@20": 0.9} for e in (1, 2)]
        return {
            **dict(sweep="s", experiment="data_size", status="ok", task="text-to-text", model="m", dataset="d"),
            **dict(trial_id=trial_id, eval_set="e", error="", cell=to_dict(cell), num_gpus=0.0, rows=rows),
        }

    table = records_to_table([record(default, "a"), record(other, "b"), record(base, "base")], k=20)
    assert table.groupby("trial_id")["min_steps"].unique().map(list).to_dict() == {"a": [100], "b": [50], "base": [0]}
    assert table["min_steps"].dtype == "int64"


def test_roi_report_prints_the_grid(tmp_path, capsys, monkeypatch):
    from roi.cli import main

    monkeypatch.setattr(png, "find_chromium", lambda: None)
    designed().to_csv(tmp_path / "results.csv", index=False)
    assert main(["report", str(tmp_path), "--n-boot", "10", "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "data x epochs (improvement · ROI per item; * = the epoch chosen on validation):" in out
    assert "+15.0% · 0.00075/item *" in out and "epoch 3 (2 of 2 seeds)" in out  # size 200, mrr@20
