"""``roi plan RUN_DIR`` and ``roi frontier RUN_DIR``: parsing and printing only; the work is in ``roi.plan`` and
``roi.frontier``. ``roi.cli`` (``python -m roi``) and ``sweeps.cli`` (the ``roi`` command) mount both.
"""

from __future__ import annotations

import argparse
import math
import sys

from roi.errors import EXIT_INPUT_ERROR, RoiInputError

PLAN_HELP = "label another round or stop: the verdict, the next round's expected gain with its interval, and its cost"
FRONTIER_HELP = "the cheapest (items, epochs) for each score of each metric, from a run with per-epoch rows"


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=str, metavar="RUN_DIR", help="run folder or table file (local or a URI)")
    parser.add_argument("--metric", action="extend", nargs="+", default=None, help="metric columns or names")
    parser.add_argument("--label-cost", type=float, default=None, help="price of one labeled item (default: cost:)")
    parser.add_argument("--gpu-hour", type=float, default=None, help="price of one GPU-hour (default: cost:)")
    parser.add_argument("--currency", default="", help="currency shown beside prices (e.g. EUR)")
    parser.add_argument(
        "--target",
        action="append",
        default=None,
        metavar="METRIC=VALUE",
        help="a score to reach, e.g. map@20=0.90 (repeatable)",
    )


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``plan`` subcommand's arguments to ``parser``."""
    _add_common(parser)
    parser.add_argument("--round", type=float, default=2.0, help="items after the round / items now (default 2)")
    parser.add_argument(
        "--at", type=float, default=None, help="plan as a team that has this many labels (sizes up to it; default: all)"
    )
    parser.add_argument(
        "--value-per-point", type=float, default=None, help="what +1%% relative improvement is worth (default: cost:)"
    )


def add_frontier_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``frontier`` subcommand's arguments to ``parser``."""
    _add_common(parser)


def parse_targets(specs: list[str] | None, metrics: list[str]) -> dict[str, float]:
    """``["map@20=0.90"]`` -> ``{"map@20": 0.9}``; RoiInputError (with its fix) on anything else."""
    out: dict[str, float] = {}
    for spec in specs or []:
        name, sep, raw = spec.partition("=")
        name = name.strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not sep or not name or not math.isfinite(value) or value <= 0:
            raise RoiInputError(
                f"--target {spec!r} is not METRIC=VALUE with a value above 0",
                fix="write it as the metric column and the score to reach, e.g. --target map@20=0.90",
            )
        if name not in metrics:
            raise RoiInputError(
                f"--target {spec!r}: {name} is not a metric of this run (its metrics: {', '.join(metrics)})",
                fix=f"name one of them, e.g. --target {metrics[0]}={value:g}",
            )
        out[name] = value
    return out


def _load(args: argparse.Namespace):
    """(table, improvements, points, metrics, prices) of the run folder."""
    from roi.curves import relative_improvement, roi_curve
    from roi.load import SOURCE_ATTR, load_results, resolve_metrics
    from roi.price import prices_for

    prices = prices_for(
        args.run_dir,
        label_cost=args.label_cost,
        gpu_hour=args.gpu_hour,
        currency=args.currency,
        value_per_point=getattr(args, "value_per_point", None),
    )
    df = load_results(args.run_dir)
    metrics, _ = resolve_metrics(df, args.metric)
    try:
        improvements = relative_improvement(df, metrics=metrics)
        points = roi_curve(improvements)
    except RoiInputError as exc:
        raise RoiInputError(f"{df.attrs.get(SOURCE_ATTR, args.run_dir)}: {exc.message}", fix=exc.fix) from exc
    return df, improvements, points, metrics, prices


def run_plan(args: argparse.Namespace) -> int:
    """``roi plan``: 0, or 2 with one message and a ``fix:`` line when the input or an option is unusable."""
    from roi.plan import check_round, describe_plan, plan_table

    try:
        check_round(args.round)
        if args.at is not None and not args.at > 0:
            raise RoiInputError(f"--at must be a number of labels above 0; got {args.at:g}", fix="give e.g. --at 500")
        _, _, points, metrics, prices = _load(args)
        goals = parse_targets(args.target, metrics)
        plans = plan_table(points, at=args.at, factor=args.round, prices=prices)
    except RoiInputError as exc:
        print(f"error: {exc.text}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    print(
        f"plan for the next round of labels from {args.run_dir}"
        + (f", as a team with {args.at:,.0f}" if args.at else "")
    )
    print(
        f"(one round only: {args.round:g}x the largest measured size; nothing further is forecast. Label the round, "
        "measure it, and plan again.)"
    )
    current = None
    for plan in plans:
        k = plan.key
        head = (k["dataset"], k["model"], k["eval_set"], k["setting"])
        if head != current:
            current = head
            print(f"\n## {k['dataset']} · {k['model']} · {k['setting']} (largest size used: {plan.size:,.0f} items)")
        lines = describe_plan(plan, prices, goal=goals.get(str(k["metric"])))
        print(f"- {lines[0]}")
        for line in lines[1:]:
            print(f"  {line}")
    notes = dict.fromkeys(n for plan in plans for n in plan.notes)
    if notes:
        print()
    for note in notes:
        print(f"note: {note}")
    return 0


def run_frontier(args: argparse.Namespace) -> int:
    """``roi frontier``: the frontier table and one sentence per target score."""
    from roi.epoch_grid import best_epochs
    from roi.frontier import (
        FRONT_KEY,
        default_targets,
        describe_reach,
        frontier_cells,
        frontier_display,
        pareto_frontier,
        reach,
    )
    from roi.tables import to_markdown

    try:
        table, improvements, _, metrics, prices = _load(args)
        goals = parse_targets(args.target, metrics)
        cells = frontier_cells(improvements, best_epochs(table))
        if cells.empty:
            raise RoiInputError(
                f"{args.run_dir}: no per-epoch rows of fixed-epoch training (train_to: epochs) to build a frontier from",
                fix="run a data x epochs grid (docs/roi.md, 'The data x epochs grid') or any data-size sweep "
                "with train_to: epochs",
            )
    except RoiInputError as exc:
        print(f"error: {exc.text}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    front = pareto_frontier(cells, prices)
    n_cells = cells.drop_duplicates(["dataset", "size", "epochs", "epoch"]).shape[0]
    print(f"cost frontier of {args.run_dir}: {n_cells} (size, epoch) cells")
    print(
        "cost: "
        + ("labels + GPU time at the given prices" if prices.priced else "labeled items, then training seconds")
    )
    if (cells["chosen_on"] == "held-out").any():
        print("note: cells without validation scores: every epoch is a candidate, picked on the held-out score "
              "(optimistic by that noise)")  # fmt: skip
    print()
    print(to_markdown(frontier_display(front, prices)), end="")
    print()
    targets = default_targets(front)
    for key in front.groupby(list(FRONT_KEY), sort=False).groups:
        keyd = dict(zip(FRONT_KEY, key, strict=True))
        wanted = [goals[keyd["metric"]]] if keyd["metric"] in goals else None
        if wanted is None:
            sel = targets
            for k, v in keyd.items():
                sel = sel[sel[k] == v]
            wanted = sel["target"].tolist()
        for goal in wanted:
            print(f"- {keyd['dataset']}: {describe_reach(reach(cells, keyd, goal, prices=prices), prices)}")
    return 0


def add_subcommands(sub) -> None:
    """Register ``plan`` and ``frontier`` on a subparsers object: ``roi`` and ``python -m roi`` share them."""
    plan = sub.add_parser("plan", help=PLAN_HELP)
    add_plan_arguments(plan)
    plan.set_defaults(func=run_plan)
    frontier = sub.add_parser("frontier", help=FRONTIER_HELP)
    add_frontier_arguments(frontier)
    frontier.set_defaults(func=run_frontier)
