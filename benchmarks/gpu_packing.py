"""Packing: one grid of trials run one at a time, then by several processes sharing one GPU (speed, target 5).

Usage (GPU machine, see benchmarks/gpu_session.sh; or the CPU with the smoke config to check the code path):
    python benchmarks/gpu_packing.py sweeps/configs/clinc150-data.yaml --data .gpu-bundle/clinc150/data_full.json \\
        --model .gpu-bundle/minilm-fp16 --sizes 100 200 500 1000 2000 --seeds 0 1 --workers 1 4

What Ray does with ``resources.gpus: 0.25``, without Ray (the GPU machine has none): N worker processes see
the same GPU, each caps its share of the GPU's memory at 1/N (``Runtime.limit_memory``, as ``fit_cell`` does)
and takes the next cell of the grid from a shared queue when it is free, as Tune's reused actors do. Both
settings run the same cells with the real trial core (``run_trial``) on data prepared once by the parent (as
the sweep driver ships it). Reported: the grid's wall time from the moment every worker has started (process
start, imports and CUDA init excluded, as a reused actor pays them once per sweep) and including them, and
per cell its training and evaluation seconds and peak GPU memory against the 1/N cap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import queue
import time
from pathlib import Path


def _worker(rank: int, fraction: float, threads: int, cfg, prepared, cells, barrier, results) -> None:
    import torch

    from sweeps.device import resolve_runtime
    from sweeps.trial import run_trial

    torch.set_num_threads(threads)  # the host's cores split between the workers, as Ray's cpus per trial do
    runtime = resolve_runtime(cfg.device, cfg.train.precision, task=cfg.task)
    capped = runtime.limit_memory(fraction)
    torch.zeros(1, device=runtime.device)  # CUDA context up before the clock starts
    barrier.wait()
    while True:
        try:
            size, seed = cells.get_nowait()
        except queue.Empty:
            break
        start = time.perf_counter()
        try:
            (last,) = run_trial(cfg, prepared=prepared, size=size, epochs=1, seed=seed)
            row = {"train_s": last.train_seconds, "eval_s": last.eval_seconds, "peak_mb": last.peak_memory_mb}
            row["metrics"] = last.metrics
            row["status"] = "ok"
        except torch.OutOfMemoryError as exc:
            row = {"status": f"out of memory under a {fraction:.0%} cap: {str(exc).splitlines()[0]}"}
        row.update(size=size, seed=seed, worker=rank, capped=capped, wall_s=time.perf_counter() - start)
        results.put(row)


def run_grid(cfg, prepared, *, cells: list[tuple[int, int]], workers: int) -> dict:
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    todo, results = ctx.Queue(), ctx.Queue()
    for cell in cells:
        todo.put(cell)
    barrier = ctx.Barrier(workers + 1)
    threads = max(1, (os.cpu_count() or 1) // workers)
    t0 = time.perf_counter()
    procs = [
        ctx.Process(target=_worker, args=(rank, 1.0 / workers, threads, cfg, prepared, todo, barrier, results))
        for rank in range(workers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    t1 = time.perf_counter()
    rows = [results.get() for _ in cells]
    t2 = time.perf_counter()
    for p in procs:
        p.join()
    return {
        "workers": workers,
        "grid_wall_s": t2 - t1,
        "with_start_s": t2 - t0,
        "cells": sorted(rows, key=lambda r: (r["size"], r["seed"])),
    }


def main() -> None:
    import torch

    from sweeps.prepare import prepare_data
    from sweeps.sweepfile import load_sweep_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--data", default=None, help="override data.path")
    parser.add_argument("--model", default=None, help="override model.name")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 1000, 2000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    cfg = load_sweep_config(args.config).trial
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(Path(args.data).resolve())))
    if args.model:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name=args.model))
    prepared = prepare_data(cfg)
    cells = [(size, seed) for seed in args.seeds for size in args.sizes]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"{len(cells)} cells ({args.sizes} x seeds {args.seeds}, 1 epoch), {cfg.model.name} on {device}", flush=True)
    runs = []
    for workers in args.workers:
        run = run_grid(cfg, prepared, cells=cells, workers=workers)
        runs.append(run)
        failed = [c for c in run["cells"] if c["status"] != "ok"]
        peak = max((c["peak_mb"] for c in run["cells"] if c["status"] == "ok"), default=0.0)
        print(
            f"{workers} worker(s) at {1 / workers:.2f} GPU each: grid {run['grid_wall_s']:.1f}s wall "
            f"({run['with_start_s']:.1f}s with process start), peak {peak:.0f} MB per trial, {len(failed)} failed",
            flush=True,
        )
        for c in failed:
            print(f"  size {c['size']} seed {c['seed']}: {c['status']}")
    base = runs[0]
    for run in runs[1:]:
        print(
            f"{run['workers']} workers vs {base['workers']}: {base['grid_wall_s'] / run['grid_wall_s']:.2f}x faster "
            f"({base['with_start_s'] / run['with_start_s']:.2f}x with process start)"
        )
    print(f"{'size':>6} {'seed':>4} " + " ".join(f"{'train s':>8} {'eval s':>7} {'peak MB':>8}" for _ in runs))
    for i, (size, seed) in enumerate(sorted(cells)):
        cols = []
        for run in runs:
            c = run["cells"][i]
            ok = c["status"] == "ok"
            cols.append(f"{c['train_s']:>8.2f} {c['eval_s']:>7.2f} {c['peak_mb']:>8.0f}" if ok else f"{'failed':>25}")
        print(f"{size:>6} {seed:>4} " + " ".join(cols))
    if args.out:
        args.out.write_text(json.dumps({"device": device, "model": cfg.model.name, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
