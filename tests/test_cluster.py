"""The cluster path on one machine: a two-node Ray cluster on 127.0.0.1, sweeps submitted as Ray jobs, a lost node.

A head and a worker node (``ray.cluster_utils.Cluster``, each node its own raylet, agents and temp dir, all in one
process group that the test kills by id) declare one logical GPU each, so trials take the GPU path of the
scheduler and then train on the CPU. Token auth is on (``RAY_AUTH_MODE=token``, a token file of the test's own).
The smoke sweep is submitted the way docs/cluster.md tells users (``ray job submit --working-dir . -- roi sweep
... --address auto --storage <shared path>``). The test checks what a user sees while it runs (the job's status in
the job API, trial names in its logs, the sweep's gauges on the head's metrics port), SIGKILLs the worker node's
raylet while a trial trains there, and kills a driver on the head and resumes it. Every final table must equal
the undisturbed one (the same cells run one after another without Ray, ``sweeps.local.run_cells``).
The commands are in docs/cluster.md ("Trying it on one machine").
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray")

from sweeps.results import read_records  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a two-node cluster and Ray jobs: minutes (make test-all)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: ray, roi
SMOKE = "sweeps/configs/smoke.yaml"
METRICS = ["mrr@20", "map@20", "recall@20"]

# Started in its own process group. Each node gets a temp dir of its own: on one machine, nodes sharing one
# would share their runtime_env folder, and a node's agent deletes the job's --working-dir copy from under the
# driver when its own last user of it ends. The health check is faster than Ray's default (3 s x 5 misses) so
# that the lost node is declared dead sooner. The worker's own log monitor (Cluster starts one per machine,
# `ray start` one per node) sends its trials' lines to the job's log.
LAUNCHER = """
import json, os, signal, sys, time
from ray.cluster_utils import Cluster

info_path, worker_temp, dash, m_head, m_worker, a_head, a_worker = sys.argv[1:8]
for attempt in range(3):
    # Ray gives a raylet 30 s to register (fixed in ray._private.node); a machine under load can miss that.
    try:
        cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=1, num_gpus=1, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=int(dash),
            metrics_export_port=int(m_head), dashboard_agent_listen_port=int(a_head),
            _system_config={"health_check_period_ms": 1000, "health_check_failure_threshold": 3}))
        worker = cluster.add_node(num_cpus=1, num_gpus=1, temp_dir=worker_temp, metrics_export_port=int(m_worker),
                                  dashboard_agent_listen_port=int(a_worker), include_log_monitor=True)
        break
    except Exception as exc:
        print(f"cluster start failed (attempt {attempt + 1}): {exc}", flush=True)
        if attempt == 2:
            raise
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
            try:
                if os.getpgid(pid) == os.getpgid(0):  # what this attempt started (we lead the group)
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(2)
cluster.wait_for_nodes()
info = {"gcs": cluster.address, "head_node_id": cluster.head_node.node_id, "worker_node_id": worker.node_id,
        "worker_raylet_pid": worker.all_processes["raylet"][0].process.pid}
with open(info_path + ".tmp", "w") as f:
    json.dump(info, f)
os.replace(info_path + ".tmp", info_path)

def stop(*_):
    cluster.shutdown()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""

# The undisturbed table: the same cells, one after another, without Ray (one torch thread, as in a 1-CPU actor).
REFERENCE = """
import sys
from sweeps.sweepfile import load_sweep_config
from sweeps.local import run_cells
from sweeps.config import cells_for
cfg = load_sweep_config(sys.argv[1])
import dataclasses
cfg = dataclasses.replace(cfg, storage=sys.argv[2])
run_cells(cfg, cells_for(cfg.sweep))
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalCluster:
    def __init__(self, root: Path):
        self.root = root
        self.token_path = root / "auth_token"
        self.temp = Path(tempfile.mkdtemp(prefix="rayc", dir="/tmp"))  # Ray's socket paths must stay short
        self.dash_port, self.m_head, self.m_worker, a_head, a_worker = _free_ports(5)
        self.dashboard = f"http://127.0.0.1:{self.dash_port}"
        self.token_path.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
        self.token_path.chmod(0o600)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        node_env = {
            **self.env,
            # Ray's default temp dir (/tmp/ray) names "the" local cluster; the job supervisor looks there for
            # the cluster to give the driver. Our own keeps other Rays on this machine out of it.
            "RAY_TMPDIR": str(self.temp / "head"),
            # Ray turns a node IP of 127.0.0.1 into the machine's address unless multi-node is "off"; off, every
            # node and all its ports stay on 127.0.0.1 (checked below).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        self.info_path = root / "cluster.json"
        self.log = root / "cluster.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    LAUNCHER,
                    str(self.info_path),
                    str(self.temp / "worker"),
                    *map(str, (self.dash_port, self.m_head, self.m_worker, a_head, a_worker)),
                ],
                cwd=root,
                env=node_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pgid = self.proc.pid

    def wait_up(self, timeout: float = 420) -> dict:
        deadline = time.time() + timeout
        while not self.info_path.exists():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.time() < deadline, "cluster did not start: " + self.log.read_text()[-3000:]
            time.sleep(0.5)
        self.info = json.loads(self.info_path.read_text())
        # The job agent registers a little after the node: wait until the job API answers.
        while True:
            try:
                self.get("/api/jobs/")
                return self.info
            except (urllib.error.URLError, ConnectionError):
                assert time.time() < deadline, "job API did not come up"
                time.sleep(1)

    def pids(self) -> list[int]:
        """Every live process of the cluster: its process group (GCS, raylets, agents, workers) and every
        descendant of the launcher (job drivers run in sessions of their own)."""
        parent, group = {}, []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # state ppid pgrp ...
            parent[int(proc.name)] = int(fields[1])
            if int(fields[2]) == self.pgid:
                group.append(int(proc.name))
        found, todo = set(group), [self.pgid, *group]
        while todo:
            pid = todo.pop()
            for child, ppid in parent.items():
                if ppid == pid and child not in found:
                    found.add(child)
                    todo.append(child)
        return sorted(found)

    def stop(self) -> list[int]:
        """SIGTERM the launcher (Cluster.shutdown), then SIGKILL what is left of the cluster; returns survivors."""
        tree = set(self.pids())  # before the launcher exits: afterwards a job's driver is nobody's descendant
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        tree |= set(self.pids())
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.poll()  # reap the launcher

        def alive() -> list[int]:
            out = []
            for pid in sorted(tree):
                try:
                    if (Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]) != "Z":
                        out.append(pid)
                except OSError:
                    pass
            return out

        deadline = time.time() + 15
        while alive() and time.time() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)
        return alive()

    def get(self, path: str, *, token: bool = True, port: int | None = None):
        url = f"http://127.0.0.1:{port or self.dash_port}{path}"
        headers = {"Authorization": f"Bearer {self.token_path.read_text()}"} if token else {}
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as r:
            body = r.read().decode()
        return body if port else json.loads(body)

    def ray_cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(BIN / "ray"), *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    def submit(self, job_id: str, *sweep_args: str) -> None:
        # The command of docs/cluster.md, with the dashboard's local port.
        self.ray_cli(
            "job", "submit", "--address", self.dashboard, "--submission-id", job_id, "--no-wait",
            "--working-dir", ".", "--", "roi", "sweep", SMOKE, "--address", "auto", *sweep_args,
        )  # fmt: skip

    def job(self, job_id: str) -> dict:
        return self.get(f"/api/jobs/{job_id}")

    def wait_job(self, job_id: str, timeout: float = 420) -> dict:
        deadline = time.time() + timeout
        while (job := self.job(job_id))["status"] not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.time() < deadline, f"job {job_id} still {job['status']}:\n{self.logs(job_id)[-3000:]}"
            time.sleep(1)
        return job

    def logs(self, job_id: str) -> str:
        return self.get(f"/api/jobs/{job_id}/logs")["logs"]

    def running_trials(self) -> list[dict]:
        """Trial steps (``<trainable>.train`` actor tasks) that run now, with their node, from the state API."""
        tasks = self.get("/api/v0/tasks?limit=1000&filter_keys=state&filter_predicates=%3D&filter_values=RUNNING")
        return [t for t in tasks["data"]["result"]["result"] if t["name"].endswith(".train")]

    def gauges(self, name: str, sweep: str) -> list[float]:
        text = self.get("/metrics", port=self.m_head)
        return [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(f"ray_finetuning_budget_{name}{{") and f'sweep="{sweep}"' in line
        ]


def _listening(pids: list[int]) -> set[str]:
    """Local addresses of the TCP sockets these processes listen on (from /proc: their fds and /proc/net/tcp*)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            addr = fields[1].split(":")[0]
            if len(addr) == 32 and addr.startswith("0000000000000000FFFF0000"):  # ::ffff:a.b.c.d
                addr = addr[24:]
            if len(addr) == 8:
                found.add(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
            else:
                found.add("::1" if addr == "00000000000000000000000001000000" else addr)
    return found


def _metrics(table: pd.DataFrame) -> pd.DataFrame:
    cols = ["trial_id", "seed", "size", "epochs", "epoch", "status", *METRICS]
    return table[cols].sort_values(["seed", "size", "epoch"]).reset_index(drop=True)


def _records(run_dir: Path) -> dict[str, str]:
    """Finished records by file name, with their bytes (to show that nothing finished is lost or redone)."""
    return {p.name: p.read_text() for p in (run_dir / "records").glob("*.json")} if run_dir.exists() else {}


@pytest.mark.timeout(900)
def test_sweep_jobs_on_a_two_node_cluster_survive_a_lost_node_and_a_killed_driver(tmp_path):
    shared = tmp_path / "shared" / "runs"  # the --storage every node sees at the same path
    shared.mkdir(parents=True)
    cluster = LocalCluster(tmp_path)
    ref_log = tmp_path / "reference.log"
    with open(ref_log, "w") as log:
        reference = subprocess.Popen(  # the undisturbed table, computed while the cluster starts
            [sys.executable, "-c", REFERENCE, SMOKE, str(tmp_path / "reference")],
            cwd=ROOT,
            env={**cluster.env, "OMP_NUM_THREADS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    start = time.time()

    def phase(what: str) -> None:  # shown with -s: where the test's time goes
        print(f"[test_cluster] {time.time() - start:6.1f}s {what}", flush=True)

    try:
        info = cluster.wait_up()
        phase("cluster up")
        assert reference.wait(timeout=300) == 0, ref_log.read_text()[-3000:]
        undisturbed = _metrics(pd.read_parquet(tmp_path / "reference" / "smoke" / "results.parquet"))
        phase("reference table")

        # Safe defaults: every port of every node on loopback; the job API refuses a caller without the token.
        assert _listening(cluster.pids()) == {"127.0.0.1"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            cluster.get("/api/jobs/", token=False)
        assert refused.value.code in (401, 403)
        nodes = cluster.get("/api/v0/nodes")["data"]["result"]["result"]
        assert {n["node_id"]: n["resources_total"].get("GPU") for n in nodes} == {
            info["head_node_id"]: 1.0,
            info["worker_node_id"]: 1.0,
        }

        # 1. A sweep as a job; while it runs: status, trial names, gauges. Then the worker node's raylet dies
        #    while a trial trains on it.
        lost = shared / "lost"
        cluster.submit("sweep-lost-node", "--storage", str(lost))
        seen: dict[str, object] = {}
        deadline = time.time() + 420
        while "killed" not in seen:
            job = cluster.job("sweep-lost-node")
            assert job["status"] in ("PENDING", "RUNNING"), cluster.logs("sweep-lost-node")[-3000:]
            assert time.time() < deadline, f"no trial ran on the worker node: {seen}"
            if job["status"] == "RUNNING":
                seen.setdefault("trials_left", []).extend(cluster.gauges("trials_left", "smoke"))
                on_worker = [t for t in cluster.running_trials() if t["node_id"] == info["worker_node_id"]]
                if on_worker:
                    seen["before"] = _records(lost / "smoke")
                    os.kill(info["worker_raylet_pid"], signal.SIGKILL)
                    seen["killed"] = on_worker[0]["actor_id"]
                    phase("worker raylet killed")
            time.sleep(0.5)
        # After the kill, until the job ends: what the job's log shows while it still runs.
        deadline = time.time() + 420
        while (job := cluster.job("sweep-lost-node"))["status"] in ("PENDING", "RUNNING"):
            assert time.time() < deadline, cluster.logs("sweep-lost-node")[-3000:]
            logs = cluster.logs("sweep-lost-node")
            left = cluster.gauges("trials_left", "smoke")
            if cluster.job("sweep-lost-node")["status"] == "RUNNING":  # read while the job still ran
                seen["trials_left"].extend(left)
                seen["cell_lines"] = seen.get("cell_lines") or "[smoke ha-intents size=" in logs
                seen["trial_names"] = seen.get("trial_names") or "smoke-n0-e0-s0 done: trials" in logs
            time.sleep(1)
        logs = cluster.logs("sweep-lost-node")
        assert job["status"] == "SUCCEEDED", logs[-4000:]
        assert seen.get("cell_lines") and seen.get("trial_names"), (seen, logs[-3000:])
        for name in ("smoke-n0-e0-s0", "smoke-n32-e1-s0", "smoke-n64-e1-s0"):  # Tune's trial names
            assert f"[smoke] {name} done: trials" in logs, logs[-3000:]
        # The head's metrics port serves the sweep's gauges (exported every few seconds, so not every value).
        assert seen["trials_left"] and set(seen["trials_left"]) <= {3.0, 2.0, 1.0, 0.0}, seen
        nodes = {n["node_id"]: n["state"] for n in cluster.get("/api/v0/nodes")["data"]["result"]["result"]}
        assert nodes == {info["head_node_id"]: "ALIVE", info["worker_node_id"]: "DEAD"}
        table = pd.read_parquet(lost / "smoke" / "results.parquet")
        pd.testing.assert_frame_equal(_metrics(table), undisturbed)
        after = _records(lost / "smoke")
        assert len(after) == 3 and all(
            after[name] == text for name, text in seen["before"].items()
        )  # finished: kept, not redone

        phase("sweep after node loss checked")
        # 2. The driver on the head killed mid-sweep (SIGKILL), then the same command with --resume.
        resumed = shared / "resumed"
        cluster.submit("sweep-driver-killed", "--storage", str(resumed))
        deadline = time.time() + 420
        while not _records(resumed / "smoke"):
            job = cluster.job("sweep-driver-killed")
            assert job["status"] in ("PENDING", "RUNNING"), cluster.logs("sweep-driver-killed")[-3000:]
            assert time.time() < deadline, "no record before the deadline"
            time.sleep(0.2)
        driver_pid = int(cluster.job("sweep-driver-killed")["driver_info"]["pid"])
        assert driver_pid in cluster.pids()  # the driver runs on the head, under the job supervisor
        os.kill(driver_pid, signal.SIGKILL)
        phase("driver killed")
        killed = cluster.wait_job("sweep-driver-killed")
        assert killed["status"] == "FAILED", killed
        before = _records(resumed / "smoke")  # only the driver writes records: this is what it had finished
        assert 1 <= len(before) < 3 and (resumed / "smoke" / "driver_state.json").exists()
        cluster.submit("sweep-resumed", "--storage", str(resumed), "--resume")
        job = cluster.wait_job("sweep-resumed")
        phase("resumed sweep done")
        logs = cluster.logs("sweep-resumed")
        assert job["status"] == "SUCCEEDED", logs[-4000:]
        assert f"3 cells: {len(before)} already done, {3 - len(before)} to run" in logs
        table = pd.read_parquet(resumed / "smoke" / "results.parquet")
        pd.testing.assert_frame_equal(_metrics(table), undisturbed)
        after = _records(resumed / "smoke")
        assert all(after[name] == text for name, text in before.items())
        assert not (resumed / "smoke" / "driver_state.json").exists()
        assert read_records(resumed / "smoke").corrupt == []
    finally:
        if reference.poll() is None:
            reference.kill()
        left = cluster.stop()
    assert left == [], f"cluster processes survive: {left}"
