"""The data x epochs grid: improvement and ROI at each (size, epoch), and the best epoch per size on validation.

A data-size sweep under ``train_to: epochs`` with ``sweep.epochs`` E > 1 evaluates every epoch of every size on
the held-out set: the results table holds a grid of E rows per trial (``final`` false but on the last). With
``sweep.select_epoch: validation`` each of those rows also carries ``val_score``, the same model scored on a
validation carve-out of the trial's own N items (``sweeps.validation``).

- ``best_epochs``: per trial (dataset, model, eval set, size, seed) the epoch with the highest ``val_score``
  among those at or past the step floor (``min_steps`` optimizer steps; only the last epoch where none reaches
  it); ties go to the earliest eligible epoch (the cheaper model). It reads the trial's keys, ``epoch``,
  ``val_score``, ``steps`` and ``min_steps`` and nothing else: the held-out metrics cannot enter the choice, as a
  user without the held-out set would choose. Why the floor: at 100-200 items the carve-out is 20-40 items, whose
  score is noise-dominated and chose epochs 1-5 (3-25 optimizer steps) on CLINC150 while the held-out score
  rose to epoch 10 (docs/plan.md); the default data-size rule (``train_to: validated``) chooses no earlier than the
  same floor (benchmarks/RESULTS.md, "Each size trained to its validated length").
- ``best_epoch_points``: the held-out improvement of each trial at its chosen epoch, as points of one more
  data-size curve (setting ``best of E epochs (validation)``); ``roi.curves.select_points`` adds them, so the
  summary, drop point, forecast and charts treat that curve like any other. Its training cost is the whole
  trial's (all E epochs): choosing the epoch needed them.
- ``grid_table``: mean improvement and ROI per labeled item at each (size, epoch) across seeds, with how many
  seeds' validation chose that epoch and the best epoch per size marked.

Pure pandas; ``roi.curves`` imports it, so it imports nothing from there.
"""

from __future__ import annotations

import pandas as pd

# The step floor of tables written before the ``min_steps`` column existed (docs/runs/clinc150-data-epochs, for
# one): their sweeps left sweep.min_steps at its default, this value (sweeps.budget.DEFAULT_MIN_STEPS).
DEFAULT_MIN_STEPS = 100
# One trial of the grid. trial_id separates two trials of the same cell in one table (two sweeps).
TRIAL_KEY: tuple[str, ...] = ("task", "model", "dataset", "eval_set", "size", "seed", "trial_id")
# One heatmap / one block of the grid table.
GRID_KEY: tuple[str, ...] = ("task", "model", "dataset", "eval_set", "metric", "epochs")


def best_setting(epochs: int | pd.Series) -> str | pd.Series:
    """The ``setting`` of the best-epoch data-size curve of trials that ran ``epochs`` epochs."""
    if isinstance(epochs, pd.Series):
        return "best of " + epochs.astype(str) + " epochs (validation)"
    return f"best of {epochs} epochs (validation)"


def grid_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of fixed-epoch data-size trials that were evaluated after more than one epoch (the grid).

    Works on a validated table (one row per trial and epoch) and on ``relative_improvement`` output (one per
    metric too).
    """
    rule = df["train_to"] if "train_to" in df else pd.Series("epochs", index=df.index)
    sub = df[(df["experiment"] == "data_size") & (df["size"] > 0) & rule.isin(["", "epochs"]) & (df["epoch"] >= 1)]
    n_epochs = sub.groupby("trial_id")["epoch"].transform("nunique")
    return sub[n_epochs > 1]


def best_epochs(table: pd.DataFrame) -> pd.DataFrame:
    """Per trial of the grid, the epoch whose model scored best on validation, at or past the step floor.

    An epoch is eligible when its cumulative optimizer steps (``steps``) reach the trial's floor (``min_steps``);
    in a trial where no epoch reaches it, only the last is (as ``train_to: validated`` trains to its cap when the
    step minimum reaches it). Ties go to the earliest eligible epoch. A table without the ``min_steps`` column
    (written before it existed) or with it empty has the default floor, ``DEFAULT_MIN_STEPS`` (100): the sweeps
    that wrote such tables used it. Rows without a step count (a foreign table without ``steps``) are eligible:
    there is nothing to hold them to. A floor of 0 makes every epoch eligible.

    Args:
        table: a validated results table, or ``relative_improvement`` output. Only ``TRIAL_KEY``, ``epochs``,
            ``epoch``, ``val_score``, ``steps`` and ``min_steps`` are read for the choice; held-out metric columns
            never are.

    Returns:
        ``TRIAL_KEY``, epochs, best_epoch, best_val_score, n_scored (the trial's epochs with a validation score,
        eligible or not), min_steps (the floor applied); no row for a trial without any score. Empty (same
        columns) when the table has no scored grid.
    """
    columns = [*TRIAL_KEY, "epochs", "best_epoch", "best_val_score", "n_scored", "min_steps"]
    if "val_score" not in table:
        return pd.DataFrame(columns=columns)
    rows = grid_rows(table)
    # Only these columns from here on: whatever the held-out set says cannot reach the choice.
    rows = rows.assign(**{c: float("nan") for c in ("steps", "min_steps") if c not in rows})
    scored = rows.loc[rows["val_score"].notna(), [*TRIAL_KEY, "epochs", "epoch", "val_score", "steps", "min_steps"]]
    scored = scored.drop_duplicates([*TRIAL_KEY, "epoch"])  # long input: one row per metric, same score
    if scored.empty:
        return pd.DataFrame(columns=columns)
    scored["min_steps"] = scored["min_steps"].fillna(DEFAULT_MIN_STEPS).astype("int64")
    scored["reaches"] = scored["steps"].isna() | (scored["steps"] >= scored["min_steps"])
    trial = scored.groupby(list(TRIAL_KEY))
    last = scored["epoch"] == trial["epoch"].transform("max")
    eligible = scored["reaches"] | (~trial["reaches"].transform("any") & last)
    eligible = scored.assign(n_scored=trial["epoch"].transform("nunique"))[eligible]
    ranked = eligible.sort_values(
        [*TRIAL_KEY, "val_score", "epoch"], ascending=[*([True] * len(TRIAL_KEY)), False, True], kind="stable"
    )
    best = ranked.drop_duplicates(list(TRIAL_KEY), keep="first")
    best = best.rename(columns={"epoch": "best_epoch", "val_score": "best_val_score"})
    return best[columns].reset_index(drop=True)


def best_epoch_points(improvements: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``improvements`` at each trial's chosen epoch, as data-size curve points.

    Args:
        improvements: ``roi.curves.relative_improvement`` output.
        best: ``best_epochs`` output.

    Returns:
        Those rows with ``setting`` (``best_setting``) and ``grid`` (= size) added, and ``final`` true; their
        ``train_seconds`` and ``gpu_seconds`` are the trial's whole run (its final row's): all E epochs were
        trained to make the choice.
    """
    if best.empty:
        return improvements.iloc[0:0].assign(setting=pd.Series(dtype=str), grid=pd.Series(dtype="int64"))
    rows = grid_rows(improvements)
    totals = rows.groupby("trial_id")[["train_seconds", "gpu_seconds"]].max()
    chosen = rows.merge(best[["trial_id", "best_epoch"]], on="trial_id")
    chosen = chosen[chosen["epoch"] == chosen["best_epoch"]].drop(columns="best_epoch")
    chosen = chosen.drop(columns=["train_seconds", "gpu_seconds"]).join(totals, on="trial_id")
    return chosen.assign(setting=best_setting(chosen["epochs"]), grid=chosen["size"], final=True)


def grid_table(improvements: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Mean improvement and ROI per labeled item at each (size, epoch) of the grid, best epochs marked.

    Args:
        improvements: ``roi.curves.relative_improvement`` output.
        best: ``best_epochs`` output (may be empty: the grid without validation scores, nothing marked).

    Returns:
        One row per ``GRID_KEY``, size and epoch: n_seeds, value, baseline, improvement (mean, and min/max over
        seeds), roi (improvement / size, mean over seeds), val_score (mean; NaN without), train_seconds (mean,
        cumulative to that epoch), chosen_by (seeds whose validation chose this epoch), n_chosen (seeds with a
        choice at this size), best (the epoch most seeds chose, ties: the earliest). Sorted by dataset, metric
        (in the order of ``improvements``), size and epoch.
    """
    rows = grid_rows(improvements)
    rows = rows[rows["value"].notna()]
    if rows.empty:
        return pd.DataFrame()
    if "val_score" not in rows:
        rows = rows.assign(val_score=float("nan"))
    rows = rows.assign(roi=rows["improvement"] / rows["size"])
    if not best.empty:
        picks = best[["trial_id", "best_epoch"]]
        rows = rows.merge(picks, on="trial_id", how="left")
    else:
        rows = rows.assign(best_epoch=float("nan"))
    rows = rows.assign(_chosen=rows["epoch"] == rows["best_epoch"], _has=rows["best_epoch"].notna())
    keys = [*GRID_KEY, "size", "epoch"]
    out = (
        rows.groupby(keys, sort=True)
        .agg(
            n_seeds=("seed", "nunique"),
            value=("value", "mean"),
            baseline=("baseline", "mean"),
            improvement=("improvement", "mean"),
            improvement_min=("improvement", "min"),
            improvement_max=("improvement", "max"),
            roi=("roi", "mean"),
            val_score=("val_score", "mean"),
            train_seconds=("train_seconds", "mean"),
            chosen_by=("_chosen", "sum"),
            n_chosen=("_has", "sum"),
        )
        .reset_index()
    )
    out["chosen_by"] = out["chosen_by"].astype("int64")
    out["n_chosen"] = out["n_chosen"].astype("int64")
    # The marked epoch of a size: the one most seeds chose; ties to the earliest (the cheaper model).
    ranked = out[out["chosen_by"] > 0].sort_values(
        [*GRID_KEY, "size", "chosen_by", "epoch"], ascending=[*([True] * (len(GRID_KEY) + 1)), False, True]
    )
    marked = ranked.drop_duplicates([*GRID_KEY, "size"], keep="first").index
    out["best"] = out.index.isin(marked)
    # Metrics in the order the report analyses them (the order of ``improvements``), not alphabetical.
    rank = {m: i for i, m in enumerate(dict.fromkeys(improvements["metric"]))}
    out = out.assign(_rank=out["metric"].map(rank)).sort_values(
        ["task", "model", "dataset", "eval_set", "epochs", "_rank", "size", "epoch"], kind="stable"
    )
    return out.drop(columns="_rank").reset_index(drop=True)
