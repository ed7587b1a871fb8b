"""The report: ``roi.analyse`` computes, ``roi.plots`` draws, ``roi.page`` lays out; this module writes it all at once.

Everything is written into a temporary folder beside the destination and renamed into place at the end, so
an error leaves either the previous report or nothing, never half a report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from roi import __version__
from roi.analysis import Analysis, analyse
from roi.curves import DEFAULT_DROP
from roi.errors import RoiInputError
from roi.forecast import forecast_curves_table
from roi.frontier import frontier_display
from roi.price import Prices, price_display
from roi.tables import epoch_grid_display, summary_table, to_markdown, trials_table

MARKER = ".roi-report"  # marks a folder as ours, so a re-run may replace it and nothing else


@dataclass
class ReportPaths:
    """Where a report's files are, and what the report said about itself."""

    out_dir: Path
    html: Path
    readme: Path
    tables: dict[str, Path]
    figures: dict[str, Path]
    pngs: dict[str, Path]
    png_note: str
    analysis: Analysis


def _unwritable(out_dir: Path, exc: OSError) -> RoiInputError:
    return RoiInputError(f"{out_dir}: cannot write there ({exc.strerror or exc}); choose another folder with --out")


def default_out_dir(path: str | Path) -> Path:
    """``RUN_DIR/report`` for a run folder, ``<table>-report`` beside a table file; for a URI (the report is
    written locally, never to the bucket) ``./<sweep>-report`` or ``./<table>-report`` here."""
    if "://" in str(path):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        # Only a table file's suffix goes: a sweep folder may have dots in its name (clinc150.v2).
        stem = Path(name).stem if Path(name).suffix in (".parquet", ".csv") else name
        return Path.cwd() / f"{stem}-report"
    path = Path(path)
    return path / "report" if path.is_dir() else path.with_name(f"{path.stem}-report")


def write_report(
    df: pd.DataFrame,
    *,
    out_dir: str | Path,
    metrics: Sequence[str] | None = None,
    drop: float = DEFAULT_DROP,
    n_boot: int = 1000,
    boot_seed: int = 0,
    png: bool = True,
    prices: Prices | None = None,
    queries: pd.DataFrame | None = None,
) -> ReportPaths:
    """Compute the analysis and write tables, figures, the HTML page and the README into ``out_dir``.

    Args:
        df: a results table.
        out_dir: the report folder; replaced as a whole if it holds an earlier report, refused if it holds other files.
        metrics: metric columns or bare names; None = every metric with values.
        drop, n_boot, boot_seed: the drop fraction (target elasticity = 1 - drop), bootstrap resamples, their seed.
        png: try PNG export (needs a Chromium for kaleido; skipped with a note otherwise).
        prices: label cost, GPU-hour price, currency and value per +1%; queries: per-query scores (or None).

    Returns:
        The paths written and the analysis.

    Raises:
        RoiInputError: the table cannot be analysed, or ``out_dir`` is a folder that is not a report.
    """
    from roi import page, plots  # plotly is needed only to write, not to analyse
    from roi.plots import png as png_export

    opts = dict(metrics=metrics, drop=drop, n_boot=n_boot, boot_seed=boot_seed, prices=prices, queries=queries)
    analysis = analyse(df, **opts)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MARKER).exists())):
        raise RoiInputError(f"{out_dir}: exists and is not a roi report; choose a new folder with --out")
    figures = plots.figures(analysis)

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:  # a file in the way, a read-only mount (a shared results folder), no permission
        raise _unwritable(out_dir, exc) from None
    try:
        tables = _write_tables(tmp, analysis)
        fig_files = {}
        (tmp / "figures").mkdir()
        for name, fig in figures.items():
            fig_files[name] = Path("figures") / f"{name}.json"
            (tmp / fig_files[name]).write_text(fig.to_json())
        pngs, png_note = png_export.export_pngs(tmp, figures, enabled=png)
        outline = page.sections(analysis, figures=figures, tables=tables, png_note=png_note)
        html = page.render_html(outline, figures=figures, source=analysis.source, plots=plots)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        files = {n: [fig_files[n], *([pngs[n]] if n in pngs else [])] for n in figures}
        (tmp / "README.md").write_text(page.render_markdown(outline, figures=figures, files=files), encoding="utf-8")
        (tmp / MARKER).write_text(f"roi {__version__}\n")
        _swap_into_place(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # e.g. the disk filled up
            raise _unwritable(out_dir, exc) from None
        raise
    return ReportPaths(
        out_dir=out_dir,
        html=out_dir / "report.html",
        readme=out_dir / "README.md",
        tables={k: out_dir / v for k, v in tables.items()},
        figures={k: out_dir / v for k, v in fig_files.items()},
        pngs={k: out_dir / v for k, v in pngs.items()},
        png_note=png_note,
        analysis=analysis,
    )


def _write_tables(folder: Path, analysis: Analysis) -> dict[str, Path]:
    """trials, summary and curves as CSV, Parquet, JSON and Markdown; returns relative paths by ``name.ext``."""
    out: dict[str, Path] = {}
    frames = {
        "trials": trials_table(analysis.points),
        "summary": analysis.summary,
        "curves": analysis.curves,
        "costs": analysis.prices,
        "forecast": forecast_curves_table(analysis.forecasts),
    }
    if not analysis.epoch_grid.empty:
        frames |= {"epoch_grid": analysis.epoch_grid, "best_epochs": analysis.best_epochs}
    if not analysis.frontier.empty:
        frames |= {"frontier": analysis.frontier, "frontier_cells": analysis.frontier_cells}
    display = {
        "summary": summary_table(analysis.summary),
        "costs": price_display(analysis.prices, analysis.price_spec),
        "epoch_grid": epoch_grid_display(analysis.epoch_grid),
        "frontier": frontier_display(analysis.frontier, analysis.price_spec),
    }
    for name, frame in frames.items():
        for ext in ("csv", "parquet", "json", "md"):
            rel = Path(f"{name}.{ext}")
            path = folder / rel
            if ext == "csv":
                frame.to_csv(path, index=False)
            elif ext == "parquet":
                frame.to_parquet(path, index=False)
            elif ext == "json":
                # JSON has no NaN/inf: both become null; drop_status and drop_ci_high_beyond_grid say which.
                path.write_text(frame.to_json(orient="records", indent=1, double_precision=15))
            else:
                path.write_text(to_markdown(display.get(name, frame)), encoding="utf-8")
            out[f"{name}.{ext}"] = rel
    return out


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``tmp`` with renames, so readers never see a partly written report."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / "report")
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
