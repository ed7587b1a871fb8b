"""The definitions every report states, as plain text items rendered to Markdown or HTML.

One source for the README of a report and its HTML page (``roi.page`` renders them), so they cannot disagree.
"""

from __future__ import annotations

# The report's two notes on its headline (HTML page and README).
HEADLINE_NOTE = (
    "The answer: the size (or training time) past which each further +1% costs more than {ratio:.1f}x what the "
    "average +1% cost so far (elasticity d ln G / d ln N falls to {keep:.1f}, read between neighbouring grid points "
    "and persistent to the largest size); [low to high] is a 95% interval over seeds and held-out queries (what "
    "the table has; its label says which). It does not depend on where the grid starts. Jina's drop point (average "
    "ROI at {keep:.0%} of its peak, relative to the grid's first size) is in the summary beside it."
)
SUMMARY_NOTE = (
    "The answer and Jina's drop point are read on the mean curve across seeds; the answer's interval covers seeds "
    "(pooled over sizes) and queries where the table has per-query scores; the drop point's is over seeds only."
)


def definitions(*, drop: float = 0.7) -> list[tuple[str, str]]:
    """(term, explanation) pairs, in the order a reader needs them.

    Args:
        drop: the drop fraction the report uses.
    """
    keep = 1.0 - drop
    return [
        (
            "Relative improvement",
            "(m_finetuned - m_pretrained) / m_pretrained for a metric m (mrr@k, map@k, recall@k), against the "
            "baseline (size 0, the pretrained model) of the same model, dataset, evaluation set and seed; when the "
            "baseline was evaluated with another seed only, that one (the pretrained model does not depend on the seed).",
        ),
        (
            "Cost axes",
            "data-size sweep: labeled items N, at the final epoch of each trial (epoch == epochs); epoch sweep: "
            "cumulative training seconds after each epoch; GPU-seconds (training seconds x GPUs held) as an "
            "alternative axis for both when the table has them (0 on the CPU, then that axis is skipped).",
        ),
        (
            "ROI (average)",
            "relative improvement / cost, as the seed (Jina AI's blog post) defined it. ROI is undefined at cost 0, "
            "so the baseline is the reference, never a point of a curve.",
        ),
        (
            "Marginal ROI",
            "delta improvement / delta cost between neighbouring grid points of one seed (undefined at the first "
            "grid point). This is what 'ROI = 0 means adding more no longer helps' and 'ROI can go negative' "
            "describe. Charts say which of the two they show.",
        ),
        (
            "The answer (elasticity)",
            f"elasticity e(N) = d ln G / d ln N = marginal ROI / average ROI, for G the relative improvement. The "
            f"answer is where e falls to {keep:g} (= 1 - drop): past it each further +1% costs more than "
            f"{1 / keep:.1f}x what the average +1% cost so far. Read from the measured curve: the log-log slope between "
            f"neighbouring grid points (at least 1.5x apart), placed at their geometric mean, interpolated in log N; a "
            f"crossing counts only if the chord from there to the largest size also has e <= {keep:g}. 'below the first "
            f"size' when the first slope is already at or under it (and every chord from the first size is), 'not "
            f"reached' when it never falls that far (the last elasticity is given, and at most a labelled hint of where "
            f"to measure next). It compares the next item with all the items before it, not with the grid's first "
            f"size, so it does not depend on where the grid starts. Same rule on training seconds for the epoch sweep.",
        ),
        (
            "Jina's drop point",
            f"the article's rule: the smallest cost after the peak ROI at which the average ROI has fallen to (1 - drop) x peak, "
            f"drop = {drop:g} (ROI at {keep:.0%} of its peak), linearly interpolated between the two grid points that "
            f"bracket the crossing; 'not reached within the grid' when it never falls that far; 'no positive ROI' "
            f"when every ROI is <= 0.",
        ),
        (
            "Grid start",
            f"with average ROI the peak usually sits at the grid's first point, so the drop point depends on where the "
            f"grid starts: a drop of {drop:g} below a peak at 100 items reached at 500 items means the gain at 500 is only "
            f"{keep * 5:g}x the gain at 100. The report names it with its first size (N0) and leads with the elasticity "
            f"answer instead.",
        ),
        (
            "Forecast drop point",
            "where the drop point would be past the measured grid, from a learning curve fitted per seed to the "
            "relative improvement (c - a N^-b, or c - a exp(-N/s), chosen by how well each predicts the largest "
            "measured size from the others), mean over seeds with a 95% bootstrap band; refused (with the reason) "
            "from fewer than three sizes or a poor fit. A forecast, not a measurement: measure there to confirm.",
        ),
        (
            "Cost and the next +1%",
            "cost of a grid point = labels (N x label cost) + the GPU time of its training run (GPU-seconds from the "
            "records x GPU-hour price), mean over seeds; without prices, items and GPU-seconds. The cost of the next "
            "+1% = the difference in cost from the previous grid point / the difference in relative improvement in "
            "percentage points ('no gain' when it does not improve).",
        ),
        (
            "Across seeds",
            "points are aligned on the grid (size, or epoch) because seconds differ between seeds; a curve is the "
            "mean across seeds (cost = mean cost), the band is the seeds' min to max, and std is reported too. The "
            "answer's 95% interval resamples what the table has: the seeds' noise (their spread around each size's "
            "mean, pooled over sizes, so two seeds give an interval) and the held-out queries (resampled with "
            "replacement, the same queries for the baseline and every trial; needs queries.parquet beside the table, "
            "which sweeps write since per-query scores were added). Its measured coverage is in docs/roi.md. Jina's "
            "drop point keeps its bootstrap over seeds (with two seeds, close to their range).",
        ),
    ]
