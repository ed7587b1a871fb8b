"""Tables for people: the summary's display form, notes, Markdown and the terminal. Formatting only.

Numbers come from ``roi.curves``; nothing here computes a metric, an ROI or a drop point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from roi.curves import AXIS_LABELS

TRIAL_COLUMNS: tuple[str, ...] = (
    "sweep",
    "experiment",
    "trial_id",
    "task",
    "model",
    "dataset",
    "eval_set",
    "setting",
    "seed",
    "size",
    "epochs",
    "epoch",
    "steps",
    "train_to",
    "stop_reason",
    "val_score",
    "metric",
    "value",
    "baseline",
    "improvement",
    "cost_axis",
    "cost",
    "roi",
    "marginal_roi",
    "train_seconds",
    "gpu_seconds",
)


def format_cost(axis: str, value: float) -> str:
    """A cost in its unit: items as integers, seconds with one decimal."""
    if value is None or not math.isfinite(value):
        return "beyond grid" if value == math.inf else "n/a"
    if axis == "size":
        return f"{value:,.0f}"
    unit = "GPU-s" if axis == "gpu_seconds" else "s"
    return f"{value:,.1f} {unit}"


def format_number(value: float, digits: int = 4) -> str:
    """A float with ``digits`` significant digits; empty for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}"


def format_drop(row: pd.Series) -> str:
    """The drop point with its interval, or why there is none."""
    axis = row["cost_axis"]
    if row["drop_status"] != "reached":
        return row["drop_status"]
    text = f"{format_cost(axis, row['drop_cost'])} (N0 = {format_cost(axis, row['first_cost'])})"
    if row["drop_ci_note"]:
        return f"{text} ({row['drop_ci_note']})"
    return f"{text} [{format_cost(axis, row['drop_ci_low'])}, {format_cost(axis, row['drop_ci_high'])}]"


def format_answer(row: pd.Series) -> str:
    """The headline answer (``roi.elasticity``) with its interval: a cost, ``below first size`` or ``not reached``."""
    axis, state = row["cost_axis"], row.get("answer_state", "")
    if not isinstance(state, str) or not state:
        return ""
    if state == "found":
        text = format_cost(axis, row["answer_cost"])
    elif state == "below the first size":
        text = f"below the first size ({format_cost(axis, row['first_cost'])})"
    elif state == "not reached":
        text = f"not reached by {format_cost(axis, row['last_cost'])} (last e {row['last_elasticity']:.2f})"
    else:
        return state
    if math.isnan(row["answer_low"]):
        return f"{text} (no interval)"
    if row["answer_low"] == row["answer_high"] and state != "found":
        return text  # every resample reads the same state: no interval to add

    def bound(v: float) -> str:
        return "below" if v == 0 else format_cost(axis, v)

    return f"{text} [{bound(row['answer_low'])}, {bound(row['answer_high'])}]"


def format_forecast(row: pd.Series) -> str:
    """The forecast drop point past the grid with its interval, why there is none, or empty when not needed."""
    status = row.get("forecast_status", "")
    if not status or row["drop_reached"] or row["drop_status"] == "no positive ROI":
        return ""
    if status != "ok":
        return "refused (see notes)"
    if row["forecast_drop_status"] != "forecast":
        return row["forecast_drop_status"]
    axis = row["cost_axis"]
    text = f"{format_cost(axis, row['forecast_drop_cost'])} ({row['forecast_family']} law)"
    if math.isfinite(row["forecast_drop_low"]):
        text += f" [{format_cost(axis, row['forecast_drop_low'])}, {format_cost(axis, row['forecast_drop_high'])}]"
    return text


def summary_notes(summary: pd.DataFrame) -> pd.Series:
    """One note per summary row: grid-start dependence, negative or absent ROI, seed coverage."""
    notes = []
    for _, row in summary.iterrows():
        axis = row["cost_axis"]
        parts = []
        if row["drop_status"] == "no positive ROI":
            parts.append("no positive ROI: fine-tuning never beat the baseline on this metric")
        elif row["peak_at_first"] and row["drop_status"] != "single point":  # one point: nothing to depend on
            first = format_cost(axis, row["first_cost"])
            text = f"peak at the grid's first point ({first}): the drop point depends on where the grid starts"
            if row["drop_reached"]:
                text += f"; at the drop point the gain is {row['gain_ratio_at_drop']:.3g}x the gain at {first}"
            parts.append(text)
        if row["drop_status"] == "not reached within the grid":
            parts.append(
                f"ROI stays above {1 - row['drop']:.0%} of its peak up to {format_cost(axis, row['last_cost'])}"
            )
        if row["drop_ci_note"]:
            parts.append(f"{row['drop_ci_note']}: no interval")
        elif row["drop_reached"] and row["boot_reached_fraction"] < 1:
            parts.append(f"drop reached in {row['boot_reached_fraction']:.0%} of seed resamples")
        if isinstance(row["min_marginal_roi"], float) and row["min_marginal_roi"] < 0:
            parts.append(
                f"marginal ROI negative (first <= 0 at {format_cost(axis, row['first_nonpositive_marginal_cost'])})"
            )
        notes.append("; ".join(parts))
    return pd.Series(notes, index=summary.index, dtype=object)


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for reading: one row per task, dataset, metric and cost axis, costs in their units."""
    rows = []
    show_model = summary["model"].nunique() > 1
    show_eval = summary.groupby("dataset")["eval_set"].nunique().max() > 1
    for _, row in summary.iterrows():
        axis = row["cost_axis"]
        out = {"task": row["task"]}
        if show_model:
            out["model"] = row["model"]
        out["dataset"] = row["dataset"]
        if show_eval:
            out["eval_set"] = row["eval_set"]
        out |= {
            "experiment": f"{row['experiment']} ({row['setting']})",
            "cost": AXIS_LABELS.get(axis, axis),
            "metric": row["metric"],
            "seeds": str(row["n_seeds"]),
            "baseline": format_number(row["baseline"]),
            "best": format_number(row["best_value"]),
            "best improvement": f"{row['best_improvement']:+.1%} at {format_cost(axis, row['best_cost'])}",
            "peak ROI (average)": (
                f"{format_number(row['peak_roi'], 3)} at {format_cost(axis, row['peak_cost'])}"
                if row["peak_roi"] > 0
                else "never positive"
            ),
            f"answer: e falls to {row.get('target_elasticity', 1 - row['drop']):g} [95% CI]": format_answer(row),
            f"Jina's {row['drop']:.0%}-drop point (relative to the first size) [95% CI, seeds]": format_drop(row),
            "forecast drop point [95% CI]": format_forecast(row),
            "grid starts at": format_cost(axis, row["first_cost"]),
            "note": row.get("note", ""),
        }
        rows.append(out)
    return pd.DataFrame(rows)


def trials_table(points: pd.DataFrame) -> pd.DataFrame:
    """The per-trial points (one row per trial row, metric and cost axis) in a stable column order."""
    cols = [c for c in TRIAL_COLUMNS if c in points.columns]
    return points[cols].reset_index(drop=True)


def to_markdown(df: pd.DataFrame, *, float_digits: int = 6) -> str:
    """A GitHub pipe table: header, separator, one line per row; pipes escaped, newlines flattened."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            text = "" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.{float_digits}g}")
        else:
            text = "" if value is None else str(value)
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip()

    header = [cell(str(c)) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def format_terminal(table: pd.DataFrame, *, note_column: str = "note") -> str:
    """A fixed-width table for the terminal; long notes become numbered footnotes under it."""
    notes: list[str] = []
    shown = table.copy()
    if note_column in shown.columns:
        refs = []
        for note in shown[note_column]:
            if note:
                if note not in notes:
                    notes.append(note)
                refs.append(f"[{notes.index(note) + 1}]")
            else:
                refs.append("")
        shown[note_column] = refs
    cols: Sequence[str] = list(shown.columns)
    cells = [[str(c) for c in cols]] + [[str(v) for v in row] for row in shown.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"[{i}] {note}" for i, note in enumerate(notes, start=1)]
    return "\n".join(lines)


def epoch_grid_display(grid: pd.DataFrame) -> pd.DataFrame:
    """The data x epochs grid for reading: one row per size (and dataset, metric), one column per epoch.

    A cell reads ``+12.3% · 0.00123/item``: the mean relative improvement at that (size, epoch) and the ROI per
    labeled item; ``*`` marks the epoch chosen on validation (``roi.epoch_grid.grid_table``'s ``best``). The last
    column says which epoch validation chose for how many seeds.
    """
    if grid.empty:
        return pd.DataFrame()
    several = [k for k in ("model", "eval_set") if grid[k].nunique() > 1]
    rows = []
    for keys, block in grid.groupby(["task", "model", "dataset", "eval_set", "metric", "epochs", "size"], sort=False):
        row = dict(zip(["task", "model", "dataset", "eval_set", "metric", "epochs", "size"], keys, strict=True))
        out = {k: row[k] for k in ("dataset", *several, "metric")} | {"size": f"{row['size']:,}"}
        for _, cell in block.sort_values("epoch").iterrows():
            mark = " *" if cell["best"] else ""
            out[f"epoch {cell['epoch']}"] = f"{cell['improvement']:+.1%} · {format_number(cell['roi'], 3)}/item{mark}"
        chosen = block[block["chosen_by"] > 0].sort_values("epoch")
        n = int(block["n_chosen"].max()) if len(block) else 0
        out["chosen on validation"] = (
            ", ".join(f"epoch {int(c['epoch'])} ({int(c['chosen_by'])} of {n} seeds)" for _, c in chosen.iterrows())
            or "no validation scores"
        )
        rows.append(out)
    return pd.DataFrame(rows)
