"""The curve figures: improvement, average ROI and marginal ROI against a cost axis, in the seed's style.

Builders take the mean curves and the summary, return a ``go.Figure`` and never compute, show or write. Each
figure carries ``layout.meta`` (its name, experiment, cost axis and what it shows) and each trace ``meta`` (its
role: ``mean``, ``band``, ``drop``, ``answer``, ``threshold``, ``forecast``..., and its curve), so tests and users
find things in the figure data rather than in pixels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

from roi.curves import AXIS_LABELS, GROUP_KEY

MEASURES: dict[str, tuple[str, str]] = {
    # measure -> (column in the mean curves, what the y axis says)
    "improvement": ("improvement", "relative improvement over the pretrained model"),
    "roi": ("roi", "ROI (average) = relative improvement / {unit}"),
    "marginal_roi": ("marginal_roi", "marginal ROI = delta improvement / delta {unit}"),
}
UNITS: dict[str, str] = {"size": "labeled item", "train_seconds": "training second", "gpu_seconds": "GPU-second"}
_PALETTE = qualitative.Plotly
# Past ten curves Plotly's palette repeats, and two curves of one colour read as one (a report of three rules x three
# metrics has nine, plus one epoch per size): a 24-colour palette then.
_LONG_PALETTE = qualitative.Dark24


def figure_name(experiment: str, cost_axis: str, measure: str) -> str:
    """The stable name of a figure, e.g. ``data_size.size.roi``; file names and HTML ids derive from it."""
    return f"{experiment}.{cost_axis}.{measure}"


def _labels(curves: pd.DataFrame) -> dict[tuple, str]:
    """A legend label per line: dataset and metric, plus whatever else varies in this figure."""
    keys = curves[list(GROUP_KEY)].drop_duplicates()
    extra = [k for k in ("model", "setting") if keys[k].nunique() > 1]
    if keys.groupby("dataset")["eval_set"].nunique().max() > 1:  # two query samples of one dataset
        extra.append("eval_set")
    labels = {}
    for values in keys.itertuples(index=False, name=None):
        row = dict(zip(GROUP_KEY, values, strict=True))
        labels[tuple(values)] = " · ".join(str(row[k]) for k in ("dataset", "metric", *extra))
    return labels


# plotly_white's look in a few keys (the heatmaps of roi.plots.epoch_grid share it): the full template costs ~60 ms per figure to copy and validate.
_TEMPLATE = {
    "layout": {
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "font": {"color": "#2a3f5f"},
        "hovermode": "closest",
        "xaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "automargin": True},
        "yaxis": {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "automargin": True},
    }
}


def _rgba(color: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


def curve_figure(
    curves: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    experiment: str,
    cost_axis: str,
    measure: str,
    forecasts: dict | None = None,
) -> go.Figure:
    """One chart: a measure against a cost axis, one line per dataset and metric with its seed band.

    Args:
        curves: mean curves (``roi.curves.aggregate_seeds``), any subset; this figure takes its experiment/axis.
        summary: ``roi.curves.summarize`` output; drop points are marked on the average-ROI chart.
        experiment: ``data_size`` or ``epochs``.
        cost_axis: ``size``, ``train_seconds`` or ``gpu_seconds``.
        measure: ``improvement``, ``roi`` (average) or ``marginal_roi``.
        forecasts: ``roi.forecast.forecast_all`` output; drawn dashed with their band past the grid (labeled
            items axis, improvement and average ROI).

    Returns:
        The figure; the x axis is logarithmic for labeled items, as in the seed.
    """
    column, ytitle = MEASURES[measure]
    unit = UNITS.get(cost_axis, cost_axis)
    sub = curves[(curves["experiment"] == experiment) & (curves["cost_axis"] == cost_axis)]
    labels = _labels(sub) if not sub.empty else {}
    traces: list[go.Scatter] = []
    groups = list(sub.groupby(list(GROUP_KEY), sort=True))
    palette = _PALETTE if len(groups) <= len(_PALETTE) else _LONG_PALETTE
    for i, (key, cur) in enumerate(groups):
        cur = cur.sort_values("cost", kind="stable")
        cur = cur[cur[column].notna()]
        if cur.empty:
            continue
        label, color = labels[key], palette[i % len(palette)]
        curve = dict(zip(GROUP_KEY, key, strict=True)) | {"cost_axis": cost_axis}
        if cur["n_seeds"].max() > 1:
            traces.append(
                _band(cur["cost"], cur[f"{column}_min"], cur[f"{column}_max"], color=_rgba(color, 0.18),
                      name=f"{label} (seed min–max)", label=label, meta={"role": "band", "curve": curve})
            )  # fmt: skip
        traces.append(
            go.Scatter(
                x=cur["cost"].tolist(),
                y=cur[column].tolist(),
                mode="lines+markers",
                name=label,
                legendgroup=label,
                line={"color": color, "dash": "dash" if measure == "marginal_roi" else "solid"},
                customdata=cur[["n_seeds", "grid"]].to_numpy().tolist(),
                hovertemplate=f"{label}<br>%{{x:,.4g}} {unit}s<br>%{{y:.4g}}<br>seeds: %{{customdata[0]}}<extra></extra>",
                meta={"role": "mean", "curve": curve},
            )
        )
        fc = (forecasts or {}).get(key) if cost_axis == "size" and measure in ("improvement", "roi") else None
        if fc is not None and fc.status == "ok":
            traces += _forecast_traces(fc, column=column, curve=curve, label=label, color=color, unit=unit)
        if measure == "improvement":
            traces += _answer_markers(summary, cur, curve=curve, label=label, color=color)
        if measure == "roi":
            traces += _threshold_line(summary, cur, curve=curve, label=label, color=color)
            traces += _drop_markers(summary, curve=curve, label=label, color=color)
            if fc is not None and fc.status == "ok" and fc.drop_status == "forecast":
                traces.append(
                    go.Scatter(
                        x=[fc.drop_cost],
                        y=[(1 - summary_drop(summary)) * float(cur[column].max())],
                        mode="markers",
                        marker={"symbol": "x-open", "size": 12, "color": color},
                        name=f"{label}: forecast drop",
                        legendgroup=label,
                        hovertemplate=f"{label}<br>FORECAST drop at %{{x:,.4g}} {unit}s<extra></extra>",
                        meta={"role": "forecast_drop", "curve": curve},
                    )
                )
    what = {"improvement": "Relative improvement", "roi": "ROI (average)", "marginal_roi": "Marginal ROI"}[measure]
    # Built in one go: update_layout on a figure with traces costs tens of ms per call.
    layout = dict(
        title=f"{what} vs {AXIS_LABELS.get(cost_axis, cost_axis)} — {experiment} experiment",
        xaxis={"title": AXIS_LABELS.get(cost_axis, cost_axis), "type": "log" if cost_axis == "size" else "linear"},
        yaxis={
            "title": ytitle.format(unit=unit),
            "tickformat": ".0%" if measure == "improvement" else None,
            "zeroline": True,
        },
        template=_TEMPLATE,
        # The zero line: negative ROI/improvement must show as such.
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": 0,
                "y1": 0,
                "line": {"color": "#666", "width": 1},
                "layer": "below",
            }
        ],
        legend={"title": "dataset · metric (band: seed min–max)"},
        meta={
            "figure": figure_name(experiment, cost_axis, measure),
            "experiment": experiment,
            "cost_axis": cost_axis,
            "shows": measure,
        },
    )
    return go.Figure(data=traces, layout=layout)


def _drop_markers(summary: pd.DataFrame, *, curve: dict, label: str, color: str) -> list[go.Scatter]:
    """The drop point as an x marker at (drop cost, threshold), its bootstrap interval as a horizontal error bar."""
    traces: list[go.Scatter] = []
    if summary.empty:
        return traces
    mask = pd.Series(True, index=summary.index)
    for k, v in curve.items():
        mask &= summary[k] == v
    for _, row in summary[mask & summary["drop_reached"]].iterrows():
        cost, low, high = row["drop_cost"], row["drop_ci_low"], row["drop_ci_high"]
        error = None
        if math.isfinite(low):
            # An interval running past the grid is drawn to the grid's end; the hover says so.
            upper = high if math.isfinite(high) else row["last_cost"]
            error = {
                "type": "data",
                "symmetric": False,
                "array": [max(upper - cost, 0.0)],
                "arrayminus": [max(cost - low, 0.0)],
                "color": color,
            }
        ci = "single seed" if row["drop_ci_note"] else f"[{low:,.4g}, {high:,.4g}]".replace("inf", "beyond grid")
        traces.append(
            go.Scatter(
                x=[cost],
                y=[row["threshold"]],
                mode="markers",
                marker={"symbol": "x", "size": 12, "color": color, "line": {"width": 1}},
                error_x=error,
                name=f"{label}: {row['drop']:.0%} drop",
                legendgroup=label,
                hovertemplate=f"{label}<br>{row['drop']:.0%} drop at %{{x:,.4g}} {ci}<br>ROI %{{y:.4g}}<extra></extra>",
                meta={
                    "role": "drop",
                    "curve": curve,
                    "interval": [v if math.isfinite(v) else None for v in (low, high)],
                },
            )
        )
    return traces


def _answer_markers(summary: pd.DataFrame, cur: pd.DataFrame, *, curve: dict, label: str, color: str) -> list:
    """The answer (elasticity 0.3, ``roi.elasticity``) as a diamond on the improvement curve, its 95% interval as a
    horizontal error bar (drawn to the grid's ends where it runs below the first size or past the last)."""
    if summary.empty or "answer_state" not in summary:
        return []
    mask = pd.Series(True, index=summary.index)
    for k, v in curve.items():
        mask &= summary[k] == v
    traces = []
    for _, row in summary[mask & (summary["answer_state"] == "found")].iterrows():
        cost, low, high = row["answer_cost"], row["answer_low"], row["answer_high"]
        # The curve's own value there, interpolated in log-log space as the rule reads it.
        pos = cur[cur["improvement"] > 0]
        y = float(np.exp(np.interp(np.log(cost), np.log(pos["cost"]), np.log(pos["improvement"])))) if len(pos) else 0.0
        error = None
        if math.isfinite(low) or math.isfinite(high):
            lo = low if low > 0 else float(cur["cost"].min())
            hi = high if math.isfinite(high) else float(cur["cost"].max())
            error = {"type": "data", "symmetric": False, "array": [max(hi - cost, 0.0)],
                     "arrayminus": [max(cost - lo, 0.0)], "color": color}  # fmt: skip
        ci = f"[{'below the first size' if low == 0 else f'{low:,.4g}'}, {high:,.4g}]".replace("inf", "beyond grid")
        traces.append(
            go.Scatter(
                x=[cost],
                y=[y],
                mode="markers",
                marker={"symbol": "diamond", "size": 12, "color": color, "line": {"width": 1, "color": "#333"}},
                error_x=error,
                name=f"{label}: answer (e = {row['target_elasticity']:g})",
                legendgroup=label,
                hovertemplate=f"{label}<br>answer: past %{{x:,.4g}} each +1% costs more than "
                f"{1 / row['target_elasticity']:.1f}x the average {ci}<extra></extra>",
                meta={"role": "answer", "curve": curve},
            )
        )
    return traces


def summary_drop(summary: pd.DataFrame) -> float:
    """The drop fraction the summary was computed with (0.7 when it is empty)."""
    return float(summary["drop"].iloc[0]) if not summary.empty else 0.7


def _threshold_line(summary: pd.DataFrame, cur: pd.DataFrame, *, curve: dict, label: str, color: str) -> list:
    """The (1 - drop) x peak level as a dotted line from the peak to the grid's end: where 'dropped' begins."""
    mask = pd.Series(True, index=summary.index)
    for k, v in curve.items():
        mask &= summary[k] == v
    rows = summary[mask]
    if rows.empty or not rows.iloc[0]["peak_roi"] > 0:
        return []
    row = rows.iloc[0]
    x0, x1 = float(row["peak_cost"]), float(max(row["last_cost"], row.get("forecast_drop_cost", 0) or 0))
    if not math.isfinite(x1):
        x1 = float(row["last_cost"])
    return [
        go.Scatter(
            x=[x0, x1],
            y=[row["threshold"]] * 2,
            mode="lines",
            line={"color": color, "dash": "dot", "width": 1},
            name=f"{label}: {1 - row['drop']:.0%} of peak",
            legendgroup=label,
            hovertemplate=f"{label}<br>{1 - row['drop']:.0%} of the peak ROI: %{{y:.4g}}<extra></extra>",
            meta={"role": "threshold", "curve": curve},
        )
    ]


def _band(x, low, high, *, color: str, name: str, label: str, meta: dict):
    """A filled band between ``low`` and ``high`` along ``x``, grouped with its curve in the legend."""
    return go.Scatter(
        x=list(x) + list(x)[::-1],
        y=list(high) + list(low)[::-1],
        fill="toself",
        fillcolor=color,
        line={"width": 0},
        hoverinfo="skip",
        name=name,
        legendgroup=label,
        showlegend=False,
        meta=meta,
    )


def _forecast_traces(fc, *, column: str, curve: dict, label: str, color: str, unit: str) -> list:
    """The forecast past the last measured size: a dashed mean line and its bootstrap band over seeds."""
    c = fc.curve
    traces = []
    if c[f"{column}_low"].notna().any():
        traces.append(
            _band(c["grid"], c[f"{column}_low"], c[f"{column}_high"], color=_rgba(color, 0.08),
                  name=f"{label} (forecast band)", label=label, meta={"role": "forecast_band", "curve": curve})
        )  # fmt: skip
    traces.append(
        go.Scatter(
            x=c["grid"].tolist(),
            y=c[column].tolist(),
            mode="lines",
            line={"color": color, "dash": "dash"},
            name=f"{label}: FORECAST ({fc.family} law)",
            legendgroup=label,
            hovertemplate=f"{label}<br>FORECAST at %{{x:,.4g}} {unit}s: %{{y:.4g}}<extra></extra>",
            meta={"role": "forecast", "curve": curve},
        )
    )
    return traces


def build_figures(
    curves: pd.DataFrame, summary: pd.DataFrame, *, forecasts: dict | None = None
) -> dict[str, go.Figure]:
    """Every chart the data has: improvement, average ROI and marginal ROI for each experiment and cost axis.

    Returns:
        name (``figure_name``) -> figure, the seed's axes (labeled items, training seconds) first.
    """
    order = {"size": 0, "train_seconds": 1, "gpu_seconds": 2}
    pairs = sorted(
        {(e, a) for e, a in zip(curves["experiment"], curves["cost_axis"], strict=True)},
        key=lambda p: (order.get(p[1], 9), p[0]),
    )
    return {
        figure_name(e, a, m): curve_figure(curves, summary, experiment=e, cost_axis=a, measure=m, forecasts=forecasts)
        for e, a in pairs
        for m in MEASURES
    }
