"""Does the nominal 95% interval of the headline answer cover the truth 95% of the time? Measured by simulation.

Designed curves with a known answer: G(N) = c N^b / (K^b + N^b), whose elasticity is e(N) = b / (1 + (N/K)^b),
so e = t at N* = K (b / t - 1)^(1 / b), in closed form. Each replicate measures the curve as a sweep would:

- per-query scores on a held-out sample of ``n_queries`` queries: baseline score b_q ~ Beta(4, 2), and a
  fine-tuned score b_q + mean(b) G(N) h_q with a per-query gain h_q ~ Normal(1, ``query_spread``) (queries gain
  unevenly; their population mean is 1, so the population's relative improvement is exactly G(N));
- training noise: each (size, seed) run shifts all its scores by Normal(0, ``seed_sd``) (in metric units).

The report's interval (``roi.intervals.answer_interval``) is computed from the measured seeds and queries, and
the replicate counts as covered when the closed-form N* lies inside it (0 = below the first size, inf = not
reached). ``python -m roi.coverage`` prints the table docs/roi.md publishes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from roi.elasticity import DEFAULT_TARGET, read_elasticity
from roi.intervals import QueryScores, answer_interval

GRID = (100, 200, 400, 800, 1600, 3200, 6400)


@dataclass(frozen=True)
class Design:
    """One designed curve and how it is measured."""

    k: float  # half-saturation size
    b: float = 1.0  # steepness
    c: float = 0.15  # ceiling of the relative improvement
    seeds: int = 2
    n_queries: int = 500
    seed_sd: float = 0.004  # training noise, metric units
    query_spread: float = 1.5  # sd of the per-query gain factor

    def gain(self, n: np.ndarray) -> np.ndarray:
        return self.c * n**self.b / (self.k**self.b + n**self.b)

    def truth(self, target: float = DEFAULT_TARGET) -> float:
        return float(self.k * (self.b / target - 1.0) ** (1.0 / self.b))


DESIGNS = (Design(k=300.0), Design(k=600.0, b=0.9), Design(k=1200.0, seeds=3), Design(k=500.0, n_queries=300))


def simulate(
    design: Design, rng: np.random.Generator, *, grid=GRID, queries: bool = True
) -> tuple[np.ndarray, QueryScores]:
    """One measured sweep of ``design``: (S, n) per-seed relative improvement and the per-query scores."""
    n = np.asarray(grid, dtype=float)
    base = rng.beta(4.0, 2.0, size=design.n_queries)  # (Q,)
    h = rng.normal(1.0, design.query_spread, size=design.n_queries)  # (Q,)
    lift = 4.0 / 6.0 * design.gain(n)  # population mean baseline x G(N): population relative improvement = G(N)
    shift = rng.normal(0.0, design.seed_sd, size=(design.seeds, n.size))
    tuned = base[None, None, :] + lift[None, :, None] * h[None, None, :] + shift[:, :, None]  # (S, n, Q)
    baseline = np.broadcast_to(base, (design.seeds, design.n_queries)).copy()
    seed_gains = tuned.mean(axis=2) / base.mean() - 1.0
    return seed_gains, QueryScores(baseline=baseline, tuned=tuned)


def coverage(
    design: Design, *, replicates: int = 200, n_boot: int = 200, seed: int = 0, grid=GRID, queries: bool = True
) -> dict:
    """Measured coverage of the nominal 95% interval on ``design``, and the share of answers found within 15%."""
    rng = np.random.default_rng(seed)
    truth, covered, close, widths = design.truth(), 0, 0, []
    costs = np.asarray(grid, dtype=float)
    for r in range(replicates):
        seed_gains, scores = simulate(design, rng, grid=grid)
        ci = answer_interval(costs, seed_gains, queries=scores if queries else None, n_boot=n_boot, seed=r)
        covered += int(ci.low <= truth <= ci.high)
        point = read_elasticity(costs, seed_gains.mean(axis=0))
        close += int(point.found and abs(point.cost / truth - 1.0) <= 0.15)
        if np.isfinite(ci.high) and ci.low > 0:
            widths.append(ci.high / ci.low)
    return {
        "truth": truth,
        "coverage": covered / replicates,
        "within_15pct": close / replicates,
        "median_width_ratio": float(np.median(widths)) if widths else float("nan"),
        "replicates": replicates,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="coverage of the headline answer's nominal 95% interval")
    parser.add_argument("--replicates", type=int, default=500)
    parser.add_argument("--n-boot", type=int, default=400)
    args = parser.parse_args(argv)
    print(
        "| design | seeds | queries | truth N* | coverage (seeds + queries) | coverage (seeds only) | point within 15% | median high/low |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, d in enumerate(DESIGNS):
        both = coverage(d, replicates=args.replicates, n_boot=args.n_boot, seed=i)
        seeds = coverage(d, replicates=args.replicates, n_boot=args.n_boot, seed=i, queries=False)
        print(
            f"| K={d.k:g}, b={d.b:g} | {d.seeds} | {d.n_queries} | {both['truth']:,.0f} | {both['coverage']:.1%} | "
            f"{seeds['coverage']:.1%} | {both['within_15pct']:.0%} | {both['median_width_ratio']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
