"""The benchmark scripts still run (tiny settings, CPU): the GPU call has 15 minutes, and a script broken by
a refactor would waste it. The numbers are not checked here, only the code paths and the known answers that
do not depend on speed (an epoch of the long run equals the independent run; every lever keeps the metrics)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each script runs in its own process, with real models: minutes (make test-all)

REPO = Path(__file__).resolve().parents[1]
SMOKE = "sweeps/configs/smoke.yaml"


def _run(*args: str, timeout: int = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def test_epoch_runs_single_run_equals_independent_runs():
    out = _run("benchmarks/epoch_runs.py", SMOKE, "--size", "32", "--epochs", "3", "--threads", "1")
    diffs = re.findall(r"^\s+\d+ .* (\S+)$", out, flags=re.M)
    assert len(diffs) == 3 and all(float(d) == 0.0 for d in diffs), out
    assert "ratio" in out


def test_levers_and_packing_run_and_keep_the_metrics(tmp_path):
    out = _run(
        "benchmarks/levers.py",
        SMOKE,
        "--size",
        "32",
        "--epochs",
        "2",
        "--seeds",
        "0",
        "1",
        "--variants",
        "fp32",
        "bf16",
        "--threads",
        "1",
        "--eval-repeats",
        "1",
        "--out",
        str(tmp_path / "levers.json"),
    )
    assert "of encode-only throughput" in out
    rows = [line for line in out.splitlines() if line.startswith(("fp32 ", "bf16 "))]
    assert len(rows) == 2 and all(line.endswith("agrees") for line in rows), out
    out = _run("benchmarks/gpu_packing.py", SMOKE, "--sizes", "16", "--seeds", "0", "1", "--workers", "1", "2")
    assert "1 worker(s) at 1.00 GPU each" in out and "2 worker(s) at 0.50 GPU each" in out
    assert out.count(", 0 failed") == 2, out


def test_gpu_throughput_tiny_code_path_with_only_the_gpu_machines_packages(tmp_path):
    # Run as there: ray, faiss, plotly and the weight packages missing (the tiny twins then use the fallback
    # tokenizer, and search falls back to torch).
    out = _run(
        "tests/run_as_on_gpu_machine.py",
        "benchmarks/gpu_throughput.py",
        "--tiny",
        "--steps",
        "1",
        "--archs",
        "bert",
        "clip",
        "--compile",
        "off",
        "--out",
        str(tmp_path / "t.json"),
    )
    assert "bert-base pairs B128 L32 [eager]" in out and "CLIP ViT-B/32 pairs B256 [eager]" in out
    assert "of encode-only (target >= 80%)" in out
    # The pinned-copy baseline row of the GPU session (gpu_session.sh: pageable-images)
    out = _run(
        "benchmarks/gpu_throughput.py", "--tiny", "--steps", "1", "--archs", "resnet", "--compile", "off", "--pageable"
    )
    assert "resnet50 pairs B128 224px [eager, pageable]" in out


def test_small_n_folds_scores_every_item_once_and_chooses_on_the_folds_mean(tmp_path):
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("small_n_folds", REPO / "benchmarks" / "small_n_folds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # A designed mean curve: best at 5, but an early stop with patience 2 ends at 4 with epoch 2.
    mean = pd.Series([0.5, 0.6, 0.55, 0.54, 0.7], index=range(1, 6))
    assert module.choices(mean, patience=2) == {"argmax": (5, 5), "patience 2": (2, 4)}
    out = _run(
        "benchmarks/small_n_folds.py", SMOKE, "--size", "64", "--folds", "4", "--epoch-cap", "2", "--threads", "1",
        "--out", str(tmp_path / "folds.csv"),
    )  # fmt: skip
    curves = pd.read_csv(tmp_path / "folds.csv")
    assert sorted(curves["fold"].unique()) == [0, 1, 2, 3] and sorted(curves["epoch"].unique()) == [1, 2]
    assert curves.groupby("fold")["queries"].first().sum() == 64  # 32 labels of 2: every item validates once
    assert "| argmax |" in out and "| default (step minimum, all N) |" in out


def test_refit_curve_on_the_published_banking77_tables():
    # pandas + roi only: the published tables give known numbers (benchmarks/RESULTS.md, "The default since 2026-12-07")
    out = _run(
        "benchmarks/refit_curve.py", "--refit", "docs/runs/banking77-data-refit.results.csv",
        "--rule", "docs/runs/banking77-data-validated.results.csv", "--oracle", "docs/runs/banking77-oracle.results.csv",
        "--refit-500", "benchmarks/results/banking77-data-refit.results.csv",
        "--steps", "docs/runs/banking77-data-steps.results.csv",
    )  # fmt: skip
    assert "0.8740 / 0.4116 (oracle at epoch 13)" in out and "0.8652 / 0.3841 (refit run)" in out
    assert "| all | 64,000 / 16,500 (3.88x) |" in out
    assert "map@20: default, two seeds: not reached by 2,000 (last e 0.48); step minimum, two seeds: ~580" in out
