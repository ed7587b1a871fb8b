"""``roi report RUN_DIR`` and ``roi backtest RUN_DIR`` (``roi plan`` and ``roi frontier``: ``roi.plan_cli``): parsing and printing only; the work is in ``roi.report``
and ``roi.forecast``.

``add_report_arguments``/``run_report`` and ``add_backtest_arguments``/``run_backtest`` let another CLI
(``sweeps.cli``, the ``roi`` command) mount the same subcommands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roi.errors import EXIT_INPUT_ERROR, RoiInputError


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` subcommand's arguments to ``parser``."""
    parser.add_argument(
        "run_dir",
        type=str,  # not Path: Path("s3://b/x") would collapse the "//" of a URI
        metavar="RUN_DIR",
        help="run folder (results.parquet or results.csv) or a table file; local or s3://, gs://, ... (pyarrow)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: RUN_DIR/report, or <table>-report)"
    )
    parser.add_argument(
        "--metric",
        action="extend",
        nargs="+",
        default=None,
        help="metric columns (mrr@20) or names (mrr = every mrr@k); default: every metric with values",
    )
    parser.add_argument(
        "--drop", type=float, default=0.7, help="fraction of the peak ROI lost at the drop point (default 0.7)"
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples over seeds (default 1000)")
    parser.add_argument("--boot-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--no-png", action="store_true", help="skip PNG export even when a Chromium is there")
    parser.add_argument(
        "--label-cost",
        type=float,
        default=None,
        help="price of one labeled item (e.g. 0.08; default: the sweep file's cost: section)",
    )
    parser.add_argument("--gpu-hour", type=float, default=None, help="price of one GPU-hour (e.g. 2.50)")
    parser.add_argument("--currency", default="", help="currency shown beside prices (e.g. EUR)")
    parser.add_argument(
        "--value-per-point",
        type=float,
        default=None,
        help="what +1%% relative improvement is worth (e.g. 500): adds the break-even size (default: cost: section)",
    )
    parser.add_argument(
        "--require-complete",
        action="store_true",
        help="refuse (exit 2) a run folder whose sweep has not finished (default: report it, saying so first)",
    )
    parser.add_argument(
        "--mlflow",
        default=None,
        metavar="URI",
        help="also log a summary run per sweep (the answer's numbers, the prices, the report as artifacts) to this "
        "MLflow tracking URI, e.g. sqlite:///mlflow.db (docs/tracking.md; needs the tracking extra)",
    )


def run_report(args: argparse.Namespace) -> int:
    """Run ``roi report`` from parsed arguments; 0 on success, 2 (message on stderr) when the input is unusable."""
    from roi.load import NOTES_ATTR, load_query_scores, load_results
    from roi.price import prices_for
    from roi.report import default_out_dir, write_report
    from roi.run_state import unfinished_run
    from roi.tables import epoch_grid_display, format_terminal, summary_table

    try:
        if args.n_boot < 1:
            raise RoiInputError(
                f"--n-boot must be >= 1; got {args.n_boot}", fix="give --n-boot 1 or more (default 1000)"
            )
        if args.boot_seed < 0:
            raise RoiInputError(f"--boot-seed must be >= 0; got {args.boot_seed}", fix="give --boot-seed 0 or more")
        unfinished = unfinished_run(args.run_dir)
        if unfinished is not None and args.require_complete:
            raise RoiInputError(
                f"{args.run_dir}: {unfinished.line}", fix=f"{unfinished.resume}, or leave out --require-complete"
            )
        prices = prices_for(
            args.run_dir,
            label_cost=args.label_cost,
            gpu_hour=args.gpu_hour,
            currency=args.currency,
            value_per_point=args.value_per_point,
        )
        df = load_results(args.run_dir)
        queries = load_query_scores(args.run_dir)
        if unfinished is not None:  # in the HTML report's notes too
            df.attrs[NOTES_ATTR] = [unfinished.line, *df.attrs.get(NOTES_ATTR, [])]
        out = args.out if args.out is not None else default_out_dir(args.run_dir)
        paths = write_report(
            df,
            out_dir=out,
            metrics=args.metric,
            drop=args.drop,
            n_boot=args.n_boot,
            boot_seed=args.boot_seed,
            png=not args.no_png,
            prices=prices,
            queries=queries,
        )
        if args.mlflow:
            from roi.tracking import log_report

            # the experiment of each sweep in the table (tables without a sweep column: the run folder's name)
            named = df["sweep"].dropna().astype(str) if "sweep" in df else []
            sweeps = sorted({s for s in named if s}) or [str(args.run_dir).rstrip("/").rsplit("/", 1)[-1]]
            ids = log_report(paths, uri=args.mlflow, sweeps=sweeps, source=str(args.run_dir))
    except RoiInputError as exc:
        print(f"error: {exc.text}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    analysis = paths.analysis
    if unfinished is not None:  # first, before any number: the answer below is from part of the grid
        print(f"{unfinished.line}\n  the answer below is from the cells that finished; resume: {unfinished.resume}")
    print(f"read {analysis.source}: metrics {', '.join(analysis.metrics)}; drop {analysis.drop:g}")
    for note in analysis.notes:
        if unfinished is None or note != unfinished.line:
            print(f"note: {note}")
    print()
    for answer in analysis.answers:  # the answer first, in words
        print(f"- {answer.text}")
    print()
    print(format_terminal(summary_table(analysis.summary)))
    print()
    if not analysis.epoch_grid.empty:  # the data x epochs grid: improvement and ROI per item, * = validation's pick
        print("data x epochs (improvement · ROI per item; * = the epoch chosen on validation):")
        print(format_terminal(epoch_grid_display(analysis.epoch_grid)))
        print()
    print(f"note: {paths.png_note}")
    print(f"report: {paths.html}")
    print(f"tables and figures: {paths.out_dir}")
    if args.mlflow:
        print(f"mlflow: summary run {', '.join(ids)} in experiment {', '.join(sweeps)} at {args.mlflow}")
    return 0


def run_backtest(args: argparse.Namespace) -> int:
    """``roi backtest``: fit the forecast on sizes <= --fit-up-to, print its error at every larger measured size."""
    from roi.curves import relative_improvement, roi_curve
    from roi.forecast import backtest
    from roi.load import load_results, resolve_metrics
    from roi.tables import to_markdown

    try:
        df = load_results(args.run_dir)
        metrics, _ = resolve_metrics(df, args.metric)
        table = backtest(roi_curve(relative_improvement(df, metrics=metrics)), fit_up_to=args.fit_up_to)
    except RoiInputError as exc:
        print(f"error: {exc.text}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    if table.empty:
        print(
            f"error: {args.run_dir}: no measured size above {args.fit_up_to:g} to predict\n"
            "  fix: lower --fit-up-to below the largest measured size",
            file=sys.stderr,
        )
        return EXIT_INPUT_ERROR
    cols = [
        "dataset",
        "metric",
        "fit_sizes",
        "size",
        "family",
        "measured",
        "predicted",
        "error",
        "metric_error",
        "note",
    ]
    print(to_markdown(table[cols], float_digits=4), end="")
    return 0


BACKTEST_HELP = "the forecast's error: fit on small sizes, predict the larger measured ones"


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``backtest`` subcommand's arguments to ``parser`` (``roi backtest`` and ``python -m roi backtest``)."""
    parser.add_argument("run_dir", type=str, metavar="RUN_DIR", help="run folder or table file")
    parser.add_argument("--fit-up-to", type=float, default=1000, help="fit on sizes <= this (default 1000)")
    parser.add_argument("--metric", action="extend", nargs="+", default=None, help="metric columns or names")


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser: ``python -m roi report ...``, ``python -m roi backtest ...``."""
    parser = argparse.ArgumentParser(prog="roi", description="ROI of fine-tuning from a results table (docs/roi.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="ROI curves, drop points, tables and charts from a results table")
    add_report_arguments(report)
    report.set_defaults(func=run_report)
    bt = sub.add_parser("backtest", help=BACKTEST_HELP)
    add_backtest_arguments(bt)
    bt.set_defaults(func=run_backtest)
    from roi.plan_cli import add_subcommands

    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (argparse's own usage errors give 2, like input errors)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help and usage errors: return the code instead of exiting the caller
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_INPUT_ERROR
    return int(args.func(args) or 0)
