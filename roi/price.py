"""What each grid point costs: labels plus training, and the cost of the next +1% between grid points.

Training time is the GPU-seconds the records hold (``gpu_seconds`` = training seconds x GPUs held), never an
estimate: a CPU run holds no GPU, so its training is priced at 0 and the table says so. Without prices the same
table is in items and GPU-seconds (and training seconds, which a CPU run does have).

Definitions (also in ``roi.definitions``): the cost of a grid point is its labels (N x label cost) plus the
GPU time of its training run (mean over seeds); the cost of the next +1% between two neighbouring grid points is
the difference in cost divided by the difference in relative improvement, in percentage points. Data-size
points retrain from scratch, so the difference is labels added plus the larger run's GPU time minus the smaller's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from roi.curves import GROUP_KEY
from roi.errors import RoiInputError

# The experiment's own axis: the points priced (labeled items for data size, epochs for the epoch sweep).
PRIMARY_AXIS = {"data_size": "size", "epochs": "train_seconds"}


@dataclass(frozen=True)
class Prices:
    """Optional prices; None = show that part in its own unit (items, GPU-seconds)."""

    label_cost: float | None = None  # per labeled item
    gpu_hour: float | None = None  # per GPU-hour
    currency: str = ""
    value_per_point: float | None = None  # what +1% relative improvement is worth: gives the break-even size

    def __post_init__(self) -> None:
        for name in ("label_cost", "gpu_hour", "value_per_point"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                flag = "--" + name.replace("_", "-")
                raise RoiInputError(f"{flag} must be a number >= 0; got {value}")

    @property
    def priced(self) -> bool:
        return self.label_cost is not None or self.gpu_hour is not None

    def money(self, value: float) -> str:
        if value is None or not math.isfinite(value):
            return "n/a"
        unit = f" {self.currency}" if self.currency else ""
        return f"{value:,.2f}{unit}"


def prices_for(
    run_dir: str,
    *,
    label_cost: float | None,
    gpu_hour: float | None,
    currency: str,
    value_per_point: float | None = None,
) -> Prices:
    """Prices from the flags, each missing one from the run folder's ``config.yaml`` ``cost:`` section (the sweep
    file's), when ``run_dir`` is a run folder (local, or a URI on object storage) that has one.

    Raises:
        RoiInputError: a ``cost:`` section that is not a mapping of numbers.
    """

    saved: dict = {}
    path, text = _saved_config(run_dir)
    if text is not None:
        import yaml

        try:
            saved = (yaml.safe_load(text) or {}).get("cost") or {}
        except (yaml.YAMLError, AttributeError) as exc:
            raise RoiInputError(f"{path}: cannot read its cost: section ({type(exc).__name__})") from exc
        if not isinstance(saved, dict):
            raise RoiInputError(f"{path}: cost: must hold label_cost, gpu_hour, currency and value_per_point")

    def number(flag_value: float | None, key: str) -> float | None:
        value = flag_value if flag_value is not None else saved.get(key)
        if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
            return None if value is None else float(value)
        raise RoiInputError(f"{path}: cost.{key} must be a number; got {value!r}")

    return Prices(
        label_cost=number(label_cost, "label_cost"),
        gpu_hour=number(gpu_hour, "gpu_hour"),
        currency=currency or str(saved.get("currency") or ""),
        value_per_point=number(value_per_point, "value_per_point"),
    )


def _saved_config(run_dir: str) -> tuple[str, str | None]:
    """(where, text) of the run folder's ``config.yaml``; text None where there is none (a table file).

    A URI is read through pyarrow, as the table is (credentials from the environment); a URI that cannot be
    read here gives None: the table's own read right after names the problem.
    """
    from pathlib import Path

    if "://" in str(run_dir):
        import pyarrow.fs as pafs

        uri = f"{str(run_dir).rstrip('/')}/config.yaml"
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
            with fs.open_input_stream(path) as handle:
                return uri, handle.read().decode("utf-8")
        except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
            return uri, None
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return str(path), None
    try:
        return str(path), path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RoiInputError(f"{path}: cannot read its cost: section ({type(exc).__name__})") from exc


def price_table(points: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """Cost per grid point and per step, for every curve on its experiment's own axis.

    Args:
        points: ``roi.curves.roi_curve`` output (per seed).
        prices: label cost, GPU-hour price and currency; None or empty = items and GPU-seconds only.

    Returns:
        One row per (curve, grid point): ``GROUP_KEY``, grid, items, gpu_seconds, train_seconds (means over seeds),
        improvement, label_cost, training_cost, total_cost (NaN where no price is given), and for the step
        from the previous grid point: items_per_pct, gpu_seconds_per_pct and cost_per_pct (cost of +1%; NaN when
        the step does not improve), step_from.
    """
    prices = prices or Prices()
    rows = []
    for experiment, axis in PRIMARY_AXIS.items():
        sub = points[(points["experiment"] == experiment) & (points["cost_axis"] == axis)]
        if sub.empty:
            continue
        agg = (
            sub.groupby([*GROUP_KEY, "grid"], sort=True)
            .agg(
                items=("size", "mean"),
                gpu_seconds=("gpu_seconds", "mean"),
                train_seconds=("train_seconds", "mean"),
                improvement=("improvement", "mean"),
            )
            .reset_index()
        )
        rows.append(agg)
    if not rows:
        return pd.DataFrame()
    out = pd.concat(rows, ignore_index=True)
    gpu = out["gpu_seconds"].fillna(0.0)
    out["label_cost"] = out["items"] * prices.label_cost if prices.label_cost is not None else np.nan
    out["training_cost"] = gpu / 3600.0 * prices.gpu_hour if prices.gpu_hour is not None else np.nan
    out["total_cost"] = out[["label_cost", "training_cost"]].sum(axis=1, min_count=1) if prices.priced else np.nan
    groups = out.groupby(list(GROUP_KEY), sort=False)
    # From the previous grid point; the first point's step is from the pretrained model (cost 0, gain 0).
    d_imp = (out["improvement"] - groups["improvement"].shift(1).fillna(0.0)) * 100.0
    d_items = out["items"] - groups["items"].shift(1).fillna(0.0)
    d_gpu = gpu - groups["gpu_seconds"].shift(1).fillna(0.0)
    d_cost = out["total_cost"] - groups["total_cost"].shift(1).fillna(0.0)
    gain = d_imp > 0
    out["step_from"] = groups["grid"].shift(1)
    out["step_gain_pct"] = d_imp
    # A step that adds nothing of a kind (no labels along the epoch axis, no GPU time on a CPU) has no price
    # per +1% in that kind: n/a, not a misleading 0.
    out["items_per_pct"] = (d_items / d_imp).where(gain & (d_items > 0))
    out["gpu_seconds_per_pct"] = (d_gpu / d_imp).where(gain & (d_gpu > 0))
    out["cost_per_pct"] = (d_cost / d_imp).where(gain & (d_cost > 0))
    return out


def step_past(prices_of_curve: pd.DataFrame, cost: float) -> pd.Series | None:
    """The price row of the step that crosses ``cost`` (the first grid point at or past it), or None.

    ``cost`` is on the experiment's own axis: items (data size) or training seconds (epochs).
    """
    col = "items" if (prices_of_curve["experiment"] == "data_size").all() else "train_seconds"
    past = prices_of_curve[prices_of_curve[col] >= cost].sort_values("grid")
    if past.empty or pd.isna(past.iloc[0]["step_from"]):
        return None
    return past.iloc[0]


def price_display(table: pd.DataFrame, prices: Prices | None = None) -> pd.DataFrame:
    """The price table for reading: one row per curve and grid point, costs in their units."""
    prices = prices or Prices()
    rows = []
    for _, r in table.iterrows():
        point = f"{r['items']:,.0f} items" if r["experiment"] == "data_size" else f"{r['train_seconds']:,.1f} s"
        out = {
            "dataset": r["dataset"],
            "experiment": f"{r['experiment']} ({r['setting']})",
            "metric": r["metric"],
            "point": point,
            "improvement": f"{r['improvement']:+.2%}",
            "labels": f"{r['items']:,.0f}",
            "GPU-seconds": f"{r['gpu_seconds']:,.1f}" if math.isfinite(r["gpu_seconds"]) else "n/a",
            "training seconds": f"{r['train_seconds']:,.1f}",
        }
        if prices.priced:
            out["cost (labels + training)"] = prices.money(r["total_cost"])
            out["cost of next +1%"] = _per_pct(r, "cost_per_pct", prices.money)
        out["items per +1%"] = _per_pct(r, "items_per_pct", lambda v: f"{v:,.0f}")
        out["GPU-s per +1%"] = _per_pct(r, "gpu_seconds_per_pct", lambda v: f"{v:,.1f}")
        rows.append(out)
    return pd.DataFrame(rows)


def _per_pct(row: pd.Series, column: str, fmt) -> str:
    if not row["step_gain_pct"] > 0:
        return "no gain"
    value = row[column]
    return "n/a" if value is None or not math.isfinite(value) else fmt(value)
