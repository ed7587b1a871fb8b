"""The written report: tables in four formats, figure data, the offline HTML page, PNG handling, atomicity."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from roi_fixtures import (
    EPOCH_NEG_DROP,
    PEAK_MID,
    PEAK_MID_DROP,
    SEED_OFFSETS,
    baseline_rows,
    data_size_rows,
    full_table,
    table,
)

from roi.analysis import analyse
from roi.errors import RoiInputError
from roi.load import REQUIRED_COLUMNS, load_results
from roi.plots import png
from roi.report import MARKER, write_report

N_BOOT = 100
EXPECTED_FIGURES = {
    f"{e}.{a}.{m}"
    for e, axes in (("data_size", ("size", "gpu_seconds")), ("epochs", ("train_seconds", "gpu_seconds")))
    for a in axes
    for m in ("improvement", "roi", "marginal_roi")
}


JINA = "Jina's 70%-drop point (relative to the first size) [95% CI, seeds]"


def html_figures(page: str) -> dict[str, dict]:
    """Figure data and layout of every ``Plotly.newPlot`` call in a page, by div id."""
    decoder = json.JSONDecoder()
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', page):
        data, end = decoder.raw_decode(page, m.end())
        rest = re.match(r"\s*,\s*", page[end:])
        layout, _ = decoder.raw_decode(page, end + rest.end())
        out[m.group(1)] = {"data": data, "layout": layout}
    return out


def parse_markdown_table(text: str) -> list[list[str]]:
    """Rows of a GitHub pipe table; asserts the structure a renderer needs."""
    lines = [ln for ln in text.strip().splitlines()]
    assert len(lines) >= 3, "header, separator and at least one row"

    def cells(line: str) -> list[str]:
        assert line.startswith("| ") and line.endswith(" |"), line
        return [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]

    header = cells(lines[0])
    assert all(re.fullmatch(r"\s*-{3,}\s*", c) for c in lines[1].strip("|").split("|"))
    assert len(lines[1].strip("|").split("|")) == len(header)
    rows = [cells(ln) for ln in lines[2:]]
    assert all(len(r) == len(header) for r in rows)
    return [header, *rows]


@pytest.fixture
def no_chromium(monkeypatch):
    monkeypatch.setattr(png, "find_chromium", lambda: None)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # One report shared by the read-only tests: writing one takes about a second.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(png, "find_chromium", lambda: None)
        return write_report(full_table(), out_dir=tmp_path_factory.mktemp("run") / "report", n_boot=N_BOOT)


def test_tables_in_four_formats_with_the_known_answers(report):
    for name in ("trials", "summary", "curves"):
        for ext in ("csv", "parquet", "json", "md"):
            assert report.tables[f"{name}.{ext}"].is_file()
    summary = pd.read_parquet(report.tables["summary.parquet"])
    csv = pd.read_csv(report.tables["summary.csv"])
    assert len(summary) == len(csv) == 18  # (2 datasets x data_size x 2 axes + epochs x 2 axes) x 3 metrics
    mid = summary[
        (summary["dataset"] == "clinc150") & (summary["cost_axis"] == "size") & (summary["metric"] == "mrr@20")
    ].iloc[0]
    assert mid["drop_cost"] == pytest.approx(PEAK_MID_DROP)
    assert mid["peak_cost"] == 200 and mid["first_cost"] == 100 and mid["n_seeds"] == 3
    assert 500 < mid["drop_ci_low"] < PEAK_MID_DROP < mid["drop_ci_high"] < 1000
    assert mid["best_improvement"] == pytest.approx(0.6) and mid["best_cost"] == 500
    never = summary[(summary["dataset"] == "banking77") & (summary["cost_axis"] == "size")]
    assert (never["drop_status"] == "not reached within the grid").all()
    assert never["note"].str.contains("peak at the grid's first point").all()
    ep = summary[
        (summary["experiment"] == "epochs")
        & (summary["cost_axis"] == "train_seconds")
        & (summary["metric"] == "mrr@20")
    ].iloc[0]
    assert ep["drop_cost"] == pytest.approx(EPOCH_NEG_DROP) and ep["min_marginal_roi"] < 0
    assert "single seed" in ep["note"]
    records = json.loads(report.tables["summary.json"].read_text())
    assert len(records) == 18 and {"drop_cost", "drop_ci_low", "note"} <= set(records[0])
    trials = pd.read_csv(report.tables["trials.csv"])
    # NaN row and failed row are not points; 3 seeds x 5 sizes + 3 + 5 epochs, x 3 metrics x 2 axes
    assert len(trials) == (15 + 3 + 5) * 3 * 2
    assert trials["value"].notna().all()


def test_markdown_tables_are_valid_pipe_tables(report):
    rows = parse_markdown_table(report.tables["summary.md"].read_text())
    header = rows[0]
    assert {"dataset", "metric", "baseline", "best", JINA, "grid starts at"} <= set(header)
    clinc = [
        r for r in rows[1:] if r[header.index("dataset")] == "clinc150" and r[header.index("cost")] == "labeled items"
    ]
    assert clinc[0][header.index(JINA)].startswith("929 (N0 = 100) [")
    trial_rows = parse_markdown_table(report.tables["trials.md"].read_text())
    assert len(trial_rows) - 1 == len(pd.read_csv(report.tables["trials.csv"]))


def test_markdown_escapes_pipes():
    from roi.tables import to_markdown

    text = to_markdown(pd.DataFrame({"a": ["x|y", "multi\nline"], "b": [1.5, float("nan")]}))
    rows = parse_markdown_table(text)
    assert rows[1] == ["x\\|y", "1.5"] and rows[2] == ["multi line", ""]


def test_html_is_self_contained_and_holds_the_expected_figures(report):
    page = report.html.read_text(encoding="utf-8")
    # opens offline: plotly.js inline, no script or stylesheet fetched from anywhere
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*href=[\"']https?:", page)
    assert "cdn.plot.ly" not in page.split("</script>", 1)[1]  # only plotly.js itself may mention its CDN
    assert len(page) > 1_000_000 and "Plotly.newPlot" in page
    figs = html_figures(page)
    assert set(figs) == {"fig-" + name.replace(".", "-") for name in EXPECTED_FIGURES}
    assert set(report.figures) == EXPECTED_FIGURES

    roi_fig = figs["fig-data_size-size-roi"]
    assert roi_fig["layout"]["xaxis"]["type"] == "log"
    assert roi_fig["layout"]["meta"] == {
        "figure": "data_size.size.roi",
        "experiment": "data_size",
        "cost_axis": "size",
        "shows": "roi",
    }
    by_role = {}
    for trace in roi_fig["data"]:
        by_role.setdefault(trace["meta"]["role"], []).append(trace)
    # one line per dataset and metric: 2 datasets x 3 metrics
    assert len(by_role["mean"]) == 6
    assert {t["name"] for t in by_role["mean"]} >= {"clinc150 · mrr@20", "banking77 · recall@20"}
    # seed bands only where there are several seeds (clinc150)
    assert len(by_role["band"]) == 3 and all(t["meta"]["curve"]["dataset"] == "clinc150" for t in by_role["band"])
    # drop points: clinc150 only (banking77 never drops 70%), at the interpolated cost and 30% of the peak
    drops = {t["meta"]["curve"]["metric"]: t for t in by_role["drop"]}
    assert set(drops) == {"mrr@20", "map@20", "recall@20"}
    assert drops["mrr@20"]["x"][0] == pytest.approx(PEAK_MID_DROP)
    assert drops["mrr@20"]["y"][0] == pytest.approx(0.3 * 0.002)
    assert drops["mrr@20"]["error_x"]["arrayminus"][0] > 0
    mean = next(t for t in by_role["mean"] if t["name"] == "clinc150 · mrr@20")
    assert mean["x"] == PEAK_MID["sizes"]
    assert mean["y"] == pytest.approx([i / n for i, n in zip(PEAK_MID["improvement"], PEAK_MID["sizes"], strict=True)])

    # negative marginal ROI is drawn, with the zero line
    marginal = figs["fig-epochs-train_seconds-marginal_roi"]
    line = next(t for t in marginal["data"] if t["meta"]["role"] == "mean" and t["name"] == "clinc150 · mrr@20")
    assert min(y for y in line["y"] if y is not None) == pytest.approx(-0.005)
    assert any(s.get("y0") == 0 and s.get("y1") == 0 for s in marginal["layout"]["shapes"])
    assert figs["fig-epochs-train_seconds-improvement"]["layout"]["xaxis"]["type"] == "linear"


def test_figure_json_files_match_the_html(report):
    import plotly.io as pio

    fig = pio.read_json(report.figures["epochs.train_seconds.roi"])
    drop = [t for t in fig.data if t.meta["role"] == "drop" and t.meta["curve"]["metric"] == "mrr@20"]
    assert drop[0].x[0] == pytest.approx(EPOCH_NEG_DROP)


def test_definitions_and_notes_in_html_and_readme(report):
    page = report.html.read_text(encoding="utf-8")
    readme = report.readme.read_text(encoding="utf-8")
    for text in (page, readme):
        assert (
            "Relative improvement" in text
            and "Marginal ROI" in text
            and "s drop point" in text
            and "The answer (elasticity)" in text
        )
        assert "1 failed row(s)" in text and "NaN metric values" in text
        assert "PNG files skipped: no Chromium" in text
    assert "(m_finetuned - m_pretrained) / m_pretrained" in readme
    parse_markdown_table(readme.split("## Summary", 1)[1].split("## Cost", 1)[0].split("\n\n", 2)[2])
    assert report.pngs == {} and not list(report.out_dir.glob("figures/*.png"))


def test_png_failure_is_a_note_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(png, "find_chromium", lambda: "/usr/bin/chromium")

    def broken(figures, paths):
        paths[0].write_bytes(b"partial")
        raise RuntimeError("browser crashed")

    monkeypatch.setattr(png, "write_pngs", broken)
    paths = write_report(full_table(), out_dir=tmp_path / "r", n_boot=10)
    assert "kaleido failed" in paths.png_note and "browser crashed" in paths.png_note
    assert paths.pngs == {} and not list((tmp_path / "r" / "figures").glob("*.png"))
    assert paths.html.is_file()


def test_pngs_written_when_a_chromium_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(png, "find_chromium", lambda: "/usr/bin/chromium")
    seen = []

    def fake(figures, paths):
        seen.extend(f.layout.meta["figure"] for f in figures)
        for p in paths:
            p.write_bytes(b"\x89PNG")

    monkeypatch.setattr(png, "write_pngs", fake)
    paths = write_report(full_table(), out_dir=tmp_path / "r", n_boot=10)
    assert set(seen) == EXPECTED_FIGURES and set(paths.pngs) == EXPECTED_FIGURES
    assert all(p.is_file() for p in paths.pngs.values())


def test_png_height_fits_the_whole_legend():
    import plotly.graph_objects as go

    few = go.Figure([go.Scatter(x=[1], y=[1], legendgroup="a"), go.Scatter(x=[1], y=[1], legendgroup="a")])
    assert png.png_height(few) == png.HEIGHT  # the default where the legend fits
    many = go.Figure(
        [go.Scatter(x=[1], y=[1], legendgroup=f"g{i // 3}") for i in range(36)]  # 12 curves x (line, forecast, answer)
        + [go.Scatter(x=[1], y=[1], legendgroup="g0", showlegend=False)]  # a band: no legend entry
    )
    assert png.png_height(many) == png.MARGIN + 36 * png.LEGEND_ROW + 12 * png.LEGEND_GROUP_GAP  # 1,100 px


def test_error_writes_nothing(tmp_path, no_chromium):
    df = table(baseline_rows("other") + data_size_rows("d", PEAK_MID))
    with pytest.raises(RoiInputError, match="missing baseline"):
        write_report(df, out_dir=tmp_path / "out" / "report", n_boot=10)
    assert not (tmp_path / "out").exists()


def test_rerun_replaces_a_report_but_never_a_foreign_folder(tmp_path, no_chromium):
    out = tmp_path / "report"
    write_report(full_table(), out_dir=out, n_boot=10)
    (out / "stale.txt").write_text("old")
    write_report(full_table(), out_dir=out, metrics=["mrr@20"], n_boot=10)
    assert (out / MARKER).is_file() and not (out / "stale.txt").exists()
    assert set(pd.read_csv(out / "summary.csv")["metric"]) == {"mrr@20"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folders left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RoiInputError, match="not a roi report"):
        write_report(full_table(), out_dir=foreign, n_boot=10)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_partial_sweep_and_a_foreign_table_with_required_columns_only(tmp_path, no_chromium):
    rows = baseline_rows("d") + data_size_rows("d", PEAK_MID, seeds=(0, 1, 2), offsets=SEED_OFFSETS)
    df = table(rows)
    df = df[~((df["seed"] == 2) & (df["size"] >= 1000))]  # seed 2 still running its large cells
    metrics = ["mrr@20"]
    foreign = df[list(REQUIRED_COLUMNS) + metrics]
    path = tmp_path / "exported.csv"
    foreign.to_csv(path, index=False)
    loaded = load_results(path)
    analysis = analyse(loaded, n_boot=50)
    assert any("fewer seeds" in n for n in analysis.notes)
    assert set(analysis.summary["cost_axis"]) == {"size"}  # no gpu_seconds column: the size axis only
    cur = analysis.curves.sort_values("grid")
    assert cur["n_seeds"].tolist() == [3, 3, 3, 2, 2]
    # at 1000 items the mean of seeds 0 and 1: (0.47 + 0.5) / 2
    assert cur.loc[cur["grid"] == 1000, "improvement"].item() == pytest.approx(0.485)
    paths = write_report(loaded, out_dir=tmp_path / "exported-report", n_boot=20)
    assert paths.html.is_file()


def test_a_single_point_curve_beside_full_curves_gets_no_drop_point(no_chromium):
    rows = baseline_rows("d") + data_size_rows("d", PEAK_MID)
    rows += baseline_rows("e") + data_size_rows("e", {"sizes": [100], "improvement": [0.2]})
    analysis = analyse(table(rows), metrics=["mrr@20"], n_boot=10)
    summary = analysis.summary.set_index(["dataset", "cost_axis"])
    assert summary.loc[("e", "size"), "drop_status"] == "single point"
    assert summary.loc[("e", "size"), "peak_roi"] == pytest.approx(0.002)
    assert summary.loc[("d", "size"), "drop_cost"] == pytest.approx(PEAK_MID_DROP)
    assert any("single grid point" in n for n in analysis.notes)
    # "depends on where the grid starts" means nothing for a one-point curve
    assert "grid starts" not in summary.loc[("e", "size"), "note"]
