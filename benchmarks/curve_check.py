"""Does the default data-size curve measure data? The checks of issue 22 on results tables (pandas only).

Usage (from the repository root, after `make install`):
    .venv/bin/python benchmarks/curve_check.py --rule RUN/results.csv --steps docs/runs/clinc150-data-steps.results.csv \
        --oracle ORACLE/results.csv [--metrics mrr@20 map@20 recall@20]

- ``--rule``: a data-size sweep under the default rule (``train_to: validated``): its final rows are the curve.
- ``--steps``: the same sizes and seeds under the former default (``train_to: steps``): the compute baseline.
- ``--oracle``: the same items (seed 0) trained for a fixed number of epochs with the held-out set evaluated after
  every epoch (``train_to: epochs``); its best epoch per size, read with hindsight on the held-out set, is what a
  rule could at best have reported (per metric, the maximum over the epochs: biased upward by epoch-to-epoch
  noise). The rule itself never sees the held-out set. The oracle at the rule's chosen epoch trained all N items
  where the rule trained N less its carve-out: their difference is what the carve-out costs.

Prints Markdown: (a) the curve per size (mean of the seeds, the seed spread, how each point trained) and whether it
is monotone within the seed spread, (b) the rule's point against the oracle's best epoch at the oracle's sizes,
(c) the training the rule costs against the step minimum, in item-passes (``items_seen``: deterministic) and in
training seconds (wall clock on whatever shared the machine).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def finals(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df = df[(df["status"] == "ok") & (df["size"] > 0)]
    return df[df["final"].astype(str).str.lower().isin(["true", "1"])] if "final" in df else df


def spread(df: pd.DataFrame, metric: str) -> pd.Series:
    """Per size: max - min over seeds (NaN where one seed ran)."""
    g = df.groupby("size")[metric]
    return (g.max() - g.min()).where(g.count() > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rule", type=Path, required=True)
    parser.add_argument("--steps", type=Path, required=True)
    parser.add_argument("--oracle", type=Path, default=None)
    parser.add_argument("--metrics", nargs="+", default=["mrr@20", "map@20", "recall@20"])
    args = parser.parse_args()
    rule, steps = finals(args.rule), finals(args.steps)
    metrics = args.metrics

    # One spread per metric: the largest seed spread over the sizes both seeds ran (rule and step minimum).
    tol = {m: pd.concat([spread(rule, m), spread(steps, m)]).max() for m in metrics}
    print("### (a) The curve: mean of the seeds per size, and how each point trained\n")
    print(
        "| size | seeds | "
        + " | ".join(f"{m} (spread)" for m in metrics)
        + " | epochs trained / chosen | steps (chosen) | stop |"
    )
    print("|---|---|" + "---|" * len(metrics) + "---|---|---|")
    means = rule.groupby("size")[metrics].mean()
    for size, rows in rule.groupby("size"):
        cells = [f"{means.loc[size, m]:.4f} ({spread(rule, m).get(size, float('nan')):.4f})" for m in metrics]
        how = "; ".join(f"{int(r.epochs)} / {int(r.epoch)}" for r in rows.itertuples())
        print(
            f"| {size:,} | {len(rows)} | "
            + " | ".join(cells)
            + f" | {how} | "
            + "; ".join(str(int(s)) for s in rows["steps"])
            + " | "
            + "; ".join(rows["stop_reason"].astype(str))
            + " |"
        )
    print(
        "\nMonotone within the seed spread (largest spread over sizes, rule and step minimum: "
        + ", ".join(f"{m} {tol[m]:.4f}" for m in metrics)
        + "):"
    )
    neighbours = list(zip(means.index[:-1], means.index[1:], strict=True))
    for m in metrics:
        steps_between = {(a, b): means.loc[b, m] - means.loc[a, m] for a, b in neighbours}
        falls = [f"{a:,} -> {b:,}: {d:+.4f}" for (a, b), d in steps_between.items() if d < 0]
        verdict = "yes" if min(steps_between.values(), default=0.0) >= -tol[m] else "NO"
        print(f"- {m}: {verdict}; falls between neighbouring sizes: {', '.join(falls) or 'none'}")

    if args.oracle is not None:
        oracle = pd.read_csv(args.oracle)
        oracle = oracle[(oracle["status"] == "ok") & (oracle["size"] > 0)]
        print("\n### (b) The rule's point against the oracle (best held-out epoch of a fixed grid, with hindsight)\n")
        print(
            "| size | metric | oracle best (epoch) | oracle at the step minimum's epochs | oracle at the rule's epoch "
            "(= a refit on all N) "
            "| rule, seed 0 (chosen / trained) | rule - oracle best | within the spread? |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for size, grid in oracle.groupby("size"):
            r0 = rule[(rule["size"] == size) & (rule["seed"] == 0)]
            s0 = steps[(steps["size"] == size) & (steps["seed"] == 0)]
            epochs_done = int(grid["epoch"].max())
            for m in metrics:
                best = grid.loc[grid[m].idxmax()]
                at_steps = (
                    grid.loc[grid["epoch"] == int(s0["epochs"].iloc[0]), m]
                    if len(s0) and int(s0["epochs"].iloc[0]) <= epochs_done
                    else pd.Series(dtype=float)
                )
                at_rule = "-"
                if len(r0):
                    r = r0.iloc[0]
                    same = grid.loc[grid["epoch"] == int(r.epoch), m]
                    at_rule = f"{same.iloc[0]:.4f}" if len(same) else "-"
                    diff = r[m] - best[m]
                    rule_cell = f"{r[m]:.4f} ({int(r.epoch)} / {int(r.epochs)})"
                    within = "yes" if diff >= -tol[m] else "NO"
                    diff_cell = f"{diff:+.4f}"
                else:
                    rule_cell, within, diff_cell = "not run", "-", "-"
                print(
                    f"| {size:,} | {m} | {best[m]:.4f} ({int(best.epoch)} of {epochs_done}) | "
                    + (f"{at_steps.iloc[0]:.4f} ({int(s0['epochs'].iloc[0])})" if len(at_steps) else "-")
                    + f" | {at_rule} | {rule_cell} | {diff_cell} | {within} |"
                )

    print("\n### (c) What the rule costs against the step minimum (same sizes and seeds)\n")
    # The point each rule reports, side by side: where the step minimum already trained enough (mid sizes), the
    # difference is what the rule's carve-out costs; where it under-trained (large sizes), what the rule recovers.
    print(
        "| size | seed | item-passes: rule / steps (ratio) | train s: rule / steps | rule's validation s | "
        + " | ".join(f"{m}: rule - steps" for m in metrics)
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(metrics))
    pairs = rule.merge(steps, on=["size", "seed"], suffixes=("", "_steps"))
    for _, r in pairs.iterrows():
        diffs = " | ".join(f"{r[m] - r[m + '_steps']:+.4f}" for m in metrics)
        print(
            f"| {int(r['size']):,} | {int(r['seed'])} | {int(r['items_seen']):,} / {int(r['items_seen_steps']):,} "
            f"({r['items_seen'] / r['items_seen_steps']:.2f}x) | {r['train_seconds']:.0f} / "
            f"{r['train_seconds_steps']:.0f} | {r['val_seconds']:.0f} | {diffs} |"
        )
    if len(pairs):
        print(
            f"\nIn all: {pairs['items_seen'].sum():,.0f} item-passes vs {pairs['items_seen_steps'].sum():,.0f} "
            f"({pairs['items_seen'].sum() / pairs['items_seen_steps'].sum():.2f}x); training seconds "
            f"{pairs['train_seconds'].sum():,.0f} vs {pairs['train_seconds_steps'].sum():,.0f} "
            f"({pairs['train_seconds'].sum() / pairs['train_seconds_steps'].sum():.2f}x), validation "
            f"{pairs['val_seconds'].sum():,.0f} s."
        )


if __name__ == "__main__":
    main()
