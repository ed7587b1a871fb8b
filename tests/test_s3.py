"""Run folders on object storage over the real S3 protocol: moto's standalone server on 127.0.0.1, started
here, spoken to over HTTP by pyarrow's S3 filesystem (ours and Ray Tune's), with ``AWS_ENDPOINT_URL`` set as
a user of an S3-compatible store (MinIO, Ceph, R2) sets it.

What this covers: ``s3://`` URIs through ``sweeps.storage.RunFolder`` (PUTs, LISTs, GETs, DELETEs, the lock),
a real smoke sweep with ``--storage s3://...`` (records, table, metadata and Tune's own state in the bucket),
its driver killed mid-sweep and resumed, and ``roi status`` and ``roi report`` on the URI. What it cannot:
IAM policies and instance roles (moto accepts any key), and a real store's consistency and latency (moto
answers at once, and S3 itself has been strongly consistent for single objects since 2020); see docs/cluster.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytest.importorskip("moto")
pafs = pytest.importorskip("pyarrow.fs")

from sweeps.errors import ConfigError  # noqa: E402
from sweeps.storage import RunFolder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "sweeps-test"
CREDENTIALS = {  # moto accepts any key; these only keep botocore and pyarrow from looking elsewhere
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server in its own process on 127.0.0.1, with one bucket; yields the environment to use it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        env = {**CREDENTIALS, "AWS_ENDPOINT_URL": url}
        fs = pafs.S3FileSystem(
            access_key="testing", secret_key="testing", endpoint_override=url, allow_bucket_creation=True
        )
        fs.create_dir(BUCKET)
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def s3_env(s3, monkeypatch):
    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    return s3


def test_run_folder_over_s3_writes_lists_reads_locks_and_deletes(s3_env):
    from sweeps.runlock import RunLock

    folder = RunFolder(f"s3://{BUCKET}/unit/demo")
    assert folder.list_files("records", ".json") == [] and not folder.exists("config.yaml")
    folder.write_text("records/b.json", '{"x": 2}')
    folder.write_text("records/a.json", '{"x": 1}')
    assert folder.list_files("records", ".json") == ["records/a.json", "records/b.json"]
    folder.write_text("records/a.json", '{"x": 3}')  # a second PUT replaces the object whole
    assert folder.read_text("records/a.json") == '{"x": 3}'
    assert folder.create_exclusive("owner", b"first") and not folder.create_exclusive("owner", b"second")
    assert folder.read_bytes("owner") == b"first"
    folder.delete("records/a.json")
    folder.delete("records/a.json")
    assert folder.list_files("records", ".json") == ["records/b.json"]
    lock = RunLock.acquire(folder, name="demo")  # the run folder's lock, through the bucket
    with pytest.raises(ConfigError, match="another driver is running"):
        RunLock.acquire(folder, name="demo")
    lock.release()
    RunLock.acquire(folder, name="demo").release()
    # roi report's prices come from the run folder's config.yaml, read from the bucket like the table
    from roi.price import Prices, prices_for

    folder.write_text("config.yaml", "name: demo\ncost:\n  label_cost: 0.08\n  currency: EUR\n")
    assert prices_for(str(folder), label_cost=None, gpu_hour=2.5, currency="") == Prices(0.08, 2.5, "EUR")
    assert prices_for(f"{folder}/results.parquet", label_cost=None, gpu_hour=None, currency="") == Prices()
    # A bucket that does not exist: one message naming the storage, no traceback.
    with pytest.raises(ConfigError) as info:
        RunFolder("s3://no-such-bucket-here/runs/demo").write_text("x", "y")
    assert info.value.field == "storage" and "s3://no-such-bucket-here/runs/demo" in info.value.message


def _ray_pids(temp_root: str) -> list[int]:
    """Processes whose command line names this Ray temp root (a killed driver's gcs_server, raylet, workers)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if temp_root in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(2400)
def test_smoke_sweep_on_s3_killed_resumed_then_status_and_report_on_the_uri(s3_env, tmp_path):
    from sweeps.results import read_records
    from sweeps.status import run_status

    # The smoke sweep with one more size (4 cells), so that the kill lands while trials run.
    raw = yaml.safe_load((ROOT / "sweeps" / "configs" / "smoke.yaml").read_text())
    raw["name"] = "s3smoke"
    raw["sweep"].update(sizes=[32, 48, 64])
    sweep_file = tmp_path / "s3smoke.yaml"
    sweep_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage = f"s3://{BUCKET}/runs"
    run = f"{storage}/s3smoke"
    temp_root = tempfile.mkdtemp(prefix="rays3", dir="/tmp")  # RAY_TMPDIR: names the driver's Ray processes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | s3_env | {"RAY_TMPDIR": temp_root}
    roi = [sys.executable, "-m", "sweeps"]
    sweep = [*roi, "sweep", str(sweep_file), "--storage", storage]
    log_path = tmp_path / "driver.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            sweep, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.time() + 1200  # generous: a loaded CI machine imports torch in every worker
        while len([r for r in read_records(run).records if r["status"] == "ok"]) < 2:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, "no 2 records within 20 minutes: " + log_path.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray, at once
        proc.wait(timeout=30)
        deadline = time.time() + 15
        while _ray_pids(temp_root) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:  # a failed wait: the driver must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for pid in _ray_pids(temp_root):
            os.kill(pid, signal.SIGKILL)
    killed = {r["trial_id"] for r in read_records(run).records}
    assert 2 <= len(killed) < 4, f"the kill came too late: {len(killed)} records"
    status = run_status(run)  # read from the bucket: the killed driver's cells are interrupted, not lost
    assert len(status.done) == len(killed) and status.in_progress and status.driver is not None

    done = subprocess.run([*sweep, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    shutil.rmtree(temp_root, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"[s3smoke] 4 cells: {len(killed)} already done, {4 - len(killed)} to run" in done.stdout
    records = read_records(run)
    assert records.corrupt == [] and len(records.records) == 4
    assert {r["status"] for r in records.records} == {"ok"} and killed <= {r["trial_id"] for r in records.records}

    fs, path = pafs.FileSystem.from_uri(run)
    names = {i.path[len(path) + 1 :] for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))}
    assert {"config.yaml", "versions.json", "results.parquet", "results.csv"} <= names
    assert "driver.lock" not in names and "driver_state.json" not in names  # released, completed
    assert any(n.startswith("tune/") for n in names)  # Tune's own state went to the bucket too

    status = subprocess.run([*roi, "status", run], env=env, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0 and "s3smoke: 4/4 done, 0 failed" in status.stdout, status.stdout + status.stderr
    out = tmp_path / "report"
    report = [*roi, "report", run, "--no-png", "--n-boot", "50", "--out", str(out)]
    done = subprocess.run(report, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"read {run}" in done.stdout and (out / "report.html").is_file()
    import pandas as pd

    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["size"].unique()) == [32, 48, 64] and set(trials["seed"]) == {0}


DESIGNED_DRIVER = """
import sys, time
sys.path.insert(0, {tests!r})
import ray
import designed
ray.cloudpickle.register_pickle_by_value(designed)
from sweeps.tuner import run_sweep


def slow_cell(config, **kwargs):  # the designed trainable at 1.5 s a cell, so that a kill lands mid-sweep
    time.sleep(1.5)
    designed.designed_cell(config, **kwargs)


ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
cfg = designed.designed_config(sys.argv[1], name="s3designed", sizes=(50, 100, 200, 400), seeds=(0, 1), epochs=2)
out = run_sweep(cfg, resume=True, prepared=designed.DesignedPrepared(), trainable=slow_cell)
print("finished", out.ran, out.skipped, out.failed, flush=True)
"""


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(1200)
def test_designed_sweep_on_s3_killed_resumed_then_status_and_report_on_the_uri(s3_env, tmp_path, capsys):
    """The same path as the smoke test with the designed trainable (no model: minutes less on a loaded machine),
    its 9 cells' values known."""
    from designed import designed_metrics

    from sweeps.cli import main
    from sweeps.results import read_records
    from sweeps.status import run_status

    storage = f"s3://{BUCKET}/designed"
    run = f"{storage}/s3designed"
    script = tmp_path / "driver.py"
    script.write_text(DESIGNED_DRIVER.format(tests=str(Path(__file__).resolve().parent)))
    temp_root = tempfile.mkdtemp(prefix="rays3", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | s3_env | {"RAY_TMPDIR": temp_root}
    log_path = tmp_path / "driver.log"
    with open(log_path, "w") as log:  # cwd: the designed trainable's marker files land under tmp_path
        proc = subprocess.Popen(
            [sys.executable, str(script), storage],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 600
        while len(read_records(run).records) < 3:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.time() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray, mid-sweep
            proc.wait(timeout=30)
        for pid in _ray_pids(temp_root):
            os.kill(pid, signal.SIGKILL)
    killed = {r["trial_id"] for r in read_records(run).records}
    assert 3 <= len(killed) < 9, f"the kill came too late: {len(killed)} records"
    status = run_status(run)
    assert len(status.done) == len(killed) and status.in_progress and status.driver is not None

    done = subprocess.run(
        [sys.executable, str(script), storage], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    shutil.rmtree(temp_root, ignore_errors=True)
    assert done.returncode == 0 and f"finished {9 - len(killed)} {len(killed)} 0" in done.stdout, (
        done.stdout[-3000:] + done.stderr[-3000:]
    )
    records = read_records(run).records
    assert len(records) == 9 and killed <= {r["trial_id"] for r in records}
    for r in records:
        size, last = r["cell"]["size"], r["rows"][-1]
        assert last["mrr@20"] == pytest.approx(designed_metrics(size, 0 if size == 0 else 2)["mrr@20"])
    assert main(["status", run]) == 0 and "s3designed: 9/9 done, 0 failed" in capsys.readouterr().out
    out = tmp_path / "report"
    assert main(["report", run, "--no-png", "--n-boot", "20", "--out", str(out)]) == 0
    assert f"read {run}/results.parquet" in capsys.readouterr().out and (out / "report.html").is_file()
