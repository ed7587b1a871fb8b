from __future__ import annotations

import json

import pandas as pd
import pytest

from sweeps.config import Cell, TrialConfig
from sweeps.dataclass_io import build
from sweeps.errors import ConfigError
from sweeps.results import (
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
    tid = trial_id(CFG, cell, data_id="ev1")
    return make_record(
        sweep="s",
        experiment="data_size",
        tid=tid,
        cfg=CFG,
        cell=cell,
        dataset="d",
        eval_set="ev1",
        data_id="ev1",
        num_gpus=0.5,
        rows=_rows(cell, mrr),
        **kw,
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
