"""The run folder's lifecycle (``sweeps.runs``) and lock (``sweeps.runlock``), without Ray.

A refused ``roi sweep`` leaves the run folder exactly as it found it; the lock refuses a second driver by
name and takes over one that is gone. The two-drivers test with real drivers is in ``tests/test_faults.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_inputs import assert_clear_error, csv_data, labeled_csv, run_cli, sweep_file

from sweeps.config import Cell
from sweeps.errors import ConfigError
from sweeps.results import TrialIdentity, make_record, write_record
from sweeps.runlock import LOCK_FILE, RunLock
from sweeps.runs import write_run_metadata
from sweeps.storage import RunFolder
from sweeps.sweepfile import load_sweep_config


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # a second real sweep, with its own embedded Ray
@pytest.mark.timeout(120)
def test_roi_sweep_on_changed_data_leaves_the_run_folder_untouched(capsys, tmp_path):
    from sweeps.prepare import prepare_data

    data = labeled_csv(tmp_path / "items.csv")
    path = sweep_file(tmp_path, data=csv_data(data), sweep={"sizes": [8]})
    cfg = dataclasses.replace(load_sweep_config(path), storage=str(tmp_path / "runs"))
    prepared = prepare_data(cfg.trial)
    folder = RunFolder.of(cfg.storage, cfg.name)
    # A run folder as an earlier sweep of this file left it: its metadata and the baseline's record.
    write_run_metadata(folder, cfg)
    cell = Cell(size=0, epochs=0, seed=0)
    write_record(
        folder,
        make_record(TrialIdentity.of(cfg, prepared), cell, rows=[{"epoch": 0, "mrr@20": 0.5}]),
    )
    before = _listing(folder.root)
    labeled_csv(data, per_label=5)  # the data file is edited
    ray = pytest.importorskip("ray")
    ray_was_up = ray.is_initialized()

    code, out, err = run_cli(capsys, tmp_path, "sweep", str(path), "--resume")
    assert_clear_error(code, err, "the data changed", "data", "new name")
    assert _listing(folder.root) == before  # no config.yaml, versions.json, lock or table rewritten
    assert ray_was_up or not ray.is_initialized()  # refused before Ray starts


@pytest.mark.timeout(60)
def test_a_refused_new_run_leaves_no_folder(capsys, tmp_path):
    data = labeled_csv(tmp_path / "items.csv")
    path = sweep_file(tmp_path, data=csv_data(data), sweep={"sizes": [10_000]})
    code, _, err = run_cli(capsys, tmp_path, "trial", str(path), "--size", "10000")
    assert_clear_error(code, err, "training pool holds")
    assert not (tmp_path / "runs").exists()


@pytest.fixture(params=["local", "uri"])
def folder(request, tmp_path) -> RunFolder:
    """A run folder on a local path, and the same through the storage layer's URI path (file://)."""
    root = tmp_path / "runs" / "lock"
    return RunFolder(root if request.param == "local" else f"file://{root}")


def _holder(folder: RunFolder) -> dict:
    return json.loads(folder.read_text(LOCK_FILE))


def test_a_second_driver_is_refused_naming_the_first(folder):
    first = RunLock.acquire(folder)
    try:
        with pytest.raises(ConfigError) as refused:
            RunLock.acquire(folder)
        held = _holder(folder)
        for named in (f"host {socket.gethostname()}", f"pid {os.getpid()}", f"started {held['started_at']}"):
            assert named in refused.value.message
        assert "another driver is running" in refused.value.message and refused.value.fix
    finally:
        first.release()
    assert not folder.exists(LOCK_FILE)
    RunLock.acquire(folder).release()  # free again


def test_the_lock_of_a_dead_driver_on_this_host_is_taken_over_with_a_warning(folder, capsys):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    stale = {"host": socket.gethostname(), "pid": dead_pid, "started_at": "x", "heartbeat_at": time.time()}
    folder.write_text(LOCK_FILE, json.dumps(stale))
    lock = RunLock.acquire(folder, name="lock")
    try:
        assert _holder(folder)["pid"] == os.getpid()
        assert f"pid {dead_pid} is not running on this host" in capsys.readouterr().out
    finally:
        lock.release()


def test_a_lock_without_heartbeat_is_taken_over_and_a_fresh_one_elsewhere_is_not(folder, capsys):
    elsewhere = {"host": "another-host", "pid": 1, "started_at": "2026-01-01T00:00:00+00:00"}
    folder.write_text(LOCK_FILE, json.dumps({**elsewhere, "heartbeat_at": time.time() - 5}))
    with pytest.raises(ConfigError, match="host another-host, pid 1"):
        RunLock.acquire(folder, stale_after_s=60)
    folder.write_text(LOCK_FILE, json.dumps({**elsewhere, "heartbeat_at": time.time() - 600}))
    lock = RunLock.acquire(folder, stale_after_s=60)
    try:
        assert "no heartbeat for 600 s" in capsys.readouterr().out
    finally:
        lock.release()


def test_status_names_the_driver_that_holds_the_lock_and_says_when_it_is_gone(folder):
    from sweeps.runlock import lock_state

    assert lock_state(folder) is None
    lock = RunLock.acquire(folder)
    try:
        line = lock_state(folder)
        assert line.startswith("a driver is running") and f"pid {os.getpid()}" in line
        assert f"host {socket.gethostname()}" in line
    finally:
        lock.release()
    dead = {"host": socket.gethostname(), "pid": 2**22 + 17, "started_at": "then", "heartbeat_at": time.time()}
    folder.write_text(LOCK_FILE, json.dumps(dead))
    line = lock_state(folder)
    assert line.startswith("the driver that held it is gone") and "is not running on this host" in line
    assert "--resume" in line


def test_the_heartbeat_is_renewed_while_the_lock_is_held(folder):
    lock = RunLock.acquire(folder, heartbeat_s=0.05)
    try:
        first = _holder(folder)["heartbeat_at"]
        deadline = time.time() + 10
        while _holder(folder)["heartbeat_at"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert _holder(folder)["heartbeat_at"] > first
    finally:
        lock.release()
    assert not folder.exists(LOCK_FILE)


def test_the_saved_config_yaml_loads_back_to_the_same_sweep(tmp_path):
    # Every shipped sweep file (the Jina study's too): its run folder's config.yaml is a sweep file giving it back.
    configs = sorted((Path(__file__).resolve().parents[1] / "sweeps" / "configs").rglob("*.yaml"))
    assert len(configs) > 10
    for path in configs:
        cfg = dataclasses.replace(load_sweep_config(path), storage="runs")
        folder = RunFolder(tmp_path / path.stem)
        write_run_metadata(folder, cfg)
        assert load_sweep_config(folder.location("config.yaml")) == dataclasses.replace(
            cfg, storage=str(Path("runs").resolve())
        )
