"""The report: compute (``roi.curves``), format (``roi.tables``, ``roi.plots``), write everything at once.

Everything is written into a temporary folder beside the destination and renamed into place at the end, so
an error leaves either the previous report or nothing, never half a report.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from roi import __version__
from roi.answer import recommendations
from roi.curves import (
    COST_AXES,
    CURVE_KEY,
    DEFAULT_DROP,
    aggregate_seeds,
    check_drop,
    relative_improvement,
    roi_curve,
    summarize,
)
from roi.definitions import HEADLINE_NOTE, SUMMARY_NOTE, definitions_html, definitions_markdown
from roi.epoch_grid import best_epochs, best_setting, grid_table
from roi.errors import RoiInputError
from roi.forecast import Forecast, forecast_all, forecast_curves_table, forecast_summary
from roi.headline import with_headline
from roi.load import NOTES_ATTR, SOURCE_ATTR, resolve_metrics, validate_table
from roi.price import Prices, price_display, price_table
from roi.tables import epoch_grid_display, summary_notes, summary_table, to_markdown, trials_table

MARKER = ".roi-report"  # marks a folder as ours, so a re-run may replace it and nothing else
HTML_TRIAL_ROWS = 2000  # the page stays light; the files hold every row


@dataclass
class Analysis:
    """Everything a report shows, computed, not yet written."""

    source: str
    metrics: list[str]
    drop: float
    points: pd.DataFrame  # per seed, per grid point, per cost axis
    curves: pd.DataFrame  # mean across seeds with bands
    summary: pd.DataFrame  # one row per curve, with a `note` column
    notes: list[str] = field(default_factory=list)
    forecasts: dict[tuple, Forecast] = field(default_factory=dict)  # data-size curves, labeled-items axis
    prices: pd.DataFrame = field(default_factory=pd.DataFrame)  # roi.price.price_table
    price_spec: Prices = field(default_factory=Prices)
    answers: list[dict] = field(default_factory=list)  # roi.answer.recommendations: the report's first section
    # the data x epochs grid (roi.epoch_grid): empty unless a data-size sweep evaluated more than one epoch
    epoch_grid: pd.DataFrame = field(default_factory=pd.DataFrame)
    best_epochs: pd.DataFrame = field(default_factory=pd.DataFrame)  # per trial, the epoch chosen on validation


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


def analyse(
    df: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    drop: float = DEFAULT_DROP,
    n_boot: int = 1000,
    boot_seed: int = 0,
    prices: Prices | None = None,
    queries: pd.DataFrame | None = None,
) -> Analysis:
    """Validate the table and compute curves, mean curves, the summary, forecasts, prices and the answers.

    Args:
        df: a results table (``roi.load.load_results`` output, or any table that follows the schema).
        metrics: metric columns or bare names; None = every metric with values.
        drop: fraction of the peak ROI lost at the drop point.
        n_boot, boot_seed: bootstrap resamples and their seed.
        prices: label cost, GPU-hour price, currency and value per +1%; queries: per-query scores (or None).

    Raises:
        RoiInputError: missing baseline, missing columns, a single point, all-NaN metrics, zero cost, bad option.
    """
    drop = check_drop(drop)
    table = validate_table(df, source=df.attrs.get(SOURCE_ATTR, "results table"))
    source = table.attrs[SOURCE_ATTR]
    notes = list(table.attrs.get(NOTES_ATTR, []))
    chosen, metric_notes = resolve_metrics(table, metrics)
    notes += metric_notes
    try:
        improvements = relative_improvement(table, metrics=chosen)
        points = roi_curve(improvements)
    except RoiInputError as exc:
        raise RoiInputError(f"{source}: {exc.message}", fix=exc.fix) from exc

    nan_rows = improvements[improvements["value"].isna()].drop_duplicates(["trial_id", "epoch"])
    if len(nan_rows):
        notes.append(f"{len(nan_rows)} ok row(s) with NaN metric values: those values are left out of the curves")
    data = improvements[improvements["experiment"] == "data_size"]
    unfinished = ~data.groupby("trial_id")["final"].any()
    if unfinished.any():
        notes.append(
            f"{int(unfinished.sum())} data-size trial(s) without their final epoch row left out (still running?)"
        )
    if points.empty:
        raise RoiInputError(
            f"{source}: no curve point: no final data_size row and no epochs row with epoch >= 1 has a value"
        )

    curves = aggregate_seeds(points)
    n_points = curves.groupby(list(CURVE_KEY)).size()
    if (n_points < 2).all():
        raise RoiInputError(
            f"{source}: single point: every curve has one grid point (e.g. {_describe(n_points.index[0])}); "
            f"ROI curves and drop points need at least two sizes or epochs; run more cells of the sweep"
        )
    if (n_points < 2).any():
        notes.append(f"{int((n_points < 2).sum())} curve(s) with a single grid point: no drop point for them")
    groups = curves[["experiment", "cost_axis", "dataset", "metric"]].drop_duplicates()
    for experiment, axes in COST_AXES.items():
        for axis in axes[1:]:
            with_primary = groups[(groups["experiment"] == experiment) & (groups["cost_axis"] == axes[0])]
            with_axis = groups[(groups["experiment"] == experiment) & (groups["cost_axis"] == axis)]
            if len(with_primary) > len(with_axis):
                notes.append(
                    f"{axis} axis skipped for {len(with_primary) - len(with_axis)} {experiment} curve(s): {axis} is 0 "
                    f"or missing (CPU runs)"
                )
    if (curves.groupby(list(CURVE_KEY))["n_seeds"].nunique() > 1).any():
        notes.append("some grid points have fewer seeds than others (a partial sweep?): means use the seeds present")

    # The choice reads the validated table's keys, epochs and val_score only (roi.epoch_grid.best_epochs).
    best = best_epochs(table)
    grid = grid_table(improvements, best)
    if not grid.empty and best.empty:
        notes.append(
            "the data x epochs grid has no validation scores (sweep.select_epoch: validation records them): no best "
            "epoch is chosen; picking it on the held-out metrics would overstate what a user gets"
        )

    prices = prices or Prices()
    priced = price_table(points, prices)
    summary = summarize(points, curves, drop=drop, n_boot=n_boot, seed=boot_seed, metric_order=chosen)
    summary = with_headline(summary, points, curves, table, queries, priced, prices, drop=drop, n_boot=n_boot)
    summary["note"] = summary_notes(summary)
    forecasts = forecast_all(points, drop=drop, n_boot=n_boot, seed=boot_seed)
    summary = forecast_summary(summary, forecasts)
    if prices.gpu_hour is not None and not priced.empty and not (priced["gpu_seconds"].fillna(0) > 0).any():
        notes.append("no GPU-seconds in the records (CPU trials): training is priced at 0; labels only")
    answers = recommendations(summary, forecasts=forecasts, prices=priced, price_spec=prices)
    return Analysis(
        source=source,
        metrics=chosen,
        drop=drop,
        points=points,
        curves=curves,
        summary=summary,
        notes=notes,
        forecasts=forecasts,
        prices=priced,
        price_spec=prices,
        answers=answers,
        epoch_grid=grid,
        best_epochs=best,
    )


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
    from roi import plots  # plotly is needed only to write, not to analyse

    opts = dict(metrics=metrics, drop=drop, n_boot=n_boot, boot_seed=boot_seed, prices=prices, queries=queries)
    analysis = analyse(df, **opts)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MARKER).exists())):
        raise RoiInputError(f"{out_dir}: exists and is not a roi report; choose a new folder with --out")
    figures = plots.build_figures(analysis.curves, analysis.summary, forecasts=analysis.forecasts)
    grid_figures = plots.epoch_grid_figures(analysis.epoch_grid)

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:  # a file in the way, a read-only mount (a shared results folder), no permission
        raise _unwritable(out_dir, exc) from None
    try:
        tables = _write_tables(tmp, analysis)
        fig_files = {}
        (tmp / "figures").mkdir()
        for name, fig in {**figures, **grid_figures}.items():
            fig_files[name] = Path("figures") / f"{name}.json"
            (tmp / fig_files[name]).write_text(fig.to_json())
        pngs, png_note = _write_pngs(tmp, {**figures, **grid_figures}, enabled=png, plots=plots)
        page = _html_page(analysis, figures, tables=tables, png_note=png_note, plots=plots, grid_figures=grid_figures)
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "README.md").write_text(
            _readme(analysis, tables=tables, figures=fig_files, pngs=pngs, png_note=png_note), encoding="utf-8"
        )
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


def _describe(key: tuple) -> str:
    return ", ".join(
        f"{k}={v}" for k, v in zip(CURVE_KEY, key, strict=True) if k in ("dataset", "metric", "experiment", "cost_axis")
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
    display = {
        "summary": summary_table(analysis.summary),
        "costs": price_display(analysis.prices, analysis.price_spec),
        "epoch_grid": epoch_grid_display(analysis.epoch_grid),
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


def _write_pngs(folder: Path, figures: dict, *, enabled: bool, plots) -> tuple[dict[str, Path], str]:
    """PNGs when a Chromium is there; any failure is a note, never a failed report."""
    if not enabled:
        return {}, "PNG export skipped (--no-png)."
    browser = plots.find_chromium()
    if browser is None:
        return {}, (
            "PNG files skipped: no Chromium/Chrome found for kaleido (install Debian's chromium, or set BROWSER_PATH); "
            "the HTML report and the figures/*.json files hold the same charts."
        )
    rel = {name: Path("figures") / f"{name}.png" for name in figures}
    try:
        plots.write_pngs(list(figures.values()), [folder / p for p in rel.values()])
    except Exception as exc:  # noqa: BLE001 -- kaleido/Chromium trouble must not cost the user the report
        for p in rel.values():
            (folder / p).unlink(missing_ok=True)
        return {}, f"PNG files skipped: kaleido failed with {browser} ({type(exc).__name__}: {exc})."
    return rel, f"PNG files written with kaleido and {browser}."


def _html_page(
    analysis: Analysis, figures: dict, *, tables: dict[str, Path], png_note: str, plots, grid_figures: dict
) -> str:
    """One self-contained page: plotly.js inlined once, no network needed to open it."""
    esc = html.escape
    summary = summary_table(analysis.summary)
    trials = trials_table(analysis.points)
    shown = trials.head(HTML_TRIAL_ROWS)
    more = (
        f"<p>First {HTML_TRIAL_ROWS} of {len(trials)} rows; all in trials.csv.</p>"
        if len(trials) > HTML_TRIAL_ROWS
        else ""
    )
    shows = {
        "improvement": "relative improvement (mean across seeds; band: seed min–max; diamond: the answer with its 95% interval; dashed past the grid: FORECAST with its 95% band)",
        "roi": "average ROI = relative improvement / cost (mean across seeds; x: Jina's drop point with its 95% bootstrap interval; "
        f"dotted: {1 - analysis.drop:.0%} of the peak, where the drop point is; dashed past the grid: FORECAST, open x: forecast drop point)",
        "marginal_roi": "marginal ROI = delta improvement / delta cost between neighbouring grid points (dashed; below 0: more hurts)",
    }
    figs_html = []
    for name, fig in figures.items():
        measure = fig.layout.meta["shows"]
        figs_html.append(
            f'<section class="figure" id="section-{esc(name)}"><h3>{esc(fig.layout.title.text)}</h3>'
            f"<p>Shows {esc(shows[measure])}.</p>{plots.figure_div(fig, div_id='fig-' + name.replace('.', '-'))}</section>"
        )
    notes = "".join(f"<li>{esc(n)}</li>" for n in [*analysis.notes, png_note])
    answers = "".join(f'<li class="{esc(a["kind"].replace(" ", "-"))}">{esc(a["text"])}</li>' for a in analysis.answers)
    costs = price_display(analysis.prices, analysis.price_spec)
    priced = analysis.price_spec
    cost_intro = (
        f"Labels at {priced.money(priced.label_cost or 0)} per item, GPU time at {priced.money(priced.gpu_hour or 0)} per "
        f"GPU-hour (GPU-seconds from the records)."
        if priced.priced
        else "No prices given (roi report --label-cost 0.08 --gpu-hour 2.50 --currency EUR): costs in labeled items and GPU-seconds."
    )
    files = ", ".join(esc(str(p)) for p in tables.values())
    grid_html = _grid_html(analysis, grid_figures, plots=plots)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ROI report: {esc(analysis.source)}</title>
<script type="text/javascript">{plots.plotly_js()}</script>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}dt{{font-weight:bold;margin-top:.5em}}
ul.answers li{{font-size:17px;margin:.4em 0}}li.never-positive{{color:#a33}}p.meta{{color:#666;font-size:13px}}</style>
</head><body>
<h1>How much are labeled data and training time worth?</h1>
<h2>The answer</h2>
<ul class="answers">{answers}</ul>
<p>{esc(HEADLINE_NOTE.format(keep=1 - analysis.drop, ratio=1 / (1 - analysis.drop)))}</p>
<p class="meta">Source: <code>{esc(analysis.source)}</code>. Metrics: {esc(", ".join(analysis.metrics))}. Drop: {analysis.drop:g}.
Generated {generated} by roi {__version__}.</p>
<h2>Summary</h2>
<p>{esc(SUMMARY_NOTE)}</p>
{summary.to_html(index=False, escape=True, na_rep="", border=0)}
<h2>Cost</h2>
<p>{esc(cost_intro)} "Next +1%": the step from the previous grid point, per percentage point of relative improvement.</p>
{costs.to_html(index=False, escape=True, na_rep="", border=0)}
<h2>Figures</h2>
{"".join(figs_html)}
{grid_html}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Per-trial points</h2>{more}
{shown.to_html(index=False, escape=True, na_rep="", border=0, float_format=lambda v: f"{v:.6g}")}
<p>Files beside this page: {files}.</p>
<h2>Definitions</h2>
{definitions_html(drop=analysis.drop)}
</body></html>
"""


GRID_INTRO = (
    "Every size trained {epochs} epochs and was evaluated on the held-out set after each. A cell: the mean relative "
    "improvement at that size and epoch, and the ROI per labeled item (improvement / size). * marks the epoch chosen "
    "on validation: per seed, the epoch whose model scored best on a validation carve-out of that trial's own N "
    "items (ties: the earlier), never on the held-out set; * is the epoch most seeds chose. The data-size curve at "
    "those epochs (each seed at its own choice) is the summary's curve '{setting}', with its drop point; its cost in "
    "training time is all {epochs} epochs, which choosing needed."
)


def _grid_intro(analysis: Analysis) -> str:
    epochs = ", ".join(str(e) for e in sorted(analysis.epoch_grid["epochs"].unique()))
    setting = best_setting(int(analysis.epoch_grid["epochs"].max()))
    return GRID_INTRO.format(epochs=epochs, setting=setting)


def _grid_html(analysis: Analysis, grid_figures: dict, *, plots) -> str:
    """The data x epochs section: the grid table and one heatmap per dataset and metric (empty without a grid)."""
    if analysis.epoch_grid.empty:
        return ""
    esc = html.escape
    table = epoch_grid_display(analysis.epoch_grid)
    heatmaps = "".join(
        f'<section class="figure" id="section-{esc(name)}"><h3>{esc(fig.layout.title.text)}</h3>'
        f"{plots.figure_div(fig, div_id='fig-' + name.replace('.', '-'))}</section>"
        for name, fig in grid_figures.items()
    )
    return (
        f'<h2 id="epoch-grid">Data x epochs</h2><p>{esc(_grid_intro(analysis))}</p>'
        f"{table.to_html(index=False, escape=True, na_rep='', border=0)}{heatmaps}"
    )


def _readme(
    analysis: Analysis, *, tables: dict[str, Path], figures: dict[str, Path], pngs: dict[str, Path], png_note: str
) -> str:
    lines = [
        "# ROI report",
        "",
        "## The answer",
        "",
        *[f"- {a['text']}" for a in analysis.answers],
        "",
        f"Source: `{analysis.source}`. Metrics: {', '.join(analysis.metrics)}. Drop: {analysis.drop:g}.",
        "",
        "## Summary",
        "",
        SUMMARY_NOTE,
        "",
        to_markdown(summary_table(analysis.summary)),
        "## Cost",
        "",
        to_markdown(price_display(analysis.prices, analysis.price_spec)),
        *(
            ["## Data x epochs", "", _grid_intro(analysis), "", to_markdown(epoch_grid_display(analysis.epoch_grid))]
            if not analysis.epoch_grid.empty
            else []
        ),
        "## Notes",
        "",
        *[f"- {n}" for n in [*analysis.notes, png_note]],
        "",
        "## Definitions",
        "",
        definitions_markdown(drop=analysis.drop),
        "## Files",
        "",
        "- `report.html`: the self-contained report (opens offline).",
        *[f"- `{p}`" for p in tables.values()],
        *[f"- `{p}` (plotly JSON: `plotly.io.read_json`)" for p in figures.values()],
        *[f"- `{p}`" for p in pngs.values()],
        "",
    ]
    return "\n".join(lines)


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``tmp`` with renames, so readers never see a partly written report."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / "report")
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
