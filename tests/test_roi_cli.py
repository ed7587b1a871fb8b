"""``roi report``: the terminal summary, exit codes, clear errors with nothing written, and light imports."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from roi_fixtures import (
    EPOCH_NEG,
    METRICS,
    PEAK_MID,
    baseline_rows,
    data_size_rows,
    epoch_rows,
    full_table,
    table,
    write_run,
)

from roi.cli import add_report_arguments, main, run_report
from roi.plots import png

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_chromium(monkeypatch):
    monkeypatch.setattr(png, "find_chromium", lambda: None)


def test_report_prints_the_summary_and_writes_the_report(tmp_path, capsys):
    run = write_run(tmp_path / "runs" / "demo", full_table())
    assert main(["report", str(run), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "note: 1 failed row(s) (status == failed) dropped" in out
    assert (
        "Jina's 70%-drop point (relative to the first size)" in out
        and "answer: e falls to 0.3" in out
        and "grid starts at" in out
    )
    clinc = [ln for ln in out.splitlines() if "clinc150" in ln and "labeled items" in ln and "mrr@20" in ln]
    assert len(clinc) == 1 and "929 (N0 = 100) [" in clinc[0] and "0.002 at 200" in clinc[0]
    banking = [ln for ln in out.splitlines() if "banking77" in ln and "labeled items" in ln and "mrr@20" in ln]
    assert "not reached within the grid" in banking[0]
    # metrics in the table's order (mrr, map, recall), not alphabetical
    rows = [ln for ln in out.splitlines() if "clinc150" in ln and "labeled items" in ln]
    assert [next(m for m in ("mrr@20", "map@20", "recall@20") if m in ln) for ln in rows] == [
        "mrr@20",
        "map@20",
        "recall@20",
    ]
    assert "PNG files skipped" in out
    report = run / "report"
    assert (report / "report.html").is_file() and (report / "summary.md").is_file()


def test_csv_table_file_drop_and_metric_options(tmp_path, capsys):
    run = write_run(tmp_path / "run", full_table(), fmt="csv")
    table_file = run / "results.csv"
    assert main(["report", str(table_file), "--metric", "mrr", "--drop", "0.5", "--n-boot", "20", "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "Jina's 50%-drop point" in out and "answer: e falls to 0.5" in out and "PNG export skipped (--no-png)" in out
    summary = pd.read_csv(run / "results-report" / "summary.csv")
    assert set(summary["metric"]) == {"mrr@20"}
    row = summary[(summary["dataset"] == "clinc150") & (summary["cost_axis"] == "size")].iloc[0]
    assert row["drop_cost"] == pytest.approx(4500 / 7)  # threshold 0.001 between 500 and 1000


def _missing_baseline(df):
    return df[~((df["size"] == 0) & (df["dataset"] == "clinc150"))]


def _all_nan(df):
    df = df.copy()
    df.loc[df["size"] > 0, list(METRICS)] = np.nan
    return df


def _single_point():
    return table(baseline_rows("d") + data_size_rows("d", {"sizes": [100], "improvement": [0.1]}))


def _zero_cost():
    return table(
        baseline_rows("d", experiment="epochs")
        + epoch_rows("d", {**EPOCH_NEG, "seconds": [0.0, 0.0, 30.0, 40.0, 50.0]})
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: _missing_baseline(full_table()), r"missing baseline: .*size == 0.*dataset=clinc150"),
        (
            lambda: full_table().drop(columns=["seed", "epoch"]),
            r"missing column\(s\) seed, epoch\n  fix: .*docs/results-schema.md",
        ),
        (_single_point, r"single point: every curve has one grid point.*at least two"),
        (lambda: _all_nan(full_table()), r"every metric column \(mrr@20, map@20, recall@20\) is NaN"),
        (_zero_cost, r"zero cost: column train_seconds is 0.0 in 2 row\(s\)"),
        (lambda: full_table().assign(size="many"), r"column size must be numeric; row 0 has 'many'"),
        (lambda: table(baseline_rows("d")), r"no fine-tuned rows \(size > 0, status ok\), only the baseline"),
    ],
    ids=["missing-baseline", "missing-columns", "single-point", "all-nan", "zero-cost", "bad-dtype", "baseline-only"],
)
def test_input_errors_exit_2_with_a_message_and_write_nothing(tmp_path, capsys, make, expected):
    run = write_run(tmp_path / "run", make())
    before = sorted(p.name for p in run.iterdir())
    assert main(["report", str(run), "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "\n  fix: " in err, err  # every error says what to do, on its own line, as the sweeps' errors do
    assert str(run / "results.parquet") in err
    import re

    assert re.search(expected, err), err
    assert sorted(p.name for p in run.iterdir()) == before  # no report folder, no temporary folder


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--drop", "1.5"], "--drop must be in (0, 1]"),
        (["--metric", "ndcg@20"], "no metric column 'ndcg@20'; available: mrr@20, map@20, recall@20"),
        (["--boot-seed", "-1"], "--boot-seed must be >= 0; got -1"),
    ],
)
def test_bad_options_exit_2(tmp_path, capsys, args, expected):
    run = write_run(tmp_path / "run", full_table())
    assert main(["report", str(run), *args]) == 2
    assert expected in capsys.readouterr().err
    assert not (run / "report").exists()


def test_missing_run_folder_and_empty_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results.parquet or results.csv" in capsys.readouterr().err


def test_usage_errors_and_help_return_codes(capsys):
    assert main([]) == 2
    assert main(["report", "--help"]) == 0
    assert "--drop" in capsys.readouterr().out


def test_another_cli_can_mount_the_subcommand(tmp_path):
    # What sweeps.cli does: its own parser, our arguments and handler.
    parser = argparse.ArgumentParser(prog="roi")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report")
    add_report_arguments(p)
    p.set_defaults(func=run_report)
    run = write_run(tmp_path / "run", table(baseline_rows("d") + data_size_rows("d", PEAK_MID)))
    args = parser.parse_args(["report", str(run), "--out", str(tmp_path / "out"), "--n-boot", "5"])
    assert args.func(args) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    bad = parser.parse_args(["report", str(tmp_path / "missing")])
    assert bad.func(bad) == 2  # the handler itself turns input errors into exit code 2


def test_roi_does_not_import_heavy_deps():
    code = (
        "import roi.cli, roi.report, roi.analysis, roi.page, roi.curves, roi.plots, roi.plots.png; import sys; "
        "assert not {'torch','ray','faiss','sweeps'} & set(sys.modules), {'torch','ray','faiss','sweeps'} & set(sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_python_dash_m_roi_error_path(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "roi", "report", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr


def test_report_reads_a_run_folder_or_table_by_uri_and_writes_locally(tmp_path, capsys, monkeypatch):
    # The same run through pyarrow's filesystem layer (file:// here; s3:// and gs:// take the same path,
    # with credentials from the environment). The report itself is written here, never to the bucket.
    run = write_run(tmp_path / "bucket" / "runs" / "demo", full_table())
    monkeypatch.chdir(tmp_path)
    assert main(["report", f"file://{run}", "--n-boot", "20", "--no-png"]) == 0
    out = capsys.readouterr().out
    assert f"read file://{run}/results.parquet" in out and "Jina's 70%-drop point" in out
    assert (tmp_path / "demo-report" / "report.html").is_file()
    assert main(["report", f"file://{run}/results.parquet", "--n-boot", "20", "--no-png"]) == 0
    assert (tmp_path / "results-report" / "summary.csv").is_file()
    assert main(["report", f"file://{tmp_path}/bucket/runs/missing"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["report", "nosuchscheme://bucket/runs/demo"]) == 2
    err = capsys.readouterr().err
    assert "nosuchscheme://bucket/runs/demo: cannot read" in err and "credentials" in err


def test_an_unwritable_report_folder_exits_2(tmp_path, capsys):
    # e.g. a run folder on a read-only shared mount (the default report folder is RUN_DIR/report)
    run = write_run(tmp_path / "run", full_table())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", str(run), "--out", str(blocker / "report"), "--n-boot", "5", "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"{blocker / 'report'}: cannot write there" in err and "--out" in err


def test_default_report_folder_of_a_uri_keeps_dots_in_a_sweep_name(tmp_path, monkeypatch):
    from roi.report import default_out_dir

    monkeypatch.chdir(tmp_path)
    assert default_out_dir("s3://bucket/runs/clinc150.v2") == tmp_path / "clinc150.v2-report"
    assert default_out_dir("s3://bucket/runs/clinc150.v2/results.parquet") == tmp_path / "results-report"
