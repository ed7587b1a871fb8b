"""The ``roi`` command: ``trial``, ``sweep``, ``status``, ``report``, ``backtest``, ``plan`` and ``frontier`` subcommands.

Parsing only: each subcommand turns its arguments into a config and calls one function. Heavy imports
(torch, ray) happen inside the subcommand that needs them, so ``roi report`` works where only the
analysis half is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeps.errors import EXIT_USER_ERROR, SweepInterrupted, UserError


def _cmd_trial(args: argparse.Namespace) -> int:
    from sweeps.config import Cell
    from sweeps.local import run_cells
    from sweeps.storage import RunFolder
    from sweeps.sweepfile import load_sweep_config

    cfg = load_sweep_config(args.config)
    if args.storage:
        import dataclasses

        cfg = dataclasses.replace(cfg, storage=args.storage)
    cells = [] if args.no_baseline else [Cell(size=0, epochs=0, seed=args.seed)]
    if args.size > 0 or args.no_baseline:  # --size 0 is the baseline: evaluated once
        cells.append(Cell(size=args.size, epochs=args.epochs if args.size else 0, seed=args.seed))

    def show(cell: Cell, rep) -> None:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in rep.metrics.items())
        what = "baseline" if cell.size == 0 else f"size {cell.size} epoch {rep.epoch}/{cell.epochs}"
        print(
            f"[{cfg.name}] {what}: {metrics}  train {rep.train_seconds:.1f}s  eval {rep.eval_seconds:.1f}s", flush=True
        )

    print(
        f"[{cfg.name}] preparing {cfg.trial.data.name} for {cfg.trial.model.name or cfg.trial.model.kind} ...",
        flush=True,
    )
    table = run_cells(cfg, cells, on_epoch=show)
    folder = RunFolder.of(cfg.storage, cfg.name)
    cols = ["size", "epoch", "train_seconds", *[c for c in table.columns if "@" in c]]
    print(table[table["seed"] == args.seed][cols].to_string(index=False))
    where = folder.location
    print(f"results: {where('results.parquet')} and {where('results.csv')} (records in {where('records')})")
    return 0


def _add_trial(sub) -> None:
    p = sub.add_parser("trial", help="fine-tune once on N items and evaluate after each epoch (no Ray)")
    p.add_argument("config", type=Path, help="sweep file (YAML); its model/data/train/eval sections are used")
    p.add_argument("--size", type=int, required=True, help="labeled training items N (0 = pretrained baseline only)")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset ordering and batches (default 0)")
    p.add_argument(
        "--storage",
        default=None,
        help="results root (default: the file's storage, runs/): a local folder, shared mount, or s3://bucket/prefix",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the pretrained baseline evaluation")
    p.set_defaults(func=_cmd_trial)


def _cmd_sweep(args: argparse.Namespace) -> int:
    import dataclasses

    from sweeps.storage import RunFolder
    from sweeps.sweepfile import load_sweep_config
    from sweeps.tuner import run_sweep

    cfg = load_sweep_config(args.config)
    if args.storage:
        cfg = dataclasses.replace(cfg, storage=args.storage)
    if args.mlflow or args.tensorboard:
        tracking = dataclasses.replace(
            cfg.tracking,
            mlflow=args.mlflow or cfg.tracking.mlflow,
            tensorboard=args.tensorboard or cfg.tracking.tensorboard,
        )
        cfg = dataclasses.replace(cfg, tracking=tracking)
    outcome = run_sweep(
        cfg, address=args.address, resume=args.resume, logical_gpus=args.logical_gpus, verbose=args.verbose
    )
    ok = outcome.table[outcome.table["status"] == "ok"]
    metric_cols = [c for c in ok.columns if "@" in c]
    final = ok[ok["final"]] if cfg.sweep.experiment == "data_size" else ok
    shown = final[["seed", "size", "epochs", "epoch", "steps", "stop_reason", "train_seconds", *metric_cols]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"[{cfg.name}] ran {outcome.ran} cells, {outcome.skipped} already done, {outcome.failed} failed")
    folder = RunFolder.coerce(outcome.run_dir)
    print(f"results: {folder.location('results.parquet')} and {folder.location('results.csv')}")
    print(f"next: roi report {outcome.run_dir}")  # local folders and object-store URIs alike
    return 1 if outcome.failed else 0


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a sweep file's grid as Ray Tune trials (embedded Ray, or --address)")
    p.add_argument("config", type=Path, help="sweep file (YAML)")
    p.add_argument("--address", default=None, help="Ray cluster to join, e.g. auto (default: start an embedded Ray)")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run, or extend a finished one with new cells"
    )
    p.add_argument(
        "--storage",
        default=None,
        help="results root (default: the file's storage, runs/): a local folder, a shared mount (NFS/EFS), or an "
        "object-store URI such as s3://bucket/prefix (credentials from the environment or instance role)",
    )
    p.add_argument(
        "--mlflow",
        default=None,
        metavar="URI",
        help="also log one MLflow run per trial to this tracking URI, e.g. sqlite:///mlflow.db (default: the file's "
        "tracking.mlflow; docs/tracking.md)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files per trial under <run folder>/tensorboard (tracking.tensorboard)",
    )
    p.add_argument(
        "--logical-gpus",
        type=int,
        default=None,
        help="embedded Ray only: pretend this many GPUs (testing packing on a CPU)",
    )
    p.add_argument(
        "--verbose",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="Tune's own console tables (default 0: progress lines only)",
    )
    p.set_defaults(func=_cmd_sweep)


def _cmd_status(args: argparse.Namespace) -> int:
    from sweeps.status import format_status, run_status

    print(format_status(run_status(args.run_dir)))
    return 0


def _add_status(sub) -> None:
    p = sub.add_parser("status", help="what a run folder holds: done, failed, running, left")
    p.add_argument("run_dir", help="runs/<sweep name>, or <storage URI>/<sweep name>")
    p.set_defaults(func=_cmd_status)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roi", description="How much labeled data and GPU time is fine-tuning an embedding model worth?"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_trial(sub)
    _add_sweep(sub)
    _add_status(sub)
    _add_report(sub)
    _add_backtest(sub)
    _add_plan(sub)
    return parser


def _add_report(sub) -> None:
    from roi.cli import add_report_arguments, run_report

    p = sub.add_parser("report", help="ROI curves, drop points, tables and charts from a results table")
    add_report_arguments(p)
    p.set_defaults(func=run_report)


def _add_backtest(sub) -> None:
    from roi.cli import BACKTEST_HELP, add_backtest_arguments, run_backtest

    p = sub.add_parser("backtest", help=BACKTEST_HELP)
    add_backtest_arguments(p)
    p.set_defaults(func=run_backtest)


def _add_plan(sub) -> None:
    from roi.plan_cli import add_subcommands

    add_subcommands(sub)


def _message(exc: UserError) -> str:
    """The error's message, with a ``fix:`` line even where the raiser gave none (e.g. a value out of range)."""
    if exc.fix:
        return exc.message
    what = f"{exc.field} in {exc.where}" if exc.field and exc.where else exc.field or exc.where or "the input"
    return f"{exc.message}\n  fix: correct {what} (the sweep file's sections and allowed values: docs/sweep-files.md)"


_TRAINING_MODULES = {"torch", "torchvision", "transformers", "ray", "faiss", "datasets"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "trial":
            for flag, value in (("--size", args.size), ("--epochs", args.epochs)):
                if value < 0:
                    raise UserError(
                        f"must be >= 0, got {value}",
                        field=flag,
                        fix=f"give {flag} 0 or more (--size 0: the pretrained baseline only)",
                    )
            if args.size > 0 and args.epochs == 0:
                raise UserError(
                    "0 epochs of fine-tuning on --size > 0 items is the pretrained baseline",
                    field="--epochs",
                    fix="give --epochs 1 or more, or --size 0 for the baseline",
                )
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as exc:
        if exc.name not in _TRAINING_MODULES:
            raise
        # The analysis-only install (pip install finetuning-budget) has `roi report` but not the trainer.
        print(
            f"error: {args.command} needs the training half, but {exc.name} is not installed\n"
            "  fix: pip install 'finetuning-budget[cpu]' (or [gpu] on a CUDA machine)",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        if isinstance(exc, SweepInterrupted):
            print(
                f"interrupted: {exc} ({exc.total - exc.unfinished} done); finished trials are kept in "
                f"{exc.run_dir} (records/, results.csv)\n  next: the same command with --resume runs the rest",
                file=sys.stderr,
            )
        else:
            print("interrupted: finished trials are kept in the run folder's records/", file=sys.stderr)
        return 130
