"""The backtest of ``roi plan``: plan from the sizes up to N, compare with what the next round measured.

``python -m roi.plan_backtest [TABLE ...] [--write roi/forecast_errors.csv] [--markdown]``

A *case* is one data-size curve (dataset, setting, metric) and a measured size N with a measured size M one round
out (1.5 <= M / N <= 2.5, the one closest to 2N): the plan is made from the sizes up to N with ``--round M/N`` and
compared with the mean relative improvement measured at M. Identical curves in two tables count once.

- **The margins** (``--write``): per method (``fit``, ``elasticity``; both are run on every case where they can
  be) and metric, the largest absolute error over all cases, in percentage points of relative improvement; this
  is the file ``roi.plan`` widens every interval by.
- **Coverage** (the table printed): each case's interval uses the method the plan would use (the fit where it does
  not refuse) and margins computed from the *other* datasets' cases only (leave one dataset out), so a case never
  widens its own interval; ``inside`` says whether M's measured mean landed in it.

Default tables: the published ones (``docs/runs/*.results.csv``, ``docs/clinc150/results.csv``,
``docs/banking77/results.csv``), read from the repository root.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from roi.curves import GROUP_KEY, relative_improvement, roi_curve
from roi.load import load_results, resolve_metrics
from roi.plan import ELASTICITY, ERRORS_FILE, FIT, Margin, plan_round
from roi.tables import to_markdown

ROUND_RANGE = (1.5, 2.5)
COMMAND = "python -m roi.plan_backtest --write roi/forecast_errors.csv"


def published_tables(root: Path) -> list[Path]:
    """The published results tables under ``root``/docs."""
    return sorted((root / "docs" / "runs").glob("*.results.csv")) + [
        root / "docs" / "clinc150" / "results.csv",
        root / "docs" / "banking77" / "results.csv",
    ]


def curve_points(path: str | Path) -> pd.DataFrame:
    """Per-seed data-size points on the labeled-items axis of one table, with its name in ``source``."""
    df = load_results(path)
    metrics, _ = resolve_metrics(df, None)
    pts = roi_curve(relative_improvement(df, metrics=metrics))
    pts = pts[(pts["experiment"] == "data_size") & (pts["cost_axis"] == "size")]
    return pts.assign(source=Path(path).name if Path(path).name != "results.csv" else Path(path).parent.name)


def cases(points: pd.DataFrame) -> pd.DataFrame:
    """Every case of every curve, both methods: one row per (curve, N, method) with the prediction at M."""
    rows, seen = [], set()
    for key, cur in points.groupby([*GROUP_KEY, "source"], sort=False):
        mean = cur.groupby("grid")["improvement"].mean()
        sizes = mean.index.to_numpy(float)
        for n in sizes:
            ahead = [m for m in sizes if ROUND_RANGE[0] <= m / n <= ROUND_RANGE[1]]
            if not ahead:
                continue
            m = min(ahead, key=lambda s: abs(s / n - 2.0))
            ident = (*key[:-1], n, m, round(float(mean[m]), 10), round(float(mean[n]), 10))
            if ident in seen:  # the same curve published in two tables
                continue
            seen.add(ident)
            up_to = cur[cur["grid"] <= n]
            for method in (FIT, ELASTICITY):
                plan = plan_round(up_to, factor=m / n, margins={}, method=method)
                if not plan.method:
                    continue
                rows.append(
                    dict(zip(GROUP_KEY, key[:-1], strict=True))
                    | {
                        "source": key[-1],
                        "n": n,
                        "m": m,
                        "n_sizes": len(up_to["grid"].unique()),
                        "n_seeds": plan.n_seeds,
                        "method": method,
                        "verdict": plan.verdict,
                        "gain_n": plan.gain,
                        "measured": float(mean[m]),
                        "predicted": plan.expected_gain,
                        "spread_low": plan.spread_low,
                        "spread_high": plan.spread_high,
                        "error_pp": (plan.expected_gain - float(mean[m])) * 100.0,
                        "fit_ok": plan.method == FIT or _fit_ok(up_to, m / n),
                    }
                )
    return pd.DataFrame(rows)


def _fit_ok(points: pd.DataFrame, factor: float) -> bool:
    return plan_round(points, factor=factor, margins={}, method=FIT).method == FIT


def margins(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and metric: n_cases, the largest and the median absolute error (pp)."""
    out = (
        table.assign(abs_error=table["error_pp"].abs())
        .groupby(["method", "metric"], sort=True)
        .agg(
            n_cases=("abs_error", "size"),
            max_abs_error_pp=("abs_error", "max"),
            median_abs_error_pp=("abs_error", "median"),
        )
        .reset_index()
    )
    return out


def coverage(table: pd.DataFrame) -> pd.DataFrame:
    """One row per case with the plan's own method (the fit where it does not refuse), its interval from the other
    datasets' margins, and whether the measured mean at M is inside."""
    chosen = table[(table["method"] == FIT) | ~table["fit_ok"]].copy()
    lows, highs, used = [], [], []
    for _, r in chosen.iterrows():
        others = table[(table["dataset"] != r["dataset"]) & (table["method"] == r["method"])]
        same = others[others["metric"] == r["metric"]]
        err = float(same["error_pp"].abs().max()) if not same.empty else math.nan
        used.append(err)
        lows.append(r["spread_low"] * 100.0 - err)
        highs.append(r["spread_high"] * 100.0 + err)
    chosen["margin_pp"] = used
    chosen["low_pp"] = lows
    chosen["high_pp"] = highs
    chosen["inside"] = (chosen["measured"] * 100.0 >= chosen["low_pp"]) & (
        chosen["measured"] * 100.0 <= chosen["high_pp"]
    )
    return chosen.reset_index(drop=True)


def coverage_summary(cov: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method: cases, how many landed inside, the median and largest absolute error (pp)."""
    out = (
        cov.assign(abs_error=cov["error_pp"].abs())
        .groupby(["dataset", "method"], sort=True)
        .agg(
            cases=("inside", "size"),
            inside=("inside", "sum"),
            median_abs_error_pp=("abs_error", "median"),
            max_abs_error_pp=("abs_error", "max"),
        )
        .reset_index()
    )
    total = {
        "dataset": "all",
        "method": "both",
        "cases": len(cov),
        "inside": int(cov["inside"].sum()),
        "median_abs_error_pp": float(cov["error_pp"].abs().median()),
        "max_abs_error_pp": float(cov["error_pp"].abs().max()),
    }
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)


def coverage_display(cov: pd.DataFrame) -> pd.DataFrame:
    """The coverage table for docs: one row per case."""
    return pd.DataFrame(
        {
            "dataset": cov["dataset"],
            "table": cov["source"],
            "setting": cov["setting"],
            "metric": cov["metric"],
            "N -> M": [f"{n:,.0f} -> {m:,.0f}" for n, m in zip(cov["n"], cov["m"], strict=True)],
            "seeds": cov["n_seeds"],
            "verdict at N": cov["verdict"],
            "method": cov["method"],
            "measured at N": [f"{v:+.2%}" for v in cov["gain_n"]],
            "predicted at M": [f"{v:+.2%}" for v in cov["predicted"]],
            "interval": [f"[{lo:+.2f}, {hi:+.2f}] pp" for lo, hi in zip(cov["low_pp"], cov["high_pp"], strict=True)],
            "measured at M": [f"{v:+.2%}" for v in cov["measured"]],
            "error": [f"{v:+.2f} pp" for v in cov["error_pp"]],
            "inside": ["yes" if v else "NO" for v in cov["inside"]],
        }
    )


def write_margins(table: pd.DataFrame, path: Path, sources: Sequence[str]) -> None:
    """The margins file ``roi.plan`` reads, with the command and the tables that produced it."""
    m = margins(table)
    header = [
        f"# The one-round error of roi plan's forecast, measured: {COMMAND}",
        f"# from the published tables: {', '.join(sources)}",
        "# max_abs_error_pp: the largest |predicted - measured| relative improvement one round out, in percentage points",
    ]
    body = m.to_csv(index=False, float_format="%.4f")
    path.write_text("\n".join(header) + "\n" + body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roi.plan_backtest", description=__doc__.split("\n")[0])
    parser.add_argument("tables", nargs="*", help="results tables (default: the published ones under docs/)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root for the default tables")
    parser.add_argument("--write", type=Path, default=None, help=f"write the margins file (roi/{ERRORS_FILE})")
    args = parser.parse_args(argv)
    paths = [Path(t) for t in args.tables] or published_tables(args.root)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(
            f"error: no such table: {', '.join(missing)}\n  fix: run from the repository root or give --root",
            file=sys.stderr,
        )
        return 2
    points = pd.concat([curve_points(p) for p in paths], ignore_index=True)
    table = cases(points)
    cov = coverage(table)
    print(f"one-round backtest of roi plan on {len(paths)} tables: {len(cov)} cases, {int(cov['inside'].sum())} inside")
    print()
    print(to_markdown(coverage_summary(cov), float_digits=3), end="")
    print()
    print(to_markdown(coverage_display(cov)), end="")
    print()
    print(to_markdown(margins(table), float_digits=3), end="")
    if args.write is not None:
        rel = [str(p.relative_to(args.root)) if p.is_relative_to(args.root) else str(p) for p in paths]
        write_margins(table, args.write, rel)
        print(f"\nwrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Margin", "cases", "coverage", "coverage_summary", "margins", "main"]
