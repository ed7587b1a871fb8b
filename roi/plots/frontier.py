"""The cost frontier chart: every (items, epochs) cell as a point, the frontier as a step line over them.

Formatting only: the cells, candidates and frontier come from ``roi.frontier``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from roi.frontier import FRONT_KEY, cell_costs
from roi.price import Prices


def frontier_figures(cells: pd.DataFrame, frontier: pd.DataFrame, prices: Prices | None = None) -> dict[str, go.Figure]:
    """One chart per dataset and metric, named ``frontier.<dataset>.<metric>`` (empty without cells)."""
    if cells.empty:
        return {}
    prices = prices or Prices()
    costed = cell_costs(cells, prices)
    out = {}
    for key, cur in costed.groupby(list(FRONT_KEY), sort=False):
        keyd = dict(zip(FRONT_KEY, key, strict=True))
        front = frontier
        for k, v in keyd.items():
            front = front[front[k] == v]
        name = f"frontier.{keyd['dataset']}.{keyd['metric']}"
        out[name] = frontier_figure(cur, front, name=name, prices=prices)
    return out


def frontier_figure(cells: pd.DataFrame, front: pd.DataFrame, *, name: str, prices: Prices) -> go.Figure:
    """Cost (money, or labeled items without prices) against the held-out score of one metric."""
    x = "total_cost" if prices.priced else "size"
    x_title = f"total cost ({prices.currency or 'money'}: labels + GPU time)" if prices.priced else "labeled items"
    hover = [
        f"{s:,.0f} items x {int(e)} epochs (of {int(E)}); {t:,.0f} s training"
        for s, e, E, t in zip(cells["size"], cells["epoch"], cells["epochs"], cells["train_seconds"], strict=True)
    ]
    metric = str(cells["metric"].iloc[0])
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=cells[x], y=cells["value"], mode="markers", name="every cell", text=hover, hoverinfo="text+y",
            marker={"color": "#bbb", "size": 7}, meta={"role": "cells"},
        )
    )  # fmt: skip
    cand = cells[cells["candidate"] & (cells["chosen_on"] == "validation")]
    if not cand.empty:
        fig.add_trace(
            go.Scatter(
                x=cand[x], y=cand["value"], mode="markers", name="epoch chosen on validation",
                marker={"color": "#1f77b4", "size": 9, "symbol": "circle-open"}, meta={"role": "candidates"},
            )
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=front[x], y=front["value"], mode="lines+markers", name="frontier (cheapest for each score)",
            line={"shape": "hv", "color": "#d62728"}, marker={"size": 9}, meta={"role": "frontier"},
        )
    )  # fmt: skip
    dataset = str(cells["dataset"].iloc[0])
    fig.update_layout(
        title={"text": f"Cost frontier: {dataset}, {metric}"},
        xaxis={"title": {"text": x_title}, "type": "log"},
        yaxis={"title": {"text": f"{metric} (held-out)"}},
        meta={"name": name, "shows": "frontier"},
        template="plotly_white",
    )
    return fig
