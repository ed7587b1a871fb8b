"""Can k folds of a small size's own items choose its training length? (issue 22: the small end of the curve)

Usage (from the repository root, after `make install`):
    .venv/bin/python benchmarks/small_n_folds.py sweeps/configs/banking77-data-refit.yaml --size 100 --seed 0 \
        --folds 5 --oracle docs/runs/banking77-oracle.results.csv --out benchmarks/results/small-n-folds-banking77.csv

Where the step minimum reaches the epoch cap the default rule carves nothing out and trains every item to the cap
(100 items at batch 32: 20 epochs, 80 steps), because one 20% carve-out is 20 queries, too few to rank epochs. On
BANKING77 that over-trains 100 items (the oracle peaks at epoch 6; benchmarks/RESULTS.md). Here each of ``--folds``
folds (``sweeps.validation.fold_validation``: every item of a label scored once, a sibling always in training)
trains from the pretrained weights on the other folds' items as a trial trains (the seed's batches, the configured
optimizer and schedule, no carve-out of its own) and is scored on its fold after every epoch up to the cap; the
mean over the folds chooses the epoch (``argmax``; and ``patience``: the choice an early stop on the mean curve
would make, and the epochs it would pay). With refit (the default) the reported model is all N items trained for
the chosen epochs: the oracle's row at that epoch (a fixed-epoch run of all N items with the held-out set scored
after every epoch, same seed), so the held-out score of each choice is read from ``--oracle``; the script itself
never evaluates the held-out set. As with one carve-out, a label whose item validates in a fold trains that fold
without its in-batch positive at group size 2 (5 folds: 2 of every 5 labels per fold); 2 folds would leave no pair.

Prints Markdown: per epoch, the folds' mean validation score and range beside the oracle's held-out scores; then
the default's epoch, each choice and the oracle's best, with their held-out scores and training cost in
item-passes. Writes the per-fold, per-epoch scores to ``--out``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import torch

from sweeps.budget import Budget
from sweeps.compiled import obtain_model, reset_weights
from sweeps.data.order import group_batches, nested_order, take
from sweeps.device import resolve_runtime, seed_everything
from sweeps.prepare import prepare_data
from sweeps.sweepfile import load_sweep_config
from sweeps.train import build_optimizer, build_scheduler, build_train_set, train_one_epoch
from sweeps.validation import fold_validation, score_validation


def fold_curves(config: Path, *, size: int, seed: int, folds: int, epoch_cap: int) -> tuple[pd.DataFrame, int]:
    """Per fold and epoch: the fold's validation metrics. Also the default's epochs for ``size`` (step minimum)."""
    sweep = load_sweep_config(config)
    cfg = sweep.trial
    prepared = prepare_data(cfg)
    runtime = resolve_runtime(cfg.device, cfg.train.precision, task=cfg.task)
    pool = prepared.pool.data
    order = nested_order(pool, seed=seed, group_size=cfg.train.group_size)
    positions = order[:size]
    take(pool, order, size)  # a DataError when the pool is too small
    seed_everything(seed)
    model = obtain_model(cfg, runtime=runtime, prepared=prepared).model
    pretrained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows = []
    for fold in range(folds):
        reset_weights(model, pretrained)
        seed_everything(seed)  # each fold starts as a trial starts
        val = fold_validation(pool, positions, folds=folds, fold=fold, seed=seed)
        train_set = build_train_set(pool, val.train_positions)
        n = len(train_set.positions)
        batch_size = min(cfg.train.batch_size, n)
        per_epoch = math.ceil(n / batch_size)
        optimizer = build_optimizer(model, cfg.train, runtime=runtime)
        scheduler = build_scheduler(optimizer, cfg.train, total_steps=per_epoch * epoch_cap)
        scaler = runtime.grad_scaler()
        steps = items = 0
        for epoch in range(1, epoch_cap + 1):
            batches = group_batches(
                train_set.labels_for_batching,
                n,
                batch_size=batch_size,
                group_size=cfg.train.group_size,
                seed=seed,
                epoch=epoch,
            )
            stats = train_one_epoch(
                model, batches, train_set=train_set, query_features=prepared.pool.query_features,
                doc_features=prepared.pool.doc_features, cfg=cfg.train, optimizer=optimizer, scheduler=scheduler,
                runtime=runtime, scaler=scaler,
            )  # fmt: skip
            steps, items = steps + stats.steps, items + stats.items
            metrics, _ = score_validation(
                model, pool, val, query_features=prepared.pool.query_features,
                doc_features=prepared.pool.doc_features, k=cfg.eval.k, batch_size=cfg.eval.batch_size,
                runtime=runtime,
            )  # fmt: skip
            rows.append(
                {
                    "fold": fold,
                    "epoch": epoch,
                    "steps": steps,
                    "items_seen": items,
                    "queries": len(val.val_positions),
                    **metrics,
                }
            )
            print(f"fold {fold} epoch {epoch}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
    full_per_epoch = math.ceil(size / min(cfg.train.batch_size, size))
    default = Budget(train_to="steps", min_steps=sweep.sweep.min_steps, epoch_cap=epoch_cap).planned_epochs(
        full_per_epoch
    )
    return pd.DataFrame(rows), default


def choices(mean: pd.Series, *, patience: int) -> dict[str, tuple[int, int]]:
    """{name: (chosen epoch, epochs trained)}: the argmax of the folds' mean curve (ties: the earliest), and the
    best epoch an early stop after ``patience`` epochs without improvement reaches (and where it stops)."""
    best = int(mean.idxmax())
    top, since, stopped = -math.inf, 0, int(mean.index.max())
    chosen = int(mean.index.min())
    for epoch, score in mean.items():
        if score > top:
            top, chosen, since = score, int(epoch), 0
        else:
            since += 1
            if since >= patience:
                stopped = int(epoch)
                break
    return {"argmax": (best, int(mean.index.max())), f"patience {patience}": (chosen, stopped)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epoch-cap", type=int, default=20)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--monitor", default="map@20")
    parser.add_argument("--oracle", type=Path, default=None, help="a fixed-epoch results table of the same items")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    curves, default = fold_curves(
        args.config, size=args.size, seed=args.seed, folds=args.folds, epoch_cap=args.epoch_cap
    )
    if args.out:
        curves.to_csv(args.out, index=False)
    by_epoch = curves.groupby("epoch")[args.monitor]
    mean = by_epoch.mean()
    held = None
    if args.oracle:
        o = pd.read_csv(args.oracle)
        o = o[(o["status"] == "ok") & (o["size"] == args.size) & (o["seed"] == args.seed)]
        held = o.set_index("epoch")[["mrr@20", "map@20", "recall@20"]]
    print(
        f"\n{args.size} items, seed {args.seed}, {args.folds} folds ({curves.groupby('fold')['queries'].first().sum()} "
        f"validation queries in all), monitor {args.monitor}\n"
    )
    print("| epoch | folds' mean (range) | oracle mrr@20 | oracle map@20 | oracle recall@20 |")
    print("|---|---|---|---|---|")
    for epoch, m in mean.items():
        rng = by_epoch.max()[epoch] - by_epoch.min()[epoch]
        h = held.loc[epoch] if held is not None and epoch in held.index else None
        cells = " | ".join(f"{v:.4f}" for v in h) if h is not None else "- | - | -"
        print(f"| {epoch} | {m:.4f} ({rng:.4f}) | {cells} |")
    rows = {"default (step minimum, all N)": (default, default), **choices(mean, patience=args.patience)}
    if held is not None:
        rows["oracle best map@20 (hindsight)"] = (int(held["map@20"].idxmax()), int(held["map@20"].idxmax()))
    per_fold_items = curves.groupby("epoch")["items_seen"].sum()  # all folds' item-passes up to an epoch
    print("\n| choice | epoch | held-out mrr@20 | map@20 | recall@20 | item-passes (search + refit) |")
    print("|---|---|---|---|---|---|")
    for name, (epoch, trained) in rows.items():
        h = held.loc[epoch] if held is not None and epoch in held.index else None
        cells = " | ".join(f"{v:.4f}" for v in h) if h is not None else "- | - | -"
        cost = (
            epoch * args.size
            if name.startswith(("default", "oracle"))
            else int(per_fold_items[trained]) + epoch * args.size
        )
        print(f"| {name} | {epoch} | {cells} | {cost:,} |")


if __name__ == "__main__":
    main()
