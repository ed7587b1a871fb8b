from __future__ import annotations

import json

import pandas as pd
import pytest

from sweeps.config import Cell, TrialConfig
from sweeps.dataclass_io import build
from sweeps.errors import ConfigError
from sweeps.results import (
    TrialIdentity,
    make_record,
    read_records,
    records_to_table,
    result_columns,
    trial_id,
    write_record,
    write_table,
)

CFG = build(
    TrialConfig,
    {"task": "text-to-text", "model": {"kind": "hf-text", "name": "m"}, "data": {"format": "clinc150", "name": "d"}},
    where="t",
)


def _rows(cell: Cell, mrr: list[float]) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_seconds": 2.0 * e,
            "eval_seconds": 0.5,
            "items_seen": cell.size * e,
            "peak_memory_mb": 10.0,
            "device": "cpu",
            "mrr@20": m,
            "map@20": m / 2,
            "recall@20": m / 4,
            "size": cell.size,
            "epochs": cell.epochs,
            "seed": cell.seed,
            "loss": 1.0,
        }
        for e, m in enumerate(mrr, start=0 if cell.size == 0 else 1)
    ]


def _record(cell: Cell, mrr: list[float], **kw) -> dict:
    return make_record(
        TrialIdentity("s", "data_size", CFG, "d", "ev1", "ev1"), cell, rows=_rows(cell, mrr), num_gpus=0.5, **kw
    )


def test_trial_id_is_stable_and_depends_on_cell_config_and_eval_set():
    a = trial_id(CFG, Cell(100, 1, 0), data_id="ev1")
    assert a == trial_id(CFG, Cell(100, 1, 0), data_id="ev1") and a.startswith("n100-e1-s0-")
    assert a != trial_id(CFG, Cell(100, 1, 1), data_id="ev1")
    assert a != trial_id(CFG, Cell(100, 1, 0), data_id="ev2")


def test_table_has_one_row_per_trial_per_epoch_in_schema(tmp_path):
    write_record(tmp_path, _record(Cell(0, 0, 0), [0.5]))
    write_record(tmp_path, _record(Cell(100, 2, 0), [0.6, 0.7]))
    write_record(tmp_path, _record(Cell(200, 1, 0), [], status="failed", error="boom"))
    df = records_to_table(read_records(tmp_path).records, k=20)
    assert tuple(df.columns) == result_columns(20)
    assert len(df) == 4
    trial = df[df["size"] == 100]
    assert trial["epoch"].tolist() == [1, 2] and trial["mrr@20"].tolist() == [0.6, 0.7]
    assert trial["gpu_seconds"].tolist() == [1.0, 2.0]  # train_seconds x 0.5 GPU
    failed = df[df["status"] == "failed"]
    assert failed["error"].tolist() == ["boom"] and failed["mrr@20"].isna().all()
    baseline = df[df["size"] == 0]
    assert baseline["epochs"].tolist() == [0] and baseline["train_seconds"].tolist() == [0.0]
    parquet, csv = write_table(tmp_path, df)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), df)
    assert len(pd.read_csv(csv)) == 4


def test_corrupt_and_foreign_records_are_reported_not_loaded(tmp_path):
    good = write_record(tmp_path, _record(Cell(100, 1, 0), [0.6]))
    (good.parent / "truncated.json").write_text(good.read_text()[:50])
    old = json.loads(good.read_text())
    old["version"] = 0
    (good.parent / "old.json").write_text(json.dumps(old))
    scan = read_records(tmp_path)
    assert len(scan.records) == 1
    assert sorted(p.name for p in scan.corrupt) == ["old.json", "truncated.json"]


def test_record_write_is_atomic(tmp_path, monkeypatch):
    path = write_record(tmp_path, _record(Cell(100, 1, 0), [0.6]))
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(ConfigError, match="cannot write .*disk full") as info:
        write_record(tmp_path, _record(Cell(100, 1, 0), [0.9]))
    assert info.value.field == "storage"
    assert path.read_text() == before  # the old record is intact, and no temporary file is left
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_status_needs_neither_ray_nor_torch():
    # `roi status` runs where only the analysis half is installed (a laptop reading a shared run folder).
    import subprocess
    import sys

    code = (
        "import sys, sweeps.status; assert not {'ray', 'torch'} & set(sys.modules), {'ray', 'torch'} & set(sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_per_query_scores_go_to_queries_parquet_and_roi_finds_them_beside_the_table(tmp_path):
    from roi.load import load_query_scores
    from sweeps.results import QUERY_TABLE, records_to_query_table, write_query_table

    cell = Cell(size=100, epochs=2, seed=0)
    rec = _record(cell, [0.5, 0.6])
    for r, rr in zip(rec["rows"], ([1.0, 0.0, 0.5], [1.0, 0.5, 0.5]), strict=True):
        r["query_scores"] = {"rr": rr, "ap": [x / 2 for x in rr], "recall": [x / 4 for x in rr]}
    old = _record(Cell(size=200, epochs=1, seed=0), [0.7])  # written before per-query scores: contributes nothing
    q = records_to_query_table([rec, old])
    assert list(q.columns) == ["trial_id", "epoch", "query", "rr", "ap", "recall"]
    assert len(q) == 6 and set(q["trial_id"]) == {rec["trial_id"]}
    assert q[q["epoch"] == 2]["rr"].tolist() == [1.0, 0.5, 0.5] and q["query"].tolist() == [0, 1, 2] * 2
    assert write_query_table(tmp_path, [rec, old]) is not None and (tmp_path / QUERY_TABLE).is_file()
    assert write_query_table(tmp_path / "none", [old]) is None  # nothing to write: no file
    write_table(tmp_path, records_to_table([rec, old], k=20))
    for where in (tmp_path, tmp_path / "results.parquet", tmp_path / "results.csv"):
        assert load_query_scores(where)["ap"].tolist() == q["ap"].tolist()
    named = tmp_path / "named"
    named.mkdir()
    (tmp_path / "results.csv").rename(named / "demo.results.csv")
    (tmp_path / QUERY_TABLE).rename(named / f"demo.{QUERY_TABLE}")
    assert load_query_scores(named / "demo.results.csv") is not None
    assert load_query_scores(tmp_path / "none") is None
