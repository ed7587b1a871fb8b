"""The default's curve (validated + refit) on two seeds: one from its sweep, one assembled from equivalent models.

Usage (from the repository root, after `make install`):
    .venv/bin/python benchmarks/refit_curve.py --refit docs/runs/banking77-data-refit.results.csv \
        --rule docs/runs/banking77-data-validated.results.csv --oracle docs/runs/banking77-oracle.results.csv \
        --refit-500 benchmarks/results/banking77-data-refit.results.csv --steps docs/runs/banking77-data-steps.results.csv

- ``--refit``: the sweep under the default (``train_to: validated``, ``refit``); its seed ``--sweep-seed`` (1) is
  one curve.
- The other seed (``--assembled-seed``, 0) was measured before refit was the default; its refit points are the same
  models measured otherwise: where the rule carved nothing out (the step minimum reaches the cap: ``stop_reason`` cap
  or steps in ``--rule``) the rule's own point; ``--refit-500``'s points (refit runs of single sizes); elsewhere the
  ``--oracle`` (all N items, fixed epochs, the held-out set after every epoch) at the epoch the rule chose, which is
  the refit's model (tests/test_budget.py: a refit is the fixed-epoch trial of the chosen length).
- ``--steps``: the step minimum (two seeds), the compute and answer baseline.

Prints Markdown: per size both seeds, their mean and spread, how seed 1 trained, the step minimum's mean; item-passes
against the step minimum (same seed); the elasticity answers (``roi.elasticity``) on the mean relative gains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from roi.elasticity import read_elasticity

METRICS = ["mrr@20", "map@20", "recall@20"]


def finals(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df = df[df["status"] == "ok"]
    return df[df["final"].astype(str).str.lower().isin(["true", "1"])] if "final" in df else df


def assembled(rule: pd.DataFrame, oracle: pd.DataFrame, singles: pd.DataFrame | None, *, seed: int) -> pd.DataFrame:
    """Per size (0 = the baseline): the refit model's metrics for ``seed``, and where each came from."""
    rule = rule[rule["seed"] == seed].set_index("size")
    oracle = oracle[(oracle["status"] == "ok") & (oracle["seed"] == seed)]
    singles = (
        singles[(singles["seed"] == seed) & (singles["size"] > 0)].set_index("size") if singles is not None else None
    )
    rows = {}
    for size, r in rule.iterrows():
        if size == 0 or r["stop_reason"] in ("cap", "steps"):
            rows[size] = {**r[METRICS], "source": "rule (no carve-out)" if size else "baseline"}
        elif singles is not None and size in singles.index:
            rows[size] = {**singles.loc[size, METRICS], "source": "refit run"}
        else:
            at = oracle[(oracle["size"] == size) & (oracle["epoch"] == int(r["epoch"]))]
            if not at.empty:
                rows[size] = {**at.iloc[0][METRICS], "source": f"oracle at epoch {int(r['epoch'])}"}
    return pd.DataFrame(rows).T


def gains(points: pd.DataFrame, metric: str) -> pd.Series:
    return (points[metric].astype(float) / float(points.loc[0, metric]) - 1).drop(index=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refit", type=Path, required=True)
    parser.add_argument("--rule", type=Path, required=True)
    parser.add_argument("--oracle", type=Path, required=True)
    parser.add_argument("--refit-500", type=Path, default=None)
    parser.add_argument("--steps", type=Path, required=True)
    parser.add_argument("--sweep-seed", type=int, default=1)
    parser.add_argument("--assembled-seed", type=int, default=0)
    args = parser.parse_args()
    sweep = finals(args.refit)
    one = sweep[sweep["seed"] == args.sweep_seed].set_index("size")
    other = assembled(
        finals(args.rule),
        pd.read_csv(args.oracle),
        finals(args.refit_500) if args.refit_500 else None,
        seed=args.assembled_seed,
    )
    sizes = [s for s in one.index if s in other.index]
    steps = finals(args.steps)
    step_mean = steps.groupby("size")[METRICS].mean()
    print(f"| size | seed {args.assembled_seed} (source) mAP / recall@20 | seed {args.sweep_seed} mAP / recall@20 "
          "(epochs trained / chosen) | mean mAP (spread) | mean recall@20 (spread) | mean mRR (spread) | "
          "step minimum mean mAP / recall@20 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for s in sizes[1:]:
        a, b = other.loc[s], one.loc[s]
        cells = []
        for m in ("map@20", "recall@20", "mrr@20"):
            x, y = float(a[m]), float(b[m])
            cells.append(f"{(x + y) / 2:.4f} ({abs(x - y):.4f})")
        how = f"{int(b['epochs'])} / {int(b['epoch'])}" + ("" if bool(b.get("refit", False)) else ", no carve-out")
        st = step_mean.loc[s] if s in step_mean.index else None
        print(f"| {s:,} | {float(a['map@20']):.4f} / {float(a['recall@20']):.4f} ({a['source']}) | "
              f"{float(b['map@20']):.4f} / {float(b['recall@20']):.4f} ({how}) | " + " | ".join(cells) + " | "
              + (f"{st['map@20']:.4f} / {st['recall@20']:.4f} |" if st is not None else "- |"))  # fmt: skip
    same = steps[steps["seed"] == args.sweep_seed].set_index("size")
    print(f"\n| size | item-passes, seed {args.sweep_seed}: default / step minimum |")
    print("|---|---|")
    total = [0, 0]
    for s in sizes[1:]:
        r, q = int(one.loc[s, "items_seen"]), int(same.loc[s, "items_seen"])
        total = [total[0] + r, total[1] + q]
        print(f"| {s:,} | {r:,} / {q:,} ({r / q:.2f}x) |")
    print(f"| all | {total[0]:,} / {total[1]:,} ({total[0] / max(1, total[1]):.2f}x) |\n")
    for m in METRICS:
        mean_gain = (gains(other.loc[sizes], m) + gains(one.loc[sizes], m)) / 2
        e = read_elasticity(mean_gain.index.to_numpy(dtype=float), mean_gain.to_numpy(dtype=float))
        step_gain = steps.groupby("size")[m].mean()
        se = read_elasticity(step_gain.index[1:].to_numpy(dtype=float), (step_gain / step_gain.loc[0] - 1).iloc[1:])
        said = (
            f"~{e.cost:,.0f}"
            if e.state == "found"
            else f"not reached by {max(sizes):,} (last e {e.last_elasticity:.2f})"
        )
        step_said = f"~{se.cost:,.0f}" if se.state == "found" else f"not reached (last e {se.last_elasticity:.2f})"
        print(f"- {m}: default, two seeds: {said}; step minimum, two seeds: {step_said}")


if __name__ == "__main__":
    main()
