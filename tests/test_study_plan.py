"""The study planner (benchmarks/study_plan.py): its scheduler on designed trials with known makespans, and
the real plan over the 14 Jina-study sweep files runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import study_plan  # noqa: E402  (benchmarks/study_plan.py)
from study_plan import Trial, host_memory_gb, schedule  # noqa: E402

ZERO = {
    "gpus": 2,
    "ray_init_s": 0.0,
    "actor_first_trial_overhead_s": 0.0,
    "packing_4x_grid_speedup": 1.0,
    "gpu_peak_gb.a": 10.0,
    "worker_host_rss_gb": 0.0,
}


def _sweep(name: str, seconds: list[float], *, prep: float = 0.0, gb: float = 0.0):
    trials = [
        Trial(sweep=name, label=f"t{i}", arch="a", train_s=s, eval_s=0.0, overhead_s=0.0) for i, s in enumerate(seconds)
    ]
    return trials, {"sweep": name, "prep_s": prep, "decoded_gb": gb}


def test_concurrent_list_scheduling_known_makespan():
    # 2 GPUs, grid order 4, 3, 3, 2: GPU0 runs 4 then 2 (ends 6), GPU1 3 then 3 (ends 6).
    plan = schedule([_sweep("a", [4, 3, 3, 2])], ZERO, mode="concurrent", per_gpu=1, largest_first=False)
    assert plan["wall_s"] == 6.0 and plan["gpu_hours_held"] * 3600 == pytest.approx(12.0)
    # grid order 1, 1, 4 -> 5; largest first 4 | 1, 1 -> 4
    small_first = schedule([_sweep("a", [1, 1, 4])], ZERO, mode="concurrent", per_gpu=1, largest_first=False)
    largest_first = schedule([_sweep("a", [1, 1, 4])], ZERO, mode="concurrent", per_gpu=1, largest_first=True)
    assert small_first["wall_s"] == 5.0 and largest_first["wall_s"] == 4.0


def test_sequential_files_pay_ray_start_and_preparation_on_the_critical_path():
    v = {**ZERO, "ray_init_s": 1.0, "actor_first_trial_overhead_s": 0.5}
    sweeps = [_sweep("a", [4], prep=2.0), _sweep("b", [1, 1], prep=0.0)]
    plan = schedule(sweeps, v, mode="sequential", per_gpu=1, largest_first=False)
    # a: ready at 1 + 2, actor start 0.5, runs 4 -> 7.5; b: ready at 7.5 + 1, two GPUs, new actors -> 8.5 + 1.5 = 10
    assert plan["wall_s"] == pytest.approx(10.0) and plan["startup_on_critical_path_s"] == pytest.approx(4.0)
    together = schedule(sweeps, v, mode="concurrent", per_gpu=1, largest_first=False)
    # one Ray start; b ready at 1 on both GPUs (-> 2.5), then a, ready at 3, on a GPU b used (new actor: -> 7.5)
    assert together["wall_s"] == pytest.approx(7.5)


def test_packing_slows_each_trial_by_share_over_measured_speedup():
    v = {**ZERO, "gpus": 1, "packing_4x_grid_speedup": 2.0}
    plan = schedule([_sweep("a", [1, 1, 1, 1])], v, mode="concurrent", per_gpu=4, largest_first=False)
    assert plan["wall_s"] == pytest.approx(2.0)  # four at once, each 4 / 2 = 2x slower: the grid 2x faster
    assert plan["gpu_memory_per_gpu_gb"] == 40.0


def test_host_memory_counts_one_shared_copy_or_one_per_running_trial():
    sweeps = [_sweep("a", [2, 2], gb=10.0)]
    plan = schedule(sweeps, ZERO, mode="concurrent", per_gpu=1, largest_first=False)
    assert host_memory_gb(sweeps, plan["timeline"], ZERO, shared=True) == 20.0  # driver + object store
    assert host_memory_gb(sweeps, plan["timeline"], ZERO, shared=False) == 40.0  # + a private copy per trial


@pytest.mark.slow  # the benchmark script over 14 sweep files
def test_the_plan_over_the_jina_study_files_runs(tmp_path):
    out = tmp_path / "plan.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "study_plan.py"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    plan = json.loads(out.read_text())
    assert len(plan["files"]) == 14 and {f["file"] for f in plan["files"]} == {
        p.name for p in (REPO / "sweeps" / "configs" / "jina").glob("*.yaml")
    }
    # every cell of every file is a trial: e.g. celeba-data has 9 sizes x 3 seeds + the baseline
    assert next(f for f in plan["files"] if f["file"] == "celeba-data.yaml")["trials"] == 28
    assert study_plan.MEASURED["train_pairs_per_s.resnet50"] == 2106.0
