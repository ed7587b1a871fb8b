"""PNG export of figures with kaleido and a Chromium: the only module that writes an image or looks for a browser.

The figure builders (``roi.plots``) never write; the report (``roi.report``) calls ``export_pngs`` and turns any
failure into a note, never a failed report.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """A Chromium/Chrome binary for kaleido, or None; never downloads one."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    try:  # kaleido's own lookup (BROWSER_PATH, typical install paths, a browser it downloaded earlier)
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 -- a lookup failure only means no PNGs
        return None


WIDTH, HEIGHT = 1000, 600  # pixels of an exported figure; taller where its legend needs it (png_height)
LEGEND_ROW, LEGEND_GROUP_GAP, MARGIN = 21, 12, 200  # pixels per legend entry, between groups, above and below


def png_height(figure: go.Figure) -> int:
    """The height at which the figure's whole legend shows: a static image cannot scroll it, and a report with a
    dozen curves (three rules x three metrics, their forecasts and answers) lost the last rules' entries at 600."""
    shown = [t for t in figure.data if t.showlegend is not False]
    groups = {t.legendgroup for t in shown}
    return max(HEIGHT, MARGIN + LEGEND_ROW * len(shown) + LEGEND_GROUP_GAP * len(groups))


def write_pngs(figures: Sequence[go.Figure], paths: Sequence[Path]) -> None:
    """Export figures as PNG with kaleido (one browser for all); raises whatever kaleido raises."""
    figures = list(figures)
    heights = [png_height(f) for f in figures]
    pio.write_images(figures, [str(p) for p in paths], format="png", width=WIDTH, height=heights)


def export_pngs(folder: Path, figures: Mapping[str, go.Figure], *, enabled: bool) -> tuple[dict[str, Path], str]:
    """``folder/figures/<name>.png`` for each figure when a Chromium is there.

    Args:
        folder: the report folder (its ``figures/`` subfolder must exist).
        figures: name -> figure.
        enabled: False skips the export (``--no-png``).

    Returns:
        The PNGs written (name -> path relative to ``folder``; empty when none) and a note saying what happened.
    """
    if not enabled:
        return {}, "PNG export skipped (--no-png)."
    browser = find_chromium()
    if browser is None:
        return {}, (
            "PNG files skipped: no Chromium/Chrome found for kaleido (install Debian's chromium, or set BROWSER_PATH); "
            "the HTML report and the figures/*.json files hold the same charts."
        )
    rel = {name: Path("figures") / f"{name}.png" for name in figures}
    try:
        write_pngs(list(figures.values()), [folder / p for p in rel.values()])
    except Exception as exc:  # noqa: BLE001 -- kaleido/Chromium trouble must not cost the user the report
        for p in rel.values():
            (folder / p).unlink(missing_ok=True)
        return {}, f"PNG files skipped: kaleido failed with {browser} ({type(exc).__name__}: {exc})."
    return rel, f"PNG files written with kaleido and {browser}."
