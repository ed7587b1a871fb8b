"""The data x epochs grid as heatmaps: one per dataset and metric, the epoch chosen on validation starred."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go

from roi.plots.curves import _TEMPLATE


def epoch_grid_figures(grid: pd.DataFrame) -> dict[str, go.Figure]:
    """One heatmap per dataset and metric of the data x epochs grid (``roi.epoch_grid.grid_table``).

    Returns:
        name (``epoch_grid.<dataset>.<metric>``, unique) -> figure.
    """
    figures: dict[str, go.Figure] = {}
    if grid.empty:
        return figures
    for keys, block in grid.groupby(["task", "model", "dataset", "eval_set", "metric", "epochs"], sort=False):
        dataset, metric = keys[2], keys[4]
        name = "epoch_grid." + ".".join(re.sub(r"[^A-Za-z0-9_-]+", "-", str(v)) for v in (dataset, metric))
        while name in figures:  # the same dataset and metric for two models or evaluation sets
            name += "-2"
        figures[name] = epoch_grid_figure(block, name=name)
    return figures


def epoch_grid_figure(block: pd.DataFrame, *, name: str) -> go.Figure:
    """A heatmap of mean relative improvement at each (size, epoch); the epoch validation chose for each size
    (``best``) is starred in its cell's text and outlined by a shape named ``best epoch (validation)``.

    Args:
        block: the ``grid_table`` rows of one dataset, model, evaluation set and metric.
        name: the figure's name (its ``layout.meta.figure``).
    """
    block = block.sort_values(["size", "epoch"])
    sizes = sorted(block["size"].unique())
    epochs = sorted(block["epoch"].unique())
    z = block.pivot(index="size", columns="epoch", values="improvement").reindex(index=sizes, columns=epochs)
    extra = {
        col: block.pivot(index="size", columns="epoch", values=col).reindex(index=sizes, columns=epochs)
        for col in ("roi", "val_score", "chosen_by", "n_chosen")
    }
    custom = [
        [[extra[c].iloc[i, j] for c in ("roi", "val_score", "chosen_by", "n_chosen")] for j in range(len(epochs))]
        for i in range(len(sizes))
    ]
    ylabels = [f"{s:,}" for s in sizes]  # categorical rows: every size one row, whatever their spacing
    dataset, metric = block["dataset"].iloc[0], block["metric"].iloc[0]
    marked = block.pivot(index="size", columns="epoch", values="best").reindex(index=sizes, columns=epochs)
    marked = marked.fillna(False).astype(bool)
    text = [
        [
            "" if pd.isna(z.iloc[i, j]) else f"{z.iloc[i, j]:+.1%}" + (" ★" if marked.iloc[i, j] else "")
            for j in range(len(epochs))
        ]
        for i in range(len(sizes))
    ]
    heatmap = go.Heatmap(
        z=z.to_numpy().tolist(),
        x=[int(e) for e in epochs],
        y=ylabels,
        text=text,
        customdata=custom,
        colorscale="Viridis",
        colorbar={"title": "improvement", "tickformat": ".0%"},
        texttemplate="%{text}",
        hovertemplate=(
            "%{y} items, epoch %{x}<br>improvement %{z:+.2%}<br>ROI %{customdata[0]:.3g} per item<br>"
            "validation %{customdata[1]:.4f}<br>chosen by %{customdata[2]} of %{customdata[3]} seeds<extra></extra>"
        ),
        meta={"role": "grid"},
    )
    # The chosen cells outlined (a category axis places row i at i): the eye follows the best epoch across sizes.
    best = block[block["best"]]
    shapes = [
        {
            "type": "rect",
            "name": "best epoch (validation)",
            "x0": float(e) - 0.46,
            "x1": float(e) + 0.46,
            "y0": sizes.index(s) - 0.44,
            "y1": sizes.index(s) + 0.44,
            "line": {"color": "white", "width": 3},
        }
        for e, s in zip(best["epoch"], best["size"], strict=True)
    ]
    return go.Figure(
        data=[heatmap],
        layout=dict(
            title=f"Relative improvement at each size and epoch — {dataset} · {metric} (★ chosen on validation)",
            xaxis={"title": "epoch", "dtick": 1},
            yaxis={"title": "labeled items", "type": "category"},
            template=_TEMPLATE,
            shapes=shapes,
            meta={"figure": name, "shows": "epoch_grid", "dataset": dataset, "metric": metric},
        ),
    )
