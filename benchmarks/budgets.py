"""One size under each training budget rule (sweep.train_to): what the points of a data-size curve measure.

Usage (from the repository root, after `make install`):
    .venv/bin/python benchmarks/budgets.py sweeps/configs/clinc150-data.yaml --sizes 200 --seeds 0 \
        --out benchmarks/results/budgets_clinc150_cpu.json

For each (size, seed) it runs the trial core (``sweeps.trial.run_trial``, no Ray) under ``epochs`` (the file's
``sweep.epochs``), ``steps`` (``--min-steps``, cap ``--epoch-cap``) and ``converged`` (patience ``--patience``,
``--val-fraction`` of the N items carved out as validation, cap ``--epoch-cap``) and ``validated`` (the default:
``converged`` after at least ``--min-steps`` steps, the carve-out within labels and at most ``--val-queries``
items; add it with ``--rules``), and prints the held-out metrics
with the epochs and steps each trained, why it stopped, its training seconds and its validation seconds (the
cost of early stopping's per-epoch scoring, against training). Each finished trial is appended to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sweeps.budget import Budget
from sweeps.prepare import prepare_data
from sweeps.sweepfile import load_sweep_config
from sweeps.trial import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rules", nargs="+", default=["epochs", "steps", "converged"])  # or validated
    parser.add_argument("--min-steps", type=int, default=100)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--epoch-cap", type=int, default=20)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--val-queries", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = load_sweep_config(args.config)
    cfg = sweep.trial
    prepared = prepare_data(cfg)
    (base,) = run_trial(cfg, prepared=prepared, size=0, epochs=0, seed=0)
    rows = [{"rule": "pretrained", "size": 0, "seed": 0, **base.as_row()}]
    print(f"pretrained: {base.metrics}", flush=True)
    for size in args.sizes:
        for seed in args.seeds:
            for rule in args.rules:
                budget = Budget(
                    train_to=rule,
                    epochs=sweep.sweep.epochs,
                    min_steps=args.min_steps,
                    patience=args.patience,
                    epoch_cap=args.epoch_cap,
                    val_fraction=args.val_fraction,
                    val_queries=args.val_queries if rule == "validated" else 0,
                )
                last = run_trial(
                    cfg, prepared=prepared, size=size, epochs=sweep.sweep.epochs, seed=seed, budget=budget
                )[-1]
                rows.append({"rule": rule, **last.as_row()})
                shown = " ".join(f"{k}={v:.4f}" for k, v in last.metrics.items())
                print(
                    f"N={size} seed={seed} {rule}: {shown} epoch={last.epoch}/{last.epochs} steps={last.steps} "
                    f"stop={last.stop_reason} train={last.train_seconds:.1f}s val={last.val_seconds:.1f}s "
                    f"eval={last.eval_seconds:.1f}s",
                    flush=True,
                )
                if args.out:
                    args.out.write_text(json.dumps({"config": str(args.config), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
