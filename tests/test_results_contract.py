"""The results table is the only contract between ``sweeps`` (writes it) and ``roi`` (reads it).

The one test module that imports both packages: what the sweep writes, the analysis reads, column for column,
and the documented schema lists exactly the columns the sweep writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from roi.analysis import analyse
from roi.curves import relative_improvement, select_points
from roi.load import (
    OPTIONAL_BOOL_COLUMNS,
    OPTIONAL_FLOAT_COLUMNS,
    OPTIONAL_STRING_COLUMNS,
    REQUIRED_COLUMNS,
    load_results,
)
from sweeps.config import Cell, SweepSpec, TrialConfig, cells_for
from sweeps.dataclass_io import build
from sweeps.results import TrialIdentity, make_record, records_to_table, result_columns, write_table

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "results-schema.md"
CFG = build(
    TrialConfig,
    {"task": "text-to-text", "model": {"kind": "hf-text", "name": "m"}, "data": {"format": "clinc150", "name": "d"}},
    where="t",
)


def _record(cell: Cell, mrr: list[float], seed_offset: float = 0.0) -> dict:
    rows = [
        {
            "epoch": e,
            "train_seconds": 10.0 * e,
            "eval_seconds": 1.0,
            "items_seen": cell.size * e,
            "peak_memory_mb": 5.0,
            "device": "cpu",
            "mrr@20": m + seed_offset,
            "map@20": m + seed_offset,
            "recall@20": (m + seed_offset) / 2,
        }
        for e, m in enumerate(mrr, start=0 if cell.size == 0 else 1)
    ]
    return make_record(TrialIdentity("s", "data_size", CFG, "d", "ev", "ev"), cell, rows=rows)


def test_roi_reads_what_sweeps_writes(tmp_path):
    records = [_record(Cell(0, 0, 0), [0.5])]
    for seed in (0, 1):
        records += [
            _record(Cell(n, 1, seed), [0.5 + 0.1 * i], 0.01 * seed) for i, n in enumerate((100, 200, 500), start=1)
        ]
    write_table(tmp_path, records_to_table(records, k=20))
    df = load_results(tmp_path)
    assert len(df) == 7 and {"mrr@20", "map@20", "recall@20"} <= set(df.columns)
    analysis = analyse(df, metrics=None, drop=0.7, n_boot=50, boot_seed=0)
    row = analysis.summary.set_index("metric").loc["mrr@20"]
    # Designed: baseline 0.5 (seed 1 has none and falls back to seed 0's); improvements 0.2/0.4/0.6 (seed 0)
    # and 0.22/0.42/0.62 (seed 1) at 100/200/500 items; average ROI peaks at 100 items (0.0021 per item).
    assert row["baseline"] == 0.5 and row["n_seeds"] == 2
    assert row["best_improvement"] == pytest.approx(0.61) and row["best_cost"] == 500
    assert row["peak_cost"] == 100 and row["peak_roi"] == pytest.approx(0.0021)


def test_every_column_roi_knows_is_one_sweeps_writes():
    written = set(result_columns(20))
    assert set(REQUIRED_COLUMNS) <= written
    assert set(OPTIONAL_FLOAT_COLUMNS) | set(OPTIONAL_STRING_COLUMNS) | set(OPTIONAL_BOOL_COLUMNS) <= written


def test_the_schema_document_lists_exactly_the_written_columns():
    results_part = SCHEMA.read_text().split("## Per-query scores")[0]  # the results table, not queries.parquet's
    documented = set(re.findall(r"^\| `([^`]+)`", results_part, flags=re.M))
    documented |= {"mrr@20", "map@20", "recall@20"}  # documented together as `mrr@{k}`, `map@{k}`, `recall@{k}`
    documented = {c for c in documented if "{" not in c}
    assert documented == set(result_columns(20))


def test_compile_seconds_is_written_and_older_tables_read_it_as_zero(tmp_path):
    compiled = _record(Cell(100, 1, 0), [0.6])
    compiled["rows"][0]["compile_seconds"] = 12.5  # a trial that compiled its towers (sweeps/compiled.py)
    older = _record(Cell(200, 1, 0), [0.7])  # a record written before the column existed
    table = records_to_table([_record(Cell(0, 0, 0), [0.5]), compiled, older], k=20)
    assert table.set_index("size")["compile_seconds"].to_dict() == {0: 0.0, 100: 12.5, 200: 0.0}
    assert table.set_index("size")["train_seconds"].to_dict()[100] == 10.0  # not folded into training
    write_table(tmp_path, table.drop(columns=["compile_seconds"]))  # a table from before compile-once
    assert (load_results(tmp_path)["compile_seconds"] == 0.0).all()


def test_refit_is_written_read_as_its_own_curve_and_false_in_older_tables(tmp_path):
    spec = SweepSpec(experiment="data_size", sizes=(100,), refit=True)
    refit = _record(cells_for(spec)[1], [0.6, 0.8])  # sweep.refit: the final row is the refit model's
    refit["rows"][-1].update(final=True, stop_reason="converged", refit=True)
    refit["rows"][0].update(final=False)
    small = _record(cells_for(SweepSpec(experiment="data_size", sizes=(16,), refit=True))[1], [0.55])
    small["rows"][0].update(final=True, stop_reason="cap", refit=False)  # no carve-out: all 16 items trained
    plain = _record(Cell(100, 1, 0, "validated", "x=1"), [0.7])  # a validated trial without refit
    plain["rows"][0].update(final=True, stop_reason="converged")  # records from before the option: no refit key
    plain["sweep"] = "another"
    table = records_to_table([_record(Cell(0, 0, 0), [0.5]), small, refit, plain], k=20)
    assert table.loc[table["refit"], ["trial_id", "epoch"]].values.tolist() == [[refit["trial_id"], 2]]
    write_table(tmp_path, table)
    df = load_results(tmp_path)
    assert df["refit"].dtype == bool and df.loc[df["refit"], ["trial_id", "epoch"]].values.tolist() == [
        [refit["trial_id"], 2]
    ]
    points = select_points(relative_improvement(df, metrics=["mrr@20"])).set_index("trial_id")["setting"]
    # One curve per sweep: the refit sweep's size without a carve-out belongs to its refit curve.
    assert points.to_dict() == {
        small["trial_id"]: "train_to=validated, refit",
        refit["trial_id"]: "train_to=validated, refit",
        plain["trial_id"]: "train_to=validated",
    }
    write_table(tmp_path, table.drop(columns=["refit"]))  # a table from before sweep.refit
    assert not load_results(tmp_path)["refit"].any()


def test_the_schema_document_lists_exactly_the_per_query_columns():
    from sweeps.results import QUERY_COLUMNS

    queries_part = SCHEMA.read_text().split("## Per-query scores")[1]
    assert set(re.findall(r"^\| `([^`]+)`", queries_part, flags=re.M)) == set(QUERY_COLUMNS)


def test_an_older_table_concatenated_with_a_newer_one_reads_its_empty_cells_as_the_columns_absence(tmp_path):
    # docs/clinc150/results.csv is such a table: rows from before `final`/`refit` existed (empty there) beside rows
    # that have them. Empty `refit` reads False, empty `final` is derived (epoch == epochs), as for a missing column.
    newer = records_to_table([_record(Cell(0, 0, 0), [0.5]), _record(Cell(100, 2, 0), [0.6, 0.7])], k=20)
    older = records_to_table([_record(Cell(200, 2, 0), [0.65, 0.75])], k=20).drop(columns=["final", "refit"])
    pd.concat([newer, older], ignore_index=True).to_csv(tmp_path / "results.csv", index=False)
    df = load_results(tmp_path / "results.csv")
    assert df["refit"].dtype == bool and not df["refit"].any()
    finals = df.loc[df["final"], ["size", "epoch"]].sort_values("size").values.tolist()
    assert finals == [[0, 0], [100, 2], [200, 2]]
