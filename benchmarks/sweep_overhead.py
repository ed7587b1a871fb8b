"""Per-trial overhead of a real sweep on the embedded Ray: the share of each trial's wall time spent outside
training and evaluation (actor start, imports, model building, data hand-off).

Usage (from the repository root, after `make install`):
    .venv/bin/python benchmarks/sweep_overhead.py sweeps/configs/clinc150-data.yaml [--sizes 100] [--seeds 0 1 2]

It runs the file's trial settings with the given sizes and seeds (1 epoch) in a fresh run folder, one trial
at a time (so no trial waits for a CPU), and prints, per trial: the wall time seen by the driver (Tune's
trial start to the trial's record arriving), train and eval seconds, and the overhead share; then the sweep's
total wall time, data preparation time and Ray start time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import ray

from sweeps.prepare import prepare_data
from sweeps.results import read_records
from sweeps.sweepfile import load_sweep_config
from sweeps.tuner import run_sweep


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    args = parser.parse_args()

    cfg = load_sweep_config(args.config)
    storage = tempfile.mkdtemp(prefix="overhead-")
    cfg = dataclasses.replace(
        cfg,
        name=f"{cfg.name}-overhead",
        storage=storage,
        sweep=dataclasses.replace(
            cfg.sweep, experiment="data_size", sizes=tuple(args.sizes), seeds=tuple(args.seeds), epochs=1
        ),
        resources=dataclasses.replace(cfg.resources, max_concurrent=1),
    )
    t0 = time.perf_counter()
    ray.init(dashboard_host="127.0.0.1", log_to_driver=False)
    ray_start = time.perf_counter() - t0
    t1 = time.perf_counter()
    prepared = prepare_data(cfg.trial)
    prep = time.perf_counter() - t1

    t2 = time.perf_counter()
    outcome = run_sweep(cfg, prepared=prepared)
    sweep_wall = time.perf_counter() - t2
    ray.shutdown()

    rows = []
    for record in read_records(outcome.run_dir).records:
        cell, last = record["cell"], record["rows"][-1]
        wall = record["finished_at"] - record["started_at"]  # inside the actor: model build + train + eval
        inside = last["train_seconds"] + last["eval_seconds"]
        rows.append(
            {
                "size": cell["size"],
                "seed": cell["seed"],
                "started": record["started_at"],
                "wall_s": wall,
                "train_s": last["train_seconds"],
                "eval_s": last["eval_seconds"],
                "overhead_share": 1 - inside / wall,
            }
        )
    rows.sort(key=lambda r: r["started"])
    print(f"{'size':>6} {'seed':>4} {'wall s':>8} {'train s':>8} {'eval s':>8} {'overhead':>9}")
    for r in rows:
        print(
            f"{r['size']:>6} {r['seed']:>4} {r['wall_s']:>8.2f} {r['train_s']:>8.2f} {r['eval_s']:>8.2f} {r['overhead_share']:>8.1%}"
        )
    work = sum(r["train_s"] + r["eval_s"] for r in rows)
    # One trial at a time, so the sweep's wall time minus all training and evaluation is everything else:
    # actor start and imports, model building, handing the prepared data to the actor, Tune's bookkeeping.
    print(
        f"per trial, inside the actor (model build, setup): mean overhead share {sum(r['overhead_share'] for r in rows) / len(rows):.1%}"
    )
    print(
        f"whole sweep (Tune fit, {len(rows)} trials one at a time): {sweep_wall:.1f}s wall, {work:.1f}s training+evaluation, "
        f"overhead share {1 - work / sweep_wall:.1%}"
    )
    print(f"once per sweep: ray.init {ray_start:.1f}s, data preparation {prep:.1f}s")
    if args.out:
        args.out.write_text(
            json.dumps(
                {"trials": rows, "ray_init_s": ray_start, "prepare_s": prep, "sweep_wall_s": sweep_wall}, indent=1
            )
        )


if __name__ == "__main__":
    main()
