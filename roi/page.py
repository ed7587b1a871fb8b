"""The report's outline, once: a list of sections, rendered to the HTML page and to the README.

``sections(analysis, ...)`` says what the report holds and in which order; ``render_html`` and ``render_markdown`` only
render. A section the README should not carry (the per-trial table, thousands of rows; ``trials.md`` holds it)
says so with ``page_only``; figures are drawn on the page and listed with their files in the README.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from roi import __version__
from roi.analysis import Analysis
from roi.definitions import HEADLINE_NOTE, SUMMARY_NOTE, definitions
from roi.epoch_grid import best_setting
from roi.price import price_display
from roi.tables import epoch_grid_display, summary_table, to_markdown, trials_table

HTML_TRIAL_ROWS = 2000  # the page stays light; the files hold every row
TITLE = "How much are labeled data and training time worth?"
SHOWS = {
    "improvement": "relative improvement (mean across seeds; band: seed min–max; diamond: the answer with its 95% "
    "interval; dashed past the grid: FORECAST with its 95% band)",
    "roi": "average ROI = relative improvement / cost (mean across seeds; x: Jina's drop point with its 95% bootstrap "
    "interval; dotted: {keep:.0%} of the peak, where the drop point is; dashed past the grid: FORECAST, open x: "
    "forecast drop point)",
    "marginal_roi": "marginal ROI = delta improvement / delta cost between neighbouring grid points (dashed; below 0: "
    "more hurts)",
}
GRID_INTRO = (
    "Every size trained {epochs} epochs and was evaluated on the held-out set after each. A cell: the mean relative "
    "improvement at that size and epoch, and the ROI per labeled item (improvement / size). * marks the epoch chosen "
    "on validation: per seed, the epoch whose model scored best on a validation carve-out of that trial's own N "
    "items, among the epochs at or past the step floor (sweep.min_steps optimizer steps, 100 by default; the last "
    "epoch where none reaches it: a small carve-out cannot rank the first few) (ties: the earlier), never on the "
    "held-out set; * is the epoch most seeds chose. The data-size curve at "
    "those epochs (each seed at its own choice) is the summary's curve '{setting}', with its drop point; its cost in "
    "training time is all {epochs} epochs, which choosing needed."
)
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}dt{font-weight:bold;margin-top:.5em}
ul.answers li{font-size:17px;margin:.4em 0}li.never-positive{color:#a33}p.meta{color:#666;font-size:13px}"""


@dataclass(frozen=True)
class Section:
    """One part of the report, in the order it appears.

    Attributes:
        title: the heading; ``anchor`` its HTML id (optional).
        paragraphs: plain text, before the rest; ``small`` is a last paragraph in small print.
        items: a bullet list; ``item_classes`` the HTML class of each item (the answers' kinds), when given.
        table: a table, rendered whole to both.
        figures: (figure name, what it shows or "") pairs: drawn on the page, listed with their files in the README.
        terms: (term, explanation) pairs: a definition list.
        page_only: the HTML page alone carries it.
    """

    title: str
    paragraphs: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    item_classes: tuple[str, ...] = ()
    table: pd.DataFrame | None = None
    figures: tuple[tuple[str, str], ...] = ()
    terms: tuple[tuple[str, str], ...] = ()
    small: str = ""
    anchor: str = ""
    page_only: bool = False


def sections(analysis: Analysis, *, figures: Mapping, tables: Mapping[str, Path], png_note: str) -> list[Section]:
    """The report's outline.

    Args:
        analysis: ``roi.analyse`` output.
        figures: name -> figure (``roi.plots.figures``); the curve charts go under Figures, the heatmaps under
            Data x epochs.
        tables: the table files written (``name.ext`` -> path relative to the report folder).
        png_note: what the PNG export did.
    """
    keep = 1 - analysis.drop
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    spec = analysis.price_spec
    cost_intro = (
        f"Labels at {spec.money(spec.label_cost or 0)} per item, GPU time at {spec.money(spec.gpu_hour or 0)} per "
        f"GPU-hour (GPU-seconds from the records)."
        if spec.priced
        else "No prices given (roi report --label-cost 0.08 --gpu-hour 2.50 --currency EUR): costs in labeled items "
        "and GPU-seconds."
    )
    curve_figs = [n for n, f in figures.items() if f.layout.meta["shows"] in SHOWS]
    grid_figs = [n for n, f in figures.items() if f.layout.meta["shows"] == "epoch_grid"]
    trials = trials_table(analysis.points)
    out = [
        Section(
            "The answer",
            items=tuple(a.text for a in analysis.answers),
            item_classes=tuple(a.kind.replace(" ", "-") for a in analysis.answers),
            paragraphs=(HEADLINE_NOTE.format(keep=keep, ratio=1 / keep),),
            small=f"Source: {analysis.source}. Metrics: {', '.join(analysis.metrics)}. Drop: {analysis.drop:g}. "
            f"Generated {generated} by roi {__version__}.",
        ),
        *_plan_sections(analysis),
        Section("Summary", paragraphs=(SUMMARY_NOTE,), table=summary_table(analysis.summary)),
        Section(
            "Cost",
            paragraphs=(
                f'{cost_intro} "Next +1%": the step from the previous grid point, per percentage point of relative '
                f"improvement.",
            ),
            table=price_display(analysis.prices, spec),
        ),
        Section(
            "Figures",
            figures=tuple(
                (n, "Shows " + SHOWS[figures[n].layout.meta["shows"]].format(keep=keep) + ".") for n in curve_figs
            ),
        ),
    ]
    if not analysis.epoch_grid.empty:
        epochs = ", ".join(str(e) for e in sorted(analysis.epoch_grid["epochs"].unique()))
        setting = best_setting(int(analysis.epoch_grid["epochs"].max()))
        out.append(
            Section(
                "Data x epochs",
                anchor="epoch-grid",
                paragraphs=(GRID_INTRO.format(epochs=epochs, setting=setting),),
                table=epoch_grid_display(analysis.epoch_grid),
                figures=tuple((n, "") for n in grid_figs),
            )
        )
    out += _frontier_sections(analysis, figures)
    shown = trials.head(HTML_TRIAL_ROWS).map(lambda v: f"{v:.6g}" if isinstance(v, float) and v == v else v)
    more = f"First {HTML_TRIAL_ROWS} of {len(trials)} rows; all in trials.csv." if len(trials) > HTML_TRIAL_ROWS else ""
    return out + [
        Section("Notes", items=(*analysis.notes, png_note)),
        Section("Per-trial points", paragraphs=(more,) if more else (), table=shown, page_only=True),
        Section("Definitions", terms=tuple(definitions(drop=analysis.drop))),
        Section(
            "Files",
            items=("report.html: the self-contained report (opens offline)", *(str(p) for p in tables.values())),
        ),
    ]


PLAN_INTRO = (
    "Per data-size curve, at its largest measured size N: the headline rule's verdict, and what one more round "
    "(N -> 2N) is expected to give, with an interval that includes the largest one-round error the forecast made on "
    "the published tables (docs/plan.md), and what it costs. Nothing is forecast further than one round: label the "
    "round, measure it, and plan again (roi plan RUN_DIR --target metric=value --round F)."
)
FRONTIER_INTRO = (
    "The cheapest (items, epochs) for each score: every (size, epoch) cell of the grid (mean over seeds, held-out "
    "score) and the frontier, the cells that beat every cheaper one. Where the trials carry validation scores only "
    "the epoch validation chose stands for a size (never chosen on the held-out score). Cost: labels + GPU time at "
    "the given prices, else labeled items with training seconds breaking ties (docs/plan.md)."
)


def _plan_sections(analysis: Analysis) -> list[Section]:
    """'The next round' (``roi.plan``), right after the answer; nothing without a data-size curve."""
    from roi.plan import describe_plan

    if not analysis.plans:
        return []
    items = []
    for plan in analysis.plans:
        k = plan.key
        lines = describe_plan(plan, analysis.price_spec)
        items.append(f"{k['dataset']} · {k['setting']} · " + " ".join(lines))
    notes = tuple(dict.fromkeys(n for p in analysis.plans for n in p.notes))
    return [Section("The next round", anchor="next-round", paragraphs=(PLAN_INTRO, *notes), items=tuple(items))]


def _frontier_sections(analysis: Analysis, figures: Mapping) -> list[Section]:
    """'Cost frontier' (``roi.frontier``) for a run with a data x epochs grid."""
    from roi.frontier import FRONT_KEY, default_targets, describe_reach, frontier_display, reach

    if analysis.frontier.empty:
        return []
    spec = analysis.price_spec
    sentences = []
    for _, t in default_targets(analysis.frontier).iterrows():
        key = {k: t[k] for k in FRONT_KEY}
        r = reach(analysis.frontier_cells, key, float(t["target"]), prices=spec)
        sentences.append(f"{key['dataset']}: {describe_reach(r, spec)}")
    names = [n for n, f in figures.items() if f.layout.meta["shows"] == "frontier"]
    return [
        Section(
            "Cost frontier",
            anchor="frontier",
            paragraphs=(FRONTIER_INTRO,),
            items=tuple(sentences),
            table=frontier_display(analysis.frontier, spec),
            figures=tuple((n, "") for n in names),
        )
    ]


def render_html(parts: list[Section], *, figures: Mapping, source: str, plots) -> str:
    """One self-contained page: plotly.js inlined once, no network needed to open it."""
    esc = html.escape
    body = []
    for s in parts:
        body.append(f'<h2 id="{esc(s.anchor)}">{esc(s.title)}</h2>' if s.anchor else f"<h2>{esc(s.title)}</h2>")
        if s.items:
            classes = s.item_classes or ("",) * len(s.items)
            lis = "".join(
                f'<li class="{esc(c)}">{esc(t)}</li>' if c else f"<li>{esc(t)}</li>"
                for t, c in zip(s.items, classes, strict=True)
            )
            body.append(f'<ul class="answers">{lis}</ul>' if s.item_classes else f"<ul>{lis}</ul>")
        body += [f"<p>{esc(p)}</p>" for p in s.paragraphs]
        if s.small:
            body.append(f'<p class="meta">{esc(s.small)}</p>')
        if s.table is not None:
            body.append(s.table.to_html(index=False, escape=True, na_rep="", border=0))
        for name, caption in s.figures:
            fig = figures[name]
            shows = f"<p>{esc(caption)}</p>" if caption else ""
            div = plots.figure_div(fig, div_id="fig-" + name.replace(".", "-"))
            body.append(
                f'<section class="figure" id="section-{esc(name)}"><h3>{esc(fig.layout.title.text)}</h3>{shows}{div}'
                "</section>"
            )
        if s.terms:
            items = "".join(f"<dt>{esc(t)}</dt><dd>{esc(x)}</dd>" for t, x in s.terms)
            body.append(f'<dl class="definitions">{items}</dl>')
    nl = "\n"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ROI report: {esc(source)}</title>
<script type="text/javascript">{plots.plotly_js()}</script>
<style>{STYLE}</style>
</head><body>
<h1>{esc(TITLE)}</h1>
{nl.join(body)}
</body></html>
"""


def render_markdown(parts: list[Section], *, figures: Mapping, files: Mapping[str, list[Path]]) -> str:
    """The README: the same outline in Markdown, figures listed with their files (``files``: name -> paths)."""
    lines = ["# ROI report", ""]
    for s in parts:
        if s.page_only:
            continue
        lines += [f"## {s.title}", ""]
        if s.items:
            lines += [*(f"- {t}" for t in s.items), ""]
        for p in [*s.paragraphs, s.small]:
            if p:
                lines += [p, ""]
        if s.table is not None:
            lines.append(to_markdown(s.table))
        if s.figures:
            for name, _ in s.figures:
                where = ", ".join(f"`{p}`" for p in files.get(name, []))
                lines.append(f"- {figures[name].layout.title.text}: {where}")
            lines += ["", "The `.json` files are plotly figures (`plotly.io.read_json`).", ""]
        if s.terms:
            lines += [*(f"- **{t}**: {x}" for t, x in s.terms), ""]
    return "\n".join(lines)
