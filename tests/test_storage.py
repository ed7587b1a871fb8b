"""The run folder on a pyarrow filesystem URI, without a network: ``mock://`` (pyarrow's in-memory store)
for the API, and a designed sweep end to end on a ``file://`` URI, which goes through
``pyarrow.fs.FileSystem.from_uri`` and the object-store code path of ``sweeps.storage.RunFolder``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from sweeps.errors import ConfigError
from sweeps.storage import RunFolder, check_storage


def test_uri_folder_writes_reads_lists_and_deletes_whole_files(monkeypatch):
    def no_rename(*args, **kwargs):
        raise AssertionError("an object store has no rename: the URI path must not call os.replace")

    monkeypatch.setattr("os.replace", no_rename)
    folder = RunFolder("mock:///bucket/runs/demo")
    assert folder.list_files("records", ".json") == [] and not folder.exists("config.yaml")
    folder.write_text("records/b.json", '{"x": 2}')
    folder.write_text("records/a.json", '{"x": 1}')
    folder.write_text("records/.a.json.tmp", "")  # hidden files are never records
    assert folder.list_files("records", ".json") == ["records/a.json", "records/b.json"]
    assert folder.read_text("records/a.json") == '{"x": 1}'
    folder.write_text("records/a.json", '{"x": 3}')  # replaced whole
    assert json.loads(folder.read_text("records/a.json")) == {"x": 3}
    folder.delete("records/a.json")
    folder.delete("records/a.json")  # deleting what is not there is no error
    assert folder.list_files("records", ".json") == ["records/b.json"]
    df = pd.DataFrame({"size": [0, 50], "mrr@20": [0.5, 0.6]})
    parquet, csv = folder.write_table(df)
    assert (parquet, csv) == ("mock:///bucket/runs/demo/results.parquet", "mock:///bucket/runs/demo/results.csv")
    assert folder.read_text("results.csv").splitlines() == ["size,mrr@20", "0,0.5", "50,0.6"]
    assert folder.tune_storage_path == "mock:///bucket/runs/demo/tune"
    assert str(RunFolder.of("s3://bucket/prefix/", "demo")) == "s3://bucket/prefix/demo"


def test_storage_uris_are_checked_without_a_network_and_failures_name_the_storage_and_fix():
    for ok in ("s3://bucket/runs", "gs://bucket/runs", "file:///tmp/runs", "abfs://c@acct.dfs.core.windows.net/r"):
        check_storage(ok)
    with pytest.raises(ConfigError, match="scheme 'ftp'"):
        check_storage("ftp://host/runs")
    for secret in ("s3://AKIA:hunter2@bucket/runs", "s3://bucket/runs?secret_key=hunter2"):
        with pytest.raises(ConfigError, match="carries credentials") as info:
            check_storage(secret)
        assert "hunter2" not in info.value.message
    # hdfs:// without a JVM fails at once, offline: the error becomes one clear message, not a traceback
    with pytest.raises(ConfigError) as info:
        RunFolder("hdfs://nohost/runs/demo").list_files("records", ".json")
    message = info.value.message
    assert info.value.field == "storage" and "hdfs://nohost/runs/demo" in message
    assert "fix:" in message and "environment" in message and "instance role" in message


ray = pytest.importorskip("ray")

import designed  # noqa: E402  (tests/designed.py)
from designed import DesignedPrepared, designed_cell, designed_config, designed_metrics, executions  # noqa: E402

from sweeps import storage as storage_module  # noqa: E402
from sweeps.cli import main  # noqa: E402
from sweeps.results import read_records  # noqa: E402
from sweeps.status import format_status, run_status  # noqa: E402
from sweeps.tuner import run_sweep  # noqa: E402

ray.cloudpickle.register_pickle_by_value(designed)  # workers cannot import the tests folder


@pytest.mark.slow  # a Tune sweep through a URI; tests/test_s3.py covers the store in the fast tier
@pytest.mark.ray
@pytest.mark.timeout(120)
def test_designed_sweep_on_a_uri_writes_resumes_and_reports_through_the_uri_path(
    ray_local, tmp_path, monkeypatch, capsys
):
    local = tmp_path / "runs"
    uri = f"file://{local}"
    remote_writes: list[str] = []
    real_write = storage_module.RunFolder.write_bytes

    def spy(self, relpath, data):
        if not self.is_local:
            remote_writes.append(relpath)
        return real_write(self, relpath, data)

    monkeypatch.setattr(storage_module.RunFolder, "write_bytes", spy)
    prepared = DesignedPrepared()
    cfg = designed_config(uri, sizes=(50, 100), seeds=(0,), epochs=2)
    out = run_sweep(cfg, prepared=prepared, trainable=designed_cell)

    run = f"{uri}/designed"
    assert out.run_dir == run and (out.ran, out.skipped, out.failed) == (3, 0, 0)
    records = sorted(w for w in remote_writes if w.startswith("records/"))
    assert len(records) == 3 and set(remote_writes) == {
        "config.yaml",
        "versions.json",
        "driver_state.json",
        "driver.lock",  # the run folder's lock, taken and released through the URI path too
        "results.parquet",
        "results.csv",
        *records,
    }
    folder = local / "designed"
    assert not (folder / "driver_state.json").exists()  # removed at the end of the sweep
    assert not (folder / "driver.lock").exists()
    assert (folder / "tune").is_dir()  # Tune's state under <storage>/<name>/tune
    table = pd.read_parquet(folder / "results.parquet")
    pd.testing.assert_frame_equal(table, out.table)
    final = table[table["epoch"] == table["epochs"]].set_index("size")["mrr@20"]
    assert final.to_dict() == pytest.approx(
        {s: designed_metrics(s, 0 if s == 0 else 2)["mrr@20"] for s in (0, 50, 100)}
    )
    assert "ray" in json.loads((folder / "versions.json").read_text())

    status = run_status(run)
    assert (len(status.done), status.failed, status.in_progress, status.left, status.corrupt) == (3, [], [], [], [])
    assert main(["status", run]) == 0 and "designed: 3/3 done, 0 failed" in capsys.readouterr().out

    with pytest.raises(ConfigError, match="already holds finished trials"):  # the saved config read through the URI
        run_sweep(cfg, prepared=prepared, trainable=designed_cell)

    # A truncated record is reported by its URI; --resume runs only its cell and the new one, and deletes it.
    victim = next(r for r in read_records(run).records if r["cell"]["size"] == 50)
    path = folder / "records" / f"{victim['trial_id']}.json"
    path.write_text(path.read_text()[: path.stat().st_size // 2])
    assert f"corrupt record {run}/records/{victim['trial_id']}.json" in format_status(run_status(run))
    before = executions(local)
    bigger = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, sizes=(50, 100, 200)))
    out2 = run_sweep(bigger, resume=True, prepared=prepared, trainable=designed_cell)
    assert (out2.ran, out2.skipped, out2.failed) == (2, 2, 0)
    after = executions(local)
    assert {label for label in after if after[label] != before.get(label, 0)} == {"n50-e2-s0", "n200-e2-s0"}
    assert read_records(run).corrupt == [] and len(read_records(run).records) == 4
    final2 = out2.table[out2.table["epoch"] == out2.table["epochs"]].set_index("size")["mrr@20"]
    assert final2.to_dict() == pytest.approx(
        {s: designed_metrics(s, 0 if s == 0 else 2)["mrr@20"] for s in (0, 50, 100, 200)}
    )
    assert Path(folder / "results.csv").read_text().count("\n") == 1 + 1 + 2 * 3  # header, baseline, 3 x 2 epochs
