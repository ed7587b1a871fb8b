"""The sweep driver on an embedded Ray with logical GPUs, a designed trainable, and one real smoke sweep."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ray = pytest.importorskip("ray")

import designed  # noqa: E402  (tests/designed.py)
from designed import designed_cell, designed_table, executions  # noqa: E402

from sweeps.errors import ConfigError  # noqa: E402
from sweeps.prepare import prepare_data  # noqa: E402
from sweeps.results import read_records  # noqa: E402
from sweeps.sweepfile import load_sweep_config  # noqa: E402
from sweeps.tuner import run_sweep  # noqa: E402

pytestmark = pytest.mark.ray

SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "smoke.yaml"

# Workers cannot import the tests folder: ship the designed trainable by value.
ray.cloudpickle.register_pickle_by_value(designed)


@pytest.fixture(scope="module")
def smoke():
    cfg = load_sweep_config(SMOKE)
    return cfg, prepare_data(cfg.trial)


def _cfg(smoke, tmp_path, *, sizes=(50, 100, 200), seeds=(0, 1), gpus=1.0, cpus=1.0, max_failures=2, name="designed"):
    cfg, _ = smoke
    return dataclasses.replace(
        cfg,
        name=name,
        storage=str(tmp_path),
        max_failures=max_failures,
        sweep=dataclasses.replace(cfg.sweep, sizes=tuple(sizes), seeds=tuple(seeds), epochs=2),
        resources=dataclasses.replace(cfg.resources, gpus=gpus, cpus=cpus),
    )


def test_designed_sweep_gives_the_exact_table_and_each_trial_its_own_gpu(ray_local, smoke, tmp_path):
    cfg = _cfg(smoke, tmp_path)
    out = run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    assert (out.ran, out.skipped, out.failed) == (7, 0, 0)
    table = out.table
    got = (
        table[["seed", "size", "epoch", "train_seconds", "mrr@20", "map@20", "recall@20"]]
        .sort_values(["seed", "size", "epoch"])
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(got, designed_table(cfg), check_dtype=False)
    assert set(table["status"]) == {"ok"} and table["trial_id"].nunique() == 7
    assert (table["gpu_seconds"] == table["train_seconds"]).all()  # 1 GPU per trial
    records = read_records(out.run_dir).records
    assert all(len(r["gpu_ids"]) == 1 for r in records)
    # Two trials at a time hold the two logical GPUs: concurrent trials never share an id.
    for a in records:
        for b in records:
            if a is not b and a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]:
                assert a["gpu_ids"] != b["gpu_ids"]
    assert (out.run_dir / "config.yaml").exists() and "ray" in json.loads((out.run_dir / "versions.json").read_text())
    pd.testing.assert_frame_equal(pd.read_parquet(out.run_dir / "results.parquet"), table)

    # Adding sizes and a seed to a finished sweep runs only the new cells.
    before = executions(tmp_path)
    bigger = _cfg(smoke, tmp_path, sizes=(50, 100, 200, 400), seeds=(0, 1, 2))
    out2 = run_sweep(bigger, resume=True, prepared=smoke[1], trainable=designed_cell)
    after = executions(tmp_path)
    new = {label for label in after if after[label] != before.get(label, 0)}
    assert new == {"n400-e2-s0", "n400-e2-s1", "n50-e2-s2", "n100-e2-s2", "n200-e2-s2", "n400-e2-s2"}
    assert (out2.ran, out2.skipped) == (6, 7)
    pd.testing.assert_frame_equal(
        out2.table[["seed", "size", "epoch", "mrr@20"]].sort_values(["seed", "size", "epoch"]).reset_index(drop=True),
        designed_table(bigger)[["seed", "size", "epoch", "mrr@20"]],
        check_dtype=False,
    )


def test_rerunning_a_finished_sweep_without_resume_is_refused(ray_local, smoke, tmp_path):
    cfg = _cfg(smoke, tmp_path, sizes=(50,), seeds=(0,))
    run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    with pytest.raises(ConfigError, match="already holds finished trials"):
        run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    changed = dataclasses.replace(
        cfg, trial=dataclasses.replace(cfg.trial, train=dataclasses.replace(cfg.trial.train, lr=0.5))
    )
    with pytest.raises(ConfigError, match=r"train.lr: 0.001 -> 0.5"):
        run_sweep(changed, resume=True, prepared=smoke[1], trainable=designed_cell)


def test_the_saved_config_yaml_is_a_sweep_file_roi_sweep_accepts_as_it_is(ray_local, smoke, tmp_path):
    cfg = _cfg(smoke, tmp_path, sizes=(50,), seeds=(0,))
    out = run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    saved = load_sweep_config(out.run_dir / "config.yaml")
    assert saved == dataclasses.replace(cfg, storage=str(tmp_path.resolve()))
    assert "trial" not in yaml.safe_load((out.run_dir / "config.yaml").read_text())  # trial keys at the top
    again = run_sweep(saved, resume=True, prepared=smoke[1], trainable=designed_cell)
    assert (again.run_dir, again.ran, again.skipped) == (out.run_dir, 0, 2)


@pytest.mark.slow  # 25 s: a second Tune run on logical GPUs; the designed sweep covers the driver in the fast tier
def test_fractional_gpus_pack_trials_on_one_card(ray_local, smoke, tmp_path):
    (tmp_path / "delay").write_text("1.0")
    cfg = _cfg(smoke, tmp_path, sizes=(50, 100, 200, 400), seeds=(0,), gpus=0.25, cpus=0.25)
    out = run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    records = read_records(out.run_dir).records
    spans = sorted((r["started_at"], r["finished_at"]) for r in records)
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most >= 3, spans  # several 0.25-GPU trials ran at once
    assert {len(r["gpu_ids"]) for r in records} == {1}
    assert (out.table["gpu_seconds"] == out.table["train_seconds"] * 0.25).all()


@pytest.mark.slow  # a killed trial process and its retry
def test_a_killed_trial_process_is_retried_and_the_sweep_completes(ray_local, smoke, tmp_path):
    (tmp_path / "kill_once").mkdir()
    (tmp_path / "kill_once" / "n100-e2-s0").touch()
    cfg = _cfg(smoke, tmp_path, sizes=(50, 100), seeds=(0,))
    out = run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    assert out.failed == 0 and executions(tmp_path)["n100-e2-s0"] == 2
    final = out.table.groupby(["size", "seed"]).size()
    assert final.to_dict() == {(0, 0): 1, (50, 0): 2, (100, 0): 2}  # every cell exactly once


def test_more_gpus_than_the_machine_has_is_an_error_at_once(ray_local, smoke, tmp_path):
    cfg = _cfg(smoke, tmp_path, gpus=4.0)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="asks for 4 GPU"):
        run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    assert time.perf_counter() - start < 30  # not a sweep pending forever


def test_real_smoke_sweep_end_to_end_with_live_metrics(ray_local, smoke, tmp_path):
    cfg = dataclasses.replace(smoke[0], name="metrics-sweep", storage=str(tmp_path))
    out = run_sweep(cfg, prepared=smoke[1])
    table = out.table
    assert out.failed == 0 and sorted(table["size"].tolist()) == [0, 32, 64]
    assert np.isfinite(table["mrr@20"]).all() and (table.loc[table["size"] > 0, "train_seconds"] > 0).all()
    assert table["eval_set"].nunique() == 1

    def exported(name: str) -> dict[str, float]:
        out = {}
        for line in text.splitlines():
            if line.startswith(f"ray_finetuning_budget_{name}{{") and 'sweep="metrics-sweep"' in line:
                cell = line.split('cell="')[1].split('"')[0] if 'cell="' in line else ""
                out[cell] = float(line.rsplit(" ", 1)[1])
        return out

    # The node's metrics agent exports on a timer (about every 5-10 s): poll until the final values arrive.
    deadline, text = time.time() + 90, ""
    while time.time() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{ray_local.metrics_port}/metrics", timeout=5).read().decode()
        if exported("trials_done") == {"": 3.0} and len(exported("latest_mrr")) == 3:
            break
        time.sleep(2)
    assert (
        exported("trials_done") == {"": 3.0}
        and exported("trials_left") == {"": 0.0}
        and exported("trials_failed") == {"": 0.0}
    )
    mrr = exported("latest_mrr")
    final = table[table["epoch"] == table["epochs"]].set_index("size")["mrr@20"]
    assert mrr == pytest.approx(
        {"ha-intents-n0-e0-s0": final[0], "ha-intents-n32-e1-s0": final[32], "ha-intents-n64-e1-s0": final[64]}
    )
    speed = exported("items_per_second")
    assert speed["ha-intents-n0-e0-s0"] == 0.0 and speed["ha-intents-n64-e1-s0"] > 0


@pytest.mark.slow  # three sweeps, each with retries
def test_a_failure_record_tells_the_latest_error_readably(ray_local, smoke, tmp_path):
    # A crashing trial is recorded with its own error (not Ray's wrapper header with colour codes); when it
    # crashes again on --resume with another error, the record says the new one.
    from sweeps.runs import DRIVER_STATE
    from sweeps.status import run_status

    (tmp_path / "raise").mkdir()
    marker = tmp_path / "raise" / "n100-e2-s0"
    marker.write_text("boom one")
    cfg = _cfg(smoke, tmp_path, sizes=(50, 100), seeds=(0,), gpus=0.0, max_failures=0)
    out = run_sweep(cfg, prepared=smoke[1], trainable=designed_cell)
    assert out.failed == 1
    status = run_status(out.run_dir)
    assert [(c.label, e) for c, e in status.failed] == [("n100-e2-s0", "RuntimeError: boom one")]
    # While a resume runs it (the driver lists it), `roi status` shows it running, not failed.
    state = Path(out.run_dir) / DRIVER_STATE
    state.write_text(json.dumps({"experiment": "resume", "cells": [{"size": 100, "epochs": 2, "seed": 0}]}))
    during = run_status(out.run_dir)
    assert [c.label for c in during.in_progress] == ["n100-e2-s0"] and during.failed == []
    state.unlink()
    marker.write_text("boom two")
    out = run_sweep(cfg, resume=True, prepared=smoke[1], trainable=designed_cell)
    assert out.ran == 1 and out.failed == 1
    assert [e for _, e in run_status(out.run_dir).failed] == ["RuntimeError: boom two"]
    marker.unlink()
    out = run_sweep(cfg, resume=True, prepared=smoke[1], trainable=designed_cell)
    assert out.ran == 1 and out.failed == 0 and set(out.table["status"]) == {"ok"}


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [(None, None, "local"), (None, "127.0.0.1:6379", "127.0.0.1:6379"), ("auto", "127.0.0.1:6379", "auto")],
)
def test_connect_starts_its_own_ray_unless_a_cluster_is_named(monkeypatch, flag, env, expected):
    # Without address="local", ray.init() joins a cluster that `ray start` left on this machine (and then
    # refuses num_cpus); inside `ray job submit` RAY_ADDRESS names the job's cluster, which is the one to join.
    from sweeps.tuner import connect

    seen: dict = {}

    class Context:
        dashboard_url = "127.0.0.1:8265"

    def init(**kwargs):
        seen.update(kwargs)
        return Context()

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert connect(flag, num_cpus=2, logical_gpus=0) == "http://127.0.0.1:8265"
    assert seen["address"] == expected
    assert ("num_cpus" in seen) == (expected == "local")  # only an embedded Ray takes resources


def test_a_dashboard_that_does_not_start_leaves_a_sweep_without_it_not_dead(monkeypatch, capsys):
    # On a loaded machine Ray's dashboard can miss its startup deadline, and ray.init then raises a bare
    # Exception: the sweep must still run (warned, no dashboard), and the deadline is raised first.
    from ray._private import ray_constants

    from sweeps.tuner import DASHBOARD_STARTUP_S, connect

    calls: list[dict] = []

    class Context:
        dashboard_url = ""

    def init(**kwargs):
        calls.append(kwargs)
        if kwargs["include_dashboard"]:
            raise Exception("\nFailed to start the dashboard")
        return Context()

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_DASHBOARD_STARTUP_TIMEOUT_S", raising=False)
    monkeypatch.setattr(ray_constants, "RAY_DASHBOARD_STARTUP_TIMEOUT_S", 60)
    assert connect(None, num_cpus=2, logical_gpus=0) == ""
    assert [c["include_dashboard"] for c in calls] == [True, False]
    assert calls[1]["num_cpus"] == 2 and calls[1]["_node_ip_address"] == "127.0.0.1"
    assert ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S == DASHBOARD_STARTUP_S
    err = capsys.readouterr().err
    assert "dashboard did not start (Failed to start the dashboard)" in err and "without it" in err


def test_the_grid_starts_the_longest_cells_first():
    from sweeps.config import Cell
    from sweeps.tuner import _longest_first

    cells = [Cell(0, 0, 0), Cell(50, 1, 0), Cell(400, 1, 0), Cell(0, 0, 1), Cell(50, 1, 1), Cell(400, 1, 1)]
    assert _longest_first(cells) == [
        Cell(400, 1, 0), Cell(400, 1, 1), Cell(50, 1, 0), Cell(50, 1, 1), Cell(0, 0, 0), Cell(0, 0, 1)
    ]  # fmt: skip
    epochs = [Cell(1000, e, 0) for e in (1, 5, 3)]
    assert [c.epochs for c in _longest_first(epochs)] == [5, 3, 1]
