"""Fault injection: a killed driver (three times), a corrupt record, out of GPU memory, a hung trial, safe defaults.

Each test injects one fault into a sweep on an embedded Ray (CPU) and asserts the known answer: the final
table, how often each cell ran (marker files, see ``tests/designed.py``), and what the failed records say.
One Ray (started the way ``roi sweep`` starts it: ``sweeps.tuner.connect(None)``) serves the module; the
killed drivers run in subprocesses with their own Ray. What each test injects and asserts:
``docs/reliability.md``. Worker SIGKILL, too many GPUs and a changed config are in ``tests/test_tuner.py``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

import designed  # noqa: E402  (tests/designed.py)
from designed import (  # noqa: E402
    DesignedPrepared,
    designed_cell,
    designed_config,
    designed_table,
    executions,
    fit_cell_with_faults,
    releases,
)

from sweeps.config import cells_for  # noqa: E402
from sweeps.prepare import prepare_data  # noqa: E402
from sweeps.results import read_records  # noqa: E402
from sweeps.tuner import connect, run_sweep  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # drivers killed and resumed, hung trials: minutes (make test-all)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Workers cannot import the tests folder: ship the designed trainables by value.
ray.cloudpickle.register_pickle_by_value(designed)


@pytest.fixture(scope="module")
def embedded_ray():
    """One embedded Ray for the module, started by the driver's own ``connect`` (dashboard and auth as shipped)."""
    if ray.is_initialized():
        ray.shutdown()
    url = connect(None, num_cpus=2, logical_gpus=0)
    yield url
    ray.shutdown()


def _values(table: pd.DataFrame) -> pd.DataFrame:
    cols = ["seed", "size", "epoch", "train_seconds", "mrr@20", "map@20", "recall@20"]
    return table[cols].sort_values(["seed", "size", "epoch"]).reset_index(drop=True)


def _by_label(run_dir: Path) -> dict[str, dict]:
    out = {}
    for rec in read_records(run_dir).records:
        c = rec["cell"]
        out[f"n{c['size']}-e{c['epochs']}-s{c['seed']}"] = rec
    return out


# ------------------------------------------------------------------------------ 2: the driver killed three times

DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import ray
import designed
ray.cloudpickle.register_pickle_by_value(designed)
from sweeps.tuner import run_sweep

storage, temp_dir = sys.argv[1], sys.argv[2]
ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
cfg = designed.designed_config(storage, **{grid!r})
out = run_sweep(cfg, resume=True, prepared=designed.DesignedPrepared(), trainable=designed.designed_cell)
print("finished", out.ran, out.skipped, out.failed, flush=True)
"""

KILL_GRID = {"name": "killed", "sizes": (50, 100, 200, 400), "seeds": (0, 1), "epochs": 2}  # 9 cells


def _ray_processes(temp_dir: str) -> list[int]:
    """Pids of processes whose command line names this Ray temp dir (gcs_server, raylet, workers, ...)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            pids.append(int(proc.name))
    return pids


def _kill_leftovers(temp_dirs: list[str]) -> list[int]:
    left = [pid for d in temp_dirs for pid in _ray_processes(d)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _finished_labels(run_dir: Path) -> set[str]:
    return {label for label, rec in _by_label(run_dir).items() if rec["status"] == "ok"}


def _start_driver(script: Path, storage: Path, temp_dir: str, log_path: Path) -> subprocess.Popen:
    """``script`` (a DRIVER) in its own process group, with its own embedded Ray under ``temp_dir``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, str(script), str(storage), temp_dir],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_records(proc: subprocess.Popen, run_dir: Path, n: int, log_path: Path) -> None:
    """Until ``n`` cells have finished records (90 s at most); the driver must be alive meanwhile."""
    deadline = time.time() + 90
    while len(_finished_labels(run_dir)) < n and time.time() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.05)


def _slow_grid(tmp_path: Path, name: str) -> tuple[Path, Path, str, Path]:
    """Storage for ``KILL_GRID`` at 0.8 s per cell, its run folder, a Ray temp dir and a driver log path."""
    storage = tmp_path / name
    storage.mkdir()
    (storage / "delay").write_text("0.4")
    return storage, storage / KILL_GRID["name"], tempfile.mkdtemp(prefix="rayd", dir="/tmp"), tmp_path / "driver.log"


def _script(tmp_path: Path, template: str) -> Path:
    script = tmp_path / "driver.py"
    script.write_text(template.format(tests=str(TESTS), grid=KILL_GRID))
    return script


@pytest.mark.timeout(240)
def test_driver_killed_at_three_moments_resumes_to_the_undisturbed_table(embedded_ray, tmp_path):
    storage = tmp_path / "killed"
    storage.mkdir()
    (storage / "delay").write_text("0.4")  # 0.8 s per cell: the kills land while trials run
    run_dir = storage / "killed"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(TESTS), grid=KILL_GRID))
    temp_dirs: list[str] = []
    kills = []  # (records when killed, finished labels, execution counts at the kill)
    try:
        for kill_at in (1, 3, 5):
            # Each driver starts its own embedded Ray, under a short temp dir of its own (Ray's socket
            # paths must stay under 108 bytes) that names its processes.
            temp_dir = tempfile.mkdtemp(prefix="rayk", dir="/tmp")
            temp_dirs.append(temp_dir)
            log_path = tmp_path / f"driver-{kill_at}.log"
            proc = _start_driver(script, storage, temp_dir, log_path)
            _wait_for_records(proc, run_dir, kill_at, log_path)
            finished = _finished_labels(run_dir)
            counts = executions(storage)
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its process group, at once
            proc.wait(timeout=30)
            assert len(finished) >= kill_at, f"only {len(finished)} records before the deadline"
            kills.append((kill_at, finished, counts))
            # The killed driver's Ray (gcs_server, raylet, workers) must not linger.
            deadline = time.time() + 15
            while _ray_processes(temp_dir) and time.time() < deadline:
                time.sleep(0.2)
            assert _ray_processes(temp_dir) == [], (
                f"Ray processes of the killed driver survive: {_ray_processes(temp_dir)}"
            )
            assert read_records(run_dir).corrupt == []  # atomic writes: a kill never leaves a half record
    finally:
        _kill_leftovers(temp_dirs)
        for temp_dir in temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)

    # The last resume runs to the end (in this process, on the module's Ray: a fourth Ray start saved).
    cfg = designed_config(storage, **KILL_GRID)
    resumed = run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    assert resumed.skipped >= 5 and resumed.failed == 0
    # An undisturbed run of the same grid.
    calm = designed_config(tmp_path / "calm", **KILL_GRID)
    undisturbed = run_sweep(calm, prepared=DesignedPrepared(), trainable=designed_cell)
    final = pd.read_parquet(run_dir / "results.parquet")
    assert undisturbed.failed == 0 and set(final["status"]) == {"ok"}
    pd.testing.assert_frame_equal(final, undisturbed.table)  # same cells, once each, identical values and ids
    assert final.groupby(["seed", "size", "epoch"]).size().eq(1).all() and final["trial_id"].nunique() == 9
    pd.testing.assert_frame_equal(_values(final), designed_table(calm), check_dtype=False)

    # No cell that had finished before a kill ran again afterwards; every cell ran at least once.
    after = executions(storage)
    assert set(after) == {c.label for c in cells_for(calm.sweep)}
    for kill_at, finished, counts in kills:
        for label in finished:
            assert after[label] == counts[label], f"{label} finished before kill {kill_at} but ran again"
    assert [k for k, _, _ in kills] == [1, 3, 5]


INTERRUPTED_DRIVER = DRIVER.replace(
    "out = run_sweep(",
    "from sweeps.errors import SweepInterrupted\ntry:\n    out = run_sweep(",
).replace(
    'print("finished", out.ran, out.skipped, out.failed, flush=True)',
    'except SweepInterrupted as exc:\n    print("interrupted:", exc, flush=True)\n    sys.exit(130)\n'
    'print("finished", out.ran, out.skipped, out.failed, flush=True)',
)


@pytest.mark.timeout(240)
def test_ctrl_c_is_an_interruption_not_a_finished_sweep(embedded_ray, tmp_path):
    # Tune catches the first SIGINT and returns from fit() as if the grid were done: the driver must notice the
    # cells without a record, say so (exit 130 in the CLI) and keep the driver state for `roi status`.
    from sweeps.runs import DRIVER_STATE
    from sweeps.status import run_status

    storage, run_dir, temp_dir, log_path = _slow_grid(tmp_path, "killed")
    try:
        proc = _start_driver(_script(tmp_path, INTERRUPTED_DRIVER), storage, temp_dir, log_path)
        _wait_for_records(proc, run_dir, 2, log_path)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the interrupted driver did not stop: " + log_path.read_text()[-3000:]) from None
    finally:
        _kill_leftovers([temp_dir])
        shutil.rmtree(temp_dir, ignore_errors=True)
    log_text = log_path.read_text()
    assert code == 130 and "interrupted:" in log_text and "finished" not in log_text, log_text[-3000:]
    assert (run_dir / DRIVER_STATE).exists()
    status = run_status(run_dir)
    assert len(status.done) < status.total and not status.failed  # the interrupted cells are not failures
    assert len(status.in_progress) == status.total - len(status.done)

    cfg = designed_config(storage, **KILL_GRID)
    resumed = run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    assert resumed.failed == 0 and resumed.skipped == len(status.done) and not (run_dir / DRIVER_STATE).exists()
    pd.testing.assert_frame_equal(_values(resumed.table), designed_table(cfg), check_dtype=False)


@pytest.mark.timeout(240)
def test_a_second_driver_on_the_same_run_folder_is_refused_and_each_cell_runs_once(embedded_ray, tmp_path):
    # Two `roi sweep --resume` on one run folder (a user who thinks the first died, two people on a shared
    # mount): the second is refused with the first one's host, pid and start; no cell runs twice.
    import socket

    from sweeps.errors import ConfigError
    from sweeps.runlock import LOCK_FILE

    storage, run_dir, temp_dir, log_path = _slow_grid(tmp_path, "twice")
    cfg = designed_config(storage, **KILL_GRID)
    try:
        first = _start_driver(_script(tmp_path, DRIVER), storage, temp_dir, log_path)
        _wait_for_records(first, run_dir, 1, log_path)
        with pytest.raises(ConfigError) as refused:
            run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
        for named in ("another driver", f"host {socket.gethostname()}", f"pid {first.pid}", "started 20"):
            assert named in refused.value.message, refused.value.message
        assert first.wait(timeout=180) == 0, log_path.read_text()[-3000:]
    finally:
        _kill_leftovers([temp_dir])
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert "finished 9 0 0" in log_path.read_text()
    assert not (run_dir / LOCK_FILE).exists()  # released by the driver that finished
    again = run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    assert (again.ran, again.skipped) == (0, 9)
    assert executions(storage) == {c.label: 1 for c in cells_for(cfg.sweep)}


# ------------------------------------------------------------------------------ 3: a corrupt record


@pytest.mark.timeout(120)
def test_a_truncated_record_is_reported_by_name_and_only_its_cell_reruns(embedded_ray, tmp_path, capsys):
    cfg = designed_config(tmp_path, name="corrupt", sizes=(50, 100))
    first = run_sweep(cfg, prepared=DesignedPrepared(), trainable=designed_cell)
    assert first.failed == 0
    victim = _by_label(first.run_dir)["n50-e2-s0"]
    path = first.run_dir / "records" / f"{victim['trial_id']}.json"
    path.write_text(path.read_text()[: len(path.read_text()) // 2])  # truncated mid-file, as by a full disk
    capsys.readouterr()

    from sweeps.status import format_status, run_status

    assert f"corrupt record {path}" in format_status(run_status(first.run_dir))
    second = run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    out = capsys.readouterr().out
    assert f"warning: unreadable result record {path}: its cell will run again" in out
    assert (second.ran, second.skipped, second.failed) == (1, 2, 0)
    assert executions(tmp_path) == {"n0-e0-s0": 1, "n50-e2-s0": 2, "n100-e2-s0": 1}
    assert read_records(first.run_dir).corrupt == []
    pd.testing.assert_frame_equal(second.table, first.table)  # the re-run cell gives back the same rows


# ------------------------------------------------------------------------------ 4: out of GPU memory


@pytest.mark.timeout(180)
def test_out_of_memory_is_recorded_not_retried_and_memory_released_before_the_next_trial(embedded_ray, tmp_path):
    smoke = designed_config(
        tmp_path, name="oom", sizes=(32, 64), epochs=2, max_concurrent=1
    )  # one actor runs all cells in turn, the largest first (sweeps.tuner._longest_first): 64, 32, the baseline
    (tmp_path / "oom").mkdir()
    (tmp_path / "oom" / "n64-e2-s0").touch()
    out = run_sweep(smoke, prepared=prepare_data(smoke.trial), trainable=fit_cell_with_faults)

    records = _by_label(out.run_dir)
    oom = records["n64-e2-s0"]
    assert oom["status"] == "failed" and oom["rows"] == []
    assert oom["error"].startswith("out of GPU memory at train.batch_size=16, eval.batch_size=256")
    assert "not retried" in oom["error"] and "fix: lower train.batch_size" in oom["error"]
    assert executions(tmp_path) == {
        "n0-e0-s0": 1,
        "n32-e2-s0": 1,
        "n64-e2-s0": 1,
    }  # the OOM cell ran once: no blind retry
    assert records["n0-e0-s0"]["status"] == records["n32-e2-s0"]["status"] == "ok"
    assert out.failed == 1 and out.ran == 3
    table = out.table
    assert (
        table.loc[table["size"] == 32, "epoch"].tolist() == [1, 2]
        and table.loc[table["size"] == 32, "mrr@20"].map(math.isfinite).all()
    )
    assert table.loc[table["size"] == 64, "status"].tolist() == ["failed"]
    # The accelerator was released after every trial, the OOM one included, before the actor's next trial
    # started. (On this CPU-only machine that proves the release path runs; empty_cache itself needs CUDA.)
    # (twice each: by run_trial, and by fit_cell once an error in flight, which holds the tensors, is handled)
    assert releases(tmp_path) == {"n0-e0-s0": 2, "n32-e2-s0": 2, "n64-e2-s0": 2}
    released_at = max(p.stat().st_mtime for p in (tmp_path / "released").glob("n64-e2-s0.*"))
    assert released_at <= oom["finished_at"] <= records["n32-e2-s0"]["started_at"]


# ------------------------------------------------------------------------------ 7: a hung trial


@pytest.mark.timeout(120)
def test_a_hung_trial_is_stopped_after_trial_timeout_s_and_recorded_as_failed(embedded_ray, tmp_path):
    cfg = designed_config(tmp_path, name="hung", sizes=(50, 100), trial_timeout_s=5.0)
    (tmp_path / "hang").mkdir()
    (tmp_path / "hang" / "n100-e2-s0").touch()
    start = time.perf_counter()
    out = run_sweep(cfg, prepared=DesignedPrepared(), trainable=designed_cell)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, elapsed  # not the ten minutes the trial would hang
    records = _by_label(out.run_dir)
    hung = records["n100-e2-s0"]
    assert hung["status"] == "failed"
    assert re.fullmatch(
        r"TrialTimeout: no report for [56] s \(trial_timeout_s = 5\): stopped as hung, not retried", hung["error"]
    ), hung["error"]
    assert executions(tmp_path) == {"n0-e0-s0": 1, "n50-e2-s0": 1, "n100-e2-s0": 1}  # stopped, not retried
    assert (out.ran, out.failed) == (3, 1)
    ok = out.table[out.table["status"] == "ok"]
    assert sorted(ok["size"].tolist()) == [0, 50, 50]
    # --resume runs the failed cell again (the hang marker is gone) and keeps the others.
    again = run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    assert (again.ran, again.skipped, again.failed) == (1, 2, 0)
    pd.testing.assert_frame_equal(_values(again.table), designed_table(cfg), check_dtype=False)


# ------------------------------------------------------------------------------ safe defaults


@pytest.mark.timeout(60)
def test_embedded_ray_dashboard_is_local_only_and_token_auth_is_on(embedded_ray):
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    host, port = re.fullmatch(r"http://([\d.]+):(\d+)", embedded_ray).groups()
    assert host == "127.0.0.1"
    listening = _listening_addresses(int(port))
    assert listening == {"127.0.0.1"}, listening  # bound to loopback only, not 0.0.0.0
    assert is_token_auth_enabled()
    # Without the token, the dashboard's API refuses.
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{embedded_ray}/api/jobs/", timeout=10)
    assert exc.value.code in (401, 403)


# Ports of the embedded Ray that Ray gives no setting to keep on loopback (process name -> why). Empty with Ray
# 2.60: a loopback node address (sweeps.tuner._loopback_node) carries every server. docs/cluster.md says the same.
NO_LOOPBACK_SETTING: dict[str, str] = {}


def _embedded_ray_processes() -> list:
    """This process and every process of its embedded Ray: its children, and any that name its session folder."""
    import psutil

    session = ray._private.worker._global_node.get_session_dir_path()
    me = psutil.Process()
    procs = {p.pid: p for p in [me, *me.children(recursive=True)]}
    for p in psutil.process_iter(["cmdline"]):
        if session in " ".join(p.info["cmdline"] or ()):
            procs.setdefault(p.pid, p)
    return list(procs.values())


@pytest.mark.timeout(120)
def test_no_port_of_the_embedded_ray_listens_beyond_loopback(embedded_ray):
    import ipaddress

    import psutil

    @ray.remote
    def square(x: int) -> int:  # a worker process with its own gRPC server, as a trial has
        return x * x

    assert ray.get(square.remote(7)) == 49
    listening, names = [], set()
    for proc in _embedded_ray_processes():
        try:
            name = proc.name()
            sockets = proc.net_connections(kind="inet")
        except psutil.Error:  # a worker that exited meanwhile
            continue
        names.add(name)
        for conn in sockets:
            if conn.status == psutil.CONN_LISTEN:
                listening.append((name, conn.laddr.ip, conn.laddr.port))
    assert {"gcs_server", "raylet"} <= names, names  # the test sees Ray's servers, so it cannot pass vacuously
    assert len(listening) >= 5, listening

    def loopback(ip: str) -> bool:
        addr = ipaddress.ip_address(ip.split("%")[0])
        mapped = getattr(addr, "ipv4_mapped", None)
        return (mapped or addr).is_loopback

    beyond = [(n, ip, port) for n, ip, port in listening if not loopback(ip) and n not in NO_LOOPBACK_SETTING]
    assert not beyond, f"listening beyond loopback: {beyond}"


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if int(hexport, 16) != port or state != "0A":  # 0A: LISTEN
                continue
            if len(addr) == 8:
                found.add(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.add("::" if set(addr) == {"0"} else addr)
    return found


@pytest.mark.timeout(120)
def test_no_credentials_reach_the_run_folder(embedded_ray, tmp_path, monkeypatch):
    secrets = {
        "AWS_ACCESS_KEY_ID": "AKIAFAULTTESTKEY0001",
        "AWS_SECRET_ACCESS_KEY": "faultTestSecretKey/abcdefghijklmnopqrstu",
        "AWS_SESSION_TOKEN": "faultTestSessionToken123456789",
    }
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    cfg = designed_config(tmp_path, name="creds", sizes=(50,))
    out = run_sweep(cfg, prepared=DesignedPrepared(), trainable=designed_cell)
    assert out.failed == 0
    files = [p for p in out.run_dir.rglob("*") if p.is_file()]
    assert {"config.yaml", "versions.json", "results.csv", "results.parquet"} <= {p.name for p in files}
    for path in files:
        blob = path.read_bytes()
        for value in secrets.values():
            assert value.encode() not in blob, f"{value[:8]}... found in {path}"
        assert not re.search(rb"AKIA[0-9A-Z]{16}", blob), path
    saved = (out.run_dir / "config.yaml").read_text().lower()
    assert not any(word in saved for word in ("secret", "password", "token", "aws_"))
