"""The epoch experiment as one run evaluated every epoch, against independent runs of 1..E epochs (speed, target 4).

Usage (from the repository root, after `make install`):
    .venv/bin/python benchmarks/epoch_runs.py sweeps/configs/clinc150-epochs.yaml --size 500 --epochs 10 --seed 0

Runs the trial core (``sweeps.trial.run_trial``, no Ray) of the file's trial settings: first one E-epoch run
evaluated after every epoch (``sweep.epoch_runs: single``), then E independent runs of 1, 2, ..., E epochs,
each evaluated once at its end (``epoch_runs: independent``). Prints, per epoch, the metrics of both and
their largest difference, and the training seconds of both ways (device-synchronised training time only;
evaluation is excluded from both sides). The two ways must agree on the metrics: with a constant learning
rate, seeded nested subsets and per-epoch shuffles that depend only on (seed, epoch), the model after
epoch e of the long run is the model an e-epoch run ends with.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sweeps.prepare import prepare_data
from sweeps.sweepfile import load_sweep_config
from sweeps.trial import run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--size", type=int, default=None, help="training items (default: the file's sweep.size)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_sweep_config(args.config)
    size = args.size or cfg.sweep.size
    prepared = prepare_data(cfg.trial)
    t0 = time.perf_counter()
    single = run_trial(cfg.trial, prepared=prepared, size=size, epochs=args.epochs, seed=args.seed)
    single_wall = time.perf_counter() - t0
    independent = []
    t1 = time.perf_counter()
    for e in range(1, args.epochs + 1):
        (last,) = run_trial(cfg.trial, prepared=prepared, size=size, epochs=e, seed=args.seed, eval_epochs={e})
        independent.append(last)
        print(f"independent {e}-epoch run: train {last.train_seconds:.1f}s", flush=True)
    independent_wall = time.perf_counter() - t1

    keys = list(single[0].metrics)
    print(f"\n{cfg.name}: {size} items, seed {args.seed}, device {single[0].device}")
    print(
        f"{'epoch':>5} " + " ".join(f"{'single ' + k:>16} {'indep. ' + k:>16}" for k in keys) + f" {'max |diff|':>11}"
    )
    rows = []
    for s, i in zip(single, independent, strict=True):
        diff = max(abs(s.metrics[k] - i.metrics[k]) for k in keys)
        rows.append({"epoch": s.epoch, "single": s.metrics, "independent": i.metrics, "max_abs_diff": diff})
        print(
            f"{s.epoch:>5} "
            + " ".join(f"{s.metrics[k]:>16.4f} {i.metrics[k]:>16.4f}" for k in keys)
            + f" {diff:>11.2e}"
        )
    single_train = single[-1].train_seconds
    independent_train = sum(r.train_seconds for r in independent)
    print(
        f"training seconds: single {args.epochs}-epoch run {single_train:.1f}s; independent 1..{args.epochs}-epoch runs "
        f"{independent_train:.1f}s; ratio {single_train / independent_train:.3f} (target <= 0.3)"
    )
    print(f"wall (training + evaluation): single {single_wall:.1f}s, independent {independent_wall:.1f}s")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "config": str(args.config),
                    "size": size,
                    "seed": args.seed,
                    "device": single[0].device,
                    "epochs": rows,
                    "single_train_s": single_train,
                    "independent_train_s": [r.train_seconds for r in independent],
                    "ratio": single_train / independent_train,
                    "single_wall_s": single_wall,
                    "independent_wall_s": independent_wall,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
