"""Plotly figures from an analysis: the only package that imports plotly.

``figures(analysis)`` gives every chart a report shows, by name; the builders behind it (``curves`` for the
improvement and ROI charts, ``epoch_grid`` for the data x epochs heatmaps) take tidy frames and return a
``go.Figure``, never computing, showing or writing. ``png`` exports figures as images (kaleido); the two
helpers here render a figure into an HTML page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go

from roi.plots.curves import MEASURES, UNITS, build_figures, curve_figure, figure_name, summary_drop
from roi.plots.epoch_grid import epoch_grid_figure, epoch_grid_figures
from roi.plots.frontier import frontier_figure, frontier_figures

if TYPE_CHECKING:
    from roi.analysis import Analysis

__all__ = [
    "MEASURES",
    "UNITS",
    "build_figures",
    "curve_figure",
    "epoch_grid_figure",
    "epoch_grid_figures",
    "figure_div",
    "figure_name",
    "figures",
    "frontier_figure",
    "frontier_figures",
    "plotly_js",
    "summary_drop",
]


def figures(analysis: Analysis) -> dict[str, go.Figure]:
    """Every chart of an analysis: name -> figure.

    The curve charts come first, named ``<experiment>.<cost axis>.<measure>`` (e.g. ``data_size.size.roi``),
    the seed's axes (labeled items, training seconds) first; then one heatmap per dataset and metric of the
    data x epochs grid (``epoch_grid.<dataset>.<metric>``), when the sweep has one.
    """
    curves = build_figures(analysis.curves, analysis.summary, forecasts=analysis.forecasts)
    frontier = frontier_figures(analysis.frontier_cells, analysis.frontier, analysis.price_spec)
    return curves | epoch_grid_figures(analysis.epoch_grid) | frontier


def figure_div(fig: go.Figure, *, div_id: str) -> str:
    """The figure as an HTML fragment without plotly.js (the page embeds it once)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"responsive": True})


def plotly_js() -> str:
    """plotly.js itself, to inline in a page that must open offline."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
