"""The adaptive data-size grid (``sweep.sizes: auto``): its Tune searcher on a designed curve whose answer is known.

The designed trainable (``tests/designed.py``) gives mrr@20 = 0.5 + 0.3 (1 - exp(-N / 200)) + 0.01 after one
epoch over a baseline of 0.5, so relative improvement G(N) = 0.6 (1 - exp(-N/200)) + 0.02 (map@20 and recall@20
scale it by a constant: the same elasticity). Its elasticity N G'/G falls to 0.3 at N* ~ 401 items. Read between
sizes, the slopes are 0.64 (100-200), 0.43 (200-400), 0.18 (400-800): the rule doubles 100, 200, 400, 800, then
finds the crossing at ~405 between 400 and 800 and tries the geometric means 566 and 476: 476 / 400 = 1.19.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

import designed  # noqa: E402  (tests/designed.py)
from designed import (  # noqa: E402
    DesignedPrepared,
    designed_adaptive_config,
    designed_cell,
    designed_metrics,
    designed_train_seconds,
    executions,
)
from roi_fixtures import brentq  # noqa: E402

from roi.analysis import analyse  # noqa: E402
from roi.load import load_results  # noqa: E402
from sweeps.config import Cell  # noqa: E402
from sweeps.results import TrialIdentity, make_record, read_records  # noqa: E402
from sweeps.search import PLAN_FILE, Adaptive, AdaptiveSizeSearcher  # noqa: E402
from sweeps.tuner import run_sweep  # noqa: E402

pytestmark = pytest.mark.ray
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ray.cloudpickle.register_pickle_by_value(designed)

EXPECTED_ORDER = [100, 200, 400, 800, 566, 476]


def improvement(n: float) -> float:
    return (designed_metrics(int(n), 1)["mrr@20"] - 0.5) / 0.5 if n else 0.0


def n_star() -> float:
    """Where the designed curve's elasticity N G'(N) / G(N) falls to 0.3 (G = 0.6 (1 - exp(-N/200)) + 0.02): ~401."""
    return brentq(lambda n: n * 0.003 * math.exp(-n / 200) / improvement(n) - 0.3, 100, 5000)


# --------------------------------------------------------------------------- the searcher alone (no trials)


def _record(cell: Cell) -> dict:
    cfg = designed_adaptive_config("/tmp/unused")
    epochs = [0] if cell.size == 0 else [1]
    rows = [
        {"epoch": e, "train_seconds": designed_train_seconds(cell.size, e), **designed_metrics(cell.size, e)}
        for e in epochs
    ]
    identity = TrialIdentity("adaptive", "data_size", cfg.trial, "designed", "designed-eval", "designed-data")
    return make_record(identity, cell, rows=rows)


def _drive(searcher: AdaptiveSizeSearcher, *, concurrency: int, stop_after: int | None = None) -> list[Cell]:
    """Tune's loop in miniature: keep up to ``concurrency`` trials in flight, finish the oldest first."""
    flight: list[tuple[str, Cell]] = []
    ran: list[Cell] = []
    n = 0
    while True:
        while len(flight) < concurrency:
            got = searcher.suggest(f"t{n}")
            if got is None or got == searcher.FINISHED:
                break
            flight.append((f"t{n}", Cell(**got["cell"])))
            n += 1
        if not flight:
            assert searcher.suggest(f"t{n}") == searcher.FINISHED
            return ran
        tid, cell = flight.pop(0)
        searcher.on_trial_complete(tid, {"record_json": json.dumps(_record(cell))})
        ran.append(cell)
        if stop_after is not None and len(ran) >= stop_after:
            return ran


def _searcher(records=(), **kw) -> AdaptiveSizeSearcher:
    adaptive = Adaptive(
        min_size=100, max_size=10_000, max_trials=kw.pop("max_trials", 40), max_gpu_hours=None, ratio=1.25, drop=0.7
    )
    return AdaptiveSizeSearcher(records=list(records), seeds=(0, 1), epochs=1, adaptive=adaptive, k=20, **kw)


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_searcher_proposes_the_same_sizes_whatever_the_concurrency(concurrency):
    s = _searcher()
    ran = _drive(s, concurrency=concurrency)
    sizes = list(dict.fromkeys(c.size for c in ran if c.size))
    assert sizes == EXPECTED_ORDER
    assert ran[0] == Cell(0, 0, 0)  # the baseline first: every decision needs it
    assert s.final.found and s.final.bracket == (400, 476) and 400 < n_star() <= 476
    assert s.sized_trials() == 12


def test_a_searcher_started_from_part_of_the_records_continues_to_the_same_sizes():
    first = _searcher()
    done = _drive(first, concurrency=3, stop_after=6)  # killed with one size half done
    resumed = _searcher(records=[_record(c) for c in done])
    rest = _drive(resumed, concurrency=3)
    assert not set(rest) & set(done)  # nothing that finished runs again
    assert sorted({c.size for c in done + rest if c.size}) == sorted(EXPECTED_ORDER)
    assert len(done + rest) == 13


def test_sizes_train_under_the_sweeps_budget_rule_and_other_rules_records_are_not_this_curve():
    rule = {"train_to": "steps", "budget": "epoch_cap=20,min_steps=100"}
    # A finished one-epoch search of the same data: none of its sizes counts for the step-minimum curve.
    old = [_record(c) for c in _drive(_searcher(), concurrency=2)]
    s = _searcher(records=old, **rule)
    ran = _drive(s, concurrency=2)
    sized = [c for c in ran if c.size]
    assert all((c.train_to, c.budget) == (rule["train_to"], rule["budget"]) for c in sized)
    assert list(dict.fromkeys(c.size for c in sized)) == EXPECTED_ORDER  # the whole search again, under its rule
    assert Cell(0, 0, 0) not in ran  # the baseline has no rule: the earlier search's one is reused
    assert all(c.label.endswith("-steps") for c in sized)


def test_the_trial_budget_stops_the_search_and_says_so():
    s = _searcher(max_trials=6)
    ran = _drive(s, concurrency=2)
    assert sorted({c.size for c in ran if c.size}) == [100, 200, 400]
    assert not s.final.found and "max_trials 6" in s.final.reason


# --------------------------------------------------------------------------- in Ray Tune, with the designed trainable


def _values(table: pd.DataFrame) -> pd.DataFrame:
    return table[["seed", "size", "epoch", "mrr@20"]].sort_values(["seed", "size", "epoch"]).reset_index(drop=True)


def _expected_values() -> pd.DataFrame:
    rows = [{"seed": 0, "size": 0, "epoch": 0, "mrr@20": designed_metrics(0, 0)["mrr@20"]}]
    rows += [
        {"seed": s, "size": n, "epoch": 1, "mrr@20": designed_metrics(n, 1)["mrr@20"]}
        for s in (0, 1)
        for n in EXPECTED_ORDER
    ]
    return pd.DataFrame(rows).sort_values(["seed", "size", "epoch"]).reset_index(drop=True)


@pytest.mark.slow  # 13 trials in Tune; the searcher itself is tested above without Ray
@pytest.mark.timeout(300)
def test_adaptive_sweep_in_tune_finds_and_brackets_the_designed_drop_point(ray_local, tmp_path):
    cfg = designed_adaptive_config(tmp_path, max_concurrent=2)
    out = run_sweep(cfg, prepared=DesignedPrepared(), trainable=designed_cell)
    assert (out.failed, out.skipped, out.ran) == (0, 0, 13)
    pd.testing.assert_frame_equal(_values(out.table), _expected_values(), check_dtype=False)
    assert all(n == 1 for n in executions(tmp_path).values())  # every cell once
    plan = json.loads((Path(out.run_dir) / PLAN_FILE).read_text())
    assert plan["found"] and plan["bracket"] == [400, 476] and plan["trials"] == 12
    from sweeps.status import run_status

    status = run_status(out.run_dir)  # `roi status` counts the cells the searcher proposed
    assert (len(status.done), status.total, status.left) == (13, 13, [])
    # The report agrees: its answer lies in the searcher's bracket.
    summary = analyse(load_results(out.run_dir), metrics=["mrr@20"], n_boot=100).summary
    row = summary[summary["cost_axis"] == "size"].iloc[0]
    assert row["answer_state"] == "found" and 400 <= row["answer_cost"] <= 476
    assert row["answer_cost"] == pytest.approx(n_star(), rel=0.02)


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import ray
import designed
ray.cloudpickle.register_pickle_by_value(designed)
from sweeps.tuner import run_sweep

storage, temp_dir = sys.argv[1], sys.argv[2]
ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
cfg = designed.designed_adaptive_config(storage, max_concurrent=2)
out = run_sweep(cfg, resume=True, prepared=designed.DesignedPrepared(), trainable=designed.designed_cell)
print("finished", out.ran, out.failed, flush=True)
"""


def _kill_ray_of(temp_dir: str) -> None:
    """SIGKILL, by pid, the processes of the killed driver's own Ray (their command lines name its temp dir)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if temp_dir in (proc / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


@pytest.mark.slow  # a driver killed and resumed
@pytest.mark.timeout(300)
def test_a_killed_adaptive_sweep_resumes_to_the_same_sizes_and_table(ray_local, tmp_path):
    storage = tmp_path / "killed"
    storage.mkdir()
    (storage / "delay").write_text("0.5")  # the kill lands while trials run
    run_dir = storage / "adaptive"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(TESTS)))
    temp_dir = tempfile.mkdtemp(prefix="rays", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = tmp_path / "driver.log"
    try:
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(storage), temp_dir],
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + 120
        while time.time() < deadline:
            ok = [r for r in read_records(run_dir).records if r["status"] == "ok"] if run_dir.exists() else []
            if len(ok) >= 6:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        before = {(r["cell"]["size"], r["cell"]["seed"]) for r in read_records(run_dir).records}
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        time.sleep(1)
        _kill_ray_of(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert 6 <= len(before) < 13
    (storage / "delay").unlink()
    cfg = designed_adaptive_config(storage, max_concurrent=2)
    done = len(read_records(run_dir).records)  # also a record written between the snapshot and the kill
    out = run_sweep(cfg, resume=True, prepared=DesignedPrepared(), trainable=designed_cell)
    pd.testing.assert_frame_equal(_values(out.table), _expected_values(), check_dtype=False)
    assert (out.skipped, out.ran) == (done, 13 - done)  # the resume counts what was already done
    counts = executions(storage)
    again = [label for label, n in counts.items() if n > 1]
    finished_before = {f"n{s}-e{1 if s else 0}-s{seed}" for s, seed in before}
    assert not set(again) & finished_before  # nothing that had a record before the kill ran again
    plan = json.loads((run_dir / PLAN_FILE).read_text())
    assert plan["found"] and plan["bracket"] == [400, 476]


def test_auto_sizes_in_a_sweep_file_are_validated(tmp_path):
    from sweeps.errors import ConfigError
    from sweeps.sweepfile import load_sweep_config

    text = (ROOT / "sweeps" / "configs" / "smoke.yaml").read_text()
    good = tmp_path / "auto.yaml"
    good.write_text(
        text.replace("sizes: [32, 64]", "sizes: auto\n  min_size: 16\n  max_trials: 8")
        + "cost:\n  label_cost: 0.08\n  gpu_hour: 2.5\n  currency: EUR\n"
    )
    cfg = load_sweep_config(good)
    assert cfg.sweep.sizes == "auto" and cfg.sweep.min_size == 16 and cfg.sweep.max_trials == 8
    assert (cfg.cost.label_cost, cfg.cost.gpu_hour, cfg.cost.currency) == (0.08, 2.5, "EUR")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("sizes: [32, 64]", "sizes: auto\n  min_size: 0"))
    with pytest.raises(ConfigError, match="min_size"):
        load_sweep_config(bad)
    assert dataclasses.replace(cfg.sweep, sizes=(8,)).sizes == (8,)
