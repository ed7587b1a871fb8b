"""The cost frontier of labels x training: the cheapest (items, epochs) that reaches each score of each metric.

A *cell* is one recipe measured on the held-out set: N labeled items trained to epoch e (of an E-epoch schedule),
mean over seeds. Cells come from every per-epoch row of fixed-epoch training: a data x epochs grid (every epoch of
every size evaluated), a one-epoch data-size sweep (one cell per size) and an epoch sweep at one size.

- **Which epoch may stand for a size.** Where the trials of a (size, schedule) carry validation scores
  (``sweep.select_epoch: validation``), only the epoch their validation chose is a candidate (``roi.epoch_grid``:
  per seed the best ``val_score`` at or past the step floor ``min_steps``, ties to the earlier epoch; the cell is the
  epoch most seeds chose). That choice reads the trial keys, ``epoch``, ``val_score``, ``steps`` and ``min_steps``
  only, never a held-out metric; the held-out score of the chosen
  cell is what is shown. Without validation scores every epoch is a candidate and the frontier says
  ``chosen_on = held-out``: picking among noisy held-out cells overstates what a user gets by that noise.
- **Cost.** With prices: N x label cost + GPU-seconds to that epoch / 3600 x GPU-hour price (``roi.price``'s
  definition; a CPU run holds no GPU and its training is priced at 0). Without prices: labeled items, with training
  seconds to break ties (one label costs far more than a second of training).
- **The frontier** (per task, model, dataset, eval set and metric): candidates sorted by cost; a cell is on it when
  its score beats every cheaper candidate's. The cheapest way to reach a target score is the first frontier cell at
  or above it.

Pure pandas; words for people are at the end (``describe_reach``), numbers never computed there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from roi.price import Prices

FRONT_KEY: tuple[str, ...] = ("task", "model", "dataset", "eval_set", "metric")
# One recipe: the frontier's key plus how it was trained.
CELL_KEY: tuple[str, ...] = (*FRONT_KEY, "experiment", "epochs", "size", "epoch")
HELD_OUT, VALIDATION = "held-out", "validation"
DEFAULT_TARGET_FRACTIONS = (0.5, 0.9, 1.0)  # of the reachable gain, when no target is given


def cell_rows(improvements: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch rows that are recipes: fixed-epoch training (data-size under ``train_to: epochs``, or the epoch
    sweep), fine-tuned, epoch >= 1, with a value.

    Args:
        improvements: ``roi.curves.relative_improvement`` output.
    """
    rule = improvements["train_to"] if "train_to" in improvements else pd.Series("", index=improvements.index)
    fixed = (improvements["experiment"] == "epochs") | rule.fillna("").isin(["", "epochs"])
    keep = fixed & (improvements["size"] > 0) & (improvements["epoch"] >= 1) & improvements["value"].notna()
    return improvements[keep]


def frontier_cells(improvements: pd.DataFrame, best: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every cell (``CELL_KEY``) with its mean held-out score and cost counters, and whether it is a candidate.

    Args:
        improvements: ``roi.curves.relative_improvement`` output.
        best: ``roi.epoch_grid.best_epochs`` output (per trial, the epoch chosen on validation), or None.

    Returns:
        ``CELL_KEY``, n_seeds, value (mean; value_min/value_max over seeds), baseline, improvement, val_score (mean,
        NaN without), train_seconds and gpu_seconds (mean, cumulative to that epoch), chosen_on (``validation``
        where the (size, schedule) has validation choices, else ``held-out``) and candidate (the validation-chosen
        epoch, or every epoch without validation).
    """
    rows = cell_rows(improvements)
    if rows.empty:
        return pd.DataFrame(columns=[*CELL_KEY, "value", "candidate"])
    if "val_score" not in rows:
        rows = rows.assign(val_score=np.nan)
    rows = rows.assign(gpu_seconds=rows["gpu_seconds"].fillna(0.0))
    cells = (
        rows.groupby(list(CELL_KEY), sort=True)
        .agg(
            n_seeds=("seed", "nunique"),
            value=("value", "mean"),
            value_min=("value", "min"),
            value_max=("value", "max"),
            baseline=("baseline", "mean"),
            improvement=("improvement", "mean"),
            val_score=("val_score", "mean"),
            train_seconds=("train_seconds", "mean"),
            gpu_seconds=("gpu_seconds", "mean"),
        )
        .reset_index()
    )
    chosen = _validation_choice(rows, best)
    group = [k for k in CELL_KEY if k != "epoch"]
    if chosen.empty:
        return cells.assign(chosen_on=HELD_OUT, candidate=True)
    cells = cells.merge(chosen, on=group, how="left")
    has = cells["chosen_epoch"].notna()
    cells["chosen_on"] = np.where(has, VALIDATION, HELD_OUT)
    cells["candidate"] = ~has | (cells["epoch"] == cells["chosen_epoch"])
    return cells.drop(columns="chosen_epoch")


def _validation_choice(rows: pd.DataFrame, best: pd.DataFrame | None) -> pd.DataFrame:
    """Per (cell group without the epoch), the epoch most seeds' validation chose (ties: the earliest).

    Reads ``best`` (trial -> epoch, from validation scores only) and the rows' keys; no metric value.
    """
    group = [k for k in CELL_KEY if k != "epoch"]
    if best is None or best.empty:
        return pd.DataFrame(columns=[*group, "chosen_epoch"])
    trials = rows[[*group, "trial_id"]].drop_duplicates()
    picks = trials.merge(best[["trial_id", "best_epoch"]], on="trial_id")
    if picks.empty:
        return pd.DataFrame(columns=[*group, "chosen_epoch"])
    counts = picks.groupby([*group, "best_epoch"]).size().rename("n").reset_index()
    counts = counts.sort_values([*group, "n", "best_epoch"], ascending=[*([True] * len(group)), False, True])
    first = counts.drop_duplicates(group, keep="first")
    return first.rename(columns={"best_epoch": "chosen_epoch"})[[*group, "chosen_epoch"]]


def cell_costs(cells: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """``cells`` with label_cost, training_cost and total_cost (NaN without prices, as ``roi.price``)."""
    prices = prices or Prices()
    out = cells.copy()
    out["label_cost"] = out["size"] * prices.label_cost if prices.label_cost is not None else np.nan
    out["training_cost"] = out["gpu_seconds"] / 3600.0 * prices.gpu_hour if prices.gpu_hour is not None else np.nan
    out["total_cost"] = out[["label_cost", "training_cost"]].sum(axis=1, min_count=1) if prices.priced else np.nan
    return out


def pareto_frontier(cells: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """The candidates on the cost frontier, per ``FRONT_KEY``, cheapest first.

    Args:
        cells: ``frontier_cells`` output.
        prices: with a label cost or a GPU-hour price the cost is ``total_cost``; without, labeled items (training
            seconds break ties).

    Returns:
        The frontier's cells with their costs (``cell_costs``) and ``best_before`` (the best score of any cheaper
        candidate, -inf for the first).
    """
    prices = prices or Prices()
    priced = cell_costs(cells[cells["candidate"]], prices)
    frames = []
    for _, cur in priced.groupby(list(FRONT_KEY), sort=False):
        cur = cur.sort_values(_cost_order(prices), kind="stable")
        before = cur["value"].cummax().shift(1).fillna(-math.inf)
        frames.append(cur.assign(best_before=before)[cur["value"].to_numpy() > before.to_numpy()])
    if not frames:
        return priced.iloc[0:0].assign(best_before=pd.Series(dtype=float))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Reach:
    """The cheapest way to a target score, and the cheapest with at least ``factor`` x its items."""

    key: dict
    target: float
    cell: pd.Series | None  # None: no candidate reaches the target
    more_items: pd.Series | None  # the cheapest candidate with >= factor x the items that reaches it
    factor: float
    best_value: float  # the best candidate's score (what is reachable)


def reach(cells: pd.DataFrame, key: dict, target: float, *, prices: Prices | None = None, factor: float = 2.0) -> Reach:
    """The first frontier cell of ``key`` at or above ``target``, and the cheapest candidate with >= ``factor`` x
    its items that also reaches it (the price of buying the score with data instead of training).

    Args:
        cells: ``frontier_cells`` output (all metrics; ``key`` selects one frontier).
        key: ``FRONT_KEY`` values.
        target: the score (metric value) to reach.
        prices: as for ``pareto_frontier``.
    """
    prices = prices or Prices()
    cand = _select(cells[cells["candidate"]], key)
    front = pareto_frontier(cand, prices)
    best_value = float(cand["value"].max()) if not cand.empty else math.nan
    hit = front[front["value"] >= target]
    if hit.empty:
        return Reach(key, target, None, None, factor, best_value)
    cell = hit.iloc[0]
    more = cell_costs(cand[(cand["size"] >= factor * cell["size"]) & (cand["value"] >= target)], prices)
    more = more.sort_values(_cost_order(prices), kind="stable")
    return Reach(key, target, cell, more.iloc[0] if not more.empty else None, factor, best_value)


def _cost_order(prices: Prices) -> list[str]:
    return ["total_cost", "size", "train_seconds", "epoch"] if prices.priced else ["size", "train_seconds", "epoch"]


def _select(frame: pd.DataFrame, key: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for k, v in key.items():
        mask &= frame[k] == v
    return frame[mask]


def default_targets(frontier: pd.DataFrame, fractions: Sequence[float] = DEFAULT_TARGET_FRACTIONS) -> pd.DataFrame:
    """Targets to describe when none is given: per ``FRONT_KEY``, the baseline + each fraction of the best gain on
    the frontier, rounded down to 3 decimals (so the best one is reachable)."""
    rows = []
    for key, cur in frontier.groupby(list(FRONT_KEY), sort=False):
        base, best = float(cur["baseline"].mean()), float(cur["value"].max())
        for f in fractions:
            value = math.floor((base + f * (best - base)) * 1000.0 + 1e-9) / 1000.0
            rows.append(dict(zip(FRONT_KEY, key, strict=True)) | {"target": value})
    out = pd.DataFrame(rows, columns=[*FRONT_KEY, "target"])
    return out.drop_duplicates().reset_index(drop=True)


# ---- words (numbers above, formatting only below) ----


def describe_reach(r: Reach, prices: Prices | None = None) -> str:
    """'to reach map@20 0.850: 800 items x 4 epochs, EUR 71.00; the cheapest with 2x the items costs EUR 140.00'."""
    prices = prices or Prices()
    metric = r.key.get("metric", "")
    head = f"to reach {metric} {r.target:.3f}"
    if r.cell is None:
        return f"{head}: no measured cell reaches it (best {r.best_value:.3f})"
    text = f"{head}: {_recipe(r.cell)}, {_cost(r.cell, prices)} (measured {r.cell['value']:.3f}"
    text += ", epoch chosen on validation)" if r.cell["chosen_on"] == VALIDATION else ")"
    if r.more_items is None:
        return f"{text}; no measured cell with {r.factor:g}x the items reaches it"
    return f"{text}; the cheapest with {r.factor:g}x the items: {_recipe(r.more_items)}, {_cost(r.more_items, prices)}"


def _recipe(cell: pd.Series) -> str:
    epochs = int(cell["epoch"])
    text = f"{cell['size']:,.0f} items x {epochs} epoch{'s' if epochs != 1 else ''}"
    if int(cell["epochs"]) != epochs:
        text += f" (of a {int(cell['epochs'])}-epoch schedule)"
    return text


def _cost(cell: pd.Series, prices: Prices) -> str:
    seconds = f"{cell['train_seconds']:,.0f} s of training"
    gpu = f", {cell['gpu_seconds']:,.0f} GPU-s" if cell["gpu_seconds"] > 0 else ""
    if prices.priced:
        total = (0.0 if prices.label_cost is None else cell["size"] * prices.label_cost) + (
            0.0 if prices.gpu_hour is None else cell["gpu_seconds"] / 3600.0 * prices.gpu_hour
        )
        return f"{prices.money(total)} ({seconds}{gpu})"
    return f"{seconds}{gpu}"


def frontier_display(frontier: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """The frontier for reading: one row per frontier cell."""
    prices = prices or Prices()
    rows = []
    for _, r in frontier.iterrows():
        row = {
            "dataset": r["dataset"],
            "metric": r["metric"],
            "items": f"{r['size']:,.0f}",
            "epochs": f"{int(r['epoch'])}" + (f" of {int(r['epochs'])}" if int(r["epochs"]) != int(r["epoch"]) else ""),
            "score": f"{r['value']:.4f}",
            "improvement": f"{r['improvement']:+.2%}",
            "training seconds": f"{r['train_seconds']:,.1f}",
            "GPU-seconds": f"{r['gpu_seconds']:,.1f}",
            "epoch chosen on": r["chosen_on"],
        }
        if prices.priced:
            row["cost"] = prices.money(r["total_cost"])
        rows.append(row)
    return pd.DataFrame(rows)
