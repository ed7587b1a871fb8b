"""The headline rule (roi.elasticity) on curves whose answer is known by hand, on the published tables, and the
coverage of its interval (roi.intervals, roi.coverage)."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import numpy as np
import pytest

from roi.coverage import Design, coverage
from roi.curves import CURVE_KEY, aggregate_seeds, relative_improvement, roi_curve
from roi.elasticity import BELOW, FOUND, NEVER_POSITIVE, NOT_REACHED, read_elasticity
from roi.headline import _curve_scores, _query_vectors
from roi.intervals import SEEDS_ONLY, QueryScores, answer_interval
from roi.load import load_query_scores, load_results, resolve_metrics

GRID = np.array([100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0])


def broken_power(n: np.ndarray, *, a: float = 0.01, n1: float = 800.0) -> np.ndarray:
    """G = a N^0.5 up to N1, then a N1^0.5 (N / N1)^0.2: elasticity 0.5, then 0.2."""
    return np.where(n <= n1, a * n**0.5, a * n1**0.5 * (n / n1) ** 0.2)


def test_closed_form_crossing_inside_the_grid():
    # Slopes (exact on a power law): 0.5 at sqrt(200 x 400) = 283 and sqrt(400 x 800) = 566, 0.2 at
    # sqrt(800 x 1600) = 1131. 0.3 lies 2/3 of the way from 0.5 to 0.2, so in log N the answer is
    # 566 x (1131 / 566)^(2/3) = 800 x 2^(-1/2) x 2^(2/3) = 800 x 2^(1/6) = 897.97 items. The chord from there to
    # 3,200 stays on the 0.2 branch (persistent).
    e = read_elasticity(GRID, broken_power(GRID))
    assert e.state == FOUND
    assert e.cost == pytest.approx(800 * 2 ** (1 / 6), rel=1e-9)
    assert e.bracket == (800.0, 1600.0)
    assert e.last_elasticity == pytest.approx(0.2)


@pytest.mark.parametrize("start", [0, 1, 2])
def test_closed_form_answer_does_not_move_with_the_grid_start(start):
    assert read_elasticity(GRID[start:], broken_power(GRID[start:])).cost == pytest.approx(800 * 2 ** (1 / 6))


def test_a_grid_that_starts_past_the_answer_says_below():
    e = read_elasticity(GRID[3:], broken_power(GRID[3:]))  # 800, 1600, 3200: every slope is 0.2
    assert e.state == BELOW and math.isnan(e.cost)
    assert e.bound == pytest.approx(math.sqrt(800 * 1600))


def test_not_reached_gives_the_last_elasticity_and_a_hint_only_when_falling():
    flat = read_elasticity(GRID, 0.01 * GRID**0.5)  # e = 0.5 everywhere: never falls
    assert flat.state == NOT_REACHED and flat.last_elasticity == pytest.approx(0.5) and math.isnan(flat.hint)
    # Slopes 0.9, 0.8, 0.7, 0.6, 0.5 at ln positions spaced ln 2: falling 0.1 per doubling, 0.3 is two doublings
    # past the last slope point sqrt(1600 x 3200): hint = 2263 x 4 = 9051.
    gains = np.exp(np.cumsum([0.0, *(np.array([0.9, 0.8, 0.7, 0.6, 0.5]) * math.log(2))]))
    falling = read_elasticity(GRID, gains)
    assert falling.state == NOT_REACHED and falling.hint == pytest.approx(math.sqrt(1600 * 3200) * 4)


def test_a_crossing_that_does_not_persist_is_skipped():
    # Slopes per doubling 0.6, 0.1, 0.9, 0.9, 0.1, 0.1 on 100..6400. The first crossing (between 0.6 and 0.1, at
    # 141 x 2^0.6 = 214) does not persist: the chord from 214 to 6400 has e = (0.1 ln(400/214) + 2.0 ln 2) / ln(6400/214)
    # = 0.43 > 0.3. The second, between 0.9 at 1131 and 0.1 at 2263, 3/4 of the way: 800 x 2^1.25 = 1902.6 items.
    grid = 100.0 * 2.0 ** np.arange(7)
    gains = np.exp(np.cumsum([0.0, *(np.array([0.6, 0.1, 0.9, 0.9, 0.1, 0.1]) * math.log(2))]))
    e = read_elasticity(grid, gains)
    assert e.state == FOUND and e.cost == pytest.approx(800 * 2**1.25)


def test_gains_at_or_below_zero():
    assert read_elasticity([100, 200], [-0.1, -0.2]).state == NEVER_POSITIVE
    # Rising from nothing (G <= 0 at 100) is e = +inf; the crossing is then read on the later slopes.
    g = broken_power(GRID).copy()
    g[0] = -0.01
    assert read_elasticity(GRID, g).cost == pytest.approx(800 * 2 ** (1 / 6))


def test_designed_hill_curve_answer_is_steady_under_the_grid_start():
    d = Design(k=500.0, b=0.9)  # e = b / (1 + (N/K)^b): N* = K (b/0.3 - 1)^(1/b) = 1,080 items
    grid = np.array([50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0])
    answers = [read_elasticity(grid[s:], d.gain(grid[s:])).cost for s in range(3)]
    assert max(answers) / min(answers) < 1.25
    assert answers[0] == pytest.approx(d.truth(), rel=0.1)


def _from(queries: QueryScores | None, start: int) -> QueryScores | None:
    """The per-query scores of a curve whose grid starts at its ``start``-th size."""
    return None if queries is None else QueryScores(queries.baseline, queries.tuned[:, start:, :])


def _published_curves():
    files = sorted(glob.glob("docs/runs/*.results.csv")) + sorted(glob.glob("docs/*/results.csv"))
    assert files, "the published tables are missing"
    for f in files:
        df = load_results(f)
        by_trial = _query_vectors(load_query_scores(f))  # beside the table: <name>.queries.parquet
        points = roi_curve(relative_improvement(df, metrics=resolve_metrics(df)[0]))
        points = points[points["cost_axis"].isin(["size", "train_seconds"])]
        curves = aggregate_seeds(points)
        for key, cur in curves.groupby(list(CURVE_KEY), sort=False):
            cur = cur.sort_values("cost")
            pts = points.set_index(list(CURVE_KEY)).loc[key].reset_index()
            gains = pts.pivot_table(index="seed", columns="grid", values="improvement").reindex(columns=cur["grid"])
            # per-query scores where the table has them for every point: what `roi report`'s interval resamples
            queries = _curve_scores(dict(zip(CURVE_KEY, key, strict=True)), pts, gains, df, by_trial)
            yield f, key, cur["cost"].to_numpy(), cur["improvement"].to_numpy(), gains.to_numpy(), queries


def _as_range(e):
    """What a reading says about the answer: a value, at or below the first slope point, or past the last one."""
    return {FOUND: (e.cost, e.cost), BELOW: (0.0, e.bound), NOT_REACHED: (e.bound, math.inf)}[e.state]


def _agree(a, b, factor=1.25):
    return a[0] <= b[1] * factor and b[0] <= a[1] * factor


def test_published_answers_move_less_than_1_25x_when_the_grid_starts_later():
    """Every published curve, the grid started at its first, second and third size: the readings agree within x1.25
    (a value against 'below the first size' agrees when the value is at most 1.25x the first slope point). Where
    noise decides a reading (fine auto grids, the epoch axis), the readings' 95% intervals must overlap instead;
    that fallback is allowed for at most 4 curves of two or more seeds, the ones measured as noise-dominated when
    this rule was built (recall@20 of both -auto runs, mrr@20 and map@20 of the CLINC150 epoch axis). One-seed
    curves (the validated runs) may use it too, with the intervals `roi report` gives them: over held-out queries
    where the table has per-query scores (BANKING77's validated mrr@20, +1.3% at best, reads 211 items from 100
    and 878 from 200; its intervals overlap)."""
    noisy, unassessed, checked = [], [], 0
    for f, key, costs, mean, seeds, queries in _published_curves():
        starts = [s for s in range(3) if costs.size - s >= 3]
        readings = [_as_range(read_elasticity(costs[s:], mean[s:])) for s in starts]
        pairs = [(i, j) for i in range(len(starts)) for j in range(i + 1, len(starts))]
        checked += len(pairs)
        if all(_agree(readings[i], readings[j]) for i, j in pairs):
            continue
        cis = [answer_interval(costs[s:], seeds[:, s:], queries=_from(queries, s), n_boot=400) for s in starts]
        spans = [(c.low, c.high) for c in cis]
        if not all(c.exists for c in cis):  # one seed, no per-query scores: nothing tells noise from instability
            unassessed.append((f, key[5], key[6]))
            continue
        assert all(_agree(spans[i], spans[j], 1.0) for i, j in pairs), (f, key, readings, spans)
        if seeds.shape[0] > 1:  # one seed: a single training run's noise, the overlap above is the whole check
            noisy.append((f, key[5], key[6]))
    assert checked >= 60
    assert len(set(noisy)) <= 4, noisy
    # The one exception, documented (benchmarks/RESULTS.md, "Each size trained to its validated length"): CLINC150
    # under the validated rule, one seed, per-query scores at 200 and 500 items only. Its answers do move with the
    # start (mAP ~179 from 100 items, below 316 from 200): 100-200 items train all their items and 500-1,000 only
    # 80% (the carve-out), so the curve's middle is the rule's, not the data's; `sweep.refit: true` removes it.
    assert {(Path(f).name, setting) for f, setting, _ in unassessed} <= {
        ("clinc150-data-validated.results.csv", "train_to=validated"),
        ("results.csv", "train_to=validated"),
    }, unassessed


def test_two_seeds_without_queries_give_a_non_degenerate_interval():
    seeds = np.vstack([broken_power(GRID) * 0.97, broken_power(GRID) * 1.03])
    ci = answer_interval(GRID, seeds, n_boot=300)
    assert ci.method == SEEDS_ONLY and ci.low < 800 * 2 ** (1 / 6) < ci.high and ci.high > ci.low


def test_coverage_of_the_nominal_95_percent_interval_is_at_least_85_percent():
    """Designed Hill curve, 2 seeds, 500 queries, realistic noise (roi.coverage): the measured coverage of the
    interval over seeds and queries; docs/roi.md publishes the full table (python -m roi.coverage)."""
    result = coverage(Design(k=300.0), replicates=120, n_boot=150, seed=7)
    assert result["coverage"] >= 0.85, result


def _queries_for(df, *, n_queries=200, seed=0):
    """Per-query scores whose means are the table's metric values exactly (queries differ, the mean does not)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    spread = {m: rng.normal(0.0, 0.2, n_queries) for m in ("rr", "ap", "recall")}
    spread = {m: v - v.mean() for m, v in spread.items()}
    frames = []
    for _, row in df.iterrows():
        vals = {"rr": row["mrr@20"], "ap": row["map@20"], "recall": row["recall@20"]}
        frames.append(
            pd.DataFrame(
                {"trial_id": row["trial_id"], "epoch": int(row["epoch"]), "query": np.arange(n_queries)}
                | {m: vals[m] + spread[m] * (1.0 + 0.1 * row["size"] / 100.0) for m in vals}
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_per_query_scores_widen_the_interval_and_say_so():
    from roi_fixtures import baseline_rows, data_size_rows, table

    from roi.analysis import analyse
    from roi.intervals import SEEDS_AND_QUERIES

    design = {"sizes": [100, 200, 400, 800, 1600], "improvement": list(broken_power(GRID[:5], a=0.01))}
    rows = baseline_rows("q") + data_size_rows("q", design, seeds=(0, 1), offsets=(-0.002, 0.002))
    df = table(rows)
    plain = analyse(df, metrics=["mrr@20"], n_boot=300).summary.iloc[0]
    with_q = analyse(df, metrics=["mrr@20"], n_boot=300, queries=_queries_for(df)).summary.iloc[0]
    assert plain["answer_method"] == SEEDS_ONLY and with_q["answer_method"] == SEEDS_AND_QUERIES
    # The point answer is read on the mean curve: the per-query scores do not move it (800 x 2^(1/6), as above).
    assert plain["answer_cost"] == with_q["answer_cost"] == pytest.approx(800 * 2 ** (1 / 6))
    assert with_q["answer_high"] / with_q["answer_low"] > plain["answer_high"] / plain["answer_low"] > 1.0


def test_the_improvement_chart_marks_the_answer_with_its_interval():
    from roi_fixtures import baseline_rows, data_size_rows, table

    from roi import plots
    from roi.analysis import analyse

    design = {"sizes": [100, 200, 400, 800, 1600], "improvement": list(broken_power(GRID[:5], a=0.01))}
    a = analyse(table(baseline_rows("m") + data_size_rows("m", design, seeds=(0, 1), offsets=(-0.002, 0.002))),
                metrics=["mrr@20"], n_boot=200)  # fmt: skip
    fig = plots.build_figures(a.curves, a.summary)["data_size.size.improvement"]
    (answer,) = [t for t in fig.data if t.meta["role"] == "answer"]
    assert answer.x[0] == pytest.approx(800 * 2 ** (1 / 6))
    assert answer.y[0] == pytest.approx(float(broken_power(np.array([800 * 2 ** (1 / 6)]), a=0.01)[0]), rel=1e-6)
    assert answer.error_x.array[0] > 0 and answer.error_x.arrayminus[0] > 0
